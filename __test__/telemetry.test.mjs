// Telemetry events: every documented event name comes out of a real scenario with its fields;
// level filtering, sampling and the per-second cap decide what is recorded; a throwing sink breaks
// nothing; handlers get the W3C trace context of `meta.traceparent` (an invalid one is reported and
// never rejects the message); `conn.trace` comes from the upgrade's header.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { z } from 'zod'
import { startServer, nextMessage, send, waitClose, upgradeStatus, connect } from './helpers.mjs'
import { defineContract } from '../index.js'

const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'

const contract = defineContract({
  in: { say: z.object({ text: z.string() }), boom: z.any(), later: z.any(), slow: z.any() },
  out: { said: z.object({ text: z.string() }) },
})

/** Collects events; `next(name)` resolves with the next event of that name (deadline 3 s). */
function recorder() {
  const events = []
  const waiters = []
  const sink = (event) => {
    events.push(event)
    for (const w of [...waiters]) {
      if (w.name === event.name && w.match(event)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(event)
      }
    }
  }
  const next = (name, match = () => true, ms = 3000) => {
    const seen = events.find((e) => e.name === name && match(e) && !e.taken)
    if (seen) {
      seen.taken = true
      return Promise.resolve(seen)
    }
    return new Promise((resolve, reject) => {
      const w = { name, match, resolve: (e) => (clearTimeout(timer), (e.taken = true), resolve(e)) }
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1)
        reject(new Error(`no ${name} event within ${ms} ms; saw ${events.map((e) => e.name).join(', ')}`))
      }, ms)
      waiters.push(w)
    })
  }
  return { events, sink, next }
}

function assertShape(event, name, level, conn) {
  assert.equal(event.name, name)
  assert.equal(event.level, level, `${name} level`)
  assert.equal(typeof event.time, 'number')
  assert.ok(Math.abs(event.time - Date.now()) < 10_000)
  assert.equal(typeof event.nodeId, 'string')
  for (const key of ['connectionId', 'namespace', 'userId', 'traceId', 'spanId', 'parentSpanId', 'sampled', 'detail']) assert.ok(key in event, `${name} has ${key}`)
  if (conn) {
    assert.equal(event.connectionId, conn.id)
    assert.equal(event.namespace, '/')
  }
  assert.equal(typeof event.detail, 'object')
}

