// One WebSocket as the application sees it (the public `Connection`): identity, handlers, publish,
// requests, rooms, user, close. The work is done by the modules it delegates to, which operate on
// its fields (see state.ts): dispatch-queue (ordering, acks, inbound budget, close policy),
// inbound-messages, inbound-requests, outbound-requests; handlers are kept in handler stores.

import { abort, closeQueue, enqueue, replayBuffered, settle } from './dispatch-queue'
import {
  CLOSE,
  RAW,
  storeGet,
  storeSet,
  type CloseFn,
  type CloseSlot,
  type Handler,
  type HandlerKey,
  type InboundHandler,
  type MessageFn,
  type RawFn,
  type RequestFn,
} from './handler-store'
import { messageFailed, runMessage } from './inbound-messages'
import {
  abandonRequests,
  receiveRequest,
  refuseUnavailable,
  requestFailed,
  runRequest,
} from './inbound-requests'
import type { Namespace } from './namespace'
import { receiveReply, rejectPending, sendRequest } from './outbound-requests'
import { CloseCode, assertSendableCode } from './protocol/close-codes'
import { hasEvent } from './protocol/contract'
import type { EnvelopeMeta } from './protocol/envelope'
import {
  State,
  isPromiseLike,
  more,
  type ConnectionHandlers,
  type ConnectionState,
  type Extra,
  type InboundRequest,
  type Queued,
} from './state'
import { traceOf, type Telemetry } from './telemetry'
import type { CloseInfo, ConnectionStats, RequestOptions, TraceContext } from './types'
import { parseHead, unpackHead, type KeptRequest, type ParsedRequest } from './upgrade-request'

export class Connection implements ConnectionState {
  // The fields (no initialisers: the constructor sets each, in this order, so every connection
  // has one shape). See ConnectionState for what each holds.
  readonly _ns: Namespace
  readonly _nid: number
  _req: KeptRequest | null | undefined
  remoteAddress: string
  protocol: string | undefined
  userId: string | undefined
  data: unknown
  readonly _openedAt: number
  _state: number
  _handlers: ConnectionHandlers
  _queue: Queued[] | null
  _running: Queued | null
  _rooms: string | Set<string> | null
  _x: Extra | null

  /**
   * @param ns namespace record (`ns.server` is the server)
   * @param request the packed request head, or the parsed request
   * @param openedAt ms since `server._epoch` (a small integer while it fits one)
   */
  constructor(
    ns: Namespace,
    nativeId: number,
    request: KeptRequest | null | undefined,
    remoteAddress: string,
    protocol: string | undefined,
    userId: string | undefined,
    data: unknown,
    openedAt: number,
  ) {
    this._ns = ns
    this._nid = nativeId
    this._req = request
    this.remoteAddress = remoteAddress
    this.protocol = protocol
    this.userId = userId
    this.data = data
    this._openedAt = openedAt
    this._state = 0
    this._handlers = null
    this._queue = null
    this._running = null
    this._rooms = null
    this._x = null
  }

  /** Unique id of this connection across every node: `${server.nodeId}:${n}`. */
  get id(): string {
    return this._ns.server._idPrefix + this._nid
  }

  get namespace(): string {
    return this._ns.name
  }

  /** Unix time (ms) the connection opened. */
  get openedAt(): number {
    return this._ns.server._epoch + this._openedAt
  }

  /** Rooms this connection has joined. */
  get rooms(): Set<string> {
    const rooms = this._rooms
    if (rooms !== null && typeof rooms === 'object') return rooms
    return (this._rooms = rooms === null ? new Set() : new Set([rooms]))
  }

  get headers(): Record<string, string> {
    return this._parsedRequest().headers
  }

  get url(): string {
    return this._parsedRequest().url
  }

  get query(): Record<string, string> {
    return this._parsedRequest().query
  }

  /** Unix time (ms) of the last bytes received (any frame, pongs included). */
  get lastSeenAt(): number {
    if ((this._state & State.CLOSED) === 0) {
      const seen = this._ns.server._native.lastSeen(this._nid)
      if (seen != null) more(this).lastSeenAt = seen
    }
    return this._x?.lastSeenAt ?? this.openedAt
  }

  _parsedRequest(): ParsedRequest {
    let request = this._req
    if (request === undefined || request === null || typeof request === 'string') {
      request = this._req = parseHead(request == null ? 'GET / HTTP/1.1\r\n\r\n' : unpackHead(request))
    }
    return request
  }

  get isOpen(): boolean {
    return (this._state & State.CLOSING) === 0
  }

  /** Traffic so far (zeros once closed: the connection is gone from Rust). */
  get stats(): ConnectionStats {
    const t = this._state & State.CLOSED ? null : this._ns.server._native.connectionStats(this._nid)
    const [messagesReceived = 0, bytesReceived = 0, messagesSent = 0, bytesSent = 0, queuedMessages = 0, queuedBytes = 0] = t ?? []
    const pendingMessages = (this._queue?.length ?? 0) + (this._x?.buffered?.length ?? 0)
    return { messagesReceived, bytesReceived, messagesSent, bytesSent, queuedMessages, queuedBytes, pendingMessages }
  }

