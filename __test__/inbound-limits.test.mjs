// Inbound limits across connections and over time: the global bound (maxPendingBytes) covers what
// closed connections left queued; a peer that leaves while its handler never settles is noticed
// with reading paused; a request that times out frees its connection's queue; dropped messages are
// counted; bounded fragments; strict upgrade heads. (The heavier abuse cases, with RSS limits, are
// in test/abuse/.)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import {
  HOST,
  startServer,
  connect,
  send,
  nextMessage,
  waitClose,
  assertEcho,
  rawConnect,
  encodeFrame,
  withTimeout,
  condition,
  deferred,
  websocketKey,
} from './helpers.mjs'

const KiB = 1024
/** What one message costs the budget on top of its payload (src/inbound.rs MESSAGE_OVERHEAD). */
const OVERHEAD = 256
/** One socket read can bring this much past the bound (the per-thread read buffer). */
const ONE_READ = 64 * KiB

/** Resolves when `server.stats[field]` satisfies `predicate`, polling at each event-loop turn. */
function statsReach(server, field, predicate, ms, label) {
  return withTimeout(
    new Promise((resolve) => {
      const check = () => (predicate(server.stats[field]) ? resolve(server.stats[field]) : setImmediate(check))
      check()
    }),
    ms,
    label,
  )
}

/** `conn.onClose` as a promise of `{ code, reason, at }`. */
function closeOf(conn) {
  return new Promise((resolve) => conn.onClose((code, reason) => resolve({ code, reason, at: Date.now() })))
}

test('maxPendingBytes counts what closed connections left queued: the next client is paused until JS catches up, nothing is lost', async (t) => {
  const MAX = 256 * KiB
  const gate = deferred()
  let handled = 0
  const h = await startServer({ maxPendingBytes: MAX }, {
    onConnection(conn) {
      conn.onMessage('work', async () => {
        await gate.promise
        handled++
      })
    },
  })
  t.after(() => h.close())
  const payload = 'x'.repeat(20 * KiB)
  // First client: 10 × 20 KB, then a normal close. Its messages stay queued in JS (the handler
  // waits at the gate) after the connection is gone.
  const [first] = await h.client({ name: 'first' })
  for (let i = 0; i < 10; i++) send(first, 'work', payload)
  first.close(1000)
  assert.equal((await waitClose(first, 3000)).code, 1000)
  // Second client: its close frame sits behind messages Rust may not read while the first one's
  // are unhandled, so its close handshake cannot complete...
  const [second] = await h.client({ name: 'second' })
  for (let i = 0; i < 10; i++) send(second, 'work', payload)
  second.close(1000)
  const secondClosed = waitClose(second, 15_000)
  const early = await Promise.race([secondClosed.then(() => 'closed'), new Promise((r) => setTimeout(r, 1000, 'paused'))])
  assert.equal(early, 'paused', 'the second client was read to the end although the first one\'s messages were still unhandled')
  const held = h.server.stats.inboundPendingBytes
  assert.ok(held >= MAX, `the bound is reached (${held} B held)`)
  assert.ok(held <= MAX * 1.25 + ONE_READ, `${held} B held: more than maxPendingBytes × 1.25 + one read`)
  // ...until the handlers run: then everything is read and handled, and the budget is free again.
  gate.resolve()
  assert.equal((await secondClosed).code, 1000)
  const all = condition(() => handled === 20, 10_000, 'all 20 messages handled')
  const poll = setInterval(all.signal, 5)
  t.after(() => clearInterval(poll))
  await all.done
  await statsReach(h.server, 'inboundPendingBytes', (b) => b === 0, 3000, 'the budget back to 0')
  assert.equal(h.server.stats.droppedMessages, 0)
})