test('every event name comes out of a real scenario with the documented fields', async (t) => {
  const rec = recorder()
  let unblock
  const h = await startServer(
    {
      contract,
      onInvalidMessage: 'reply',
      maxBufferedMessages: 1,
      maxInflightMessages: 3,
      heartbeat: { intervalMs: 150 },
      authenticate: (req) => (req.query.deny ? false : { userId: req.query.user }),
      telemetry: { level: 'debug', onEvent: rec.sink, capturePayload: 'preview', maxPayloadPreviewBytes: 8 },
    },
    {
      onConnection(conn) {
        conn.onMessage('say', (data, ctx) => {
          conn.publish('said', data)
          h.server.broadcast('said', { text: 'all' })
          if (ctx.trace) conn.publish('said', { text: JSON.stringify(ctx.trace) })
        })
        conn.onMessage('boom', () => {
          throw new Error('boom')
        })
        conn.onMessage('slow', () => new Promise((resolve) => (unblock = resolve)))
      },
    },
  )
  t.after(() => h.close())
  const url = `${h.url()}?user=ada`
  const ws = h.adopt(await connect(url, { headers: { traceparent: TRACEPARENT } }))
  const conn = await h.nextConnection()

  const opened = await rec.next('ws.connection.opened')
  assertShape(opened, 'ws.connection.opened', 'info', conn)
  assert.equal(opened.userId, 'ada')
  assert.equal(opened.traceId, '0af7651916cd43dd8448eb211c80319c', 'the upgrade traceparent')
  assert.equal(conn.trace.parentSpanId, 'b7ad6b7169203331')

  // A message with a trace: received, publishes, dispatched; the handler sees ctx.trace.
  ws.send(JSON.stringify({ event: 'say', data: { text: 'hello world' }, meta: { traceparent: TRACEPARENT } }))
  const received = await rec.next('ws.message.received', (e) => e.detail.event === 'say')
  assertShape(received, 'ws.message.received', 'debug', conn)
  assert.equal(received.traceId, '0af7651916cd43dd8448eb211c80319c')
  assert.equal(received.parentSpanId, 'b7ad6b7169203331')
  assert.equal(received.sampled, true)
  assert.equal(received.detail.payload, '{"text":', 'payload preview cut at maxPayloadPreviewBytes')
  assert.deepEqual(await nextMessage(ws), { event: 'said', data: { text: 'hello world' } })
  assert.deepEqual(await nextMessage(ws), { event: 'said', data: { text: 'all' } })
  const trace = JSON.parse((await nextMessage(ws)).data.text)
  assert.equal(trace.traceId, '0af7651916cd43dd8448eb211c80319c')
  assert.equal(trace.parentSpanId, 'b7ad6b7169203331')
  assert.match(trace.spanId, /^[0-9a-f]{16}$/)
  assert.notEqual(trace.spanId, 'b7ad6b7169203331', 'a new span for the handler run')
  assertShape(await rec.next('ws.publish.queued', (e) => e.detail.target === 'connection'), 'ws.publish.queued', 'debug', conn)
  const sent = await rec.next('ws.publish.sent', (e) => e.detail.target === 'broadcast')
  assertShape(sent, 'ws.publish.sent', 'debug')
  assert.equal(sent.detail.delivered, 1)
  assertShape(await rec.next('ws.message.dispatched', (e) => e.detail.event === 'say'), 'ws.message.dispatched', 'debug', conn)

  // An invalid traceparent is reported and the message still runs.
  ws.send(JSON.stringify({ event: 'say', data: { text: 'x' }, meta: { traceparent: 'not-a-trace' } }))
  const invalidTrace = await rec.next('ws.trace.invalid')
  assertShape(invalidTrace, 'ws.trace.invalid', 'debug', conn)
  assert.equal(invalidTrace.detail.traceparent, 'not-a-trace')
  assert.deepEqual(await nextMessage(ws), { event: 'said', data: { text: 'x' } })
  await nextMessage(ws) // the broadcast

  // Rejections: schema (JS), unknown event and not JSON (Rust), a refused publish, refused upgrades.
  send(ws, 'say', { text: 42 })
  assertShape(await rec.next('ws.message.rejected', (e) => e.detail.reason === 'invalid_data'), 'ws.message.rejected', 'warn', conn)
  send(ws, 'nope', 1)
  assertShape(await rec.next('ws.message.rejected', (e) => e.detail.reason === 'Unknown event'), 'ws.message.rejected', 'warn', conn)
  ws.send('not json')
  assert.equal((await rec.next('ws.message.rejected', (e) => e.detail.reason === 'Invalid message payload')).detail.code, 1007)
  assert.throws(() => conn.publish('said', { text: 1 }))
  assertShape(await rec.next('ws.publish.rejected'), 'ws.publish.rejected', 'warn', conn)
  assert.equal(await upgradeStatus(`${h.url()}?deny=1`), 401)
  const refused = await rec.next('ws.handshake.rejected', (e) => e.detail.status === 401)
  assertShape(refused, 'ws.handshake.rejected', 'warn')
  assert.equal(refused.detail.remoteAddress, '127.0.0.1')
  assert.equal(await upgradeStatus(`ws://127.0.0.1:${h.port}/nowhere`), 404)
  await rec.next('ws.handshake.rejected', (e) => e.detail.status === 404)

  // No handler yet: buffered, and past maxBufferedMessages (1) the oldest is dropped.
  send(ws, 'later', 1)
  send(ws, 'later', 2)
  assertShape(await rec.next('ws.message.buffered'), 'ws.message.buffered', 'debug', conn)
  const dropped = await rec.next('ws.message.buffer.dropped')
  assertShape(dropped, 'ws.message.buffer.dropped', 'warn', conn)
  assert.equal(dropped.detail.limit, 1)

  // A slow handler with messages piling up behind it: delayed at maxInflightMessages (3). Rust
  // stops reading at 3 unacknowledged messages, so the queue reaches 3 only when the 4 arrive in
  // one read: the client writes them in one TCP write.
  ws._socket.cork()
  send(ws, 'slow', 1)
  for (let i = 0; i < 3; i++) send(ws, 'say', { text: `q${i}` })
  ws._socket.uncork()
  const delayed = await rec.next('ws.backpressure.delayed')
  assertShape(delayed, 'ws.backpressure.delayed', 'info', conn)
  assert.equal(delayed.detail.limit, 3)
  unblock()
  for (let i = 0; i < 6; i++) await nextMessage(ws)

  // A handler that throws: failed (error), then the close 1011 (warn).
  send(ws, 'boom', 1)
  const failed = await rec.next('ws.message.failed')
  assertShape(failed, 'ws.message.failed', 'error', conn)
  assert.equal(failed.detail.error, 'boom')
  assert.equal((await waitClose(ws)).code, 1011)
  const closed = await rec.next('ws.connection.closed', (e) => e.connectionId === conn.id)
  assertShape(closed, 'ws.connection.closed', 'warn', conn)
  assert.equal(closed.detail.code, 1011)
  assert.equal(conn.publish('said', { text: 'late' }), false)
  assertShape(await rec.next('ws.publish.dropped'), 'ws.publish.dropped', 'warn', conn)

  // A client that never answers pings: heartbeat timeout (1001).
  const silent = h.adopt(await connect(url, { autoPong: false }))
  const silentConn = await h.nextConnection()
  const timeout = await rec.next('ws.heartbeat.timeout', (e) => e.connectionId === silentConn.id, 3000)
  assertShape(timeout, 'ws.heartbeat.timeout', 'warn', silentConn)
  assert.equal((await waitClose(silent)).code, 1001)
  const orderly = await rec.next('ws.connection.closed', (e) => e.connectionId === silentConn.id)
  assert.equal(orderly.level, 'info', '1001 is an orderly close')
})

