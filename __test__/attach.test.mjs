// Issue 3, behaviours 5–6: attach mode. Real Fastify and Express apps (examples/fastify,
// examples/express) serve HTTP and hand WebSocket upgrades on the same port to ferrosocket with
// `server.handleUpgrade(req, socket, head)`; Rust owns the socket from then on (the descriptor is
// duplicated into Rust, Node's socket destroyed). Also `noListen` and handleUpgrade after shutdown.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from '../index.js'
import {
  connect,
  send,
  nextMessage,
  collect,
  assertEcho,
  expectNoMessage,
  waitClose,
  withTimeout,
  condition,
  tryUpgrade,
  upgradeHead,
  encodeFrame,
  RawHttpPeer,
  HOST,
} from './helpers.mjs'

const require = createRequire(import.meta.url)
const examples = {
  fastify: require('../examples/fastify/server.js'),
  express: require('../examples/express/server.js'),
}

/** Start an example on 127.0.0.1:0; `httpServer` is the Node http.Server under the framework. */
async function startExample(t, name) {
  const ex = await examples[name].start({ host: HOST, port: 0 })
  const httpServer = ex.server ?? ex.app.server
  const port = httpServer.address().port
  const clients = new Set()
  let httpClosed = false
  const closeHttp = () => {
    if (httpClosed) return Promise.resolve()
    httpClosed = true
    return name === 'fastify' ? ex.app.close() : new Promise((resolve, reject) => httpServer.close((e) => (e ? reject(e) : resolve())))
  }
  t.after(async () => {
    for (const c of clients) (c.terminate ?? c.destroy).call(c)
    await withTimeout(closeHttp(), 10_000, `${name} HTTP server close in cleanup`).catch(() => {})
    await withTimeout(ex.ws.shutdown(1001, 'test over', { timeoutMs: 1000 }), 10_000, 'ws.shutdown() in cleanup')
  })
  return {
    ex,
    ws: ex.ws,
    httpServer,
    port,
    closeHttp,
    wsUrl: (p = '/ws') => `ws://${HOST}:${port}${p}`,
    httpUrl: (p) => `http://${HOST}:${port}${p}`,
    adopt(c) {
      clients.add(c)
      return c
    },
  }
}

/** Names of Node's active TCP socket handles (not servers). */
function tcpSocketHandles() {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length
}

/**
 * Inode of the server side of the loopback TCP connection `serverPort` ↔ `clientPort`, from
 * /proc/net/tcp (Linux). Both ends live in this process; the server end is the one whose local
 * port is `serverPort`.
 */
function serverSideInode(serverPort, clientPort) {
  const hex = (p) => p.toString(16).toUpperCase().padStart(4, '0')
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/)
    if (cols.length < 10) continue
    if (cols[1].endsWith(`:${hex(serverPort)}`) && cols[2].endsWith(`:${hex(clientPort)}`)) return cols[9]
  }
  return undefined
}

/** Descriptors of this process that refer to socket `inode`. */
function fdsOfInode(inode) {
  const out = []
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === `socket:[${inode}]`) out.push(Number(fd))
    } catch {
      // closed between readdir and readlink
    }
  }
  return out
}

async function postJson(url, body) {
  const res = await withTimeout(
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    5000,
    `POST ${url}`,
  )
  return { status: res.status, body: await res.json() }
}