test('an idle client stays responsive while a flood fills maxPendingBytes', async (t) => {
  const gate = deferred()
  const h = await startServer({ maxPendingBytes: 128 * KiB }, {
    onConnection(conn) {
      conn.onMessage('work', () => gate.promise)
      conn.onMessage('ping', (d) => conn.publish('pong', d))
    },
  })
  t.after(() => {
    gate.resolve()
    return h.close()
  })
  const [idle] = await h.client({ name: 'idle' })
  const [flooder] = await h.client({ name: 'flooder' })
  for (let i = 0; i < 50; i++) send(flooder, 'work', 'x'.repeat(10 * KiB))
  await statsReach(h.server, 'inboundPendingBytes', (b) => b >= 128 * KiB, 5000, 'the bound reached by the flood')
  for (let i = 0; i < 5; i++) {
    send(idle, 'ping', i)
    assert.deepEqual(await nextMessage(idle, 1000), { event: 'pong', data: i })
  }
})

test('heartbeats off: a peer that leaves (FIN) while its handler never settles is closed within closeTimeoutMs; its queue is dropped and counted', async (t) => {
  const CLOSE_TIMEOUT = 600
  const h = await startServer({ heartbeat: { intervalMs: 0 }, closeTimeoutMs: CLOSE_TIMEOUT }, {
    onConnection(conn) {
      conn.onMessage('stuck', () => new Promise(() => {}))
      conn.onMessage('echo', (d) => conn.publish('echo', d))
    },
  })
  t.after(() => h.close())
  const [healthy] = await h.client({ name: 'healthy' })
  const peer = await rawConnect(h.port)
  const conn = await h.nextConnection()
  const closed = closeOf(conn)
  peer.sendText('{"event":"stuck"}')
  // Far past maxInflightMessages (100), so reading pauses; small enough (100 KB) that the rest fits
  // in the server's receive buffer: a FIN queued behind bytes the server's full window refuses
  // would never leave the client's kernel.
  const filler = JSON.stringify({ event: 'echo', data: 'y'.repeat(170) })
  for (let i = 0; i < 500; i++) peer.sendText(filler)
  await statsReach(h.server, 'inboundPendingBytes', (b) => b >= 100 * (170 + OVERHEAD), 3000, 'the peer\'s messages reaching JS')
  const leftAt = Date.now()
  peer.socket.end()
  const { code, at } = await withTimeout(closed, CLOSE_TIMEOUT + 3000, 'onClose after the peer left')
  assert.equal(code, 1006)
  assert.ok(at - leftAt <= CLOSE_TIMEOUT + 500, `onClose ${at - leftAt} ms after the peer left (closeTimeoutMs ${CLOSE_TIMEOUT})`)
  await withTimeout(peer.ended, 1000, 'the server releasing the socket')
  assert.ok(h.server.stats.droppedMessages > 0, 'what was queued behind the stuck handler is counted as dropped')
  await statsReach(h.server, 'inboundPendingBytes', (b) => b === 0, 3000, 'the budget back to 0')
  assert.equal(h.server.connectionCount, 1)
  await assertEcho(healthy)
})

test('heartbeats off: a peer that resets while reading is paused is closed at once', async (t) => {
  const h = await startServer({ heartbeat: { intervalMs: 0 }, closeTimeoutMs: 5000 }, {
    onConnection(conn) {
      conn.onMessage('stuck', () => new Promise(() => {}))
      conn.onMessage('echo', () => {})
    },
  })
  t.after(() => h.close())
  const peer = await rawConnect(h.port)
  const conn = await h.nextConnection()
  const closed = closeOf(conn)
  peer.sendText('{"event":"stuck"}')
  for (let i = 0; i < 500; i++) peer.sendText(JSON.stringify({ event: 'echo', data: 'z'.repeat(170) }))
  await statsReach(h.server, 'inboundPendingBytes', (b) => b >= 100 * (170 + OVERHEAD), 3000, 'the peer\'s messages reaching JS')
  const leftAt = Date.now()
  peer.socket.resetAndDestroy()
  const { code, at } = await withTimeout(closed, 3000, 'onClose after the reset')
  assert.equal(code, 1006)
  assert.ok(at - leftAt < 1000, `onClose ${at - leftAt} ms after the reset; closeTimeoutMs (5000) must not apply`)
})

