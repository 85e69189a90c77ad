// The per-connection dispatch queue: handlers run one message at a time in arrival order (async
// handlers are awaited), messages for events without a handler yet are buffered, and every
// handled message is acknowledged so Rust can resume reading a paused socket.
//
// Every message also carries its `size`, charged to Rust's global inbound budget
// (`maxPendingBytes`) until it is handled or dropped: `settle` releases it exactly once (the size
// is zeroed), whether the message ran, was buffered and then dropped, or was dropped because its
// connection ended. Queued, buffered and running messages all count, so connections that come and
// go cannot pile up work in JS beyond the bound.
//
// Requests from the client share this queue (a request is a message that gets a reply). Replies
// to the server's own requests (`conn.request`) never queue: they settle their promise as soon as
// the batch arrives, so a handler awaiting one cannot deadlock its own connection.
//
// The queue does not know how a message is run: it looks up the handler and calls back into the
// connection (`_run`, `_failed`, `_refuse`), which hands messages to inbound-messages and
// requests to inbound-requests.

import { RAW, storeGet, type Handler, type HandlerKey, type InboundHandler } from './handler-store'
import { quietTrace } from './telemetry'
import type { Tracing } from './tracing'
import type { TraceContext } from './types'
import type { AsyncLocalStorage } from 'node:async_hooks'
import {
  REJECTED,
  State,
  isPromiseLike,
  more,
  type ConnectionState,
  type Extra,
  type InboundRequest,
  type Queued,
} from './state'

/** Runs `message` now when nothing is queued or running, else queues it. */
export function enqueue(conn: ConnectionState, message: Queued): void {
  const x = conn._x
  if (x !== null && x.outbound !== null && x.outbound.size > 0) readAhead(conn, message)
  // Not running means nothing is queued: run it now. The queue (an array) exists only on
  // connections that ever had a backlog (async handlers, or messages arriving from a handler).
  if ((conn._state & State.RUNNING) === 0) pump(conn, message)
  else if (conn._queue === null) conn._queue = [message]
  else {
    conn._queue.push(message)
    // At maxInflightMessages unhandled messages Rust stops reading this socket.
    const tel = conn._ns.server._telemetry
    if (tel.info && conn._queue.length === conn._ns.server._maxInflightMessages) {
      tel.emit('ws.backpressure.delayed', conn, { queued: conn._queue.length, limit: conn._ns.server._maxInflightMessages })
    }
  }
}

/**
 * Runs a handler, inside its OpenTelemetry span (`telemetry.tracer`) and with its trace current
 * (`telemetry.propagate`: ctx.trace and its publishes use it; with a tracer, the trace's span id is
 * the span's, which exists by the time the handler runs). The message's traceparent is read once.
 */
function observed(conn: ConnectionState, handler: Handler, message: Queued, tracing: Tracing | null, als: AsyncLocalStorage<TraceContext> | null): unknown {
  const call = (): unknown => conn._run(handler, message)
  const trace = quietTrace(message.meta)
  const current =
    als === null || trace === undefined
      ? call
      : (): unknown => als.run(tracing === null ? trace : { ...trace, spanId: tracing.current()?.spanId ?? trace.spanId }, call)
  if (tracing === null) return current()
  return tracing.run(conn, conn._ns.raw ? '(raw)' : (message.event as string), message.request, trace, current)
}

/** `ws.message.dispatched` (debug): a handler finished with a message. */
function dispatched(conn: ConnectionState, message: Queued): void {
  const tel = conn._ns.server._telemetry
  if (tel.debug) tel.emit('ws.message.dispatched', conn, { event: message.event, request: message.request })
}

/** Counts one handled message towards the next acknowledgement to Rust. */
export function ack(conn: ConnectionState): void {
  if ((conn._state & State.CLOSED) === 0) conn._ns.acks.ack(conn._nid)
}

/**
 * While the connection awaits replies from its client, queued messages are acknowledged on
 * arrival (at most `maxInflightMessages` of them at a time), so Rust keeps reading the socket and
 * finds the reply even when the handler at the head of the queue is the one waiting for it. With
 * `message`, only that one is considered; otherwise the whole queue.
 */
