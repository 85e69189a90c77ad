// Requests from the client (client → server): a request is a message of the connection's queue
// that gets exactly one reply. Validates the input, calls the `onRequest` handler, validates its
// output and replies `{id, data}` or `{id, error}`; answers `duplicate_id` for an id still in flight
// and `timeout` when the handler is too slow (detaching it from the queue, see
// dispatch-queue#detach); aborts the handler's `signal` on timeout or close.

import { ack, detach, enqueue } from './dispatch-queue'
import type { Conn, RequestFn } from './handler-store'
import { describeIssues, isPending, serialisableIssues } from './protocol/contract'
import { encodeDataReply, encodeErrorReply, type EnvelopeMeta } from './protocol/envelope'
import {
  HIDDEN_MESSAGE,
  RequestError,
  RequestErrorCode,
  connectionClosed,
  errorBody,
  isPublicError,
} from './protocol/request-error'
import { REJECTED, State, more, type ConnectionState, type Extra, type InboundRequest } from './state'
import { traceOf, type Telemetry } from './telemetry'
import type { RequestContext as PublicRequestContext, RequestSchema, StandardSchemaResult, TraceContext } from './types'

const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function'

/** What a request handler receives as its second argument. */
class RequestContext implements PublicRequestContext<Conn> {
  private readonly _request: InboundRequest
  private readonly _telemetry: Telemetry
  /** The handler's trace with `telemetry.propagate` (what its publishes carry). */
  private readonly _propagated: TraceContext | undefined
  /** The OpenTelemetry span of this run (`telemetry.tracer`), read when the handler starts. */
  private readonly _span: { spanId: string } | undefined
  readonly conn: Conn

  constructor(request: InboundRequest, conn: ConnectionState) {
    this._request = request
    this._telemetry = conn._ns.server._telemetry
    this._propagated = conn._ns.server._propagation?.getStore()
    this._span = conn._ns.server._tracing?.current()
    this.conn = conn
  }

  get event(): string {
    return this._request.event
  }

  /** `meta` of the envelope (trace context), if the client sent one. */
  get meta(): EnvelopeMeta | undefined {
    return this._request.meta ?? undefined
  }

  private _trace: TraceContext | undefined | null = null

  /** The parsed `meta.traceparent` (a new span id for this run); undefined without a valid one. */
  get trace(): TraceContext | undefined {
    if (this._trace === null) {
      const meta = this._request.meta
      this._trace = meta == null ? undefined : (this._propagated ?? traceOf(this._telemetry, this.conn, meta, this._span))
    }
    return this._trace
  }

  /** The request id as the client sent it (string or number). */
  get id(): string | number {
    return JSON.parse(this._request.rawId)
  }

  /** Aborted when the request times out or the connection closes before the handler answers. */
  get signal(): AbortSignal {
    const request = this._request
    if (!request.controller) {
      request.controller = new AbortController()
      if (request.abortReason) request.controller.abort(request.abortReason)
    }
    return request.controller.signal
  }
}

/** A request from the client; `rawId` is its id's JSON text, echoed verbatim in the reply. */
export function receiveRequest(conn: ConnectionState, event: string, data: unknown, meta: EnvelopeMeta | null, rawId: string, size: number): void {
  if (conn._x?.inbound?.has(rawId)) {
    // The original keeps running and gets its own reply; only the duplicate is refused.
    ack(conn)
    conn._ns.acks.release(size)
    sendReply(conn, encodeErrorReply(rawId, { code: RequestErrorCode.DUPLICATE_ID, message: 'A request with this id is already in flight' }))
    return
  }
  const request: InboundRequest = { event, data, meta, acked: false, ahead: false, request: true, size, rawId, done: false, timer: undefined, controller: undefined, abortReason: undefined }
  ;(more(conn).inbound ??= new Map()).set(rawId, request)
  const timeoutMs = conn._ns.server._requestTimeoutMs
  if (timeoutMs > 0) request.timer = setTimeout(() => requestTimedOut(conn, request, timeoutMs), timeoutMs)
  enqueue(conn, request)
}

/**
 * Validates the input, calls the handler, validates the output and replies. Never throws; returns
 * a promise (that never rejects) only when something is asynchronous.
 */
export function runRequest(conn: ConnectionState, handler: RequestFn, request: InboundRequest): unknown {
  const spec = conn._ns.contract?.requests[request.event]
  if (!spec) return callHandler(conn, handler, request, undefined, request.data)
  try {
    const result = spec.input['~standard'].validate(request.data)
    const proceed = (r: StandardSchemaResult<unknown>): unknown => {
      if (!r.issues) return callHandler(conn, handler, request, spec, r.value)
      conn._ns.server._metrics.rejected[conn._ns.index]++
      const tel = conn._ns.server._telemetry
      if (tel.warn) tel.emit('ws.message.rejected', conn, { event: request.event, request: true, reason: 'invalid_input', issues: serialisableIssues(r.issues) })
      const body = { code: RequestErrorCode.INVALID_INPUT, message: `Invalid input for request "${request.event}": ${describeIssues(r.issues)}`, issues: serialisableIssues(r.issues) }
      finishRequest(conn, request, encodeErrorReply(request.rawId, body))
      return REJECTED
    }
    if (isPending(result)) return result.then(proceed, (e) => requestFailed(conn, request, e))
    return proceed(result)
  } catch (error) {
    requestFailed(conn, request, error)
    return undefined
  }
}

