// Requests with replies both ways (design §3): client → server requests answered by
// `conn.onRequest`, server → client requests sent with `conn.request`, every error path, and how
// requests share the per-connection order with messages.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { z } from 'zod'
import { defineContract, RequestError } from '../index.js'
import {
  startServer,
  send,
  nextMessage,
  expectNoMessage,
  expectStaysOpen,
  waitClose,
  assertEcho,
  echo,
  deferred,
  withTimeout,
  collect,
} from './helpers.mjs'

const contract = defineContract({
  in: { echo: z.unknown(), log: z.number(), ask: z.string(), pad: z.string() },
  out: { echo: z.unknown(), logged: z.number(), answer: z.unknown() },
  requests: {
    add: { input: z.object({ a: z.number(), b: z.number() }), output: z.number() },
    // The handler sees the input schema's output (a number) and returns the output schema's input.
    len: { input: z.string().transform((s) => s.length), output: z.number().transform((n) => `${n} chars`) },
    fail: { input: z.string(), output: z.unknown() },
    slow: { input: z.unknown(), output: z.unknown() },
    later: { input: z.unknown(), output: z.unknown() },
    seq: { input: z.number(), output: z.number() },
    badOutput: { input: z.unknown(), output: z.number() },
    whoami: { input: z.unknown(), output: z.unknown() },
  },
  clientRequests: {
    confirm: { input: z.object({ question: z.string() }), output: z.boolean() },
    count: { input: z.string(), output: z.string().transform((s) => s.length) },
  },
})

/** Sends a request frame `{event, data, id}` (`data` left out when undefined). */
function request(ws, event, data, id) {
  ws.send(JSON.stringify({ event, data, id }))
}

/** Sends a request whose id is the given JSON text, to check it comes back verbatim. */
function requestRawId(ws, event, data, idJson) {
  ws.send(`{"event":${JSON.stringify(event)},"data":${JSON.stringify(data)},"id":${idJson}}`)
}