  /** The upgrade request's `traceparent` header, parsed (a new span id for the connection). */
  get trace(): TraceContext | undefined {
    const x = more(this)
    if (x.trace === undefined) x.trace = traceOf(this._ns.server._telemetry, this, { traceparent: this.headers.traceparent }) ?? null
    return x.trace ?? undefined
  }

  /** Whether this connection negotiated permessage-deflate. */
  get compression(): boolean {
    return (this._state & State.CLOSED) === 0 && this._ns.server._native.compression(this._nid)
  }

  /** Last heartbeat round-trip in milliseconds (undefined before the first pong). */
  get rtt(): number | undefined {
    const ms = this._state & State.CLOSED ? null : this._ns.server._native.rtt(this._nid)
    return ms ? ms : undefined
  }

  onMessage(event: string, handler: MessageFn): this {
    if (typeof handler !== 'function') throw new TypeError('onMessage needs a handler function')
    const contract = this._ns.contract
    if (contract && !hasEvent(contract.in, event)) {
      throw new TypeError(`Unknown inbound event "${event}": it is not in the contract's "in" map`)
    }
    this._handlers = storeSet(this._handlers, event, handler)
    replayBuffered(this, event)
    return this
  }

  /**
   * Answer the client's request `name`: `handler(input, ctx)` returns (or resolves to) the output.
   * Requests share the connection's queue with messages; requests with no handler yet are buffered.
   */
  onRequest(name: string, handler: RequestFn): this {
    if (typeof handler !== 'function') throw new TypeError('onRequest needs a handler function')
    if (this._ns.raw) throw new TypeError('raw-mode namespaces have no requests')
    const contract = this._ns.contract
    if (contract && !hasEvent(contract.requests, name)) {
      throw new TypeError(`Unknown request "${name}": it is not in the contract's "requests" map`)
    }
    const x = more(this)
    x.requestHandlers = storeSet(x.requestHandlers, name, handler)
    replayBuffered(this, name, true)
    return this
  }

  /** Asks the client; see outbound-requests. */
  request(name: string, data: unknown, options: RequestOptions = {}): Promise<unknown> {
    return sendRequest(this, name, data, options)
  }

  /** Raw-mode namespaces: `handler(data, conn)` with each message as a string (text) or Buffer (binary). */
  onRawMessage(handler: RawFn): this {
    if (!this._ns.raw) throw new TypeError('onRawMessage is for raw-mode namespaces (messageFormat: "raw")')
    this._handlers = storeSet(this._handlers, RAW, handler)
    replayBuffered(this, RAW)
    return this
  }

  /** Sends one event; true when it was queued (false once the connection is closing). */
  publish(event: string, data: unknown): boolean {
    const ns = this._ns
    const server = ns.server
    const tel = server._telemetry
    const payload = server._serialise(ns, 'connection', event, data, this)
    server._metrics.connectionPublishes++
    const sent = (this._state & State.CLOSED) === 0 && server._send(this._nid, payload)
    if (tel.warn) publishedTo(tel, this, event, data, sent)
    server._tracing?.published(ns.name, 'connection', event, sent ? 1 : 0)
    return sent
  }

  /** Raw-mode send: a string goes as a text frame, a Buffer/Uint8Array as a binary frame. True when queued. */
  sendRaw(data: string | Uint8Array): boolean {
    if (this._state & State.CLOSED) return false
    const native = this._ns.server._output()
    if (typeof data === 'string') return native.send(this._nid, data)
    return native.sendBinary(this._nid, Buffer.isBuffer(data) ? data : Buffer.from(data))
  }

  onClose(handler: CloseFn): this {
    if (this._state & State.CLOSED) {
      const { code, reason } = (this._x as Extra).closeInfo as CloseInfo
      queueMicrotask(() => this._callSafely(handler, code, reason))
    } else {
      // One handler is stored as is, more as an array (a non-function goes in an array too, so
      // the two cannot be confused; calling it reports the TypeError as before).
      const before = storeGet(this._handlers, CLOSE) as CloseSlot | undefined
      let after: CloseSlot
      if (before === undefined) after = typeof handler === 'function' ? handler : [handler]
      else if (typeof before === 'function') after = [before, handler]
      else (after = before).push(handler)
      this._handlers = storeSet(this._handlers, CLOSE, after)
    }
    return this
  }

  waitForClose(): Promise<CloseInfo> {
    if (this._state & State.CLOSED) return Promise.resolve({ ...((this._x as Extra).closeInfo as CloseInfo) })
    const x = more(this)
    return new Promise((resolve) => (x.closeWaiters ??= []).push(resolve))
  }

