// Behaviour 7: liveness — heartbeat pings and the 1001 "Heartbeat timeout", close-handshake
// timeout (then terminate), maxConnections → 1013 "concurrency-limit-exceeded".
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  startServer,
  connect,
  send,
  nextMessage,
  waitClose,
  expectStaysOpen,
  assertEcho,
  rawConnect,
  withTimeout,
  condition,
} from './helpers.mjs'

const INTERVAL = 200

test('a client that never answers pings is closed 1001 "Heartbeat timeout" within two intervals; a normal client stays', async (t) => {
  const h = await startServer({ heartbeat: { intervalMs: INTERVAL } })
  t.after(() => h.close())
  const [good, goodConn] = await h.client({ name: 'auto-pong client' })
  let goodPings = 0
  good.on('ping', () => goodPings++)

  const openedAt = Date.now()
  const bad = h.adopt(await connect(h.url(), { autoPong: false }, { name: 'silent client' }))
  const badConn = await h.nextConnection()
  let badPings = 0
  bad.on('ping', () => badPings++)
  const closed = await waitClose(bad, 2 * INTERVAL + 1500)
  const elapsed = Date.now() - openedAt
  assert.deepEqual(closed, { code: 1001, reason: 'Heartbeat timeout' })
  assert.ok(badPings >= 1, 'the silent client was pinged before being closed')
  assert.ok(elapsed <= 2 * INTERVAL + 300, `closed after ${elapsed} ms (two intervals = ${2 * INTERVAL} ms, + 300 ms margin)`)
  assert.ok(elapsed >= INTERVAL * 0.75, `closed after only ${elapsed} ms: it had no chance to answer a ping`)
  assert.equal((await withTimeout(badConn.waitForClose(), 2000, 'server-side waitForClose()')).code, 1001)

  // The normal client stays through several more intervals and still receives messages.
  await expectStaysOpen(good, 4 * INTERVAL)
  assert.ok(goodPings >= 3, `the normal client was pinged (${goodPings} pings) and answered`)
  assert.equal(goodConn.isOpen, true)
  h.server.broadcast('still', 'here')
  assert.deepEqual(await nextMessage(good), { event: 'still', data: 'here' })
  await assertEcho(good)
})

test('any frame from the client counts as alive, not only pongs', async (t) => {
  const h = await startServer({ heartbeat: { intervalMs: INTERVAL } })
  t.after(() => h.close())
  const ws = h.adopt(await connect(h.url(), { autoPong: false }, { name: 'chatty client without pongs' }))
  await h.nextConnection()
  let pings = 0
  const enough = condition(() => pings >= 5, 5000, '5 pings')
  // Answer every ping with a message (never a pong): the connection must stay.
  ws.on('ping', () => {
    pings++
    send(ws, 'echo', pings)
    enough.signal()
  })
  await enough.done
  assert.equal(ws.readyState, ws.OPEN, 'still open after 5 intervals')
  for (let i = 1; i <= 5; i++) assert.deepEqual(await nextMessage(ws), { event: 'echo', data: i })
})

test('heartbeat intervalMs 0 disables pings', async (t) => {
  const h = await startServer({ heartbeat: { intervalMs: 0 } })
  t.after(() => h.close())
  const ws = h.adopt(await connect(h.url(), { autoPong: false }, { name: 'silent client' }))
  await h.nextConnection()
  let pings = 0
  ws.on('ping', () => pings++)
  await expectStaysOpen(ws, 1000)
  assert.equal(pings, 0)
  await assertEcho(ws)
})

async function closeTimeout(t, options, minMs, maxMs) {
  const h = await startServer(options)
  t.after(() => h.close())
  const raw = await rawConnect(h.port)
  const conn = await h.nextConnection()
  const [other] = await h.client({ name: 'bystander' })
  const started = Date.now()
  conn.close(4000, 'go away')
  const frame = await raw.nextData(2000)
  assert.equal(frame.opcode, 8, 'a close frame is sent first')
  assert.equal(frame.code, 4000)
  assert.equal(frame.reason, 'go away')
  // The raw peer never answers the close: the server must terminate the TCP connection itself.
  const endedAt = await withTimeout(raw.ended, maxMs + 2000, 'the server to terminate the silent peer')
  const elapsed = endedAt - started
  assert.ok(elapsed >= minMs, `terminated after ${elapsed} ms, before the close timeout`)
  assert.ok(elapsed <= maxMs, `terminated after ${elapsed} ms (expected ≤ ${maxMs})`)
  await withTimeout(conn.waitForClose(), 2000, 'server-side waitForClose()')
  await assertEcho(other)
}

test('closeTimeoutMs: a peer that never answers our close frame is terminated', (t) =>
  closeTimeout(t, { closeTimeoutMs: 300 }, 250, 1500))

test('close handshake timeout defaults to 5 s', (t) => closeTimeout(t, { heartbeat: { intervalMs: 0 } }, 4500, 7000))

test('maxConnections: the extra handshake is closed 1013 "concurrency-limit-exceeded"', async (t) => {
  const h = await startServer({ maxConnections: 2 })
  t.after(() => h.close())
  const [a] = await h.client({ name: 'A' })
  const [b, connB] = await h.client({ name: 'B' })
  const c = h.adopt(await connect(h.url(), {}, { name: 'C (over the limit)' }).catch((e) => e))
  assert.ok(!(c instanceof Error), `the upgrade itself completes: ${c}`)
  assert.deepEqual(await waitClose(c), { code: 1013, reason: 'concurrency-limit-exceeded' })
  await h.expectNoConnection('/', 100)
  assert.equal(h.server.connectionCount, 2)
  await assertEcho(a)
  await assertEcho(b)

  // Once a slot frees up, a new client gets in.
  b.close()
  await withTimeout(connB.waitForClose(), 2000, 'B to close')
  const [d] = await h.client({ name: 'D' })
  await assertEcho(d)
  assert.equal(h.server.connectionCount, 2)
})