function callHandler(conn: ConnectionState, handler: RequestFn, request: InboundRequest, spec: RequestSchema | undefined, input: unknown): unknown {
  let output
  try {
    output = handler(input, new RequestContext(request, conn))
  } catch (error) {
    requestFailed(conn, request, error)
    return undefined
  }
  if (isThenable(output)) {
    return Promise.resolve(output).then(
      (value) => respond(conn, request, spec, value),
      (error) => requestFailed(conn, request, error),
    )
  }
  return respond(conn, request, spec, output)
}

/** Validates the handler's result against the output schema and sends it. */
function respond(conn: ConnectionState, request: InboundRequest, spec: RequestSchema | undefined, value: unknown): unknown {
  if (request.done) return undefined // answered already (timeout) or the connection is gone: a late result is dropped
  if (!spec) return replyData(conn, request, value)
  try {
    const result = spec.output['~standard'].validate(value)
    const proceed = (r: StandardSchemaResult<unknown>): void => {
      if (!r.issues) return replyData(conn, request, r.value)
      const error = new Error(`Invalid output of request handler "${request.event}": ${describeIssues(r.issues)}`)
      requestFailed(conn, request, error)
    }
    if (isPending(result)) return result.then(proceed, (e) => requestFailed(conn, request, e))
    return proceed(result)
  } catch (error) {
    requestFailed(conn, request, error)
    return undefined
  }
}

function replyData(conn: ConnectionState, request: InboundRequest, value: unknown): void {
  let reply
  try {
    reply = encodeDataReply(request.rawId, value)
  } catch (error) {
    return requestFailed(conn, request, error)
  }
  finishRequest(conn, request, reply)
}

/** A handler threw, rejected or produced invalid output. Bugs go to onError, even late ones. */
export function requestFailed(conn: ConnectionState, request: InboundRequest, error: unknown): void {
  if (!isPublicError(error)) conn._ns.server._reportError(error, conn)
  const tel = conn._ns.server._telemetry
  if (tel.error) tel.emit(isPublicError(error) ? 'ws.message.dispatched' : 'ws.message.failed', conn, { event: request.event, request: true, error: error instanceof Error ? error.message : String(error) })
  if (request.done) return
  let reply
  try {
    reply = encodeErrorReply(request.rawId, errorBody(error, conn._ns.server._exposeErrors))
  } catch {
    reply = encodeErrorReply(request.rawId, { code: RequestErrorCode.INTERNAL, message: HIDDEN_MESSAGE })
  }
  finishRequest(conn, request, reply)
}

/**
 * Answers `timeout` and aborts the handler's `signal`. If the queue is waiting for this request's
 * handler, it stops waiting: the handler is detached (it may keep running; its result is dropped)
 * and the connection's next message runs now.
 */
function requestTimedOut(conn: ConnectionState, request: InboundRequest, timeoutMs: number): void {
  if (request.done) return
  const message = `Request "${request.event}" timed out after ${timeoutMs} ms`
  finishRequest(conn, request, encodeErrorReply(request.rawId, { code: RequestErrorCode.TIMEOUT, message }))
  request.abortReason = new RequestError(RequestErrorCode.TIMEOUT, message)
  request.controller?.abort(request.abortReason)
  detach(conn, request)
}

/** A request pushed out of the buffer (no handler yet, too many messages waiting for one). */
export function refuseUnavailable(conn: ConnectionState, request: InboundRequest): void {
  const message = `No handler for request "${request.event}" yet and too many messages are waiting for one`
  finishRequest(conn, request, encodeErrorReply(request.rawId, { code: RequestErrorCode.UNAVAILABLE, message }))
}

/** Sends the one reply a request gets. */
function finishRequest(conn: ConnectionState, request: InboundRequest, reply: string): void {
  if (request.done) return
  request.done = true
  clearTimeout(request.timer)
  const inbound = conn._x?.inbound
  if (inbound?.get(request.rawId) === request) inbound.delete(request.rawId)
  sendReply(conn, reply)
}

function sendReply(conn: ConnectionState, reply: string): void {
  if ((conn._state & State.CLOSED) === 0) conn._ns.server._send(conn._nid, reply)
}

/** The connection closed: nothing can be sent any more; every handler still running sees its `signal` abort. */
export function abandonRequests(x: Extra): void {
  for (const request of x.inbound?.values() ?? []) {
    if (request.done) continue
    const reason = connectionClosed(request.event)
    request.done = true
    clearTimeout(request.timer)
    request.abortReason = reason
    request.controller?.abort(reason)
  }
  x.inbound?.clear()
}
