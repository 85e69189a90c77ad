// Behaviour 1 (setup) and the HTTP side of behaviour 2 (namespaces mounted by path, 404 / 426).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { createServer, defineContract, CloseCode } from '../index.js'
import {
  HOST,
  startServer,
  connect,
  send,
  nextMessage,
  assertEcho,
  upgradeStatus,
  httpGet,
  withTimeout,
  waitExit,
  startPrintingUrl,
  RawHttpPeer,
} from './helpers.mjs'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

test('package exports createServer, defineContract and the close-code table', () => {
  assert.equal(typeof createServer, 'function')
  assert.equal(typeof defineContract, 'function')
  assert.deepEqual(
    { ...CloseCode },
    {
      NORMAL: 1000,
      GOING_AWAY: 1001,
      INVALID_PAYLOAD: 1007,
      POLICY_VIOLATION: 1008,
      MESSAGE_TOO_BIG: 1009,
      INTERNAL_ERROR: 1011,
      TRY_AGAIN_LATER: 1013,
    },
  )
})

test('listen() on port 0 binds an ephemeral port and server.port reports it', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  assert.equal(typeof h.server.port, 'number')
  assert.ok(h.server.port > 0 && h.server.port < 65536, `port ${h.server.port}`)
  const [ws, conn] = await h.client()
  assert.equal(conn.namespace, '/')
  await assertEcho(ws)
})

test('host defaults to 0.0.0.0 (reachable through 127.0.0.1)', async (t) => {
  const server = createServer({ port: 0 })
  server.onConnection((conn) => conn.onMessage('echo', (d) => conn.publish('echo', d)))
  await server.listen()
  t.after(() => withTimeout(server.shutdown(), 5000, 'shutdown()'))
  const ws = await connect(`ws://127.0.0.1:${server.port}/ws`)
  t.after(() => ws.terminate())
  await assertEcho(ws)
})

test('listen() rejects when the port is already taken', async (t) => {
  const blocker = net.createServer()
  await new Promise((r) => blocker.listen(0, HOST, r))
  t.after(() => new Promise((r) => blocker.close(r)))
  const server = createServer({ host: HOST, port: blocker.address().port })
  await assert.rejects(withTimeout(server.listen(), 3000, 'listen() on a busy port'), /EADDRINUSE|in use|address/i)
  // Cleanup only: what shutdown() does on a server that never listened is not specified.
  await withTimeout(server.shutdown(), 3000, 'shutdown()').catch(() => {})
})

test('the default namespace mounts at /ws and a named namespace at /ws/<name>', async (t) => {
  const h = await startServer({ namespaces: { game: null } })
  t.after(() => h.close())
  const [a, connA] = await h.client()
  const [g, connG] = await h.client({ ns: 'game' })
  assert.equal(connA.namespace, '/')
  assert.equal(connG.namespace, 'game')
  await assertEcho(a, { from: 'default' })
  await assertEcho(g, { from: 'game' })
})

test('a custom `path` moves the default namespace and the named ones under it', async (t) => {
  const h = await startServer({ path: '/live', namespaces: { game: null } })
  t.after(() => h.close())
  const [a, connA] = await h.client()
  assert.equal(connA.namespace, '/')
  const [g, connG] = await h.client({ ns: 'game' })
  assert.equal(connG.namespace, 'game')
  await assertEcho(a)
  await assertEcho(g)
  assert.equal(await upgradeStatus(`ws://${HOST}:${h.port}/ws`), 404)
  assert.equal(await upgradeStatus(`ws://${HOST}:${h.port}/ws/game`), 404)
})

test('a query string does not change which namespace an upgrade reaches', async (t) => {
  const h = await startServer({ namespaces: { game: null } })
  t.after(() => h.close())
  const ws = h.adopt(await connect(`ws://${HOST}:${h.port}/ws?token=abc&x=1`))
  const conn = await h.nextConnection('/')
  assert.equal(conn.namespace, '/')
  await assertEcho(ws)
  const g = h.adopt(await connect(`ws://${HOST}:${h.port}/ws/game?token=abc`))
  assert.equal((await h.nextConnection('game')).namespace, 'game')
  await assertEcho(g)
})

test('an upgrade to an unknown path is refused with HTTP 404', async (t) => {
  const h = await startServer({ namespaces: { game: null } })
  t.after(() => h.close())
  for (const p of ['/', '/nope', '/ws/nope', '/wsx', '/ws/game/extra']) {
    assert.equal(await upgradeStatus(`ws://${HOST}:${h.port}${p}`), 404, `upgrade to ${p}`)
  }
  await h.expectNoConnection('/', 50)
  // The server still serves real upgrades afterwards.
  const [ws] = await h.client()
  await assertEcho(ws)
})

test('a plain HTTP request to a WebSocket path gets 426, anything else 404', async (t) => {
  const h = await startServer({ namespaces: { game: null } })
  t.after(() => h.close())
  const base = `http://${HOST}:${h.port}`
  for (const p of ['/ws', '/ws/game']) {
    const res = await httpGet(base + p)
    assert.equal(res.status, 426, `GET ${p}`)
  }
  for (const p of ['/', '/index.html', '/ws/nope', '/favicon.ico']) {
    const res = await httpGet(base + p)
    assert.equal(res.status, 404, `GET ${p}`)
  }
  const [ws] = await h.client()
  await assertEcho(ws)
})

// ------------------------------------------------------------------------------------------------
// Behaviour 1: the project is set up to build, test and run from a fresh clone.
// ------------------------------------------------------------------------------------------------

