// OpenTelemetry spans through `telemetry.tracer`, collected with the SDK's in-memory exporter:
// a connection's lifetime (server kind, OK for 1000/1001, ERROR otherwise), one span per handled
// message or request (child of the message's traceparent, else of its connection), and
// `ws.publish.send` (producer) as a child of the handler that published.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { context, SpanKind, SpanStatusCode } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { startServer, nextMessage, send, waitClose } from './helpers.mjs'

const exporter = new InMemorySpanExporter()
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
const tracer = provider.getTracer('ferrosocket-test')

const TRACE_ID = '0af7651916cd43dd8448eb211c80319c'
const PARENT_ID = 'b7ad6b7169203331'

/** Waits (with a deadline) until the exporter holds a span matching `predicate`. */
async function spanWhere(predicate, label, ms = 3000) {
  const deadline = Date.now() + ms
  for (;;) {
    const span = exporter.getFinishedSpans().find(predicate)
    if (span) return span
    if (Date.now() > deadline) throw new Error(`no span ${label} within ${ms} ms; have ${exporter.getFinishedSpans().map((s) => s.name).join(', ')}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

const parentOf = (span) => span.parentSpanContext?.spanId ?? span.parentSpanId

test('connection, handler and publish spans with the right kinds, statuses and parents', async (t) => {
  exporter.reset()
  const h = await startServer(
    { telemetry: { tracer } },
    {
      onConnection(conn) {
        conn.onMessage('say', async (data) => {
          await new Promise((resolve) => setImmediate(resolve)) // the span stays current across awaits
          h.server.broadcast('said', data)
        })
        conn.onMessage('boom', () => {
          throw new Error('boom')
        })
        conn.onRequest('add', ({ a, b }) => a + b)
      },
    },
  )
  t.after(() => h.close())
  const [ws, conn] = await h.client()

  ws.send(JSON.stringify({ event: 'say', data: 1, meta: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` } }))
  assert.deepEqual(await nextMessage(ws), { event: 'said', data: 1 })
  const handled = await spanWhere((s) => s.name === 'process say', 'process say')
  assert.equal(handled.kind, SpanKind.CONSUMER)
  assert.equal(handled.spanContext().traceId, TRACE_ID, 'in the sender\'s trace')
  assert.equal(parentOf(handled), PARENT_ID, 'child of the message\'s traceparent')
  assert.equal(handled.attributes['messaging.destination.name'], 'say')
  const publish = await spanWhere((s) => s.name === 'ws.publish.send', 'ws.publish.send')
  assert.equal(publish.kind, SpanKind.PRODUCER)
  assert.equal(parentOf(publish), handled.spanContext().spanId, 'the publish is a child of the handler span')
  assert.equal(publish.spanContext().traceId, TRACE_ID)
  assert.equal(publish.attributes['ws.publish.target'], 'broadcast')
  assert.equal(publish.attributes['messaging.batch.message_count'], 1)

  ws.send(JSON.stringify({ event: 'add', data: { a: 2, b: 3 }, id: 1 }))
  assert.deepEqual(await nextMessage(ws), { id: 1, data: 5 })
  const request = await spanWhere((s) => s.name === 'process add', 'process add')
  assert.equal(request.kind, SpanKind.SERVER)
  assert.notEqual(request.spanContext().traceId, TRACE_ID, 'no traceparent: the connection\'s trace')

  send(ws, 'boom', 1)
  const failed = await spanWhere((s) => s.name === 'process boom', 'process boom')
  assert.equal(failed.status.code, SpanStatusCode.ERROR)
  assert.equal(failed.events[0]?.name, 'exception')
  assert.equal((await waitClose(ws)).code, 1011)
  const lifetime = await spanWhere((s) => s.name === 'ws.connection.lifetime', 'ws.connection.lifetime')
  assert.equal(lifetime.kind, SpanKind.SERVER)
  assert.equal(lifetime.status.code, SpanStatusCode.ERROR, 'closed 1011')
  assert.equal(lifetime.attributes['ws.close.code'], 1011)
  assert.equal(lifetime.attributes['ws.connection.id'], conn.id)
  assert.equal(parentOf(request), lifetime.spanContext().spanId, 'a message without traceparent is a child of its connection')
})

test('a connection closed normally ends its span OK; the upgrade traceparent is its parent', async (t) => {
  exporter.reset()
  const h = await startServer({ telemetry: { tracer } }, { onConnection() {} })
  t.after(() => h.close())
  const { connect } = await import('./helpers.mjs')
  const ws = h.adopt(await connect(h.url(), { headers: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` } }))
  const conn = await h.nextConnection()
  ws.close(1000)
  await waitClose(ws)
  const lifetime = await spanWhere((s) => s.name === 'ws.connection.lifetime' && s.attributes['ws.connection.id'] === conn.id, 'lifetime')
  assert.equal(lifetime.status.code, SpanStatusCode.OK)
  assert.equal(lifetime.spanContext().traceId, TRACE_ID)
  assert.equal(parentOf(lifetime), PARENT_ID)
})

test('with a tracer and propagate, ctx.trace and outgoing traceparents name the handler span itself', async (t) => {
  exporter.reset()
  const h = await startServer(
    { telemetry: { tracer, propagate: true } },
    {
      onConnection(conn) {
        conn.onMessage('say', (data, ctx) => conn.publish('said', ctx.trace.spanId))
        conn.onRequest('ask', (input, ctx) => ctx.trace.spanId)
      },
    },
  )
  t.after(() => h.close())
  const [ws] = await h.client()
  ws.send(JSON.stringify({ event: 'say', data: 1, meta: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` } }))
  const out = await nextMessage(ws)
  const handled = await spanWhere((s) => s.name === 'process say', 'process say')
  assert.equal(out.data, handled.spanContext().spanId, 'ctx.trace.spanId is the span\'s id')
  assert.equal(out.meta.traceparent, `00-${TRACE_ID}-${handled.spanContext().spanId}-01`, 'the outgoing traceparent names the handler span')
  ws.send(JSON.stringify({ event: 'ask', data: 1, id: 9, meta: { traceparent: `00-${TRACE_ID}-${PARENT_ID}-01` } }))
  const reply = await nextMessage(ws)
  const asked = await spanWhere((s) => s.name === 'process ask', 'process ask')
  assert.equal(reply.data, asked.spanContext().spanId, 'the same for requests')
})

test('telemetry needs onEvent or tracer; a tracer must look like one', async () => {
  const { createServer } = await import('../index.js')
  assert.throws(() => createServer({ telemetry: {} }), /telemetry needs onEvent \(events\) or tracer/)
  assert.throws(() => createServer({ telemetry: { tracer: {} } }), /telemetry.tracer must be an OpenTelemetry Tracer/)
})
