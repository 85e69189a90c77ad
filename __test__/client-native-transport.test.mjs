// The native client transport (ts/client/native-transport.node.ts over the addon's NativeClientPool,
// src/client/): real sockets against a real ferrosocket server, a TLS endpoint made of Node's
// https + ws with the test CA in fixtures/tls/, and a child process for the event-loop liveness
// rules. Every wait is for an event, bounded by a deadline.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { WebSocketServer } from 'ws'
import { AsyncQueue, FIXTURES, HOST, startServer, withTimeout, deferred } from './helpers.mjs'
import { createNativeTransport } from 'ferrosocket/client'
import { nativeTransport } from '../lib/client/native-transport.node.js'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const TLS = path.join(FIXTURES, 'tls')
const CA = fs.readFileSync(path.join(TLS, 'ca.pem'), 'utf8')

/** Set while the test is inside connect/send/close: handlers must never run then. */
let insideCall = false

/**
 * Opens a connection whose handler calls land in a queue as `{ type, ... }`, checking the
 * interface's order (open, messages, one close; or one failed alone) and that no handler runs
 * synchronously inside a transport call.
 */
function open(transport, url, options = {}, name = url) {
  const events = new AsyncQueue(`events of ${name}`)
  let state = 'connecting'
  const expect = (allowed, type) => {
    if (insideCall) throw new Error(`${name}: ${type} was called from inside a transport call`)
    if (!allowed.includes(state)) throw new Error(`${name}: ${type} after ${state}`)
  }
  const handlers = {
    open() {
      expect(['connecting'], 'open')
      state = 'open'
      events.push({ type: 'open' })
    },
    message(text) {
      expect(['open'], 'message')
      events.push({ type: 'message', text })
    },
    close(code, reason) {
      expect(['open'], 'close')
      state = 'closed'
      events.push({ type: 'close', code, reason })
    },
    failed(info) {
      expect(['connecting'], 'failed')
      state = 'failed'
      events.push({ type: 'failed', ...info })
    },
  }
  insideCall = true
  let socket
  try {
    socket = transport(url, handlers, options)
  } finally {
    insideCall = false
  }
  const call = (f) => {
    insideCall = true
    try {
      return f()
    } finally {
      insideCall = false
    }
  }
  return {
    socket,
    next: (ms = 3000) => events.next(ms),
    expectNone: (ms) => events.expectNone(ms),
    send: (event, data) => call(() => socket.send(JSON.stringify({ event, data }))),
    close: (code, reason) => call(() => socket.close(code, reason)),
  }
}

async function expectType(c, type, ms) {
  const e = await c.next(ms)
  assert.equal(e.type, type, `expected ${type}, got ${JSON.stringify(e)}`)
  return e
}

/** A port nothing listens on (bound, then released). */
async function closedPort() {
  const s = net.createServer()
  await new Promise((r) => s.listen(0, HOST, r))
  const { port } = s.address()
  await new Promise((r) => s.close(r))
  return port
}

/** An https server with the fixture certificate and a ws echo server on it. */
async function startTlsEcho() {
  const server = https.createServer({
    cert: fs.readFileSync(path.join(TLS, 'server.pem')),
    key: fs.readFileSync(path.join(TLS, 'server-key.pem')),
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(String(m))))
  await new Promise((r) => server.listen(0, HOST, r))
  return {
    port: server.address().port,
    async close() {
      for (const ws of wss.clients) ws.terminate()
      wss.close()
      await new Promise((r) => server.close(r))
    },
  }
}

test('open, text both ways, and a client-initiated close with its code', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const c = open(nativeTransport, h.url())
  await expectType(c, 'open')
  const conn = await h.nextConnection()
  assert.equal(c.send('echo', { n: 1, s: 'é' }), true)
  const echoed = await expectType(c, 'message')
  assert.deepEqual(JSON.parse(echoed.text), { event: 'echo', data: { n: 1, s: 'é' } })
  assert.equal(typeof c.socket.bufferedAmount, 'number')
  const serverSaw = deferred()
  conn.onClose((code, reason) => serverSaw.resolve({ code, reason }))
  c.close(4000, 'bye')
  c.close(4001, 'idempotent: ignored')
  assert.deepEqual(await withTimeout(serverSaw.promise, 3000, 'the server-side close'), { code: 4000, reason: 'bye' })
  const closed = await expectType(c, 'close')
  assert.equal(closed.code, 4000, 'the code of the server’s answering close frame')
  assert.equal(c.send('echo', 1), false, 'no sends after the end')
  assert.equal(c.socket.bufferedAmount, 0)
  await c.expectNone(100)
})

test('a server-initiated close reports its code and reason', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const c = open(nativeTransport, h.url())
  await expectType(c, 'open')
  const conn = await h.nextConnection()
  conn.close(4100, 'kicked')
  const closed = await expectType(c, 'close')
  assert.deepEqual([closed.code, closed.reason], [4100, 'kicked'])
})