test('a peer that leaves (FIN) while a slow handler catches up within closeTimeoutMs loses nothing', async (t) => {
  const gate = deferred()
  const seen = []
  const h = await startServer({ heartbeat: { intervalMs: 0 }, closeTimeoutMs: 5000 }, {
    onConnection(conn) {
      conn.onMessage('n', async (n) => {
        await gate.promise
        seen.push(n)
      })
    },
  })
  t.after(() => h.close())
  const peer = await rawConnect(h.port)
  const conn = await h.nextConnection()
  const closed = closeOf(conn)
  const N = 400
  for (let i = 0; i < N; i++) peer.sendText(JSON.stringify({ event: 'n', data: i }))
  peer.socket.end()
  await statsReach(h.server, 'inboundPendingBytes', (b) => b > 0, 3000, 'messages reaching JS')
  gate.resolve()
  assert.equal((await withTimeout(closed, 5000, 'onClose')).code, 1006)
  const all = condition(() => seen.length === N, 5000, `all ${N} messages handled`)
  const poll = setInterval(all.signal, 5)
  t.after(() => clearInterval(poll))
  await all.done
  assert.deepEqual(seen, Array.from({ length: N }, (_, i) => i))
  assert.equal(h.server.stats.droppedMessages, 0)
})

test('messages still buffered without a handler when the connection closes are dropped, counted and released', async (t) => {
  const h = await startServer({}, { onConnection() {} })
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  for (let i = 0; i < 3; i++) send(ws, 'nobody-listens', i)
  await statsReach(h.server, 'inboundPendingBytes', (b) => b >= 3 * OVERHEAD, 3000, 'three buffered messages charged')
  ws.close(1000)
  await conn.waitForClose()
  assert.equal(h.server.stats.droppedMessages, 3)
  await statsReach(h.server, 'inboundPendingBytes', (b) => b === 0, 3000, 'the budget back to 0')
})

test('a message in more fragments than max(1024, maxPayload / 64) closes 1009; 1024 fragments are fine', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const fragmented = (frames) => {
    const text = JSON.stringify({ event: 'echo', data: 'f'.repeat(frames) })
    const bytes = Buffer.from(text)
    const parts = [encodeFrame(1, bytes.subarray(0, bytes.length - frames + 1), { fin: false })]
    for (let i = bytes.length - frames + 1; i < bytes.length; i++) parts.push(encodeFrame(0, bytes.subarray(i, i + 1), { fin: i === bytes.length - 1 }))
    return { wire: Buffer.concat(parts), text }
  }
  const ok = await rawConnect(h.port)
  const allowed = fragmented(1024)
  ok.socket.write(allowed.wire)
  const echoed = await ok.nextData(3000)
  assert.deepEqual(JSON.parse(echoed.payload.toString()), JSON.parse(allowed.text))
  const bad = await rawConnect(h.port)
  bad.socket.write(fragmented(2000).wire)
  const close = await bad.nextData(3000)
  assert.equal(close.opcode, 8)
  assert.deepEqual([close.code, close.reason], [1009, 'Too many fragments'])
})

/** Sends a raw upgrade head and resolves with the status line of the answer. */
function rawUpgradeStatus(port, head) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const socket = net.connect(port, HOST, () => socket.write(head))
      let text = ''
      socket.on('data', (d) => {
        text += d.toString('latin1')
        if (text.includes('\r\n')) {
          resolve(text.split('\r\n')[0])
          socket.destroy()
        }
      })
      socket.on('error', reject)
    }),
    3000,
    'the upgrade answer',
  )
}

test('upgrade heads with two Sec-WebSocket-Key headers, two Hosts or no Host are answered 400', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const head = (extra, host = `Host: ${HOST}\r\n`) =>
    `GET /ws HTTP/1.1\r\n${host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${websocketKey()}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`
  assert.equal(await rawUpgradeStatus(h.port, head('')), 'HTTP/1.1 101 Switching Protocols', 'control: a well-formed head')
  assert.equal(await rawUpgradeStatus(h.port, head(`Sec-WebSocket-Key: ${websocketKey()}\r\n`)), 'HTTP/1.1 400 Bad Request')
  assert.equal(await rawUpgradeStatus(h.port, head('', '')), 'HTTP/1.1 400 Bad Request')
  assert.equal(await rawUpgradeStatus(h.port, head(`Host: other\r\n`)), 'HTTP/1.1 400 Bad Request')
  // The server still serves well-formed clients.
  const ws = await connect(h.url())
  await assertEcho(ws)
  ws.close()
})