for (const name of ['fastify', 'express']) {
  test(`${name}: one TCP connection serves GET /health, then upgrades; Node keeps no fd; closing HTTP leaves the WebSocket until shutdown()`, async (t) => {
    const h = await startExample(t, name)
    const nodeSockets = new Map() // client port -> Node's server-side net.Socket
    h.httpServer.on('connection', (s) => nodeSockets.set(s.remotePort, s))
    const upgradeSockets = []
    h.httpServer.on('upgrade', (req, socket) => upgradeSockets.push(socket)) // runs after the example's listener

    const peer = h.adopt(await RawHttpPeer.connect(h.port))
    const clientPort = peer.socket.localPort

    // 1. Plain HTTP on the connection (keep-alive).
    const health = await peer.request(`GET /health HTTP/1.1\r\nHost: ${HOST}:${h.port}\r\nConnection: keep-alive\r\n\r\n`)
    assert.equal(health.status, 200)
    const healthBody = JSON.parse(health.body)
    assert.equal(healthBody.ok, true)
    assert.equal(healthBody.websockets, 0)
    assert.ok(!peer.eof, 'the connection stays open after the HTTP response')

    // Positive control for the descriptor check: before the handover Node holds this connection.
    const nodeSocket = nodeSockets.get(clientPort)
    assert.ok(nodeSocket, "Node's server-side socket for our connection was seen")
    const nodeFd = nodeSocket._handle?.fd
    assert.equal(typeof nodeFd, 'number')
    const linux = process.platform === 'linux'
    let inode
    if (linux) {
      inode = serverSideInode(h.port, clientPort)
      assert.ok(inode && inode !== '0', 'the server side of the connection is in /proc/net/tcp')
      assert.deepEqual(fdsOfInode(inode), [nodeFd], "before the upgrade exactly one fd (Node's) refers to the socket")
    }
    const handlesBefore = tcpSocketHandles()

    // 2. The upgrade on the same connection, with a first frame in the same write (it arrives at
    //    the 'upgrade' listener as `head` and must be carried over to Rust).
    const upgrade = peer.request(
      Buffer.concat([
        Buffer.from(upgradeHead('/ws', { host: `${HOST}:${h.port}` })),
        encodeFrame(1, JSON.stringify({ event: 'echo', data: { first: 'in the head bytes' } })),
      ]),
    )
    const res = await upgrade
    assert.equal(res.status, 101)
    assert.equal(peer.socket.localPort, clientPort, 'the same TCP connection')
    assert.deepEqual(await peer.nextJson(), { event: 'echo', data: { first: 'in the head bytes' } })
    peer.sendJson('echo', { second: 1 })
    assert.deepEqual(await peer.nextJson(), { event: 'echo', data: { second: 1 } })

    // 3. Node let go: its socket is destroyed with no handle, no Node TCP handle for it remains,
    //    and (Linux) the only descriptor left for the connection is Rust's duplicate.
    assert.equal(upgradeSockets.length, 1)
    assert.equal(upgradeSockets[0], nodeSocket, 'the upgrade came on the socket that served /health')
    assert.equal(nodeSocket.destroyed, true, "Node's socket is destroyed after handleUpgrade")
    assert.equal(nodeSocket._handle, null, "Node's socket holds no handle")
    const handles = condition(() => tcpSocketHandles() === handlesBefore - 1, 2000, "Node's TCP handle to go away")
    const poll = setInterval(handles.signal, 10)
    try {
      await handles.done
    } catch (e) {
      e.message += ` (TCPSocketWrap handles: before ${handlesBefore}, now ${tcpSocketHandles()})`
      throw e
    } finally {
      clearInterval(poll)
    }
    if (linux) {
      const fds = condition(() => fdsOfInode(inode).length === 1 && !fdsOfInode(inode).includes(nodeFd), 2000, 'Node fd to close')
      const poll2 = setInterval(fds.signal, 10)
      try {
        await fds.done
      } catch (e) {
        e.message += ` (fds referring to socket:[${inode}]: ${JSON.stringify(fdsOfInode(inode))}, Node's was ${nodeFd})`
        throw e
      } finally {
        clearInterval(poll2)
      }
    }
    assert.equal(h.ws.connectionCount, 1)

    // A ws client too, to see the close code at the end.
    const client = h.adopt(await connect(h.wsUrl()))
    await assertEcho(client)

    // 4. Closing the Node HTTP server does not touch the handed-over WebSockets.
    await withTimeout(h.closeHttp(), 5000, `${name} HTTP server close (it must not wait for handed-over sockets)`)
    await assertEcho(client, { after: 'http close' })
    peer.sendJson('echo', 'after http close')
    assert.deepEqual(await peer.nextJson(), { event: 'echo', data: 'after http close' })
    await expectNoMessage(client, 100)
    assert.equal(h.ws.connectionCount, 2)

    // 5. shutdown() closes them 1001.
    await withTimeout(h.ws.shutdown(), 10_000, 'ws.shutdown()')
    assert.equal((await waitClose(client)).code, 1001)
    const close = await peer.nextData()
    assert.equal(close.opcode, 8)
    assert.equal(close.code, 1001)
  })

  test(`${name}: 1,000 attached connections join a room and each receives a POSTed broadcast exactly once`, async (t) => {
    const h = await startExample(t, name)
    const N = 1000
    const clients = []
    for (let batch = 0; batch < N; batch += 100) {
      const opened = await Promise.all(
        Array.from({ length: Math.min(100, N - batch) }, (_, i) =>
          connect(h.wsUrl(), {}, { name: `client ${batch + i}`, timeoutMs: 10_000 }).then((ws) => h.adopt(ws)),
        ),
      )
      for (const ws of opened) send(ws, 'join', 'r')
      for (const ws of opened) assert.deepEqual(await nextMessage(ws, 10_000), { event: 'joined', data: 'r' })
      clients.push(...opened)
    }
    assert.equal(h.ws.connectionCount, N)
    const health = await (await fetch(h.httpUrl('/health'))).json()
    assert.deepEqual(health, { ok: true, websockets: N }, 'HTTP still served on the same port')

    const first = await postJson(h.httpUrl('/rooms/r/broadcast'), { n: 1, text: 'hello room' })
    assert.equal(first.status, 200)
    assert.deepEqual(first.body, { sent: true })
    await Promise.all(
      clients.map(async (ws) => assert.deepEqual(await nextMessage(ws, 10_000), { event: 'broadcast', data: { n: 1, text: 'hello room' } })),
    )
    // Exactly once: the next thing every client receives is the second broadcast, not a duplicate.
    await postJson(h.httpUrl('/rooms/r/broadcast'), { n: 2 })
    await Promise.all(clients.map(async (ws) => assert.deepEqual(await nextMessage(ws, 10_000), { event: 'broadcast', data: { n: 2 } })))
    // A room nobody joined reaches nobody.
    await postJson(h.httpUrl('/rooms/empty/broadcast'), { n: 3 })
    await expectNoMessage(clients[0], 100)
    await expectNoMessage(clients[N - 1], 10)
  })
}