/** Next frame received as raw text (to compare ids byte for byte). */
function nextRaw(ws, ms = 2000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for a raw frame`)), ms)
    ws.once('message', (data) => {
      clearTimeout(timer)
      resolve(data.toString('utf8'))
    })
  })
}

function handlers(hooks = {}) {
  return (conn) => {
    echo(conn)
    conn.onRequest('add', ({ a, b }) => a + b)
    conn.onRequest('len', async (n) => n)
    conn.onRequest('fail', (kind) => {
      if (kind === 'request-error') throw new RequestError('room_full', 'The room is full')
      if (kind === 'coded') throw Object.assign(new Error('secret detail: /etc/passwd'), { code: 'ENOENT' })
      if (kind === 'exposed') throw Object.assign(new Error('fine to show'), { expose: true })
      if (kind === 'string') throw 'a thrown string' // eslint-disable-line no-throw-literal
      return Promise.reject(new Error('database password is hunter2'))
    })
    conn.onRequest('badOutput', () => 'not a number')
    conn.onRequest('whoami', (input, ctx) => ({ id: ctx.id, event: ctx.event, meta: ctx.meta ?? null, input }))
    hooks.onConnection?.(conn)
  }
}

async function contractServer(t, options = {}, hooks = {}) {
  const errors = []
  const h = await startServer(
    { contract, onError: (e) => errors.push(e), ...options },
    { onConnection: handlers(hooks) },
  )
  t.after(() => h.close())
  return Object.assign(h, { errors })
}

// ------------------------------------------------------------------------------------------------
// Client → server
// ------------------------------------------------------------------------------------------------

test('a request is answered {id, data} with the handler’s validated output', async (t) => {
  const h = await contractServer(t)
  const [ws] = await h.client()
  request(ws, 'add', { a: 2, b: 3 }, 7)
  assert.deepEqual(await nextMessage(ws), { id: 7, data: 5 })
  request(ws, 'len', 'hello', 'r-1')
  assert.deepEqual(await nextMessage(ws), { id: 'r-1', data: '5 chars' }, 'input and output schemas both applied')
  request(ws, 'whoami', [1], 'w')
  assert.deepEqual(await nextMessage(ws), { id: 'w', data: { id: 'w', event: 'whoami', meta: null, input: [1] } })
  ws.send(JSON.stringify({ event: 'whoami', data: null, id: 3, meta: { traceparent: 'tp' } }))
  assert.deepEqual(await nextMessage(ws), { id: 3, data: { id: 3, event: 'whoami', meta: { traceparent: 'tp' }, input: null } })
  await assertEcho(ws)
  assert.deepEqual(h.errors, [])
})

test('the reply echoes the request id byte for byte', async (t) => {
  const h = await contractServer(t)
  const [ws] = await h.client()
  for (const id of ['1.50', '12345678901234567890123', '-0', '"r\\u0031"', '"é \\" \\\\"', '1e3']) {
    requestRawId(ws, 'add', { a: 1, b: 1 }, id)
    assert.equal(await nextRaw(ws), `{"id":${id},"data":2}`, `id ${id}`)
  }
  // Rust answers unknown requests itself, with the same rule.
  ws.send('{"event":"nope","id":1.50}')
  assert.equal(await nextRaw(ws), '{"id":1.50,"error":{"code":"unknown_request","message":"Unknown request \\"nope\\""}}')
})

test('a thrown RequestError sends its code and message; the connection stays open', async (t) => {
  const h = await contractServer(t)
  const [ws] = await h.client()
  request(ws, 'fail', 'request-error', 1)
  assert.deepEqual(await nextMessage(ws), { id: 1, error: { code: 'room_full', message: 'The room is full' } })
  request(ws, 'fail', 'exposed', 2)
  assert.deepEqual(await nextMessage(ws), { id: 2, error: { code: 'internal', message: 'fine to show' } }, 'expose: true is public')
  await assertEcho(ws)
  assert.deepEqual(h.errors, [], 'public errors are answers, not bugs: onError is not called')
})

test('other errors keep a string code but hide their message, and go to onError', async (t) => {
  const h = await contractServer(t)
  const [ws] = await h.client()
  request(ws, 'fail', 'coded', 1)
  assert.deepEqual(await nextMessage(ws), { id: 1, error: { code: 'ENOENT', message: 'Internal error' } })
  request(ws, 'fail', 'rejected', 2)
  assert.deepEqual(await nextMessage(ws), { id: 2, error: { code: 'internal', message: 'Internal error' } })
  request(ws, 'fail', 'string', 3)
  assert.deepEqual(await nextMessage(ws), { id: 3, error: { code: 'internal', message: 'Internal error' } })
  await assertEcho(ws)
  assert.deepEqual(
    h.errors.map((e) => (e instanceof Error ? e.message : e)),
    ['secret detail: /etc/passwd', 'database password is hunter2', 'a thrown string'],
  )
})

test('exposeErrors: true sends every error message', async (t) => {
  const h = await contractServer(t, { exposeErrors: true })
  const [ws] = await h.client()
  request(ws, 'fail', 'coded', 1)
  assert.deepEqual(await nextMessage(ws), { id: 1, error: { code: 'ENOENT', message: 'secret detail: /etc/passwd' } })
  request(ws, 'fail', 'rejected', 2)
  assert.deepEqual(await nextMessage(ws), { id: 2, error: { code: 'internal', message: 'database password is hunter2' } })
  request(ws, 'fail', 'string', 3)
  assert.deepEqual(await nextMessage(ws), { id: 3, error: { code: 'internal', message: 'a thrown string' } })
})

test('invalid input is answered invalid_input with issues, without running the handler or closing', async (t) => {
  let ran = 0
  const h = await contractServer(t, {}, { onConnection: (conn) => conn.onRequest('add', () => ++ran) })
  const [ws] = await h.client()
  request(ws, 'add', { a: 1, b: 'two' }, 'x')
  const reply = await nextMessage(ws)
  assert.equal(reply.id, 'x')
  assert.equal(reply.error.code, 'invalid_input')
  assert.match(reply.error.message, /Invalid input for request "add": b: /)
  assert.deepEqual(reply.error.issues.map((i) => i.path), [['b']])
  request(ws, 'add', null, 'y') // data null fails the object schema too
  assert.equal((await nextMessage(ws)).error.code, 'invalid_input')
  await assertEcho(ws)
  await expectStaysOpen(ws, 50)
  assert.equal(ran, 0)
})

test('an output that fails the output schema is answered internal and reported', async (t) => {
  const h = await contractServer(t)
  const [ws] = await h.client()
  request(ws, 'badOutput', null, 1)
  assert.deepEqual(await nextMessage(ws), { id: 1, error: { code: 'internal', message: 'Internal error' } })
  assert.equal(h.errors.length, 1)
  assert.match(h.errors[0].message, /Invalid output of request handler "badOutput"/)
  await assertEcho(ws)
})

test('no reply within requestTimeoutMs: answered timeout, the signal aborts, the queue moves on, the late result is dropped', async (t) => {
  const gate = deferred()
  const aborted = deferred()
  const h = await contractServer(t, { requestTimeoutMs: 150 }, {
    onConnection(conn) {
      conn.onRequest('slow', async (input, ctx) => {
        ctx.signal.addEventListener('abort', () => aborted.resolve(ctx.signal.reason))
        await gate.promise
        return 'too late'
      })
    },
  })
  const [ws] = await h.client()
  const started = Date.now()
  request(ws, 'slow', null, 's1')
  const reply = await nextMessage(ws, 3000)
  const elapsed = Date.now() - started
  assert.deepEqual(reply, { id: 's1', error: { code: 'timeout', message: 'Request "slow" timed out after 150 ms' } })
  assert.ok(elapsed >= 140 && elapsed < 2000, `timed out after ${elapsed} ms`)
  const reason = await withTimeout(aborted.promise, 1000, 'ctx.signal abort')
  assert.ok(reason instanceof RequestError && reason.code === 'timeout')
  // The timed-out handler is detached: the next request runs while it is still pending.
  request(ws, 'add', { a: 1, b: 2 }, 's2')
  assert.deepEqual(await nextMessage(ws), { id: 's2', data: 3 })
  gate.resolve()
  await expectNoMessage(ws, 200) // 'too late' is never sent
  request(ws, 'add', { a: 2, b: 2 }, 's3')
  assert.deepEqual(await nextMessage(ws), { id: 's3', data: 4 })
})

test('a request that times out while queued behind a slow handler never runs', async (t) => {
  const gate = deferred()
  const ran = []
  const h = await contractServer(t, { requestTimeoutMs: 150 }, {
    onConnection(conn) {
      conn.onMessage('log', async (n) => {
        ran.push(`log ${n}`)
        await gate.promise
      })
      conn.onRequest('seq', (n) => {
        ran.push(`seq ${n}`)
        return n
      })
    },
  })
  const [ws] = await h.client()
  send(ws, 'log', 1)
  request(ws, 'seq', 1, 1)
  assert.deepEqual(await nextMessage(ws, 3000), { id: 1, error: { code: 'timeout', message: 'Request "seq" timed out after 150 ms' } })
  gate.resolve()
  request(ws, 'seq', 2, 2)
  assert.deepEqual(await nextMessage(ws), { id: 2, data: 2 })
  assert.deepEqual(ran, ['log 1', 'seq 2'])
})

test('an unknown request is answered unknown_request and the connection stays open', async (t) => {
  const h = await contractServer(t)
  const [ws] = await h.client()
  request(ws, 'room:leave', {}, 1)
  assert.deepEqual(await nextMessage(ws), { id: 1, error: { code: 'unknown_request', message: 'Unknown request "room:leave"' } })
  // An event of the contract's `in` map sent with an id is a request, and not one the server answers.
  request(ws, 'echo', 'x', 2)
  assert.deepEqual(await nextMessage(ws), { id: 2, error: { code: 'unknown_request', message: 'Unknown request "echo"' } })
  // A request name sent without an id is an event outside `in`: that still closes 1008.
  await assertEcho(ws)
  send(ws, 'add', { a: 1, b: 2 })
  assert.deepEqual(await waitClose(ws), { code: 1008, reason: 'Unknown event' })
})

test('a duplicate in-flight id is refused without disturbing the original; the id is free again afterwards', async (t) => {
  const gate = deferred()
  let runs = 0
  const h = await contractServer(t, {}, {
    onConnection(conn) {
      conn.onRequest('slow', async (input) => {
        runs++
        await gate.promise
        return input
      })
    },
  })
  const [ws] = await h.client()
  request(ws, 'slow', 'original', 'dup')
  request(ws, 'slow', 'copy', 'dup')
  assert.deepEqual(await nextMessage(ws), {
    id: 'dup',
    error: { code: 'duplicate_id', message: 'A request with this id is already in flight' },
  })
  gate.resolve()
  assert.deepEqual(await nextMessage(ws), { id: 'dup', data: 'original' })
  request(ws, 'slow', 'reused', 'dup')
  assert.deepEqual(await nextMessage(ws), { id: 'dup', data: 'reused' })
  assert.equal(runs, 2)
})

test('requests for a handler registered later are buffered and answered when it registers', async (t) => {
  const h = await contractServer(t)
  const [ws, conn] = await h.client()
  request(ws, 'later', 1, 'a')
  request(ws, 'later', 2, 'b')
  await assertEcho(ws) // the requests were dispatched (and buffered) before this echo
  conn.onRequest('later', (n) => n * 10)
  assert.deepEqual(await collect(ws, 2), [{ id: 'a', data: 10 }, { id: 'b', data: 20 }])
})

test('a buffered request that times out leaves the buffer and never runs', async (t) => {
  const ran = []
  const h = await contractServer(t, { requestTimeoutMs: 100 })
  const [ws, conn] = await h.client()
  request(ws, 'later', 1, 'a')
  assert.deepEqual(await nextMessage(ws, 3000), { id: 'a', error: { code: 'timeout', message: 'Request "later" timed out after 100 ms' } })
  conn.onRequest('later', (n) => ran.push(n))
  request(ws, 'later', 2, 'b')
  assert.deepEqual(await nextMessage(ws), { id: 'b', data: 1 })
  assert.deepEqual(ran, [2])
})

test('a buffered request pushed out of the buffer is answered unavailable', async (t) => {
  const h = await contractServer(t, { maxBufferedMessages: 2 })
  const [ws, conn] = await h.client()
  request(ws, 'later', 1, 'a')
  request(ws, 'later', 2, 'b')
  request(ws, 'later', 3, 'c')
  const dropped = await nextMessage(ws)
  assert.equal(dropped.id, 'a')
  assert.equal(dropped.error.code, 'unavailable')
  conn.onRequest('later', (n) => n)
  assert.deepEqual(await collect(ws, 2), [{ id: 'b', data: 2 }, { id: 'c', data: 3 }])
})

test('requests and messages of one connection run one at a time in arrival order', async (t) => {
  const order = []
  let active = 0
  let overlap = false
  const h = await contractServer(t, {}, {
    onConnection(conn) {
      const enter = async (what) => {
        if (active++ > 0) overlap = true
        order.push(what)
        await new Promise((r) => setImmediate(r))
        active--
      }
      conn.onMessage('log', async (n) => {
        await enter(`log ${n}`)
        conn.publish('logged', n)
      })
      conn.onRequest('seq', async (n) => {
        await enter(`seq ${n}`)
        return n
      })
    },
  })
  const [ws] = await h.client()
  const expected = []
  for (let i = 0; i < 200; i++) {
    if (i % 3 === 0) {
      send(ws, 'log', i)
      expected.push({ event: 'logged', data: i })
    } else {
      request(ws, 'seq', i, i)
      expected.push({ id: i, data: i })
    }
  }
  assert.deepEqual(await collect(ws, 200, 10_000), expected)
  assert.equal(overlap, false, 'handlers never overlap')
  assert.deepEqual(order, expected.map((m) => ('event' in m ? `log ${m.data}` : `seq ${m.id}`)))
})

test('without a contract any request name is answered, unvalidated', async (t) => {
  const h = await startServer({}, {
    onConnection(conn) {
      conn.onRequest('anything', (input) => ({ got: input }))
    },
  })
  t.after(() => h.close())
  const [ws] = await h.client()
  request(ws, 'anything', [1, 'two'], 1)
  assert.deepEqual(await nextMessage(ws), { id: 1, data: { got: [1, 'two'] } })
  request(ws, 'anything', undefined, 2)
  assert.deepEqual(await nextMessage(ws), { id: 2, data: { got: null } })
})

// ------------------------------------------------------------------------------------------------
// Server → client
// ------------------------------------------------------------------------------------------------

/** A server whose `ask` message makes it call conn.request and publish the outcome. */
function askingServer(t, options = {}, requestOptions = undefined) {
  return contractServer(t, options, {
    onConnection(conn) {
      conn.onMessage('ask', async (name) => {
        const data = name === 'confirm' ? { question: 'sure?' } : 'abcd'
        try {
          conn.publish('answer', { ok: await conn.request(name, data, requestOptions) })
        } catch (e) {
          conn.publish('answer', { error: { name: e.name, code: e.code, message: e.message, isRequestError: e instanceof RequestError } })
        }
      })
    },
  })
}

test('conn.request sends {event, data, id} and resolves with the client’s validated reply', async (t) => {
  const h = await askingServer(t)
  const [ws] = await h.client()
  send(ws, 'ask', 'confirm')
  const req = await nextMessage(ws)
  assert.deepEqual({ event: req.event, data: req.data }, { event: 'confirm', data: { question: 'sure?' } })
  assert.equal(typeof req.id, 'number')
  ws.send(JSON.stringify({ id: req.id, data: true }))
  assert.deepEqual(await nextMessage(ws), { event: 'answer', data: { ok: true } })
  // The output schema transforms the reply ('wxyz' -> 4); ids are unique per connection.
  send(ws, 'ask', 'count')
  const req2 = await nextMessage(ws)
  assert.deepEqual({ event: req2.event, data: req2.data }, { event: 'count', data: 'abcd' })
  assert.notEqual(req2.id, req.id)
  ws.send(JSON.stringify({ id: req2.id, data: 'wxyz' }))
  assert.deepEqual(await nextMessage(ws), { event: 'answer', data: { ok: 4 } })
})

test('the reply is delivered while the handler that asked blocks the connection’s queue', async (t) => {
  // The handler awaiting conn.request holds the queue; the reply must not wait behind it.
  const h = await askingServer(t)
  const [ws] = await h.client()
  send(ws, 'ask', 'confirm')
  send(ws, 'echo', 'queued behind the asking handler')
  const req = await nextMessage(ws)
  assert.equal(req.event, 'confirm')
  ws.send(JSON.stringify({ id: req.id, data: false }))
  assert.deepEqual(await nextMessage(ws), { event: 'answer', data: { ok: false } })
  assert.deepEqual(await nextMessage(ws), { event: 'echo', data: 'queued behind the asking handler' })
})

test('the reply is read even when the client pipelined more than maxInflightMessages messages before it', async (t) => {
  // Without reading ahead, Rust would stop reading at 4 unhandled messages (the asking handler
  // blocks them all) and the reply behind them would only be read after the request timed out.
  const h = await askingServer(t, { maxInflightMessages: 4 }, { timeoutMs: 10_000 })
  const [ws] = await h.client()
  const pad = 'p'.repeat(30_000)
  send(ws, 'ask', 'confirm')
  for (let i = 0; i < 5; i++) send(ws, 'pad', pad) // ask + 5 pads + echo = 7 messages ahead of the reply, under 2 × 4
  send(ws, 'echo', 'after the pads')
  const req = await nextMessage(ws)
  assert.equal(req.event, 'confirm')
  ws.send(JSON.stringify({ id: req.id, data: true }))
  assert.deepEqual(await nextMessage(ws, 3000), { event: 'answer', data: { ok: true } })
  assert.deepEqual(await nextMessage(ws, 3000), { event: 'echo', data: 'after the pads' })
})

test('an error reply rejects with a RequestError carrying the client’s code and message', async (t) => {
  const h = await askingServer(t)
  const [ws] = await h.client()
  send(ws, 'ask', 'confirm')
  const req = await nextMessage(ws)
  ws.send(JSON.stringify({ id: req.id, error: { code: 'user_declined', message: 'No thanks' } }))
  assert.deepEqual(await nextMessage(ws), {
    event: 'answer',
    data: { error: { name: 'RequestError', code: 'user_declined', message: 'No thanks', isRequestError: true } },
  })
  // A malformed error object still rejects, with defaults.
  send(ws, 'ask', 'confirm')
  const req2 = await nextMessage(ws)
  ws.send(JSON.stringify({ id: req2.id, error: { code: 5 } }))
  assert.deepEqual((await nextMessage(ws)).data.error.code, 'internal')
})

test('a reply that fails the output schema rejects invalid_output', async (t) => {
  const h = await askingServer(t)
  const [ws] = await h.client()
  send(ws, 'ask', 'confirm')
  const req = await nextMessage(ws)
  ws.send(JSON.stringify({ id: req.id, data: 'yes' }))
  const { data } = await nextMessage(ws)
  assert.equal(data.error.code, 'invalid_output')
  assert.match(data.error.message, /Invalid reply to client request "confirm"/)
})

test('no reply within timeoutMs rejects timeout; the late reply is ignored and counted', async (t) => {
  const h = await askingServer(t, {}, { timeoutMs: 100 })
  const [ws] = await h.client()
  send(ws, 'ask', 'confirm')
  const req = await nextMessage(ws)
  assert.deepEqual(await nextMessage(ws, 3000), {
    event: 'answer',
    data: { error: { name: 'RequestError', code: 'timeout', message: 'Client request "confirm" timed out after 100 ms', isRequestError: true } },
  })
  assert.equal(h.server.stats.unknownReplies, 0)
  ws.send(JSON.stringify({ id: req.id, data: true }))
  await assertEcho(ws) // handled after the reply, which never queues
  assert.equal(h.server.stats.unknownReplies, 1)
  await expectNoMessage(ws, 100)
})

test('the server’s requestTimeoutMs is the default timeout of conn.request', async (t) => {
  const h = await askingServer(t, { requestTimeoutMs: 100 })
  const [ws] = await h.client()
  send(ws, 'ask', 'confirm')
  await nextMessage(ws)
  assert.equal((await nextMessage(ws, 3000)).data.error.code, 'timeout')
})

test('the connection closing before the reply rejects connection_closed', async (t) => {
  const outcome = deferred()
  const h = await contractServer(t, {}, {
    onConnection(conn) {
      conn.onMessage('ask', () => {
        conn.request('confirm', { question: 'q' }).then(outcome.resolve, outcome.resolve)
      })
    },
  })
  const [ws, conn] = await h.client()
  send(ws, 'ask', 'confirm')
  assert.equal((await nextMessage(ws)).event, 'confirm')
  ws.close(1000, 'bye')
  const error = await withTimeout(outcome.promise, 3000, 'conn.request to settle')
  assert.ok(error instanceof RequestError)
  assert.equal(error.code, 'connection_closed')
  assert.match(error.message, /closed \(1000\) before the reply/)
  // Asking a closed connection rejects at once.
  await assert.rejects(conn.request('confirm', { question: 'q' }), { name: 'RequestError', code: 'connection_closed' })
})

test('replies with unknown ids are ignored and counted; the connection keeps working', async (t) => {
  const h = await askingServer(t)
  const [ws] = await h.client()
  ws.send(JSON.stringify({ id: 999, data: true }))
  ws.send(JSON.stringify({ id: 'not-ours', error: { code: 'x', message: 'y' } }))
  ws.send(JSON.stringify({ id: 1, data: null }))
  await assertEcho(ws)
  assert.equal(h.server.stats.unknownReplies, 3)
  // A string id never matches the server's numeric ids.
  send(ws, 'ask', 'confirm')
  const req = await nextMessage(ws)
  ws.send(JSON.stringify({ id: String(req.id), data: true }))
  ws.send(JSON.stringify({ id: req.id, data: true }))
  assert.deepEqual(await nextMessage(ws), { event: 'answer', data: { ok: true } })
  assert.equal(h.server.stats.unknownReplies, 4)
  assert.deepEqual(h.errors, [])
})

test('a malformed reply frame closes 1007 like any invalid envelope', async (t) => {
  const h = await contractServer(t)
  const [ws] = await h.client()
  ws.send(JSON.stringify({ id: 1, data: true, error: { code: 'x' } }))
  assert.deepEqual(await waitClose(ws), { code: 1007, reason: 'Invalid message payload' })
  const [ws2] = await h.client()
  ws2.send(JSON.stringify({ id: 1, error: 'not an object' }))
  assert.deepEqual(await waitClose(ws2), { code: 1007, reason: 'Invalid message payload' })
  // An id alone says neither "done" nor "failed": a success reply carries `data` (null allowed).
  const [ws3] = await h.client()
  ws3.send(JSON.stringify({ id: 1 }))
  assert.deepEqual(await waitClose(ws3), { code: 1007, reason: 'Invalid message payload' })
})

test('conn.request throws synchronously on an unknown name or invalid data, like publish', async (t) => {
  const h = await contractServer(t)
  const [, conn] = await h.client()
  assert.throws(() => conn.request('nope', {}), { name: 'TypeError', message: /Unknown client request "nope"/ })
  assert.throws(() => conn.request('confirm', { question: 1 }), { name: 'TypeError', message: /Invalid data for client request "confirm"/ })
  assert.throws(() => conn.onRequest('confirm', () => true), { name: 'TypeError', message: /Unknown request "confirm"/ })
  assert.throws(() => conn.request('confirm', { question: 'q' }, { timeoutMs: -1 }), TypeError)
})

test('defineContract rejects request entries without Standard Schemas', () => {
  assert.throws(() => defineContract({ requests: { a: { input: z.string() } } }), /requests\["a"\]\.output is not a Standard Schema/)
  assert.throws(() => defineContract({ clientRequests: { b: { output: z.string() } } }), /clientRequests\["b"\]\.input is not a Standard Schema/)
})
