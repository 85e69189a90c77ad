// Behaviour 8: shutdown(code=1001, reason, { timeoutMs=5000 }) stops accepting, flushes queues,
// sends close frames, waits, terminates stragglers, releases the port, fires every onClose; a process
// whose server was shut down exits by itself, a running server keeps it alive.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { createServer } from '../index.js'
import {
  HOST,
  startServer,
  connect,
  collect,
  waitClose,
  assertEcho,
  echo,
  rawConnect,
  withTimeout,
  spawnFixture,
  waitExit,
  killChild,
} from './helpers.mjs'

function tcpRefused(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, HOST)
    s.on('connect', () => {
      s.destroy()
      resolve(false)
    })
    s.on('error', (err) => resolve(err.code === 'ECONNREFUSED'))
  })
}

test('shutdown() closes every client 1001 "Server shutting down", fires every onClose, and releases the port', async (t) => {
  const closes = []
  const h = await startServer({ namespaces: { game: null } }, {
    onConnection(conn, ns) {
      echo(conn)
      conn.onClose((code, reason) => closes.push({ ns, id: conn.id, code, reason }))
    },
  })
  t.after(() => h.close())
  const clients = []
  const conns = []
  for (const ns of ['/', '/', 'game']) {
    const [ws, conn] = await h.client({ ns })
    clients.push(ws)
    conns.push(conn)
  }
  await assertEcho(clients[2])

  const started = Date.now()
  await withTimeout(h.server.shutdown(), 4000, 'shutdown() with well-behaved clients')
  h.shutdownDone = true
  const took = Date.now() - started
  assert.ok(took < 1500, `shutdown took ${took} ms although every client answered the close at once`)

  for (const ws of clients) assert.deepEqual(await waitClose(ws), { code: 1001, reason: 'Server shutting down' })
  assert.equal(closes.length, 3, 'every onClose fired by the time shutdown() resolved')
  for (const c of closes) assert.equal(c.code, 1001)
  assert.deepEqual(closes.map((c) => c.id).sort(), conns.map((c) => c.id).sort())
  for (const conn of conns) assert.equal(conn.isOpen, false)

  // The port is released: nothing listens on it any more, and a new server can bind it.
  assert.equal(await tcpRefused(h.port), true, 'connections to the old port are refused')
  const again = createServer({ host: HOST, port: h.port })
  again.onConnection(echo)
  await withTimeout(again.listen(), 3000, 'a new server listening on the same port')
  t.after(() => withTimeout(again.shutdown(), 5000, 'second server shutdown'))
  assert.equal(again.port, h.port)
  const ws = await connect(`ws://${HOST}:${h.port}/ws`)
  t.after(() => ws.terminate())
  await assertEcho(ws)
})

test('shutdown(code, reason) uses the given close code and reason', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [a, connA] = await h.client()
  const [b] = await h.client()
  await withTimeout(h.server.shutdown(4001, 'maintenance window'), 4000, 'shutdown(4001, ...)')
  h.shutdownDone = true
  assert.deepEqual(await waitClose(a), { code: 4001, reason: 'maintenance window' })
  assert.deepEqual(await waitClose(b), { code: 4001, reason: 'maintenance window' })
  assert.deepEqual(await withTimeout(connA.waitForClose(), 1000, 'waitForClose()'), { code: 4001, reason: 'maintenance window' })
})

test('messages queued before shutdown() are flushed before the close frame', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [a, connA] = await h.client({ name: 'A' })
  const [b, connB] = await h.client({ name: 'B' })
  connA.join('r')
  connB.join('r')
  for (let i = 0; i < 400; i++) h.server.publishToRoom('r', 'tick', i)
  for (let i = 400; i < 500; i++) connA.publish('tick', i)
  const done = h.server.shutdown()
  for (let i = 400; i < 500; i++) connB.publish('late', i) // after shutdown(): silently dropped or flushed, never a throw
  await withTimeout(done, 4000, 'shutdown()')
  h.shutdownDone = true
  const gotA = await collect(a, 500, 5000)
  assert.deepEqual(
    gotA.map((m) => m.data),
    Array.from({ length: 500 }, (_, i) => i),
  )
  const gotB = await collect(b, 400, 5000)
  assert.deepEqual(
    gotB.map((m) => m.data),
    Array.from({ length: 400 }, (_, i) => i),
  )
  assert.equal((await waitClose(a)).code, 1001)
  assert.equal((await waitClose(b)).code, 1001)
})

