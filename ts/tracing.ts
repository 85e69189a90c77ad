// OpenTelemetry spans (`telemetry.tracer`, a Tracer of `@opentelemetry/api`): the lifetime of each
// connection (kind server), each handled message or request (consumer / server; child of the
// message's `traceparent`, else of its connection), and each publish (`ws.publish.send`, producer,
// child of whatever span is active, e.g. the handler's). `@opentelemetry/api` is an optional peer
// dependency: loaded only when a tracer is given, and its types are not part of ours (the shapes
// used are declared here), so applications without it compile and run unchanged.

import type { Conn } from './handler-store'
import type { TraceContext } from './types'

// The parts of @opentelemetry/api used here.
interface SpanContext {
  traceId: string
  spanId: string
  traceFlags: number
  isRemote?: boolean
}
interface Span {
  setAttribute(key: string, value: string | number | boolean): unknown
  setStatus(status: { code: number; message?: string }): unknown
  recordException(error: unknown): unknown
  spanContext(): SpanContext
  end(): void
}
type Context = unknown
interface OtelApi {
  trace: { setSpan(ctx: Context, span: Span): Context; setSpanContext(ctx: Context, spanContext: SpanContext): Context; getSpan(ctx: Context): Span | undefined }
  context: { active(): Context; with<R>(ctx: Context, fn: () => R): R }
  ROOT_CONTEXT: Context
  SpanKind: { SERVER: number; CONSUMER: number; PRODUCER: number }
  SpanStatusCode: { OK: number; ERROR: number }
}

/** What `telemetry.tracer` must be: an OpenTelemetry Tracer. */
export interface TracerLike {
  startSpan(name: string, options?: { kind?: number; attributes?: Record<string, string | number | boolean | undefined> }, context?: unknown): unknown
}

/** Closes a client or the server made in order: the connection span ends OK. */
const ORDERLY = new Set([1000, 1001, 1005])

function loadApi(): OtelApi {
  try {
    return require('@opentelemetry/api') as OtelApi
  } catch (cause) {
    throw new Error('option telemetry.tracer needs the @opentelemetry/api package (npm install @opentelemetry/api)', { cause })
  }
}

export class Tracing {
  private readonly api: OtelApi
  /** Connection spans, by connection (ended and removed at close). */
  private readonly connections = new WeakMap<Conn, Span>()

  constructor(private readonly tracer: TracerLike) {
    if (!tracer || typeof tracer.startSpan !== 'function') throw new TypeError('option telemetry.tracer must be an OpenTelemetry Tracer')
    this.api = loadApi()
  }

  private start(name: string, kind: number, attributes: Record<string, string | number | boolean | undefined>, parent: Context): Span {
    return this.tracer.startSpan(name, { kind, attributes }, parent) as Span
  }

  /** The context of a W3C trace (the sender's span as a remote parent). */
  private remote(trace: TraceContext): Context {
    return this.api.trace.setSpanContext(this.api.ROOT_CONTEXT, { traceId: trace.traceId, spanId: trace.parentSpanId, traceFlags: trace.sampled ? 1 : 0, isRemote: true })
  }

  opened(conn: Conn, remoteAddress: string): void {
    const trace = conn.trace
    const span = this.start(
      'ws.connection.lifetime',
      this.api.SpanKind.SERVER,
      {
        'network.protocol.name': 'websocket',
        'network.peer.address': remoteAddress,
        'ws.namespace': conn.namespace,
        'ws.connection.id': conn.id,
        'enduser.id': conn.userId ?? undefined,
      },
      trace === undefined ? this.api.ROOT_CONTEXT : this.remote(trace),
    )
    this.connections.set(conn, span)
  }

  closed(conn: Conn, code: number, reason: string): void {
    const span = this.connections.get(conn)
    if (span === undefined) return
    this.connections.delete(conn)
    span.setAttribute('ws.close.code', code)
    if (reason) span.setAttribute('ws.close.reason', reason)
    span.setStatus(ORDERLY.has(code) ? { code: this.api.SpanStatusCode.OK } : { code: this.api.SpanStatusCode.ERROR, message: `closed ${code}${reason ? ` ${reason}` : ''}` })
    span.end()
  }

  /**
   * Runs one handler inside its span (so publishes it makes are children of it). The span ends
   * when the handler returns, or when its promise settles; a throw or rejection marks it ERROR.
   * Exceptions and the promise pass through unchanged.
   */
  run(conn: Conn, event: string, request: boolean, trace: TraceContext | undefined, call: () => unknown): unknown {
    const parentSpan = this.connections.get(conn)
    const parent =
      trace !== undefined ? this.remote(trace) : parentSpan !== undefined ? this.api.trace.setSpan(this.api.ROOT_CONTEXT, parentSpan) : this.api.ROOT_CONTEXT
    const span = this.start(
      `process ${event}`,
      request ? this.api.SpanKind.SERVER : this.api.SpanKind.CONSUMER,
      { 'messaging.system': 'websocket', 'messaging.operation.type': 'process', 'messaging.destination.name': event, 'ws.request': request, 'ws.connection.id': conn.id, 'ws.namespace': conn.namespace },
      parent,
    )
    const failed = (error: unknown): void => {
      span.recordException(error instanceof Error ? error : String(error))
      span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) })
      span.end()
    }
    let result: unknown
    try {
      result = this.api.context.with(this.api.trace.setSpan(parent, span), call)
    } catch (error) {
      failed(error)
      throw error
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      ;(result as PromiseLike<unknown>).then(() => span.end(), failed)
    } else {
      span.end()
    }
    return result
  }

  /** The span running now (a handler's, inside one), as trace ids; undefined outside any span. */
  current(): { traceId: string; spanId: string; sampled: boolean } | undefined {
    const span = this.api.trace.getSpan(this.api.context.active())
    if (span === undefined) return undefined
    const sc = span.spanContext()
    return { traceId: sc.traceId, spanId: sc.spanId, sampled: (sc.traceFlags & 1) === 1 }
  }

  /** `ws.publish.send`: one publish, a child of the active span (a handler's, when made inside one). */
  published(namespace: string, target: string, event: string, delivered: number): void {
    const span = this.start(
      'ws.publish.send',
      this.api.SpanKind.PRODUCER,
      { 'messaging.system': 'websocket', 'messaging.operation.type': 'send', 'messaging.destination.name': event, 'ws.publish.target': target, 'ws.namespace': namespace, 'messaging.batch.message_count': delivered },
      this.api.context.active(),
    )
    span.end()
  }
}