test('a reader that overflows its queue: ws.backpressure.overflow', async (t) => {
  const rec = recorder()
  const h = await startServer({ backpressure: { maxQueuedMessages: 10 }, telemetry: { onEvent: rec.sink, level: 'warn' } }, { onConnection() {} })
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  ws._socket.pause()
  for (let i = 0; i < 200 && conn.isOpen; i++) conn.publish('big', 'x'.repeat(64 * 1024))
  ws._socket.resume()
  assert.equal((await waitClose(ws)).code, 1013)
  assertShape(await rec.next('ws.backpressure.overflow'), 'ws.backpressure.overflow', 'warn', conn)
  assert.equal((await rec.next('ws.connection.closed')).level, 'warn')
  assert.ok(!rec.events.some((e) => e.level === 'info' || e.level === 'debug'), 'nothing below warn is recorded')
})

test('a failing cluster bus: ws.publish.failed', async (t) => {
  const rec = recorder()
  const bus = { publish: () => Promise.reject(new Error('bus down')), subscribe: () => () => {} }
  const h = await startServer({ nodeId: 'n1', cluster: { bus }, telemetry: { onEvent: rec.sink } }, { onConnection() {} })
  t.after(() => h.close())
  h.server.broadcast('x', 1)
  const failed = await rec.next('ws.publish.failed')
  assert.equal(failed.level, 'error')
  assert.equal(failed.detail.error, 'bus down')
})