test('an upgrade refused by authenticate fails with its HTTP status', async (t) => {
  const h = await startServer({
    authenticate: (req) => (req.query.token === 'banned' ? { status: 403, message: 'banned' } : false),
  })
  t.after(() => h.close())
  const refused = open(nativeTransport, h.url('/ws?token=nope'))
  const failed = await expectType(refused, 'failed')
  assert.equal(failed.status, 401)
  assert.match(failed.message, /401/)
  const banned = await expectType(open(nativeTransport, h.url('/ws?token=banned')), 'failed')
  assert.equal(banned.status, 403)
  assert.match(banned.message, /banned/)
  await h.expectNoConnection()
})

test('a refused TCP connection fails without a status', async () => {
  const port = await closedPort()
  const failed = await expectType(open(nativeTransport, `ws://${HOST}:${port}/`), 'failed')
  assert.equal('status' in failed, false, JSON.stringify(failed))
  assert.match(failed.message, /refused/i)
})

test('close() while connecting aborts the connection: failed, never open', async (t) => {
  // A listener that accepts TCP but never answers the upgrade.
  const silent = net.createServer(() => {})
  await new Promise((r) => silent.listen(0, HOST, r))
  t.after(() => {
    silent.close()
  })
  const sockets = new Set()
  silent.on('connection', (s) => sockets.add(s))
  t.after(() => sockets.forEach((s) => s.destroy()))
  const c = open(nativeTransport, `ws://${HOST}:${silent.address().port}/`)
  c.close()
  const failed = await expectType(c, 'failed')
  assert.match(failed.message, /aborted/)
  const timed = open(nativeTransport, `ws://${HOST}:${silent.address().port}/`, { handshakeTimeoutMs: 150 })
  assert.match((await expectType(timed, 'failed')).message, /timed out/)
})

test('a message over maxPayload closes 1009', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const c = open(nativeTransport, h.url(), { maxPayload: 200 })
  await expectType(c, 'open')
  const conn = await h.nextConnection()
  conn.publish('big', 'x'.repeat(500))
  const closed = await expectType(c, 'close')
  assert.equal(closed.code, 1009)
})

test('wss:// trusts the test CA through `ca` (and `caOnly`), and refuses it without', async (t) => {
  const tls = await startTlsEcho()
  t.after(() => tls.close())
  for (const [url, options] of [
    [`wss://localhost:${tls.port}/`, { ca: CA }],
    [`wss://127.0.0.1:${tls.port}/`, { ca: CA, caOnly: true }],
  ]) {
    const c = open(nativeTransport, url, options)
    await expectType(c, 'open')
    c.socket.send('over tls')
    assert.equal((await expectType(c, 'message')).text, 'over tls')
    c.close(1000)
    assert.equal((await expectType(c, 'close')).code, 1000)
  }
  const untrusted = await expectType(open(nativeTransport, `wss://localhost:${tls.port}/`), 'failed')
  assert.equal('status' in untrusted, false)
  assert.match(untrusted.message, /certificate|UnknownIssuer/i)
})

test('1,000 simultaneous connections from one pool each get their own echo', async (t) => {
  const N = 1000
  const h = await startServer()
  t.after(() => h.close())
  const transport = createNativeTransport()
  const clients = Array.from({ length: N }, (_, i) => open(transport, h.url(), {}, `client ${i}`))
  await withTimeout(Promise.all(clients.map((c) => expectType(c, 'open', 30_000))), 30_000, `${N} opens`)
  for (const [i, c] of clients.entries()) assert.equal(c.send('echo', { i }), true)
  const echoes = await withTimeout(Promise.all(clients.map((c) => c.next(30_000))), 30_000, `${N} echoes`)
  for (const [i, e] of echoes.entries()) assert.deepEqual(JSON.parse(e.text), { event: 'echo', data: { i } }, `client ${i}`)
  for (const c of clients) c.close(1000)
  const closes = await withTimeout(Promise.all(clients.map((c) => c.next(30_000))), 30_000, `${N} closes`)
  assert.ok(closes.every((e) => e.type === 'close' && e.code === 1000))
})

test('an open connection keeps Node running and an idle pool does not', async (t) => {
  // The child connects and has no other handle: it stays alive only if the open socket keeps it
  // so. It closes after the server's message, then must exit by itself.
  const h = await startServer()
  t.after(() => h.close())
  const script = `
    const { nativeTransport } = require(${JSON.stringify(path.join(ROOT, 'lib/client/native-transport.node.js'))})
    const socket = nativeTransport(process.argv[1], {
      open() { console.log('open') },
      message(text) { console.log('message ' + text); socket.close(1000) },
      close(code) { console.log('close ' + code) },
      failed(info) { console.log('failed ' + info.message) },
    }, {})
  `
  const child = spawn(process.execPath, ['-e', script, h.url()], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => child.kill())
  const lines = new AsyncQueue('child output')
  let buffered = ''
  child.stdout.on('data', (chunk) => {
    buffered += chunk
    let i
    while ((i = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, i))
      buffered = buffered.slice(i + 1)
    }
  })
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)))
  assert.equal(await lines.next(5000), 'open')
  const conn = await h.nextConnection()
  conn.publish('ping', 1)
  assert.equal(await lines.next(5000), 'message {"event":"ping","data":1}', 'still alive after open')
  assert.equal(await lines.next(5000), 'close 1000')
  assert.equal(await withTimeout(exited, 5000, 'the child to exit by itself once idle'), 0)
})
