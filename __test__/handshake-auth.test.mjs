// Issue 3, behaviour 1: async `authenticate` at the upgrade. Rust holds the upgrade while JS
// decides; the verdict is an HTTP status seen by a real `ws` client before any WebSocket exists,
// and accepted upgrades start with the userId and data authenticate returned.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  startServer,
  connect,
  tryUpgrade,
  nextMessage,
  assertEcho,
  deferred,
  withTimeout,
} from './helpers.mjs'

/** Authenticate by `?token=`: `u:<id>` accepts as that user; anything else falls to `verdicts`. */
function tokenAuth(verdicts = {}) {
  const calls = []
  const authenticate = async (req) => {
    calls.push(req)
    const token = req.query.token ?? ''
    if (token.startsWith('u:')) return { userId: token.slice(2), data: { role: 'member', token } }
    const verdict = verdicts[token]
    return typeof verdict === 'function' ? verdict(req) : verdict
  }
  return { authenticate, calls }
}

test('authenticate sees url, path, query, lower-cased headers, remoteAddress and namespace', async (t) => {
  const seen = []
  const h = await startServer({
    namespaces: { admin: null },
    authenticate: (req) => {
      seen.push(req)
      return { userId: 'alice', data: { plan: 'pro' } }
    },
  })
  t.after(() => h.close())

  const ws = h.adopt(
    await connect(h.url('/ws?token=abc&x=1&x=2'), { headers: { 'X-Custom-Header': 'Hello', Cookie: 'a=1' } }),
  )
  const conn = await h.nextConnection()
  assert.equal(seen.length, 1)
  const req = seen[0]
  assert.equal(req.url, '/ws?token=abc&x=1&x=2')
  assert.equal(req.path, '/ws')
  assert.deepEqual({ ...req.query }, { token: 'abc', x: '2' }, 'the last value wins for a repeated key')
  assert.equal(req.headers['x-custom-header'], 'Hello', 'header names are lower-cased')
  assert.equal(req.headers['X-Custom-Header'], undefined)
  assert.equal(req.headers.cookie, 'a=1')
  assert.equal(req.headers.upgrade, 'websocket')
  assert.equal(typeof req.headers['sec-websocket-key'], 'string')
  assert.equal(req.remoteAddress, '127.0.0.1')
  assert.equal(req.namespace, '/')

  assert.equal(conn.userId, 'alice')
  assert.deepEqual(conn.data, { plan: 'pro' })
  assert.equal(conn.url, '/ws?token=abc&x=1&x=2', 'the connection keeps the request authenticate saw')
  assert.equal(conn.headers['x-custom-header'], 'Hello')
  await assertEcho(ws)

  // A namespace: authenticate is told which one.
  h.adopt(await connect(h.nsUrl('admin') + '?k=v'))
  const adminConn = await h.nextConnection('admin')
  assert.equal(seen.length, 2)
  assert.equal(seen[1].namespace, 'admin')
  assert.equal(seen[1].path, '/ws/admin')
  assert.deepEqual({ ...seen[1].query }, { k: 'v' })
  assert.equal(adminConn.namespace, 'admin')
  assert.equal(adminConn.userId, 'alice')
})

test('{ userId, data } accepts: conn.userId/conn.data are set and publishToUser reaches the user without setUserId', async (t) => {
  const { authenticate } = tokenAuth()
  const h = await startServer({ authenticate })
  t.after(() => h.close())

  const alicePhone = h.adopt(await connect(h.url('/ws?token=u:alice'), {}, { name: 'alice phone' }))
  const phoneConn = await h.nextConnection()
  const aliceLaptop = h.adopt(await connect(h.url('/ws?token=u:alice'), {}, { name: 'alice laptop' }))
  const laptopConn = await h.nextConnection()
  const bob = h.adopt(await connect(h.url('/ws?token=u:bob'), {}, { name: 'bob' }))
  const bobConn = await h.nextConnection()

  assert.equal(phoneConn.userId, 'alice')
  assert.equal(laptopConn.userId, 'alice')
  assert.equal(bobConn.userId, 'bob')
  assert.deepEqual(phoneConn.data, { role: 'member', token: 'u:alice' })
  assert.deepEqual(bobConn.data, { role: 'member', token: 'u:bob' })

  h.server.publishToUser('alice', 'notice', { n: 1 })
  assert.deepEqual(await nextMessage(alicePhone), { event: 'notice', data: { n: 1 } })
  assert.deepEqual(await nextMessage(aliceLaptop), { event: 'notice', data: { n: 1 } })
  h.server.publishToUser('bob', 'notice', { n: 2 })
  assert.deepEqual(await nextMessage(bob), { event: 'notice', data: { n: 2 } }, 'bob got only his own message')

  // The user set by authenticate behaves like setUserId: clearing it stops publishToUser.
  laptopConn.clearUserId()
  h.server.publishToUser('alice', 'notice', { n: 3 })
  assert.deepEqual(await nextMessage(alicePhone), { event: 'notice', data: { n: 3 } })
  await assertEcho(aliceLaptop, { after: 'clear' }) // the laptop's next message is the echo, not n:3
})

