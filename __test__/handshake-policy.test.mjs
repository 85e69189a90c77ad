// Issue 3, behaviours 2–4: who may upgrade and who they are. Origin allowlist, the client address
// behind trusted proxies, the identity a connection carries (headers, url, query, openedAt,
// lastSeenAt, rtt), handshake hygiene (slowloris, 431, malformed upgrades) and subprotocols.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { createServer } from '../index.js'
import {
  startServer,
  connect,
  tryUpgrade,
  assertEcho,
  send,
  nextMessage,
  expectNoMessage,
  waitFor,
  withTimeout,
  condition,
  upgradeHead,
  RawHttpPeer,
  HOST,
} from './helpers.mjs'

// ------------------------------------------------------------------------------------------------
// Origin allowlist
// ------------------------------------------------------------------------------------------------

test('allowedOrigins: exact and wildcard origins open, others get 403, no Origin is allowed', async (t) => {
  const h = await startServer({ allowedOrigins: ['https://app.example', '*.example.com'] })
  t.after(() => h.close())

  for (const origin of ['https://app.example', 'https://a.example.com', 'http://deep.sub.example.com']) {
    const r = await tryUpgrade(h.url(), { origin })
    assert.equal(r.status, 101, `${origin} opens`)
    h.adopt(r.ws)
    await assertEcho(r.ws)
    const conn = await h.nextConnection()
    assert.equal(conn.headers.origin, origin)
  }

  for (const origin of [
    'https://evil.example',
    'http://app.example', // the scheme is part of an exact origin
    'https://app.example.evil.com',
    'https://example.com', // the wildcard does not match the apex
    'https://badexample.com',
    'null',
  ]) {
    const r = await tryUpgrade(h.url(), { origin })
    assert.equal(r.status, 403, `${origin} is refused`)
  }

  // The `ws` client sends no Origin unless asked: non-browser clients are allowed.
  const ws = h.adopt(await connect(h.url()))
  await assertEcho(ws)
  const conn = await h.nextConnection()
  assert.equal(conn.headers.origin, undefined)
  await h.expectNoConnection('/', 100)
})

test('allowedOrigins is checked before authenticate, which never sees a refused origin', async (t) => {
  const seen = []
  const h = await startServer({
    allowedOrigins: ['https://app.example'],
    authenticate: (req) => {
      seen.push(req.headers.origin)
      return true
    },
  })
  t.after(() => h.close())
  assert.equal((await tryUpgrade(h.url(), { origin: 'https://evil.example' })).status, 403)
  const ok = await tryUpgrade(h.url(), { origin: 'https://app.example' })
  assert.equal(ok.status, 101)
  h.adopt(ok.ws)
  assert.deepEqual(seen, ['https://app.example'])
})

test('without allowedOrigins any origin may connect', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const r = await tryUpgrade(h.url(), { origin: 'https://anything.invalid' })
  assert.equal(r.status, 101)
  h.adopt(r.ws)
})

// ------------------------------------------------------------------------------------------------
// trustProxy: conn.remoteAddress and req.remoteAddress
// ------------------------------------------------------------------------------------------------

/** Opens one client with `headers` on a server with `trustProxy`; returns [conn.remoteAddress, req.remoteAddress]. */
async function addressSeen(t, trustProxy, headers) {
  const seen = []
  const options = { authenticate: (req) => (seen.push(req.remoteAddress), true) }
  if (trustProxy !== undefined) options.trustProxy = trustProxy
  const h = await startServer(options)
  t.after(() => h.close())
  const ws = h.adopt(await connect(h.url(), { headers }))
  const conn = await h.nextConnection()
  await assertEcho(ws)
  return [conn.remoteAddress, seen[0]]
}

test('trustProxy off (default): a spoofed X-Forwarded-For / X-Real-IP is ignored', async (t) => {
  assert.deepEqual(await addressSeen(t, undefined, { 'X-Forwarded-For': '6.6.6.6' }), ['127.0.0.1', '127.0.0.1'])
  assert.deepEqual(await addressSeen(t, false, { 'X-Forwarded-For': '6.6.6.6, 1.2.3.4', 'X-Real-IP': '7.7.7.7' }), [
    '127.0.0.1',
    '127.0.0.1',
  ])
})

test('trustProxy without authenticate: conn.remoteAddress honours it too', async (t) => {
  const h = await startServer({ trustProxy: true })
  t.after(() => h.close())
  h.adopt(await connect(h.url(), { headers: { 'X-Forwarded-For': '9.9.9.9' } }))
  assert.equal((await h.nextConnection()).remoteAddress, '9.9.9.9')
  h.adopt(await connect(h.url()))
  assert.equal((await h.nextConnection()).remoteAddress, '127.0.0.1', 'no header: the TCP peer')
})

