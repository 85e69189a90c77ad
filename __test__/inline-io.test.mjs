// `inlineIo`: the JS thread reads sockets itself between batches (Rust's I/O threads yield to it).
// It is off by default, so these tests turn it on and check that nothing changes for the
// application: every message handled once, in order, replies and
// fan-out delivered, raw binary payloads intact, and nothing held back when the stream outlasts
// the rounds one wake-up may dispatch.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { createServer } from '../index.js'
import { HOST, nextMessage, send, startServer, waitFor, withTimeout } from './helpers.mjs'

async function echoServer(options) {
  const server = createServer({ host: HOST, port: 0, path: '/ws', ...options })
  server.onMessage('echo', (data, { conn }) => conn.publish('echo', data))
  await server.listen()
  return server
}

test('inlineIo must be a boolean', () => {
  assert.throws(() => createServer({ port: 0, inlineIo: 'yes' }), /option inlineIo must be a boolean/)
})

test('under a steady stream from another thread, every message is echoed once and in order', async () => {
  const server = await echoServer({ inlineIo: true, workerThreads: 1 })
  try {
    // 40 clients × 8 in flight keep the server's JS thread busy for many rounds in a row.
    const workerData = { url: `ws://${HOST}:${server.port}/ws`, clients: 40, inflight: 8, perClient: 1500 }
    const worker = new Worker(new URL('./fixtures/echo-clients-worker.mjs', import.meta.url), { workerData })
    const [report] = await withTimeout(waitFor(worker, 'message', 60000), 60000, 'the clients to finish')
    await worker.terminate()
    assert.deepEqual(report, { type: 'done', replies: 40 * 1500, outOfOrder: 0, closed: 0 })
    assert.equal(server.stats.messagesReceived, 40 * 1500)
    assert.equal(server.stats.droppedMessages, 0)
  } finally {
    await server.shutdown()
  }
})

test('with inlineIo, room fan-out and raw binary messages arrive intact', async (t) => {
  const rooms = await startServer({ inlineIo: true, workerThreads: 1 }, {
    onConnection: (conn) =>
      conn.onMessage('say', (data) => {
        conn.join('r')
        rooms.server.publishToRoom('r', 'said', data)
      }),
  })
  t.after(() => rooms.close())
  const raw = await startServer({ inlineIo: true, workerThreads: 1, messageFormat: 'raw' }, {
    onConnection: (conn) => conn.onRawMessage((payload, c) => c.sendRaw(payload)),
  })
  t.after(() => raw.close())
  const [a] = await rooms.client()
  const [b] = await rooms.client()
  send(a, 'say', { n: 1 })
  assert.deepEqual(await nextMessage(a), { event: 'said', data: { n: 1 } })
  send(b, 'say', { n: 2 })
  assert.deepEqual(await nextMessage(a), { event: 'said', data: { n: 2 } })
  assert.deepEqual(await nextMessage(b), { event: 'said', data: { n: 2 } })
  const [c] = await raw.client()
  const bytes = Buffer.from([0, 1, 2, 253, 254, 255])
  c.send(bytes)
  const [echoed, isBinary] = await waitFor(c, 'message')
  assert.equal(isBinary, true)
  assert.deepEqual(Buffer.from(echoed), bytes)
})