export function readAhead(conn: ConnectionState, message?: Queued): void {
  const max = conn._ns.server._maxInflightMessages
  const x = more(conn)
  if (message !== undefined) {
    ackAhead(conn, x, max, message)
    return
  }
  for (const m of conn._queue ?? []) if (!ackAhead(conn, x, max, m)) return
}

/** Acknowledges `m` early unless `max` are already; false when the window is full. */
function ackAhead(conn: ConnectionState, x: Extra, max: number, m: Queued): boolean {
  if (x.ahead >= max) return false
  if (!m.acked) {
    m.acked = true
    m.ahead = true
    x.ahead++
    ack(conn)
  }
  return true
}

/**
 * Runs `first` (a message that found the queue empty), then queued messages in order; returns
 * when the queue is empty or an async step is pending.
 */
export function pump(conn: ConnectionState, first?: Queued): void {
  conn._state |= State.RUNNING
  let next = first
  for (;;) {
    let message = next
    next = undefined
    if (message === undefined) {
      const queue = conn._queue
      if (queue === null || queue.length === 0) break
      message = queue.shift() as Queued
    }
    if (message.request && message.done) {
      settle(conn, message) // timed out while waiting for its turn: never run
      continue
    }
    const handler = handlerFor(conn, message)
    if (!handler) {
      buffer(conn, message)
      continue
    }
    let pending
    const timer = conn._ns.server._metrics.handlers
    const start = timer === null ? 0 : performance.now()
    const { _tracing: tracing, _propagation: als } = conn._ns.server
    try {
      pending = tracing === null && als === null ? conn._run(handler, message) : observed(conn, handler, message, tracing, als)
    } catch (error) {
      conn._failed(error, message)
      continue
    } finally {
      if (timer !== null) timer.track(conn._ns.raw ? '(raw)' : (message.event as string), start, pending)
    }
    if (isPromiseLike(pending)) {
      resumeAfter(conn, pending, message)
      return
    }
    settle(conn, message)
    if (pending !== REJECTED) dispatched(conn, message)
  }
  conn._state &= ~State.RUNNING
}

/** The handler key of a message: its event, or RAW in raw-mode namespaces (where messages have no event). */
function keyOf(conn: ConnectionState, message: Queued): HandlerKey {
  return conn._ns.raw ? RAW : (message.event as string)
}

/** This connection's own handler wins over the namespace's (`server.onMessage`/`onRequest`). */
function handlerFor(conn: ConnectionState, message: Queued): Handler | undefined {
  const key = keyOf(conn, message)
  if (message.request) return storeGet(conn._x?.requestHandlers, key) ?? conn._ns.requestHandlers.get(key)
  // Every key of `_handlers` but CLOSE holds an inbound handler, and no message has that key.
  return (storeGet(conn._handlers, key) as InboundHandler | undefined) ?? conn._ns.handlers.get(key)
}

/**
 * A handler returned a promise: settle its message when it is done, then carry on with the
 * queue — unless the queue already moved on without it (a request that timed out is detached,
 * see `detach`).
 */
function resumeAfter(conn: ConnectionState, pending: PromiseLike<unknown>, message: Queued): void {
  conn._running = message
  pending
    .then(
      (result) => {
        settle(conn, message)
        if (result !== REJECTED) dispatched(conn, message)
      },
      (error) => conn._failed(error, message),
    )
    .then(() => {
      if (conn._running !== message) return
      conn._running = null
      pump(conn)
    })
}

/**
 * A request timed out: it leaves the buffer if it waits there, and if the queue is waiting for
 * its handler, the queue stops waiting (the handler is detached: it may keep running, its result
 * is dropped) and the connection's next message runs now.
 */
export function detach(conn: ConnectionState, request: InboundRequest): void {
  unbuffer(conn, request)
  if (conn._running === request) {
    conn._running = null
    settle(conn, request)
    pump(conn)
  }
}

