// ferrosocket/client against a real ferrosocket server over real sockets, through Node's default
// transport (the addon's native client) and the test-only one over `ws`
// (fixtures/ws-transport.mjs): events and requests both ways, error replies,
// timeouts, reconnects (server restart on the same port, with the backoff delays checked), the
// cases that must not reconnect (401, 1008, close()), the send queue bound, and the packaging of
// the client (CJS, ESM, the browser build). Plus unit tests of the pure backoff policy.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { createServer, defineContract, RequestError as ServerRequestError } from 'ferrosocket'
import { createClient, RequestError, backoffDelay, reconnectsAfterClose, reconnectsAfterFailure, DEFAULT_RECONNECT } from 'ferrosocket/client'
import { AsyncQueue, HOST, deferred, startServer, withTimeout } from './helpers.mjs'
import { wsTransport } from './fixtures/ws-transport.mjs'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')

const chat = defineContract({
  in: {
    'chat:send': z.object({ room: z.string(), text: z.string() }),
    'chat:bad': z.number(),
  },
  out: {
    'chat:message': z.object({ room: z.string(), text: z.string(), n: z.number() }),
  },
  requests: {
    add: { input: z.object({ a: z.number(), b: z.number() }), output: z.number() },
    fail: { input: z.string(), output: z.unknown() },
    slow: { input: z.unknown(), output: z.unknown() },
  },
  clientRequests: {
    confirm: { input: z.object({ question: z.string() }), output: z.boolean() },
    count: { input: z.string(), output: z.number() },
    explode: { input: z.string(), output: z.unknown() },
  },
})

/** Handlers of the chat contract; `hooks.slow` receives each `slow` request's resolve. */
function chatHandlers(hooks = {}) {
  return (conn) => {
    let n = 0
    conn.onMessage('chat:send', (data) => conn.publish('chat:message', { ...data, n: ++n }))
    conn.onMessage('chat:bad', () => {})
    conn.onRequest('add', ({ a, b }) => a + b)
    conn.onRequest('fail', (kind) => {
      if (kind === 'public') throw new ServerRequestError('room_full', 'The room is full')
      throw new Error('secret')
    })
    conn.onRequest('slow', () => new Promise((resolve) => hooks.slow?.push(resolve)))
    hooks.onConnection?.(conn)
  }
}

/**
 * A client over transport `kind` (native or ws) whose state reports go to `states` (an AsyncQueue of
 * `{ state, ...info }`) and errors to `errors`; closed after the test.
 */
function client(t, kind, contract, url, options = {}) {
  const errors = new AsyncQueue('client errors')
  const transport = kind === 'ws' ? wsTransport() : undefined // undefined: Node's default, the native one
  const c = createClient(contract, url, { transport, onError: (e) => errors.push(e), ...options })
  const states = new AsyncQueue('client states')
  c.onState((state, info) => states.push({ state, ...info }))
  t.after(() => c.close())
  return { c, states, errors }
}

/** Takes state reports until one is `state` (within `ms` overall); returns it and the ones before it. */
function untilState(states, state, ms = 5000) {
  const before = []
  const take = async () => {
    for (;;) {
      const s = await states.next(ms)
      if (s.state === state) return { report: s, before }
      before.push(s)
    }
  }
  return withTimeout(take(), ms, `client state ${state}`).catch((e) => {
    throw new Error(`${e.message} (saw: ${before.map((s) => s.state).join(', ') || 'nothing'})`)
  })
}

/** A port nothing listens on (a server bound it, then released it). */
async function freePort() {
  const s = createServer({ host: HOST, port: 0 })
  await s.listen()
  const port = s.port
  await s.shutdown()
  return port
}