  join(room: string): this {
    if (this.isOpen) {
      const name = String(room)
      this._ns.server._native.join(this._nid, name)
      const rooms = this._rooms
      if (rooms === null) this._rooms = name
      else if (typeof rooms === 'string') {
        if (rooms !== name) this._rooms = new Set([rooms, name])
      } else rooms.add(name)
    }
    return this
  }

  leave(room: string): this {
    const rooms = this._rooms
    if (rooms === null) return this
    const name = String(room)
    let left
    if (typeof rooms === 'string') {
      left = rooms === name
      if (left) this._rooms = null
    } else {
      left = rooms.delete(name)
    }
    if (left && (this._state & State.CLOSED) === 0) this._ns.server._native.leave(this._nid, name)
    return this
  }

  setUserId(userId: string): this {
    if (typeof userId !== 'string' || userId === '') throw new TypeError('setUserId needs a non-empty string')
    if ((this._state & State.CLOSED) === 0) this._ns.server._native.setUser(this._nid, userId)
    this.userId = userId
    return this
  }

  clearUserId(): this {
    if ((this._state & State.CLOSED) === 0) this._ns.server._native.setUser(this._nid, null)
    this.userId = undefined
    return this
  }

  close(code: number = CloseCode.NORMAL, reason: string = ''): void {
    assertSendableCode(code)
    if (!this.isOpen) return
    this._state |= State.CLOSING
    this._ns.server._output().close(this._nid, code, String(reason))
  }

  // ---- called by the server ----

  /** A message; `size` is what Rust's inbound budget charged for it. */
  _receive(event: string | undefined, data: unknown, meta: EnvelopeMeta | null | undefined, size: number): void {
    enqueue(this, { event, data, meta, acked: false, ahead: false, request: false, size })
  }

  /** A request from the client; `rawId` is its id's JSON text, echoed verbatim in the reply. */
  _receiveRequest(event: string, data: unknown, meta: EnvelopeMeta | null, rawId: string, size: number): void {
    receiveRequest(this, event, data, meta, rawId, size)
  }

  /** A reply to `conn.request`: settles its promise now, whatever the queue is doing. */
  _receiveReply(id: unknown, data: unknown, error: unknown): void {
    receiveReply(this, id, data, error)
  }

  /** Messages that arrived before their handler (`server.onMessage`/`onRequest`/`onRawMessage`) existed run now. */
  _replayBuffered(key: HandlerKey, requests: boolean): void {
    replayBuffered(this, key, requests)
  }

  /**
   * The connection is gone (`abandoned`: Rust gave up on input the peer left behind). Closes the
   * queue (see dispatch-queue#closeQueue), abandons requests in both directions, then calls the
   * `onClose` handlers and resolves `waitForClose`.
   */
  _closed(code: number, reason: string, abandoned: boolean): void {
    const x = more(this)
    x.closeInfo = { code, reason }
    this._state |= State.CLOSING | State.CLOSED
    if (typeof this._rooms === 'string') this._rooms = null
    else this._rooms?.clear()
    closeQueue(this, x, abandoned)
    abandonRequests(x)
    rejectPending(x, code)
    const handlers = storeGet(this._handlers, CLOSE) as CloseSlot | undefined
    if (handlers !== undefined) {
      this._handlers = storeSet(this._handlers, CLOSE, undefined)
      if (typeof handlers === 'function') this._callSafely(handlers, code, reason)
      else for (const handler of handlers) this._callSafely(handler, code, reason)
    }
    for (const resolve of x.closeWaiters?.splice(0) ?? []) resolve({ code, reason })
  }

  /** Closes for a fault and drops what is still queued (an `onConnection` handler failed). */
  _abort(code: number, reason: string): void {
    abort(this, code, reason)
  }

  // ---- called by the dispatch queue ----

  _run(handler: Handler, message: Queued): unknown {
    return message.request ? runRequest(this, handler as RequestFn, message) : runMessage(this, handler as InboundHandler, message)
  }

  _failed(error: unknown, message: Queued): void {
    if (message.request) {
      requestFailed(this, message, error)
      settle(this, message)
      return
    }
    messageFailed(this, error, message)
  }

  _refuse(request: InboundRequest): void {
    refuseUnavailable(this, request)
  }

  _callSafely(handler: CloseFn, code: number, reason: string): void {
    try {
      const r = handler(code, reason)
      if (isPromiseLike(r)) r.then(undefined, (e) => this._ns.server._reportError(e, this))
    } catch (error) {
      this._ns.server._reportError(error, this)
    }
  }
}

/** `ws.publish.sent` (debug), or `ws.publish.dropped` (warn) when the connection is closing or its queue overflowed. */
function publishedTo(tel: Telemetry, conn: Connection, event: string, data: unknown, sent: boolean): void {
  if (sent) {
    if (tel.debug) tel.emit('ws.publish.sent', conn, { target: 'connection', event, delivered: 1, payload: tel.previewOf(data) })
  } else if (tel.warn) {
    tel.emit('ws.publish.dropped', conn, { target: 'connection', event, reason: conn.isOpen ? 'queue overflow' : 'connection closing' })
  }
}
