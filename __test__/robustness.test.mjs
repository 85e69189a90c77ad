// Behaviour 9: robustness — a throwing or rejecting handler closes only its connection (1011) and
// reaches onError; socket errors and misbehaving peers never surface as uncaught exceptions, never
// take down other connections, and never stop the server. (Panic safety: panic-safety.test.mjs.)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import {
  HOST,
  startServer,
  connect,
  send,
  nextMessage,
  expectNoMessage,
  waitClose,
  assertEcho,
  echo,
  rawConnect,
  encodeFrame,
  withTimeout,
  deferred,
  condition,
} from './helpers.mjs'

/** Fail the test if anything reaches process-level uncaught handlers while `fn` runs. */
async function noUncaught(t, fn) {
  const seen = []
  const onErr = (err) => seen.push(err)
  process.on('uncaughtException', onErr)
  process.on('unhandledRejection', onErr)
  try {
    await fn()
  } finally {
    process.off('uncaughtException', onErr)
    process.off('unhandledRejection', onErr)
  }
  assert.deepEqual(seen, [], `uncaught: ${seen.map((e) => e?.stack ?? e).join('\n')}`)
}

function errorServer() {
  const errors = []
  const reported = { notify: () => {} }
  return {
    errors,
    reported,
    options: {
      onError: (error, conn) => {
        errors.push({ error, connId: conn?.id })
        reported.notify()
      },
    },
    onConnection(conn) {
      echo(conn)
      conn.onMessage('throw', () => {
        throw new Error('sync failure')
      })
      conn.onMessage('reject', async () => {
        await new Promise((r) => setImmediate(r))
        throw new Error('async failure')
      })
    },
  }
}

for (const [event, message] of [
  ['throw', 'sync failure'],
  ['reject', 'async failure'],
]) {
  test(`a handler that ${event}s closes only its connection with 1011 and reaches onError`, async (t) => {
    await noUncaught(t, async () => {
      const e = errorServer()
      const h = await startServer(e.options, { onConnection: e.onConnection })
      t.after(() => h.close())
      const [bystander] = await h.client({ name: 'bystander' })
      const [ws, conn] = await h.client({ name: 'offender' })
      const reported = condition(() => e.errors.length >= 1, 2000, 'onError')
      e.reported.notify = reported.signal
      send(ws, event, null)
      send(ws, 'echo', 'never handled after the failure')
      assert.deepEqual(await waitClose(ws), { code: 1011, reason: 'Message handling failed' })
      await expectNoMessage(ws, 10) // the echo sent after the failing message got no reply
      await reported.done
      assert.equal(e.errors.length, 1)
      assert.ok(e.errors[0].error instanceof Error)
      assert.equal(e.errors[0].error.message, message)
      assert.equal(e.errors[0].connId, conn.id)
      assert.equal((await withTimeout(conn.waitForClose(), 2000, 'waitForClose()')).code, 1011)
      await assertEcho(bystander)
      const [again] = await h.client({ name: 'new client' })
      await assertEcho(again)
    })
  })
}

test('a client that vanishes mid-stream (TCP reset) only fires onClose; publishing to it is a no-op', async (t) => {
  await noUncaught(t, async () => {
    const h = await startServer()
    t.after(() => h.close())
    const [bystander, bConn] = await h.client({ name: 'bystander' })
    const [ws, conn] = await h.client({ name: 'vanishing' })
    conn.join('r')
    bConn.join('r')
    const closed = deferred()
    conn.onClose((code, reason) => closed.resolve({ code, reason }))
    // Keep publishing while the peer disappears.
    const big = 'x'.repeat(16 * 1024)
    for (let i = 0; i < 20; i++) h.server.publishToRoom('r', 'tick', { i, big })
    ws._socket.resetAndDestroy ? ws._socket.resetAndDestroy() : ws.terminate()
    for (let i = 20; i < 40; i++) h.server.publishToRoom('r', 'tick', { i, big })
    const info = await withTimeout(closed.promise, 3000, 'onClose of the vanished client')
    assert.equal(typeof info.code, 'number')
    assert.doesNotThrow(() => conn.publish('tick', { after: true }))
    assert.doesNotThrow(() => h.server.publishToRoom('r', 'tick', { i: 40, big }))
    const got = []
    for (let i = 0; i <= 40; i++) got.push((await nextMessage(bystander, 5000)).data.i)
    assert.deepEqual(
      got,
      Array.from({ length: 41 }, (_, i) => i),
    )
    await assertEcho(bystander)
  })
})

test('a peer that sends half a frame and disconnects is cleaned up', async (t) => {
  await noUncaught(t, async () => {
    const h = await startServer()
    t.after(() => h.close())
    const [bystander] = await h.client({ name: 'bystander' })
    const raw = await rawConnect(h.port)
    const conn = await h.nextConnection()
    const frame = encodeFrame(1, Buffer.from(JSON.stringify({ event: 'echo', data: 'x'.repeat(500) })))
    raw.socket.write(frame.subarray(0, 100))
    raw.socket.end()
    await withTimeout(conn.waitForClose(), 3000, 'onClose of the half-frame peer')
    assert.equal(conn.isOpen, false)
    await assertEcho(bystander)
  })
})

test('garbage instead of an HTTP request, and a broken handshake, do not disturb the server', async (t) => {
  await noUncaught(t, async () => {
    const h = await startServer()
    t.after(() => h.close())
    const [bystander] = await h.client({ name: 'bystander' })
    const probes = [
      Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), // a TLS ClientHello
      Buffer.from('NONSENSE\r\n\r\n'),
      Buffer.from(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`), // no key/version
      Buffer.from(
        `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 99\r\n\r\n`,
      ),
    ]
    for (const probe of probes) {
      const s = net.connect(h.port, HOST)
      s.on('error', () => {})
      const reply = []
      s.on('data', (c) => reply.push(c))
      const ended = new Promise((r) => s.on('close', r))
      s.write(probe)
      await withTimeout(ended, 5000, `the server to answer/close probe ${JSON.stringify(probe.toString('latin1').slice(0, 20))}`)
      const head = Buffer.concat(reply).toString('latin1')
      assert.ok(!/^HTTP\/1\.1 101/.test(head), `no upgrade for a bad handshake: ${head.split('\r\n')[0]}`)
    }
    await h.expectNoConnection('/', 50)
    await assertEcho(bystander)
  })
})

test('many clients connecting and vanishing at once leave the server consistent', async (t) => {
  await noUncaught(t, async () => {
    let closed = 0
    let notify = () => {}
    const h = await startServer({}, {
      onConnection(conn) {
        echo(conn)
        conn.join('all')
        conn.onClose(() => {
          closed++
          notify()
        })
      },
    })
    t.after(() => h.close())
    const [bystander] = await h.client({ name: 'bystander' })
    const N = 50
    const clients = await Promise.all(Array.from({ length: N }, (_, i) => connect(h.url(), {}, { name: `c${i}` })))
    for (let i = 0; i < N; i++) await h.nextConnection()
    assert.equal(h.server.connectionCount, N + 1)
    h.server.publishToRoom('all', 'hello', 1)
    clients.forEach((ws, i) => (i % 2 ? ws.terminate() : ws.close(1000)))
    const all = condition(() => closed === N + 0, 5000, `${N} onClose calls`)
    notify = all.signal
    await all.done
    assert.equal(h.server.connectionCount, 1)
    assert.deepEqual(await nextMessage(bystander), { event: 'hello', data: 1 })
    await assertEcho(bystander)
    const late = await connect(h.url())
    h.adopt(late)
    await h.nextConnection()
    await assertEcho(late)
  })
})
