// The layout of one connection's state, shared by the modules that work on it (dispatch-queue,
// inbound-messages, inbound-requests, outbound-requests, connection). An idle connection should
// cost as little JS heap as possible (there may be 100k of them), so a Connection holds only what
// every connection needs, in as few fields as possible: the id, the namespace and `openedAt` are
// derived on read, collections are created on first use, flags share one small integer
// (`_state`), and the rarely used state lives in one lazily created `Extra`. Those modules are
// functions over a connection (`ConnectionState`), not objects of their own, so splitting the
// code in modules adds no field and no allocation to a connection.

import type { CloseSlot, Conn, Handler, HandlerStore, InboundHandler, RequestFn } from './handler-store'
import type { Namespace } from './namespace'
import type { EnvelopeMeta } from './protocol/envelope'
import type { CloseInfo, TraceContext } from './types'
import type { KeptRequest } from './upgrade-request'

/**
 * Connection._state bits. A const enum: uses compile to the number itself (these are read on
 * every message, in several modules).
 */
export const enum State {
  /** The queue is being pumped, or waits for an async handler. */
  RUNNING = 1,
  /** Closing: `close()`/`abort` started the handshake, or the close event arrived. */
  CLOSING = 2,
  /** The close event arrived (`_x.closeInfo` is set). Implies CLOSING. */
  CLOSED = 4,
}

/** A connection's own handlers by event (or RAW), and its `onClose` handlers (CLOSE; undefined once called). */
export type ConnectionHandlers = HandlerStore<InboundHandler | CloseSlot | undefined>

/** What a message or request run returns when its data was refused (not `ws.message.dispatched`). */
export const REJECTED: unique symbol = Symbol('rejected')

/** A message from the client, queued, buffered or running until settled. */
export interface QueuedMessage {
  /** undefined for raw messages */
  event: string | undefined
  data: unknown
  meta: EnvelopeMeta | null | undefined
  /** Acknowledged to Rust (its inflight slot is free). */
  acked: boolean
  /** Acknowledged early while replies are awaited (counted in `Extra#ahead`). */
  ahead: boolean
  request: false
  /** What Rust's inbound budget charged for it; zeroed when released. */
  size: number
}

/** A request from the client: a message that gets exactly one reply. */
export interface InboundRequest {
  event: string
  data: unknown
  meta: EnvelopeMeta | null | undefined
  acked: boolean
  ahead: boolean
  request: true
  size: number
  /** Its id's JSON text, echoed verbatim in the reply. */
  rawId: string
  /** Answered (or abandoned): nothing more is sent for it. */
  done: boolean
  timer: ReturnType<typeof setTimeout> | undefined
  /** Created when the handler reads `ctx.signal`. */
  controller: AbortController | undefined
  abortReason: unknown
}

/** What a connection's queue holds. */
export type Queued = QueuedMessage | InboundRequest

/** A server → client request awaiting its reply. */
export interface PendingRequest {
  name: string
  resolve: (value: unknown) => void
  reject: (reason: unknown) => void
  timer: ReturnType<typeof setTimeout> | undefined
}

/**
 * Per-connection state most connections never need, created on first use: requests in both
 * directions, messages buffered for a handler, and close bookkeeping.
 */
export class Extra {
  requestHandlers: HandlerStore<RequestFn>
  /** Client → server requests received and not answered yet, by id JSON text (bound: those queued, buffered or running). */
  inbound: Map<string, InboundRequest> | null
  /** Server → client requests awaiting a reply, by id. */
  outbound: Map<number, PendingRequest> | null
  nextRequestId: number
  /** Queued messages acknowledged early while replies are awaited (see `readAhead`). */
  ahead: number
  /** Messages with no handler yet; bound: `maxBufferedMessages` (oldest dropped). */
  /** `conn.trace`, parsed on first read (null: the upgrade had none or an invalid one). */
  trace: TraceContext | null | undefined
  buffered: Queued[] | null
  /** `{ code, reason }` once closed. */
  closeInfo: CloseInfo | undefined
  closeWaiters: ((info: CloseInfo) => void)[] | null
  /** Last `lastSeenAt` read while open (what it returns once closed). */
  lastSeenAt: number | undefined

  constructor() {
    this.requestHandlers = null
    this.inbound = null
    this.outbound = null
    this.nextRequestId = 0
    this.ahead = 0
    this.buffered = null
    this.trace = undefined
    this.closeInfo = undefined
    this.closeWaiters = null
    this.lastSeenAt = undefined
  }
}

/**
 * A Connection as its modules see it: the public API, every field (all of them: adding one here
 * adds 8 bytes to every connection), and the calls the dispatch queue makes back into it.
 */
export interface ConnectionState extends Conn {
  /** Namespace record; `_ns.server` is the server. */
  readonly _ns: Namespace
  /** Native id (Rust's). */
  readonly _nid: number
  /** The packed request head until someone reads headers/url/query, then the parsed request. */
  _req: KeptRequest | null | undefined
  remoteAddress: string
  protocol: string | undefined
  userId: string | undefined
  data: unknown
  /** ms since `server._epoch` (a small integer while it fits one). */
  readonly _openedAt: number
  /** State bits (RUNNING | CLOSING | CLOSED). */
  _state: number
  /** `onMessage`/`onRawMessage` handlers by event (or RAW), and the `onClose` handlers (CLOSE). */
  _handlers: ConnectionHandlers
  /**
   * Messages waiting for their turn. Bound: what Rust delivers before it pauses this socket
   * (`maxInflightMessages` plus one read), plus as many again read ahead while the connection
   * awaits replies (`readAhead`); all of it counts against `maxPendingBytes` too.
   */
  _queue: Queued[] | null
  /** The message whose async handler the queue is waiting for (null when none). */
  _running: Queued | null
  /** null, one room name (a string), or a Set once `rooms` was read or a second room joined. */
  _rooms: string | Set<string> | null
  _x: Extra | null

  /** Runs `message` with `handler`; returns a promise only when something is asynchronous. */
  _run(handler: Handler, message: Queued): unknown
  /** `message`'s handler threw or rejected. */
  _failed(error: unknown, message: Queued): void
  /** A request pushed out of the buffer (no handler, too many waiting): answer `unavailable`. */
  _refuse(request: InboundRequest): void
}

/** The test the dispatcher applies to a handler's result: is it something to wait for? */
export function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return !!value && typeof (value as { then?: unknown }).then === 'function'
}

/** The connection's `Extra`, created on first use. */
export function more(conn: ConnectionState): Extra {
  return (conn._x ??= new Extra())
}