test('trustProxy: true takes the left-most X-Forwarded-For address', async (t) => {
  assert.deepEqual(await addressSeen(t, true, { 'X-Forwarded-For': '6.6.6.6, 1.2.3.4' }), ['6.6.6.6', '6.6.6.6'])
})

test('trustProxy: 1 (one hop) takes the right-most X-Forwarded-For entry', async (t) => {
  assert.deepEqual(await addressSeen(t, 1, { 'X-Forwarded-For': '6.6.6.6, 1.2.3.4' }), ['1.2.3.4', '1.2.3.4'])
})

test('trustProxy: a list of proxies stops at the first untrusted hop', async (t) => {
  assert.deepEqual(await addressSeen(t, ['127.0.0.1'], { 'X-Forwarded-For': '6.6.6.6, 1.2.3.4' }), ['1.2.3.4', '1.2.3.4'])
  // A CIDR range that includes the peer and the inner proxy: the next hop out is the client.
  assert.deepEqual(await addressSeen(t, ['127.0.0.0/8', '10.0.0.0/8'], { 'X-Forwarded-For': '6.6.6.6, 10.1.2.3' }), [
    '6.6.6.6',
    '6.6.6.6',
  ])
  // The peer is not a listed proxy: its headers are not believed.
  assert.deepEqual(await addressSeen(t, ['10.0.0.0/8'], { 'X-Forwarded-For': '6.6.6.6' }), ['127.0.0.1', '127.0.0.1'])
})

test('trustProxy: X-Real-IP is used when there is no X-Forwarded-For and the peer is trusted', async (t) => {
  assert.deepEqual(await addressSeen(t, true, { 'X-Real-IP': '5.5.5.5' }), ['5.5.5.5', '5.5.5.5'])
  assert.deepEqual(await addressSeen(t, ['127.0.0.1'], { 'X-Real-IP': '5.5.5.5' }), ['5.5.5.5', '5.5.5.5'])
  assert.deepEqual(await addressSeen(t, ['10.0.0.0/8'], { 'X-Real-IP': '5.5.5.5' }), ['127.0.0.1', '127.0.0.1'])
})

test('trustProxy rejects invalid values at createServer', () => {
  assert.throws(() => createServer({ trustProxy: { bogus: 1 } }), TypeError)
  assert.throws(() => createServer({ trustProxy: -1 }), TypeError)
})

// ------------------------------------------------------------------------------------------------
// Connection identity
// ------------------------------------------------------------------------------------------------

for (const withAuth of [false, true]) {
  test(`identity: conn.headers, url, query and openedAt${withAuth ? ' (with authenticate)' : ''}`, async (t) => {
    const h = await startServer(withAuth ? { authenticate: () => ({ data: { a: 1 } }) } : {})
    t.after(() => h.close())
    const before = Date.now()
    const ws = h.adopt(await connect(h.url('/ws?token=abc&lang=fr'), { headers: { 'X-Custom': 'value 1', 'x-other': 'v2' } }))
    const conn = await h.nextConnection()
    const after = Date.now()
    assert.equal(conn.headers['x-custom'], 'value 1')
    assert.equal(conn.headers['x-other'], 'v2')
    assert.equal(conn.headers.host, `${HOST}:${h.port}`)
    assert.equal(conn.url, '/ws?token=abc&lang=fr')
    assert.equal(conn.query.token, 'abc')
    assert.equal(conn.query.lang, 'fr')
    assert.equal(typeof conn.openedAt, 'number')
    assert.ok(conn.openedAt >= before && conn.openedAt <= after, `openedAt ${conn.openedAt} within [${before}, ${after}]`)
    assert.equal(conn.protocol, undefined, 'no subprotocol negotiated')
    assert.deepEqual(conn.data, withAuth ? { a: 1 } : undefined)
    await assertEcho(ws)
  })
}

test('identity: conn.lastSeenAt advances when the client sends a frame', async (t) => {
  const h = await startServer({ heartbeat: { intervalMs: 0 } })
  t.after(() => h.close())
  const ws = h.adopt(await connect(h.url()))
  const conn = await h.nextConnection()
  const first = conn.lastSeenAt
  assert.equal(typeof first, 'number')
  assert.ok(first <= Date.now())
  assert.ok(first >= conn.openedAt - 1000, `lastSeenAt ${first} is about the handshake, openedAt ${conn.openedAt}`)

  // Let the clock move past `first` (a bounded wait that must expire: the server sends nothing
  // unprompted), then send a frame and read lastSeenAt once the server has handled it.
  await expectNoMessage(ws, 30)
  assert.equal(conn.lastSeenAt, first, 'lastSeenAt does not move while the peer is silent (no heartbeat)')
  const sentAt = Date.now()
  send(ws, 'echo', 'x')
  assert.deepEqual(await nextMessage(ws), { event: 'echo', data: 'x' })
  const second = conn.lastSeenAt
  assert.ok(second > first, `lastSeenAt advanced (${first} → ${second})`)
  assert.ok(second >= sentAt - 1 && second <= Date.now(), `lastSeenAt ${second} is when the frame arrived (sent at ${sentAt})`)
})