test('level, sampling and the per-second cap decide what is recorded; warn and error always are', async (t) => {
  const rec = recorder()
  const h = await startServer(
    {
      contract,
      onInvalidMessage: 'reply',
      telemetry: { onEvent: rec.sink, level: 'debug', sampling: { rateByEvent: { 'ws.message.received': 0 }, maxRecordsPerSecond: 3 } },
    },
    { onConnection: (conn) => conn.onMessage('say', () => {}) },
  )
  t.after(() => h.close())
  const [ws] = await h.client()
  for (let i = 0; i < 20; i++) send(ws, 'say', { text: String(i) })
  for (let i = 0; i < 5; i++) send(ws, 'say', { text: i })
  for (let i = 0; i < 5; i++) await rec.next('ws.message.rejected', (e) => e.detail.reason === 'invalid_data')
  assert.equal(rec.events.filter((e) => e.name === 'ws.message.received').length, 0, 'rate 0: none')
  const belowWarn = rec.events.filter((e) => e.level === 'info' || e.level === 'debug')
  assert.ok(belowWarn.length <= 3 + 3, `the cap holds (${belowWarn.length} info/debug records within about a second)`)
  assert.equal(rec.events.filter((e) => e.name === 'ws.message.rejected').length, 5, 'warn bypasses sampling and the cap')
})

test('a sink that throws breaks nothing; at info level no debug event is built', async (t) => {
  let calls = 0
  const h = await startServer(
    {
      telemetry: {
        onEvent: (e) => {
          calls++
          assert.notEqual(e.level, 'debug')
          throw new Error('sink down')
        },
      },
    },
  )
  t.after(() => h.close())
  const [ws] = await h.client()
  for (let i = 0; i < 3; i++) {
    ws.send(JSON.stringify({ event: 'echo', data: i }))
    await nextMessage(ws)
  }
  assert.ok(calls >= 1, 'the opened event reached the sink')
  assert.equal(h.server.connectionCount, 1)
})

test('with propagate, publishes made while a handler runs carry its trace in meta.traceparent', async (t) => {
  const h = await startServer(
    { contract, telemetry: { onEvent() {}, propagate: true } },
    {
      onConnection(conn) {
        conn.onMessage('say', async (data, ctx) => {
          await new Promise((resolve) => setImmediate(resolve)) // still the handler's trace after an await
          conn.publish('said', { text: ctx.trace ? ctx.trace.spanId : 'none' })
        })
      },
    },
  )
  t.after(() => h.close())
  const [ws] = await h.client()
  ws.send(JSON.stringify({ event: 'say', data: { text: 'a' }, meta: { traceparent: TRACEPARENT } }))
  const out = await nextMessage(ws)
  const handlerSpan = out.data.text
  assert.match(handlerSpan, /^[0-9a-f]{16}$/)
  assert.equal(out.meta.traceparent, `00-0af7651916cd43dd8448eb211c80319c-${handlerSpan}-01`, 'same trace, the handler span as parent')
  send(ws, 'say', { text: 'b' })
  const plain = await nextMessage(ws)
  assert.deepEqual(plain, { event: 'said', data: { text: 'none' } }, 'no trace in, no meta out')
  h.server.broadcast('said', { text: 'outside' })
  assert.deepEqual(await nextMessage(ws), { event: 'said', data: { text: 'outside' } }, 'outside a handler: no meta')
})

test('telemetry options are checked', async () => {
  const { createServer } = await import('../index.js')
  assert.throws(() => createServer({ telemetry: { onEvent: 1 } }), /telemetry.onEvent must be a function/)
  assert.throws(() => createServer({ telemetry: { onEvent() {}, level: 'loud' } }), /telemetry.level must be one of/)
  assert.throws(() => createServer({ telemetry: { onEvent() {}, sampling: { defaultRate: 2 } } }), /defaultRate must be a number from 0 to 1/)
  assert.throws(() => createServer({ telemetry: { onEvent() {}, capturePayload: 'all' } }), /capturePayload must be false or 'preview'/)
  assert.throws(() => createServer({ telemetry: { onEvent() {}, propagate: 'yes' } }), /telemetry.propagate must be a boolean/)
})