test('returning true accepts with no user and no data', async (t) => {
  const h = await startServer({ authenticate: () => true })
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  assert.equal(conn.userId, undefined)
  assert.equal(conn.data, undefined)
  await assertEcho(ws)
})

test('false, null, undefined, a throw and a rejection answer 401; onConnection is never called', async (t) => {
  const { authenticate, calls } = tokenAuth({
    false: false,
    null: null,
    undefined: undefined,
    syncThrow: () => {
      throw new Error('secret detail')
    },
    asyncThrow: async () => {
      throw new Error('secret detail')
    },
  })
  // Synchronous variants too: authenticate may return a plain value or throw synchronously.
  const h = await startServer({
    authenticate: (req) => {
      if (req.query.sync === 'false') return false
      if (req.query.sync === 'throw') throw new Error('secret detail')
      return authenticate(req)
    },
  })
  t.after(() => h.close())

  const urls = [
    '/ws?token=false',
    '/ws?token=null',
    '/ws?token=undefined',
    '/ws?token=syncThrow',
    '/ws?token=asyncThrow',
    '/ws?sync=false',
    '/ws?sync=throw',
    '/ws', // no token at all: authenticate returns undefined
  ]
  for (const u of urls) {
    const r = await tryUpgrade(h.url(u))
    assert.equal(r.status, 401, `${u}: status`)
    assert.ok(!r.body.includes('secret'), `${u}: an unexposed error message is not sent (body ${JSON.stringify(r.body)})`)
  }
  assert.ok(calls.length >= 6, 'authenticate was consulted')

  // Positive control: an accepted client's connection is the first and only one the server saw.
  const ws = h.adopt(await connect(h.url('/ws?token=u:carol')))
  const conn = await h.nextConnection()
  assert.equal(conn.userId, 'carol', 'the first connection event is the accepted one: none for the rejected')
  await h.expectNoConnection('/', 200)
  assert.equal(h.server.connectionCount, 1)
  await assertEcho(ws)
})

test('{ status, message } rejects with that status and body', async (t) => {
  const { authenticate } = tokenAuth({
    banned: { status: 403, message: 'banned' },
    busy: { status: 503, message: 'try later' },
    teapot: { status: 418 },
  })
  const h = await startServer({ authenticate })
  t.after(() => h.close())

  const banned = await tryUpgrade(h.url('/ws?token=banned'))
  assert.equal(banned.status, 403)
  assert.equal(banned.body, 'banned')
  const busy = await tryUpgrade(h.url('/ws?token=busy'))
  assert.equal(busy.status, 503)
  assert.equal(busy.body, 'try later')
  const teapot = await tryUpgrade(h.url('/ws?token=teapot'))
  assert.equal(teapot.status, 418)
  await h.expectNoConnection('/', 100)
})

test('a thrown error uses its status; its message is sent only when error.expose is true', async (t) => {
  const err = (status, message, expose) => Object.assign(new Error(message), { status, expose })
  const { authenticate } = tokenAuth({
    exposed: () => {
      throw err(403, 'account suspended', true)
    },
    hidden: async () => {
      throw err(403, 'database password is hunter2', false)
    },
    exposedNoStatus: () => {
      throw err(undefined, 'token expired', true)
    },
  })
  const h = await startServer({ authenticate })
  t.after(() => h.close())

  const exposed = await tryUpgrade(h.url('/ws?token=exposed'))
  assert.equal(exposed.status, 403)
  assert.equal(exposed.body, 'account suspended')

  const hidden = await tryUpgrade(h.url('/ws?token=hidden'))
  assert.equal(hidden.status, 403)
  assert.ok(!hidden.body.includes('hunter2'), `hidden message leaked: ${JSON.stringify(hidden.body)}`)

  const noStatus = await tryUpgrade(h.url('/ws?token=exposedNoStatus'))
  assert.equal(noStatus.status, 401, 'a thrown error without a status is 401')
  assert.equal(noStatus.body, 'token expired')
  await h.expectNoConnection('/', 100)
})

