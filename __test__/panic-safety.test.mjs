// Behaviour 9 (part): no Rust panic crosses N-API. Uses the test-only hooks `__testing.panic()` and
// the `__testPanicOnEvent` option, which make Rust panic on purpose.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { __testing } from '../index.js'
import { startServer, send, waitClose, assertEcho, withTimeout, deferred, RawHttpPeer, upgradeHead, encodeFrame } from './helpers.mjs'

test('a panic inside a Rust N-API call surfaces as a JS Error', () => {
  assert.equal(typeof __testing?.panic, 'function', '__testing.panic is exported')
  assert.throws(() => __testing.panic(), (err) => err instanceof Error && /panic/i.test(err.message))
  // The addon is still usable afterwards.
  assert.throws(() => __testing.panic(), /panic/i)
})

test('a panic while running one connection closes it 1011; others keep working', async (t) => {
  const h = await startServer({ __testPanicOnEvent: '__panic__' })
  t.after(() => h.close())
  const [healthy, healthyConn] = await h.client({ name: 'healthy' })
  const [victim, victimConn] = await h.client({ name: 'panicking' })
  await assertEcho(victim)
  const closed = deferred()
  victimConn.onClose((code, reason) => closed.resolve({ code, reason }))
  send(victim, '__panic__', null)
  const info = await withTimeout(closed.promise, 3000, 'onClose of the panicking connection')
  assert.equal(info.code, 1011)
  const clientSide = await waitClose(victim, 3000)
  t.diagnostic(`client saw close ${clientSide.code} ${JSON.stringify(clientSide.reason)}`)
  assert.equal(victimConn.isOpen, false)
  assert.equal(healthyConn.isOpen, true)
  await assertEcho(healthy)
  const [fresh] = await h.client({ name: 'after the panic' })
  await assertEcho(fresh)
  // A second panic is handled the same way (the runtime survived the first).
  const [victim2, conn2] = await h.client({ name: 'second panicking' })
  send(victim2, '__panic__', null)
  assert.equal((await withTimeout(conn2.waitForClose(), 3000, 'second onClose')).code, 1011)
  await waitClose(victim2, 3000)
  await assertEcho(healthy)
})

test('a panic on a frame that arrived with the upgrade request closes only that connection 1011', async (t) => {
  const h = await startServer({ __testPanicOnEvent: '__panic__' })
  t.after(() => h.close())
  const [healthy] = await h.client({ name: 'healthy' })
  const peer = await RawHttpPeer.connect(h.port)
  t.after(() => peer.socket.destroy())
  // Head and first frame in one write: Rust parses the frame before the connection's first run.
  const frame = encodeFrame(1, JSON.stringify({ event: '__panic__', data: null }))
  const response = await peer.request(Buffer.concat([Buffer.from(upgradeHead('/ws')), frame]))
  assert.equal(response.status, 101)
  const conn = await h.nextConnection()
  assert.equal((await withTimeout(conn.waitForClose(), 3000, 'onClose of the panicking connection')).code, 1011)
  await withTimeout(peer.ended, 3000, 'the server ending the TCP connection')
  await assertEcho(healthy)
  const [fresh] = await h.client({ name: 'after the panic' })
  await assertEcho(fresh)
})