/** The message is done with (handled or dropped): acknowledge it and release its size. */
export function settle(conn: ConnectionState, message: Queued): void {
  const size = message.size
  const acks = conn._ns.acks
  if (size !== 0) {
    message.size = 0
    acks.released += size // flushed with the acks
  }
  acknowledge(conn, message)
  if (size !== 0 && !acks.scheduled) acks.schedule()
}

/** Frees the message's slot in the connection's inflight window; its size stays charged. */
function acknowledge(conn: ConnectionState, message: Queued): void {
  if (message.ahead) {
    message.ahead = false
    ;(conn._x as Extra).ahead--
  }
  if (!message.acked) {
    message.acked = true
    ack(conn)
  }
}

/** Closes for a fault and drops what is still queued. */
export function abort(conn: ConnectionState, code: number, reason: string): void {
  if ((conn._state & State.CLOSING) === 0) {
    conn._state |= State.CLOSING
    conn._ns.server._output().close(conn._nid, code, reason)
  }
  dropQueue(conn)
}

function dropQueue(conn: ConnectionState): void {
  for (const dropped of conn._queue?.splice(0) ?? []) drop(conn, dropped)
}

/** A message that will never be handled: settled and counted in `server.stats.droppedMessages`. */
function drop(conn: ConnectionState, message: Queued): void {
  settle(conn, message)
  conn._ns.server._stats.droppedMessages++
}

function buffer(conn: ConnectionState, message: Queued): void {
  // Buffered messages are bounded here (maxBufferedMessages), so they no longer hold this
  // socket back; their size still counts against the global bound until handled or dropped.
  acknowledge(conn, message)
  const buffered = (more(conn).buffered ??= [])
  buffered.push(message)
  const tel = conn._ns.server._telemetry
  if (tel.debug) tel.emit('ws.message.buffered', conn, { event: message.event, request: message.request, buffered: buffered.length })
  if (buffered.length > conn._ns.server._maxBufferedMessages) {
    const dropped = buffered.shift() as Queued
    if (tel.warn) tel.emit('ws.message.buffer.dropped', conn, { event: dropped.event, request: dropped.request, limit: conn._ns.server._maxBufferedMessages })
    if (dropped.request) conn._refuse(dropped)
    drop(conn, dropped)
  }
}

/** A request that timed out while buffered leaves the buffer (it was answered `timeout`). */
function unbuffer(conn: ConnectionState, request: InboundRequest): void {
  const buffered = conn._x?.buffered
  const i = buffered?.indexOf(request) ?? -1
  if (i >= 0) {
    ;(buffered as Queued[]).splice(i, 1)
    settle(conn, request)
  }
}

/** Messages (or, with `requests`, requests) for `key` that arrived before its handler run now. */
export function replayBuffered(conn: ConnectionState, key: HandlerKey, requests = false): void {
  const x = conn._x
  if (!x?.buffered?.length) return
  const matches = (m: Queued): boolean => m.request === requests && keyOf(conn, m) === key
  const replay = x.buffered.filter(matches)
  if (replay.length === 0) return
  x.buffered = x.buffered.filter((m) => !matches(m))
  // They arrived before anything still queued, so they go first.
  ;(conn._queue ??= []).unshift(...replay)
  if ((conn._state & State.RUNNING) === 0) pump(conn)
}

/**
 * The close policy of the queue. Messages the connection sent that are still queued keep running
 * in order (as with `ws`, a message that arrived is handled), except when a handler holds the
 * queue past the departure: if Rust `abandoned` the peer's input (it left while this queue was
 * stuck for `closeTimeoutMs`), the queue is dropped now; if a handler is still running, the queue
 * gets `closeTimeoutMs` more before it is dropped. Buffered messages (no handler) are dropped. A
 * running handler keeps running but no longer counts against the inbound bound.
 */
export function closeQueue(conn: ConnectionState, x: Extra, abandoned: boolean): void {
  const running = conn._running
  if (running !== null) settle(conn, running)
  for (const dropped of x.buffered?.splice(0) ?? []) drop(conn, dropped)
  if (abandoned) dropQueue(conn)
  else if (running !== null && conn._queue?.length) {
    setTimeout(() => {
      if (conn._running === running) dropQueue(conn)
    }, conn._ns.server._closeTimeoutMs).unref()
  }
}