test('setup: package.json builds the addon on install and wires test/start', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  assert.equal(pkg.scripts.prepare, 'napi build --platform --features napi-addon --release --js binding.js --dts binding.d.ts')
  assert.match(pkg.scripts.test, /node --test/)
  assert.match(pkg.scripts.test, /tsc -p __test__\/types/)
  assert.match(pkg.scripts.start, /examples\/chat/)
  assert.ok(fs.existsSync(path.join(ROOT, 'binding.js')), 'binding.js generated by the build')
})

test('setup: README quick start and .ci/run show the commands', () => {
  const readmePath = path.join(ROOT, 'README.md')
  assert.ok(fs.existsSync(readmePath), 'README.md exists')
  const readme = fs.readFileSync(readmePath, 'utf8')
  for (const cmd of ['npm install', 'npm test', 'npm start']) assert.ok(readme.includes(cmd), `README mentions ${cmd}`)
  const ciPath = path.join(ROOT, '.ci', 'run')
  assert.ok(fs.existsSync(ciPath), '.ci/run exists')
  const ci = fs.readFileSync(ciPath, 'utf8')
  assert.ok(/npm (ci|install)\b/.test(ci), '.ci/run installs with npm ci or npm install')
  for (const cmd of ['npm test', 'cargo test', 'cargo clippy', '-D warnings']) {
    assert.ok(ci.includes(cmd), `.ci/run runs ${cmd}`)
  }
})

test('setup: `npm start` runs examples/chat, which prints a URL serving an HTML page', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  const m = /^node\s+(\S+)(.*)$/.exec(pkg.scripts.start.trim())
  assert.ok(m, `start script is "node <file> ...": ${pkg.scripts.start}`)
  const file = path.join(ROOT, m[1])
  assert.ok(fs.existsSync(file), `${m[1]} exists`)
  const args = m[2].trim() ? m[2].trim().split(/\s+/) : []
  const { child, url } = await startPrintingUrl(t, file, args)
  const res = await httpGet(url)
  assert.equal(res.status, 200, `GET ${url}`)
  assert.match(res.headers['content-type'] ?? '', /text\/html/)
  assert.match(res.body, /createClient/, 'the page opens a ferrosocket client')
  assert.equal(child.exitCode, null, 'the example keeps running')
  // The client's browser build is served as JavaScript modules, and nothing outside it.
  const mod = await httpGet(new URL('/ferrosocket/client/index.js', url).href)
  assert.equal(mod.status, 200)
  assert.match(mod.headers['content-type'] ?? '', /text\/javascript/)
  assert.match(mod.body, /export const createClient/)
  // A raw request line (a URL parser would remove the `..`): lib/client/index.js exists, outside the build.
  const raw = await RawHttpPeer.connect(Number(new URL(url).port))
  t.after(() => raw.destroy())
  const escaped = await raw.request('GET /ferrosocket/../client/index.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  assert.equal(escaped.status, 404)

  // Two "tabs": connect where the page connects, join one room, and chat.
  const wsUrl = /createClient\([^,]+,\s*[`'"]ws:\/\/[^:]+:(\d+)(\/[^`'"]*)[`'"]/.exec(res.body)
  assert.ok(wsUrl, 'the page names the WebSocket port and path')
  const url2 = `ws://127.0.0.1:${wsUrl[1]}${wsUrl[2]}`
  const tab1 = await connect(url2, {}, { name: 'tab 1' })
  const tab2 = await connect(url2, {}, { name: 'tab 2' })
  t.after(() => {
    tab1.terminate()
    tab2.terminate()
  })
  const untilEvent = async (ws, event) => {
    for (;;) {
      const m = await nextMessage(ws, 3000)
      if (m.event === event) return m
    }
  }
  send(tab1, 'chat:join', { room: 'test-room', name: 'alice' })
  await untilEvent(tab1, 'chat:presence')
  send(tab2, 'chat:join', { room: 'test-room', name: 'bob' })
  await untilEvent(tab2, 'chat:presence')
  send(tab1, 'chat:send', { text: 'hello bob' })
  const got = await untilEvent(tab2, 'chat:message')
  assert.equal(got.data.text, 'hello bob')
  assert.equal(got.data.from, 'alice')
  child.kill('SIGTERM')
  await waitExit(child, 5000).catch(() => {})
})

test('examples/echo echoes text as text and binary as binary, byte for byte', async (t) => {
  const { url } = await startPrintingUrl(t, path.join(ROOT, 'examples', 'echo', 'server.js'))
  const ws = await connect(url, {}, { name: 'echo client' })
  t.after(() => ws.terminate())
  const frames = []
  ws.on('message', (data, isBinary) => frames.push({ data: Buffer.from(data), isBinary }))
  const next = async () => {
    const got = await nextMessage(ws, 5000) // same frame, parsed; the raw copy is in `frames`
    void got
    return frames.shift()
  }
  ws.send('plain text, not an envelope')
  let f = await next()
  assert.deepEqual([f.isBinary, f.data.toString()], [false, 'plain text, not an envelope'])
  const bin = Buffer.from([0, 1, 2, 253, 254, 255])
  ws.send(bin, { binary: true })
  f = await next()
  assert.equal(f.isBinary, true)
  assert.deepEqual(f.data, bin)
  const big = Buffer.alloc(1024 * 1024, 'abc').toString()
  ws.send(big)
  f = await next()
  assert.equal(f.data.toString(), big)
  ws.send('frag', { fin: false })
  ws.send('mented', { fin: true })
  f = await next()
  assert.equal(f.data.toString(), 'fragmented')
})
