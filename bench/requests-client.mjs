// Worker-thread side of bench/requests.mjs: opens `connections` ws clients, and on 'go' makes each
// send `requests` requests `{"event":"add","data":{"a","b"},"id"}` keeping `window` in flight,
// checking every reply (right id, right sum, no error). Runs on its own thread so the server's JS
// thread only runs the server.
import { parentPort, workerData } from 'node:worker_threads'
import WebSocket from 'ws'

const { url, connections, requests, window } = workerData
const clients = []
let opened = 0
let finished = 0
let answered = 0
let wrong = 0
let firstWrong
let startedAt = 0

function fail(what) {
  wrong++
  firstWrong ??= what
}

function client(index) {
  const ws = new WebSocket(url)
  const state = { ws, sent: 0, received: 0, pending: new Map() }
  const sendNext = () => {
    const id = state.sent++
    const a = index * 1_000_000 + id
    const b = id % 97
    state.pending.set(id, a + b)
    ws.send(`{"event":"add","data":{"a":${a},"b":${b}},"id":${id}}`)
  }
  state.start = () => {
    for (let i = 0; i < Math.min(window, requests); i++) sendNext()
  }
  ws.on('message', (raw) => {
    const msg = JSON.parse(raw)
    const expected = state.pending.get(msg.id)
    if (expected === undefined) fail(`connection ${index}: reply with unexpected id ${JSON.stringify(msg.id)}`)
    else if (msg.data !== expected) fail(`connection ${index}: id ${msg.id} answered ${JSON.stringify(msg)}, expected data ${expected}`)
    state.pending.delete(msg.id)
    state.received++
    answered++
    if (state.sent < requests) sendNext()
    if (state.received === requests) {
      if (state.pending.size !== 0) fail(`connection ${index}: ${state.pending.size} requests never answered`)
      if (++finished === connections) {
        const elapsedMs = performance.now() - startedAt
        parentPort.postMessage({ type: 'done', elapsedMs, answered, wrong, firstWrong })
      }
    }
  })
  ws.on('open', () => {
    if (++opened === connections) parentPort.postMessage({ type: 'open' })
  })
  ws.on('error', (err) => parentPort.postMessage({ type: 'error', message: `connection ${index}: ${err.message}` }))
  ws.on('close', (code) => {
    if (state.received < requests) parentPort.postMessage({ type: 'error', message: `connection ${index} closed ${code} after ${state.received} replies` })
  })
  return state
}

for (let i = 0; i < connections; i++) clients.push(client(i))

parentPort.on('message', (m) => {
  if (m === 'go') {
    startedAt = performance.now()
    for (const c of clients) c.start()
  } else if (m === 'close') {
    for (const c of clients) c.ws.terminate()
    parentPort.close()
  }
})