test('authenticate that does not settle within handshakeTimeoutMs gets 503; a late accept opens nothing', async (t) => {
  const late = deferred()
  const called = deferred()
  const h = await startServer({
    handshakeTimeoutMs: 400,
    authenticate: (req) => {
      if (req.query.token === 'ok') return { userId: 'ok' }
      called.resolve()
      return late.promise
    },
  })
  t.after(() => h.close())

  const started = Date.now()
  const r = await tryUpgrade(h.url('/ws?token=never'), {}, 5000)
  const elapsed = Date.now() - started
  assert.equal(r.status, 503)
  await withTimeout(called.promise, 100, 'authenticate call')
  assert.ok(elapsed >= 350, `503 came after the timeout, not before (${elapsed} ms)`)
  assert.ok(elapsed < 3000, `503 came within the timeout plus margin (${elapsed} ms)`)

  // The verdict arrives after the client was answered: no connection may appear.
  late.resolve({ userId: 'late' })
  const ws = h.adopt(await connect(h.url('/ws?token=ok')))
  const conn = await h.nextConnection()
  assert.equal(conn.userId, 'ok', 'the late accept produced no connection')
  await h.expectNoConnection('/', 200)
  assert.equal(h.server.connectionCount, 1)
  await assertEcho(ws)
})

test('a client that leaves while authenticate is pending produces no connection', async (t) => {
  const pending = deferred()
  const called = deferred()
  const h = await startServer({
    authenticate: (req) => {
      if (req.query.token === 'ok') return true
      called.resolve()
      return pending.promise
    },
  })
  t.after(() => h.close())

  const WebSocket = (await import('ws')).default
  const leaver = new WebSocket(h.url('/ws?token=slow'))
  leaver.on('error', () => {})
  await withTimeout(called.promise, 2000, 'authenticate of the leaving client')
  const gone = new Promise((r) => leaver.once('close', r))
  leaver.terminate()
  await withTimeout(gone, 2000, 'client close')
  // Give the server time to see the FIN (a bounded wait that must expire), then accept late.
  await h.expectNoConnection('/', 150)
  pending.resolve({ userId: 'ghost' })

  const ws = h.adopt(await connect(h.url('/ws?token=ok')))
  const conn = await h.nextConnection()
  assert.equal(conn.userId, undefined, 'the first connection is the control, not the ghost')
  await h.expectNoConnection('/', 200)
  assert.equal(h.server.connectionCount, 1)
  await assertEcho(ws)
})

test('one authenticate taking 500 ms does not hold up 50 other handshakes', async (t) => {
  const slowCalled = deferred()
  let slowStartedAt = 0
  const h = await startServer({
    authenticate: async (req) => {
      if (req.query.slow) {
        slowStartedAt = Date.now()
        slowCalled.resolve()
        await new Promise((r) => setTimeout(r, 500)) // the slow authenticate under test
        return { userId: 'slow' }
      }
      return { userId: `fast-${req.query.i}` }
    },
  })
  t.after(() => h.close())

  const order = []
  const slow = connect(h.url('/ws?slow=1'), {}, { name: 'slow', timeoutMs: 5000 }).then((ws) => {
    order.push('slow')
    return h.adopt(ws)
  })
  await withTimeout(slowCalled.promise, 2000, 'the slow authenticate to start')

  const fast = []
  for (let i = 0; i < 50; i++) {
    fast.push(
      connect(h.url(`/ws?i=${i}`), {}, { name: `fast ${i}`, timeoutMs: 5000 }).then((ws) => {
        order.push(`fast-${i}`)
        return h.adopt(ws)
      }),
    )
  }
  const fastSockets = await Promise.all(fast)
  const fastDoneAt = Date.now()
  assert.ok(!order.includes('slow'), `all 50 opened before the slow one (order: ${order.slice(0, 5)}…)`)
  assert.ok(fastDoneAt - slowStartedAt < 500, `the 50 completed while the slow one was held (${fastDoneAt - slowStartedAt} ms)`)

  const slowWs = await slow
  assert.equal(order.indexOf('slow'), 50, 'the slow client opened last')
  assert.ok(Date.now() - slowStartedAt >= 490, 'the slow client opened only after its authenticate settled')

  // Every connection arrived with its own user.
  const users = new Set()
  for (let i = 0; i < 51; i++) users.add((await h.nextConnection()).userId)
  assert.equal(users.size, 51)
  assert.ok(users.has('slow'))
  await assertEcho(slowWs)
  await assertEcho(fastSockets[49])
})

test('shutdown answers held upgrades 503', async (t) => {
  const called = deferred()
  const h = await startServer({
    authenticate: () => {
      called.resolve()
      return new Promise(() => {}) // never settles
    },
  })
  t.after(() => h.close())
  const pending = tryUpgrade(h.url('/ws'), {}, 5000)
  await withTimeout(called.promise, 2000, 'authenticate call')
  h.shutdownDone = true
  const shutdown = withTimeout(h.server.shutdown(), 5000, 'server.shutdown()')
  const r = await pending
  assert.equal(r.status, 503)
  await shutdown
})