// Every behaviour below runs on both transports: Node's default, the addon's native client
// (tokio-tungstenite on Rust threads), and the `ws` fixture (a JS socket, as a browser would be).
for (const kind of ['native', 'ws']) {
  test(`${kind}: ` + 'events both ways; requests both ways with replies, error replies and unknown requests', async (t) => {
    const serverErrors = []
    const h = await startServer({ contract: chat, requestTimeoutMs: 0, onError: (e) => serverErrors.push(e) }, { onConnection: chatHandlers() })
    t.after(() => h.close())
    const { c, errors } = client(t, kind, chat, h.url())
    const messages = new AsyncQueue('chat:message')
    c.on('chat:message', (data, ctx) => messages.push({ data, event: ctx.event }))
    await withTimeout(c.opened(), 3000, 'client open')
    assert.equal(c.state, 'open')
    const conn = await h.nextConnection()

    // client → server event, server → client event
    assert.equal(c.emit('chat:send', { room: 'a', text: 'hi' }), true)
    assert.deepEqual(await messages.next(), { data: { room: 'a', text: 'hi', n: 1 }, event: 'chat:message' })

    // client → server requests
    assert.equal(await c.request('add', { a: 2, b: 3 }), 5)
    await assert.rejects(c.request('fail', 'public'), (e) => e instanceof RequestError && e.code === 'room_full' && e.message === 'The room is full')
    await assert.rejects(c.request('fail', 'private'), (e) => e instanceof RequestError && e.code === 'internal' && e.message === 'Internal error')
    assert.deepEqual(serverErrors.map((e) => e.message), ['secret'])
    // A name the server's contract does not have: answered unknown_request (validate is off, so it is sent).
    await assert.rejects(c.request('nope', {}), (e) => e instanceof RequestError && e.code === 'unknown_request')

    // server → client requests
    c.onRequest('confirm', async ({ question }, ctx) => {
      assert.equal(ctx.event, 'confirm')
      return question === 'sure?'
    })
    assert.equal(await conn.request('confirm', { question: 'sure?' }), true)
    assert.equal(await conn.request('confirm', { question: 'no' }), false)
    // No handler for `count` on the client: unknown_request.
    await assert.rejects(conn.request('count', 'x', { timeoutMs: 2000 }), (e) => e.code === 'unknown_request')
    // A public error keeps its code and message; any other error is `internal` / `Internal error`,
    // reported to the client's onError (the server's errorBody rules).
    c.onRequest('explode', (kind) => {
      if (kind === 'public') throw new RequestError('declined', 'Not now')
      throw new Error('client secret')
    })
    await assert.rejects(conn.request('explode', 'public', { timeoutMs: 2000 }), (e) => e.code === 'declined' && e.message === 'Not now')
    await assert.rejects(conn.request('explode', 'private', { timeoutMs: 2000 }), (e) => e.code === 'internal' && e.message === 'Internal error')
    assert.match((await errors.next()).message, /client secret/)
    // Removing the handler makes the request unknown again.
    const off = c.onRequest('count', (s) => s.length)
    assert.equal(await conn.request('count', 'four', { timeoutMs: 2000 }), 4)
    off()
    await assert.rejects(conn.request('count', 'four', { timeoutMs: 2000 }), (e) => e.code === 'unknown_request')
    assert.equal(c.stats.pendingRequests, 0)
  })

  test(`${kind}: ` + 'maxPendingRequests bounds requests awaiting replies and server requests answered at once', async (t) => {
    const arrived = new AsyncQueue('slow requests')
    const h = await startServer({ contract: chat, requestTimeoutMs: 0 }, { onConnection: chatHandlers({ slow: arrived }) })
    t.after(() => h.close())
    const { c } = client(t, kind, chat, h.url(), { maxPendingRequests: 1 })
    await c.opened()
    const conn = await h.nextConnection()
    const first = c.request('slow', null)
    await assert.rejects(c.request('add', { a: 1, b: 1 }), (e) => e instanceof RequestError && e.code === 'unavailable')
    ;(await arrived.next())('done')
    assert.equal(await first, 'done')
    assert.equal(await c.request('add', { a: 1, b: 1 }), 2) // room again

    const answer = deferred()
    c.onRequest('confirm', () => answer.promise)
    const running = conn.request('confirm', { question: 'a' }, { timeoutMs: 2000 })
    await assert.rejects(conn.request('confirm', { question: 'b' }, { timeoutMs: 2000 }), (e) => e.code === 'unavailable')
    answer.resolve(true)
    assert.equal(await running, true)
    assert.equal(await conn.request('confirm', { question: 'c' }, { timeoutMs: 2000 }), true)
  })

  test(`${kind}: ` + 'a request not answered in time rejects `timeout`; a late reply is counted, not delivered', async (t) => {
    const slow = []
    const arrived = new AsyncQueue('slow requests')
    const h = await startServer({ contract: chat, requestTimeoutMs: 0 }, { onConnection: chatHandlers({ slow: { push: (r) => (slow.push(r), arrived.push(r)) } }) })
    t.after(() => h.close())
    const { c } = client(t, kind, chat, h.url(), { requestTimeoutMs: 100 })
    await c.opened()
    const started = Date.now()
    await assert.rejects(c.request('slow', null), (e) => e instanceof RequestError && e.code === 'timeout')
    assert.ok(Date.now() - started >= 90, 'not before the timeout')
    // The server answers late: the reply matches no pending request.
    ;(await arrived.next())('late')
    assert.equal(await c.request('add', { a: 1, b: 1 }, { timeoutMs: 2000 }), 2) // positive control, after the late reply
    assert.equal(c.stats.unknownReplies, 1)
  })

  test(`${kind}: ` + 'a dropped connection rejects its pending requests `connection_closed`, reconnects, and recomputes the url', async (t) => {
    const arrived = new AsyncQueue('slow requests')
    const seen = []
    const h = await startServer(
      { contract: chat, requestTimeoutMs: 0, authenticate: (req) => (seen.push(req.query.n), true) },
      { onConnection: chatHandlers({ slow: arrived }) },
    )
    t.after(() => h.close())
    let n = 0
    const attempts = []
    const { c, states } = client(t, kind, chat, h.url(), {
      reconnect: { minDelayMs: 10, maxDelayMs: 50 },
      url: async (base, { attempt }) => {
        attempts.push(attempt)
        return `${base}?n=${++n}`
      },
    })
    await untilState(states, 'open')
    const conn = await h.nextConnection()
    const pending = c.request('slow', null)
    await arrived.next() // the request reached the server's handler
    conn.close(1011, 'going down')
    await assert.rejects(pending, (e) => e instanceof RequestError && e.code === 'connection_closed' && /1011/.test(e.message))
    const { report } = await untilState(states, 'reconnecting')
    assert.equal(report.code, 1011)
    assert.equal(report.attempt, 1)
    await untilState(states, 'open')
    await h.nextConnection()
    assert.deepEqual(seen, ['1', '2'], 'the url function ran for each attempt')
    assert.deepEqual(attempts, [0, 1])
    assert.equal(await c.request('add', { a: 20, b: 22 }), 42)
  })

  test(`${kind}: ` + 'a server restart on the same port is survived without app code; backoff delays stay within the policy', async (t) => {
    const policy = { minDelayMs: 20, maxDelayMs: 120, factor: 2, jitter: 0.5 }
    const first = createServer({ host: HOST, port: 0, contract: chat })
    first.onConnection(chatHandlers())
    await first.listen()
    const port = first.port
    const url = `ws://${HOST}:${port}/ws`
    const { c, states } = client(t, kind, chat, url, { reconnect: policy })
    const messages = new AsyncQueue('chat:message')
    c.on('chat:message', (data) => messages.push(data))
    await untilState(states, 'open')
    c.emit('chat:send', { room: 'r', text: 'before' })
    assert.equal((await messages.next()).text, 'before')

    await first.shutdown()
    // 1001 from the shutdown, then retries refused by the closed port: record each scheduled delay.
    const retries = []
    while (retries.length < 5) {
      const s = await states.next(5000)
      assert.equal(s.state, 'reconnecting', `expected only reconnecting reports while the server is down, got ${JSON.stringify(s)}`)
      retries.push(s)
    }
    assert.equal(retries[0].code, 1001)
    // Sent while down: queued, delivered after the restart.
    c.emit('chat:send', { room: 'r', text: 'while down' })

    const second = createServer({ host: HOST, port, contract: chat })
    second.onConnection(chatHandlers())
    t.after(() => second.shutdown())
    await second.listen()
    const { before } = await untilState(states, 'open', 10_000)
    const all = [...retries, ...before]
    for (const [i, r] of all.entries()) {
      assert.equal(r.attempt, i + 1, 'attempts are numbered 1, 2, …')
      const base = Math.min(policy.maxDelayMs, policy.minDelayMs * policy.factor ** i)
      assert.ok(r.delayMs >= Math.floor(base * (1 - policy.jitter)) && r.delayMs <= base, `retry ${i + 1}: delay ${r.delayMs} outside [${base * (1 - policy.jitter)}, ${base}]`)
    }
    t.diagnostic(`reconnect delays (ms): ${all.map((r) => r.delayMs).join(', ')}`)
    assert.equal((await messages.next()).text, 'while down')
    c.emit('chat:send', { room: 'r', text: 'after' })
    assert.equal((await messages.next()).text, 'after')
    assert.equal(c.stats.opens, 2)
  })

  test(`${kind}: ` + 'no reconnect after an upgrade refused with 401; connect() resumes', async (t) => {
    let allow = false
    const calls = new AsyncQueue('authenticate calls')
    const h = await startServer({ contract: chat, authenticate: () => (calls.push(allow), allow) }, { onConnection: chatHandlers() })
    t.after(() => h.close())
    const { c, states } = client(t, kind, chat, h.url(), { reconnect: { minDelayMs: 5, maxDelayMs: 10 } })
    await calls.next() // positive control: the first attempt reached the server
    const { report } = await untilState(states, 'closed')
    assert.equal(report.status, 401)
    assert.equal(report.byClient, false)
    await assert.rejects(c.opened(), /closed/)
    await calls.expectNone(300) // 30+ retry delays: none was tried
    allow = true
    c.connect()
    await untilState(states, 'open')
    assert.equal(await c.request('add', { a: 1, b: 2 }), 3)
  })

  test(`${kind}: ` + 'no reconnect after a 1008 close (unknown event); connect() resumes', async (t) => {
    const h = await startServer({ contract: chat }, { onConnection: chatHandlers() })
    t.after(() => h.close())
    const { c, states } = client(t, kind, chat, h.url(), { reconnect: { minDelayMs: 5, maxDelayMs: 10 } })
    await untilState(states, 'open')
    await h.nextConnection()
    c.emit('not:in:contract', 1) // validate is off: sent, and the server closes 1008
    const { report } = await untilState(states, 'closed')
    assert.equal(report.code, 1008)
    assert.equal(c.emit('chat:send', { room: 'a', text: 'x' }), false, 'closed: dropped')
    await h.expectNoConnection('/', 300)
    c.connect()
    await untilState(states, 'open')
    await h.nextConnection()
  })

  test(`${kind}: ` + 'sends while disconnected are queued up to maxQueued: oldest dropped (a dropped request rejects), counted', async (t) => {
    const port = await freePort()
    const { c, states } = client(t, kind, chat, `ws://${HOST}:${port}/ws`, { maxQueued: 3, reconnect: { minDelayMs: 10, maxDelayMs: 40 } })
    await untilState(states, 'reconnecting')
    const dropped = c.request('add', { a: 1, b: 1 })
    for (let i = 1; i <= 5; i++) assert.equal(c.emit('chat:send', { room: 'q', text: `m${i}` }), true)
    await assert.rejects(dropped, (e) => e instanceof RequestError && e.code === 'unavailable')
    assert.equal(c.stats.dropped, 3)
    assert.equal(c.stats.queued, 3)

    const received = new AsyncQueue('server received')
    const server = createServer({ host: HOST, port, contract: chat })
    server.onConnection((conn) => conn.onMessage('chat:send', (data) => received.push(data.text)))
    t.after(() => server.shutdown())
    await server.listen()
    await untilState(states, 'open', 5000)
    assert.deepEqual([await received.next(), await received.next(), await received.next()], ['m3', 'm4', 'm5'])
    assert.equal(c.stats.queued, 0)
  })

  test(`${kind}: ` + 'close() resolves, stops reconnecting, and rejects what is pending or queued', async (t) => {
    const port = await freePort()
    const { c, states } = client(t, kind, chat, `ws://${HOST}:${port}/ws`, { reconnect: { minDelayMs: 5, maxDelayMs: 10 } })
    await untilState(states, 'reconnecting')
    const queued = c.request('add', { a: 1, b: 1 })
    await withTimeout(c.close(), 2000, 'close() while reconnecting')
    await assert.rejects(queued, (e) => e.code === 'connection_closed')
    const { report } = await untilState(states, 'closed')
    assert.equal(report.byClient, true)
    await states.expectNone(200) // 20+ retry delays: no attempt
    await assert.rejects(c.request('add', { a: 1, b: 1 }), (e) => e.code === 'connection_closed')

    // close() of an open connection: the server sees 1000, close() resolves once it is gone.
    const closes = new AsyncQueue('server closes')
    const h = await startServer({ contract: chat }, { onConnection: (conn) => conn.onClose((code) => closes.push(code)) })
    t.after(() => h.close())
    const other = client(t, kind, chat, h.url())
    await other.c.opened()
    await withTimeout(other.c.close(), 3000, 'close() while open')
    assert.equal(other.c.state, 'closed')
    assert.equal(await closes.next(), 1000)
  })

  test(`${kind}: ` + 'validate: outgoing data is checked at the call; invalid incoming events are reported, not delivered', async (t) => {
    // An untyped server, so it can publish what the client's contract refuses.
    const h = await startServer({}, {
      onConnection: (conn) =>
        conn.onMessage('chat:send', () => {
          conn.publish('chat:message', { room: 'a', text: 'bad', n: 'not a number' })
          conn.publish('unknown:event', {})
          conn.publish('chat:message', { room: 'a', text: 'good', n: 1 })
        }),
    })
    t.after(() => h.close())
    const { c, errors } = client(t, kind, chat, h.url(), { validate: true })
    const messages = new AsyncQueue('chat:message')
    c.on('chat:message', (data) => messages.push(data.text))
    await c.opened()
    assert.throws(() => c.emit('chat:send', { room: 'a' }), /Invalid data for event "chat:send"/)
    assert.throws(() => c.emit('go', null), /Unknown event "go"/)
    assert.throws(() => c.request('add', { a: 'x', b: 1 }), TypeError)
    assert.equal(c.emit('chat:send', { room: 'a', text: 'go' }), true)
    assert.equal(await messages.next(), 'good') // the bad one before it was not delivered
    assert.match((await errors.next()).message, /Invalid data for event "chat:message" from the server/)
    assert.match((await errors.next()).message, /Unknown event "unknown:event"/)
    assert.equal(c.stats.invalid, 2)
  })
}