test('while shutdown() is in progress no new connection is accepted', async (t) => {
  const h = await startServer({ heartbeat: { intervalMs: 0 } })
  t.after(() => h.close())
  const raw = await rawConnect(h.port) // a straggler keeps the shutdown in progress
  await h.nextConnection()
  const done = h.server.shutdown(1001, 'bye', { timeoutMs: 1500 })
  h.shutdownDone = true
  const frame = await raw.nextData(2000)
  assert.equal(frame.opcode, 8, 'close frames go out once accepting has stopped')
  await assert.rejects(connect(h.url(), {}, { name: 'late client', timeoutMs: 1000 }))
  await h.expectNoConnection('/', 100)
  await withTimeout(done, 4000, 'shutdown()')
})

test('shutdown({ timeoutMs }) terminates a peer that never answers the close frame', async (t) => {
  const closes = []
  const h = await startServer({ heartbeat: { intervalMs: 0 } }, {
    onConnection(conn) {
      echo(conn)
      conn.onClose((code) => closes.push(code))
    },
  })
  t.after(() => h.close())
  const raw = await rawConnect(h.port)
  await h.nextConnection()
  const [polite] = await h.client({ name: 'polite' })

  const started = Date.now()
  await withTimeout(h.server.shutdown(undefined, undefined, { timeoutMs: 400 }), 4000, 'shutdown() with a straggler')
  h.shutdownDone = true
  const took = Date.now() - started
  const frame = await raw.nextData(1000)
  assert.equal(frame.opcode, 8, 'the straggler was sent a close frame')
  assert.equal(frame.code, 1001)
  assert.equal(frame.reason, 'Server shutting down')
  const endedAt = await withTimeout(raw.ended, 2000, 'the straggler to be terminated')
  assert.ok(took >= 300, `shutdown() resolved after ${took} ms: it did not wait for the straggler`)
  assert.ok(took <= 2000, `shutdown() took ${took} ms with timeoutMs 400`)
  assert.ok(endedAt - started <= 2000, `straggler terminated after ${endedAt - started} ms`)
  assert.deepEqual(await waitClose(polite), { code: 1001, reason: 'Server shutting down' })
  assert.equal(closes.length, 2, 'onClose fired for the straggler and the polite client')
})

test('shutdown() waits 5 s by default for a peer that never answers the close frame', async (t) => {
  const h = await startServer({ heartbeat: { intervalMs: 0 }, closeTimeoutMs: 60_000 })
  t.after(() => h.close())
  const raw = await rawConnect(h.port)
  await h.nextConnection()
  const started = Date.now()
  await withTimeout(h.server.shutdown(), 9000, 'shutdown() with a straggler and the default timeout')
  h.shutdownDone = true
  const took = Date.now() - started
  assert.ok(took >= 4500 && took <= 7000, `shutdown() took ${took} ms (default timeoutMs is 5000)`)
  const endedAt = await withTimeout(raw.ended, 2000, 'the straggler to be terminated')
  assert.ok(endedAt - started <= 7000)
})

test('a process whose server was shut down exits by itself', async (t) => {
  const { child, lines } = spawnFixture('listen-then-shutdown.mjs')
  t.after(() => killChild(child))
  const { code, signal } = await waitExit(child, 8000)
  const out = []
  for (;;) {
    try {
      out.push(await lines.next(1000))
    } catch {
      break
    }
  }
  assert.equal(signal, null)
  assert.equal(code, 0, `exit code (output: ${out.join(' | ')})`)
  assert.ok(out.includes('echo {"event":"echo","data":"hi"}'), `served a client first: ${out.join(' | ')}`)
  assert.ok(out.includes('shutdown-complete client-close=1001'), `shut down: ${out.join(' | ')}`)
})

test('a process with a listening server does not exit', async (t) => {
  const { child, lines } = spawnFixture('listen-only.mjs')
  t.after(() => killChild(child))
  const line = await lines.next(8000)
  const port = Number(/^listening (\d+)$/.exec(line)?.[1])
  assert.ok(port > 0, `fixture printed: ${line}`)
  // Positive control: it really serves.
  const ws = await connect(`ws://${HOST}:${port}/ws`)
  await assertEcho(ws)
  ws.close()
  await waitClose(ws)
  // Bounded wait that must expire: the process stays alive while its server runs.
  await assert.rejects(waitExit(child, 2000), /timed out/, 'the process exited although its server was listening')
  assert.equal(child.exitCode, null)
})