test('attach mode applies the handshake policy: authenticate, origins, 404 for unserved paths', async (t) => {
  const seen = []
  const ws = createServer({
    noListen: true,
    allowedOrigins: ['https://app.example'],
    authenticate: (req) => {
      seen.push(req)
      return req.query.token === 'good' ? { userId: 'u1', data: { via: 'attach' } } : { status: 403, message: 'nope' }
    },
  })
  const conns = []
  ws.onConnection((conn) => {
    conns.push(conn)
    conn.onMessage('echo', (d) => conn.publish('echo', d))
  })
  const httpServer = http.createServer((req, res) => res.end('http'))
  httpServer.on('upgrade', (req, socket, head) => ws.handleUpgrade(req, socket, head))
  await new Promise((resolve) => httpServer.listen(0, HOST, resolve))
  const port = httpServer.address().port
  const opened = []
  t.after(async () => {
    for (const c of opened) c.terminate()
    await new Promise((resolve) => httpServer.close(resolve))
    await withTimeout(ws.shutdown(1001, 'test over', { timeoutMs: 1000 }), 10_000, 'ws.shutdown()')
  })

  const ok = await tryUpgrade(`ws://${HOST}:${port}/ws?token=good`, { headers: { 'X-Trace': 't1' } })
  assert.equal(ok.status, 101)
  opened.push(ok.ws)
  await assertEcho(ok.ws)
  assert.equal(seen.at(-1).remoteAddress, '127.0.0.1')
  assert.equal(seen.at(-1).headers['x-trace'], 't1')
  assert.deepEqual({ ...seen.at(-1).query }, { token: 'good' })
  assert.equal(conns.length, 1)
  assert.equal(conns[0].userId, 'u1')
  assert.deepEqual(conns[0].data, { via: 'attach' })
  assert.equal(conns[0].url, '/ws?token=good')
  assert.equal(conns[0].headers['x-trace'], 't1')
  assert.equal(conns[0].remoteAddress, '127.0.0.1')

  const denied = await tryUpgrade(`ws://${HOST}:${port}/ws?token=bad`)
  assert.equal(denied.status, 403)
  assert.equal(denied.body, 'nope')
  assert.equal((await tryUpgrade(`ws://${HOST}:${port}/ws?token=good`, { origin: 'https://evil.example' })).status, 403)
  assert.equal((await tryUpgrade(`ws://${HOST}:${port}/elsewhere`)).status, 404)
  assert.equal(conns.length, 1, 'no connection for refused upgrades')

  // Plain HTTP on the same port is still Node's.
  const body = await new Promise((resolve, reject) => {
    http.get(`http://${HOST}:${port}/`, (res) => {
      let b = ''
      res.on('data', (c) => (b += c))
      res.on('end', () => resolve(b))
    }).on('error', reject)
  })
  assert.equal(body, 'http')
})

test('noListen: listen() rejects', async (t) => {
  const ws = createServer({ noListen: true })
  t.after(() => ws.shutdown())
  await assert.rejects(ws.listen(), /noListen/)
  assert.equal(ws.port, undefined)
})

test('handleUpgrade after shutdown() destroys the socket', async (t) => {
  const ws = createServer({ noListen: true })
  ws.onConnection(() => assert.fail('no connection after shutdown'))
  await ws.shutdown()
  const handled = []
  const httpServer = http.createServer()
  httpServer.on('upgrade', (req, socket, head) => {
    ws.handleUpgrade(req, socket, head)
    handled.push(socket.destroyed)
  })
  await new Promise((resolve) => httpServer.listen(0, HOST, resolve))
  t.after(() => new Promise((resolve) => httpServer.close(resolve)))
  const port = httpServer.address().port

  await assert.rejects(tryUpgrade(`ws://${HOST}:${port}/ws`), (err) => {
    assert.match(String(err.message), /socket hang up|ECONNRESET|closed/i)
    return true
  })
  assert.deepEqual(handled, [true], 'the socket was destroyed synchronously by handleUpgrade')
})