test('backoff policy: exponential, capped, jitter within bounds; which ends are retried', () => {
  const p = { ...DEFAULT_RECONNECT, minDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0.5 }
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(p, a, () => 0)), [100, 200, 400, 800, 1000, 1000])
  assert.deepEqual([1, 2, 5].map((a) => backoffDelay(p, a, () => 0.999999)), [50, 100, 500])
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(p, 3)
    assert.ok(d >= 200 && d <= 400, `${d}`)
  }
  assert.equal(backoffDelay({ ...p, jitter: 0 }, 2, () => 0.7), 200)
  assert.equal(backoffDelay({ ...p, factor: 1 }, 9, () => 0), 100)
  for (const code of [1001, 1005, 1006, 1011, 1012, 1013, 1014, 3000]) assert.equal(reconnectsAfterClose(code), true, `${code}`)
  for (const code of [1000, 1002, 1003, 1007, 1008, 1009, 1010, 4000, 4999]) assert.equal(reconnectsAfterClose(code), false, `${code}`)
  for (const status of [undefined, 408, 425, 429, 500, 502, 503]) assert.equal(reconnectsAfterFailure(status), true, `${status}`)
  for (const status of [400, 401, 403, 404, 426]) assert.equal(reconnectsAfterFailure(status), false, `${status}`)
  // Bad policies are refused when the client is created.
  for (const reconnect of [{ minDelayMs: -1 }, { minDelayMs: 100, maxDelayMs: 50 }, { factor: 0.5 }, { jitter: 2 }, { maxAttempts: 1.5 }]) {
    assert.throws(() => createClient(null, 'ws://127.0.0.1:1/ws', { transport: wsTransport(), reconnect }), RangeError, JSON.stringify(reconnect))
  }
})