test('identity: conn.rtt becomes a number after a heartbeat pong, and pongs refresh lastSeenAt', async (t) => {
  const h = await startServer({ heartbeat: { intervalMs: 100 } })
  t.after(() => h.close())
  const ws = h.adopt(await connect(h.url()))
  const conn = await h.nextConnection()
  const first = conn.lastSeenAt
  assert.equal(conn.rtt, undefined, 'no rtt before the first pong')

  // Poll the getters while pings flow (the `ws` client answers pings on its own).
  const cond = condition(() => conn.rtt !== undefined && conn.lastSeenAt > first, 3000, 'rtt and a refreshed lastSeenAt')
  const poll = setInterval(cond.signal, 10)
  ws.on('ping', cond.signal)
  try {
    await cond.done
  } finally {
    clearInterval(poll)
  }
  assert.equal(typeof conn.rtt, 'number')
  assert.ok(conn.rtt > 0 && conn.rtt < 1000, `rtt ${conn.rtt} ms is plausible on loopback`)
  assert.ok(conn.lastSeenAt > first, 'a pong alone (no data frame) advanced lastSeenAt')
  await assertEcho(ws)
})

// ------------------------------------------------------------------------------------------------
// Handshake hygiene
// ------------------------------------------------------------------------------------------------

test('slowloris: a head sent 1 byte every 200 ms is dropped after handshakeTimeoutMs; others still connect', async (t) => {
  const h = await startServer({ handshakeTimeoutMs: 1000 })
  t.after(() => h.close())

  const socket = net.connect(h.port, HOST)
  socket.on('error', () => {})
  await waitFor(socket, 'connect')
  const connectedAt = Date.now()
  const head = Buffer.from(upgradeHead('/ws'))
  let sent = 0
  let received = ''
  socket.on('data', (c) => (received += c.toString('latin1')))
  const dropped = new Promise((resolve) => {
    socket.once('end', () => resolve(Date.now()))
    socket.once('close', () => resolve(Date.now()))
  })
  const drip = setInterval(() => {
    if (sent < head.length && !socket.destroyed) socket.write(head.subarray(sent, ++sent))
  }, 200)
  t.after(() => {
    clearInterval(drip)
    socket.destroy()
  })
  socket.write(head.subarray(0, ++sent))

  // Meanwhile a normal client connects and talks.
  const ws = h.adopt(await connect(h.url()))
  await assertEcho(ws)
  assert.equal(socket.destroyed || socket.readableEnded, false, 'the slow client is still pending while others are served')

  const droppedAt = await withTimeout(dropped, 4000, 'the slowloris client to be dropped')
  clearInterval(drip)
  const elapsed = droppedAt - connectedAt
  assert.ok(elapsed >= 950, `dropped no earlier than handshakeTimeoutMs (${elapsed} ms)`)
  assert.ok(elapsed <= 2500, `dropped within handshakeTimeoutMs plus margin (${elapsed} ms)`)
  assert.ok(sent < head.length, 'the head was still incomplete')
  assert.ok(!received.startsWith('HTTP/1.1 101'), 'no upgrade happened')
  await assertEcho(ws, { still: 'open' })
})

test('a request head over 16 KiB is answered 431', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const r = await tryUpgrade(h.url(), { headers: { 'X-Huge': 'a'.repeat(20 * 1024) } })
  assert.equal(r.status, 431)

  // Many small headers adding up to more than 16 KiB, over a raw socket.
  const peer = await RawHttpPeer.connect(h.port)
  t.after(() => peer.destroy())
  const headers = {}
  for (let i = 0; i < 400; i++) headers[`X-H${i}`] = 'b'.repeat(50)
  const res = await peer.request(upgradeHead('/ws', { headers }))
  assert.equal(res.status, 431)

  // Just under the limit still upgrades.
  const ok = await tryUpgrade(h.url(), { headers: { 'X-Big': 'c'.repeat(15 * 1024) } })
  assert.equal(ok.status, 101)
  h.adopt(ok.ws)
  await assertEcho(ok.ws)
})