test('packaging: one RequestError for require and import, the browser build loads as plain ES modules', async () => {
  const require = createRequire(import.meta.url)
  const cjs = require('ferrosocket/client')
  assert.equal(cjs.RequestError, RequestError)
  assert.equal(cjs.RequestError, ServerRequestError, 'the client and the server share ts/protocol in Node')
  const esm = await import(path.join(ROOT, 'lib/client-esm/client/index.js'))
  assert.equal(typeof esm.createClient, 'function')
  assert.equal(typeof esm.defineContract, 'function')
  // Every import of the browser build is relative and names a .js file (no bare specifiers, no Node modules).
  const dir = path.join(ROOT, 'lib/client-esm')
  const files = fs.readdirSync(dir, { recursive: true }).filter((f) => f.endsWith('.js'))
  assert.ok(files.length >= 10)
  for (const f of files) {
    for (const m of fs.readFileSync(path.join(dir, f), 'utf8').matchAll(/\b(?:from|import)\s*['"]([^'"]+)['"]/g)) {
      assert.match(m[1], /^\.\.?\/.*\.js$/, `${f} imports ${m[1]}`)
    }
  }
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')), { type: 'module' })
  // The Node entry's default transport is the native one; its pool can be sized.
  assert.equal(typeof cjs.createNativeTransport, 'function')
  assert.equal((await import('ferrosocket/client')).createNativeTransport, cjs.createNativeTransport)
})