test('malformed upgrades get 400 with Sec-WebSocket-Version: 13', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const cases = [
    ['POST upgrade', upgradeHead('/ws', { method: 'POST', headers: { 'Content-Length': '0' } })],
    ['Sec-WebSocket-Version: 8', upgradeHead('/ws', { version: '8' })],
    ['no Sec-WebSocket-Version', upgradeHead('/ws', { version: null })],
    ['no Sec-WebSocket-Key', upgradeHead('/ws', { key: null })],
    ['a key that is not 16 base64 bytes', upgradeHead('/ws', { key: 'c2hvcnQ=' })],
  ]
  for (const [label, head] of cases) {
    const peer = await RawHttpPeer.connect(h.port)
    t.after(() => peer.destroy())
    const res = await peer.request(head)
    assert.equal(res.status, 400, `${label}: status`)
    assert.equal(res.headers['sec-websocket-version'], '13', `${label}: names the supported version`)
    await withTimeout(peer.ended, 2000, `${label}: server closes the connection`)
  }
  await h.expectNoConnection('/', 50)
  // The server is fine afterwards.
  const ws = h.adopt(await connect(h.url()))
  await assertEcho(ws)
})

// ------------------------------------------------------------------------------------------------
// Subprotocols
// ------------------------------------------------------------------------------------------------

test('protocols: the first protocol the client offers that the server speaks is selected', async (t) => {
  const h = await startServer({ protocols: ['v2.app', 'v1.app'] })
  t.after(() => h.close())

  const r1 = await tryUpgrade(h.url(), { protocols: ['v1.app', 'v2.app'] })
  assert.equal(r1.status, 101)
  h.adopt(r1.ws)
  const conn = await h.nextConnection()
  assert.equal(r1.ws.protocol, 'v1.app', "the client's order wins")
  assert.equal(conn.protocol, 'v1.app')
  await assertEcho(r1.ws)

  const r2 = await tryUpgrade(h.url(), { protocols: ['other', 'v2.app'] })
  assert.equal(r2.status, 101)
  h.adopt(r2.ws)
  assert.equal(r2.ws.protocol, 'v2.app')
  assert.equal((await h.nextConnection()).protocol, 'v2.app')

  // A client offering no protocol at all connects with none.
  const r3 = await tryUpgrade(h.url())
  assert.equal(r3.status, 101, 'a client offering no protocol connects')
  h.adopt(r3.ws)
  assert.equal(r3.ws.protocol, '')
  assert.equal((await h.nextConnection()).protocol, undefined)
  await assertEcho(r3.ws)

  // A client offering only unsupported protocols is still upgraded, with no Sec-WebSocket-Protocol
  // in the 101 (RFC 6455 §4.2.2). (The `ws` client itself then gives up: "Server sent no
  // subprotocol", so this one is checked on the wire.)
  const peer = await RawHttpPeer.connect(h.port)
  t.after(() => peer.destroy())
  const res = await peer.request(upgradeHead('/ws', { headers: { 'Sec-WebSocket-Protocol': 'v3.app, v4.app' } }))
  assert.equal(res.status, 101)
  assert.equal(res.headers['sec-websocket-protocol'], undefined)
  assert.equal((await h.nextConnection()).protocol, undefined)
  peer.sendJson('echo', 'raw')
  assert.deepEqual(await peer.nextJson(), { event: 'echo', data: 'raw' })

  // On the wire, a selected protocol is named in the 101.
  const peer2 = await RawHttpPeer.connect(h.port)
  t.after(() => peer2.destroy())
  const res2 = await peer2.request(upgradeHead('/ws', { headers: { 'Sec-WebSocket-Protocol': 'x, v1.app , v2.app' } }))
  assert.equal(res2.status, 101)
  assert.equal(res2.headers['sec-websocket-protocol'], 'v1.app')
  assert.equal((await h.nextConnection()).protocol, 'v1.app')
})

test('requireProtocol: a client offering none of the protocols gets 400', async (t) => {
  const h = await startServer({ protocols: ['v1.app'], requireProtocol: true })
  t.after(() => h.close())
  const none = await tryUpgrade(h.url())
  assert.equal(none.status, 400, 'no Sec-WebSocket-Protocol at all')
  const other = await tryUpgrade(h.url(), { protocols: ['v9.app'] })
  assert.equal(other.status, 400, 'only unsupported protocols')
  await h.expectNoConnection('/', 50)
  const ok = await tryUpgrade(h.url(), { protocols: ['v1.app'] })
  assert.equal(ok.status, 101)
  h.adopt(ok.ws)
  assert.equal(ok.ws.protocol, 'v1.app')
  assert.equal((await h.nextConnection()).protocol, 'v1.app')
})
