'use strict'
// One WebSocket as the application sees it: typed handlers run one message at a time in arrival
// order (async handlers are awaited), messages for events without a handler yet are buffered,
// and every handled message is acknowledged so Rust can resume reading a paused socket.
//
// Every message also carries its `size`, charged to Rust's global inbound budget
// (`maxPendingBytes`) until it is handled or dropped: `_settle` releases it exactly once (the
// size is zeroed), whether the message ran, was buffered and then dropped, or was dropped because
// its connection ended. Queued, buffered and running messages all count, so connections that come
// and go cannot pile up work in JS beyond the bound.
//
// Requests from the client share that queue (a request is a message that gets a reply). Replies
// to the server's own requests (`conn.request`) never queue: they settle their promise as soon as
// the batch arrives, so a handler awaiting one cannot deadlock its own connection.

const { hasEvent, serialisableIssues, describeIssues, validateClientRequest } = require('./contract')
const { parseHead, unpackHead } = require('./request')
const { CloseCode, Reason, assertSendableCode } = require('./close-codes')
const { RequestError, RequestErrorCode, isPublicError, errorBody, fromClientError } = require('./requests')

const isThenable = (v) => v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function'

/** What a request handler receives as its second argument. */
class RequestContext {
  constructor(request, conn) {
    this._request = request
    this.conn = conn
  }

  get event() {
    return this._request.event
  }

  /** `meta` of the envelope (trace context), if the client sent one. */
  get meta() {
    return this._request.meta ?? undefined
  }

  /** The request id as the client sent it (string or number). */
  get id() {
    return JSON.parse(this._request.rawId)
  }

  /** Aborted when the request times out or the connection closes before the handler answers. */
  get signal() {
    const request = this._request
    if (!request.controller) {
      request.controller = new AbortController()
      if (request.abortReason) request.controller.abort(request.abortReason)
    }
    return request.controller.signal
  }
}

/** Handler key for raw-mode namespaces (no envelope). */
const RAW = Symbol('raw')
/** Handler-store key of the `onClose` handlers: one function, or an array of them. */
const CLOSE = Symbol('close')

// Handler stores (`onMessage`/`onRawMessage`/`onClose` handlers, and `onRequest` handlers) map a
// key to a handler: null while empty, then a flat `[key, handler, key, handler, …]` array for up
// to 8 keys (exactly sized: 48 + 16 bytes per key, a third to a half of a Map; a linear scan of a
// few keys is at least as fast as Map#get), then a Map.
/** Array length (2 per key) up to which a store stays flat. */
const FLAT_MAX = 16

function storeGet(store, key) {
  if (!store) return undefined
  if (!Array.isArray(store)) return store.get(key)
  for (let i = 0; i < store.length; i += 2) if (store[i] === key) return store[i + 1]
  return undefined
}

/** Sets `key` to `value`; returns the store to keep (a new one when it had to grow). */
function storeSet(store, key, value) {
  if (!store) return [key, value]
  if (!Array.isArray(store)) return store.set(key, value)
  const n = store.length
  for (let i = 0; i < n; i += 2) {
    if (store[i] === key) {
      store[i + 1] = value
      return store
    }
  }
  if (n < FLAT_MAX) return store.concat([key, value]) // push would over-allocate (n + n/2 + 16 slots)
  const map = new Map()
  for (let i = 0; i < n; i += 2) map.set(store[i], store[i + 1])
  return map.set(key, value)
}

// Connection._state bits.
/** `_pump` is running, or waiting for an async handler. */
const RUNNING = 1
/** Closing: `close()`/`_abort` started the handshake, or the close event arrived. */
const CLOSING = 2
/** The close event arrived (`_x.closeInfo` is set). Implies CLOSING. */
const CLOSED = 4

/**
 * Per-connection state most connections never need, created on first use: requests in both
 * directions, messages buffered for a handler, and close bookkeeping.
 */
class Extra {
  constructor() {
    this.requestHandlers = null
    /** Client → server requests received and not answered yet, by id JSON text (bound: those queued, buffered or running). */
    this.inbound = null
    /** Server → client requests awaiting a reply, by id. */
    this.outbound = null
    this.nextRequestId = 0
    /** Queued messages acknowledged early while replies are awaited (see `_readAhead`). */
    this.ahead = 0
    /** Messages with no handler yet; bound: `maxBufferedMessages` (oldest dropped). */
    this.buffered = null
    /** `{ code, reason }` once closed. */
    this.closeInfo = undefined
    this.closeWaiters = null
    /** Last `lastSeenAt` read while open (what it returns once closed). */
    this.lastSeenAt = undefined
  }
}

// An idle connection should cost as little JS heap as possible (there may be 100k of them), so a
// Connection holds only what every connection needs, in as few fields as possible: the id, the
// namespace and `openedAt` are derived on read, collections are created on first use, flags share
// one small integer, and the rarely used state lives in one lazily created `Extra`.
class Connection {
  /**
   * @param ns namespace record (`ns.server` is the Server)
   * @param {number} nativeId
   * @param {string | object | undefined} request the raw request head, or the parsed request
   * @param {number} openedAt ms since `server._epoch` (a small integer while it fits one)
   */
  constructor(ns, nativeId, request, remoteAddress, protocol, userId, data, openedAt) {
    this._ns = ns
    this._nid = nativeId
    /** The packed request head (see packHead) until someone reads headers/url/query, then the parsed request. */
    this._req = request
    this.remoteAddress = remoteAddress
    this.protocol = protocol
    this.userId = userId
    this.data = data
    this._openedAt = openedAt
    this._state = 0
    this._handlers = null
    /**
     * Messages waiting for their turn. Bound: what Rust delivers before it pauses this socket
     * (`maxInflightMessages` plus one read), plus as many again read ahead while the connection
     * awaits replies (`_readAhead`); all of it counts against `maxPendingBytes` too.
     */
    this._queue = null
    /** The message whose async handler the queue is waiting for (null when none). */
    this._running = null
    /** null, one room name (a string), or a Set once `rooms` was read or a second room joined. */
    this._rooms = null
    /** @type {Extra | null} */
    this._x = null
  }

  /** Unique id of this connection across every node: `${server.nodeId}:${n}`. */
  get id() {
    return this._ns.server._idPrefix + this._nid
  }

  get namespace() {
    return this._ns.name
  }

  /** Unix time (ms) the connection opened. */
  get openedAt() {
    return this._ns.server._epoch + this._openedAt
  }

  /** Rooms this connection has joined. */
  get rooms() {
    const rooms = this._rooms
    if (rooms !== null && typeof rooms === 'object') return rooms
    return (this._rooms = rooms === null ? new Set() : new Set([rooms]))
  }

  get headers() {
    return this._parsedRequest().headers
  }

  get url() {
    return this._parsedRequest().url
  }

  get query() {
    return this._parsedRequest().query
  }

  /** Unix time (ms) of the last bytes received (any frame, pongs included). */
  get lastSeenAt() {
    if ((this._state & CLOSED) === 0) {
      const seen = this._ns.server._native.lastSeen(this._nid)
      if (seen != null) this._more().lastSeenAt = seen
    }
    return this._x?.lastSeenAt ?? this.openedAt
  }

  _parsedRequest() {
    let request = this._req
    if (request === undefined || request === null || typeof request === 'string') {
      request = this._req = parseHead(request == null ? 'GET / HTTP/1.1\r\n\r\n' : unpackHead(request))
    }
    return request
  }

  _more() {
    return (this._x ??= new Extra())
  }

  get isOpen() {
    return (this._state & CLOSING) === 0
  }

  /** Last heartbeat round-trip in milliseconds (undefined before the first pong). */
  get rtt() {
    const ms = this._state & CLOSED ? null : this._ns.server._native.rtt(this._nid)
    return ms ? ms : undefined
  }

  onMessage(event, handler) {
    if (typeof handler !== 'function') throw new TypeError('onMessage needs a handler function')
    const contract = this._ns.contract
    if (contract && !hasEvent(contract.in, event)) {
      throw new TypeError(`Unknown inbound event "${event}": it is not in the contract's "in" map`)
    }
    this._handlers = storeSet(this._handlers, event, handler)
    this._replayBuffered(event)
    return this
  }

  /**
   * Answer the client's request `name`: `handler(input, ctx)` returns (or resolves to) the output.
   * Requests share the connection's queue with messages; requests with no handler yet are buffered.
   */
  onRequest(name, handler) {
    if (typeof handler !== 'function') throw new TypeError('onRequest needs a handler function')
    if (this._ns.raw) throw new TypeError('raw-mode namespaces have no requests')
    const contract = this._ns.contract
    if (contract && !hasEvent(contract.requests, name)) {
      throw new TypeError(`Unknown request "${name}": it is not in the contract's "requests" map`)
    }
    const x = this._more()
    x.requestHandlers = storeSet(x.requestHandlers, name, handler)
    this._replayBuffered(name, true)
    return this
  }

  /**
   * Ask the client: sends `{event, data, id}` and resolves with the `data` of its reply (validated
   * against the output schema). Rejects with a `RequestError` on an error reply, a timeout or when
   * the connection closes first. Unknown names and invalid data throw synchronously, like publish.
   */
  request(name, data, options = {}) {
    if (typeof name !== 'string' || name === '') throw new TypeError('request name must be a non-empty string')
    if (this._ns.raw) throw new TypeError('raw-mode namespaces have no requests')
    const server = this._ns.server
    const value = validateClientRequest(this._ns.contract, name, data)
    const timeoutMs = options?.timeoutMs ?? server._requestTimeoutMs
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) {
      throw new TypeError(`timeoutMs must be a non-negative number, got ${timeoutMs}`)
    }
    const x = this._more()
    const id = ++x.nextRequestId
    const payload = `{"event":${JSON.stringify(name)},"data":${JSON.stringify(value) ?? 'null'},"id":${id}}`
    if (!this.isOpen) return Promise.reject(closedBeforeReply(name))
    return new Promise((resolve, reject) => {
      const pending = { name, resolve, reject, timer: undefined }
      ;(x.outbound ??= new Map()).set(id, pending)
      if (timeoutMs > 0) {
        pending.timer = setTimeout(() => {
          if (x.outbound.get(id) !== pending) return
          x.outbound.delete(id)
          reject(new RequestError(RequestErrorCode.TIMEOUT, `Client request "${name}" timed out after ${timeoutMs} ms`))
        }, timeoutMs)
      }
      if (!server._native.send(this._nid, payload)) {
        x.outbound.delete(id)
        clearTimeout(pending.timer)
        reject(closedBeforeReply(name))
        return
      }
      this._readAhead()
    })
  }

  /** Raw-mode namespaces: receive each message as a string (text) or Buffer (binary). */
  onRawMessage(handler) {
    this._handlers = storeSet(this._handlers, RAW, handler)
    this._replayBuffered(RAW)
    return this
  }

  /** Sends one event; true when it was queued (false once the connection is closing). */
  publish(event, data) {
    const ns = this._ns
    const payload = ns.server._serialise(ns, event, data)
    return (this._state & CLOSED) === 0 && ns.server._native.send(this._nid, payload)
  }

  /** Raw-mode send: a string goes as a text frame, a Buffer/Uint8Array as a binary frame. True when queued. */
  sendRaw(data) {
    if (this._state & CLOSED) return false
    const native = this._ns.server._native
    if (typeof data === 'string') return native.send(this._nid, data)
    return native.sendBinary(this._nid, Buffer.isBuffer(data) ? data : Buffer.from(data))
  }

  onClose(handler) {
    if (this._state & CLOSED) {
      const { code, reason } = this._x.closeInfo
      queueMicrotask(() => this._callSafely(handler, code, reason))
    } else {
      // One handler is stored as is, more as an array (a non-function goes in an array too, so
      // the two cannot be confused; calling it reports the TypeError as before).
      const before = storeGet(this._handlers, CLOSE)
      let after
      if (before === undefined) after = typeof handler === 'function' ? handler : [handler]
      else if (typeof before === 'function') after = [before, handler]
      else (after = before).push(handler)
      this._handlers = storeSet(this._handlers, CLOSE, after)
    }
    return this
  }

  waitForClose() {
    if (this._state & CLOSED) return Promise.resolve({ ...this._x.closeInfo })
    const x = this._more()
    return new Promise((resolve) => (x.closeWaiters ??= []).push(resolve))
  }

  join(room) {
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

  leave(room) {
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
    if (left && (this._state & CLOSED) === 0) this._ns.server._native.leave(this._nid, name)
    return this
  }

  setUserId(userId) {
    if (typeof userId !== 'string' || userId === '') throw new TypeError('setUserId needs a non-empty string')
    if ((this._state & CLOSED) === 0) this._ns.server._native.setUser(this._nid, userId)
    this.userId = userId
    return this
  }

  clearUserId() {
    if ((this._state & CLOSED) === 0) this._ns.server._native.setUser(this._nid, null)
    this.userId = undefined
    return this
  }

  close(code = CloseCode.NORMAL, reason = '') {
    assertSendableCode(code)
    if (!this.isOpen) return
    this._state |= CLOSING
    this._ns.server._native.close(this._nid, code, String(reason))
  }

  // ---- called by the server ----

  /** A message; `size` is what Rust's inbound budget charged for it. */
  _receive(event, data, meta, size) {
    this._enqueue({ event, data, meta, acked: false, ahead: false, request: false, size })
  }

  /** A request from the client; `rawId` is its id's JSON text, echoed verbatim in the reply. */
  _receiveRequest(event, data, meta, rawId, size) {
    if (this._x?.inbound?.has(rawId)) {
      // The original keeps running and gets its own reply; only the duplicate is refused.
      this._ack()
      this._ns.server._release(size)
      this._sendReply(rawId, `"error":${errorJson(RequestErrorCode.DUPLICATE_ID, 'A request with this id is already in flight')}`)
      return
    }
    const request = { event, data, meta, acked: false, ahead: false, request: true, size, rawId, done: false, timer: undefined, controller: undefined, abortReason: undefined }
    ;(this._more().inbound ??= new Map()).set(rawId, request)
    const timeoutMs = this._ns.server._requestTimeoutMs
    if (timeoutMs > 0) request.timer = setTimeout(() => this._requestTimedOut(request, timeoutMs), timeoutMs)
    this._enqueue(request)
  }

  /** A reply to `conn.request`: settles its promise now, whatever the queue is doing. */
  _receiveReply(id, data, error) {
    this._ack()
    const pending = typeof id === 'number' ? this._x?.outbound?.get(id) : undefined
    if (!pending) {
      this._ns.server._stats.unknownReplies++
      return
    }
    this._x.outbound.delete(id)
    clearTimeout(pending.timer)
    if (error) return pending.reject(fromClientError(error))
    const spec = this._ns.contract?.clientRequests[pending.name]
    if (!spec) return pending.resolve(data)
    const settle = (r) => {
      if (r.issues) {
        const message = `Invalid reply to client request "${pending.name}": ${describeIssues(r.issues)}`
        pending.reject(new RequestError(RequestErrorCode.INVALID_OUTPUT, message, { issues: serialisableIssues(r.issues) }))
      } else {
        pending.resolve(r.value)
      }
    }
    try {
      const result = spec.output['~standard'].validate(data)
      if (isThenable(result)) result.then(settle, pending.reject)
      else settle(result)
    } catch (e) {
      pending.reject(e)
    }
  }

  _enqueue(message) {
    const x = this._x
    if (x !== null && x.outbound !== null && x.outbound.size > 0) this._readAhead(message)
    // Not running means nothing is queued: run it now. The queue (an array) exists only on
    // connections that ever had a backlog (async handlers, or messages arriving from a handler).
    if ((this._state & RUNNING) === 0) this._pump(message)
    else if (this._queue === null) this._queue = [message]
    else this._queue.push(message)
  }

  /** Counts one handled message towards the next acknowledgement to Rust. */
  _ack() {
    if ((this._state & CLOSED) === 0) this._ns.server._ack(this._nid)
  }

  /**
   * While this connection awaits replies from its client, queued messages are acknowledged on
   * arrival (at most `maxInflightMessages` of them at a time), so Rust keeps reading the socket
   * and finds the reply even when the handler at the head of the queue is the one waiting for it.
   * With `message`, only that one is considered; otherwise the whole queue.
   */
  _readAhead(message) {
    const max = this._ns.server._maxInflightMessages
    const x = this._more()
    for (const m of message ? [message] : (this._queue ?? [])) {
      if (x.ahead >= max) return
      if (!m.acked) {
        m.acked = true
        m.ahead = true
        x.ahead++
        this._ack()
      }
    }
  }

  /**
   * The connection is gone. Messages it sent that are still queued keep running in order (as
   * with `ws`, a message that arrived is handled), except when a handler holds the queue past the
   * departure: if Rust `abandoned` the peer's input (it left while this queue was stuck for
   * `closeTimeoutMs`), the queue is dropped now; if a handler is still running, the queue gets
   * `closeTimeoutMs` more before it is dropped. Buffered messages (no handler) are dropped. A
   * running handler keeps running but no longer counts against the inbound bound.
   */
  _closed(code, reason, abandoned) {
    const x = this._more()
    x.closeInfo = { code, reason }
    this._state |= CLOSING | CLOSED
    if (typeof this._rooms === 'string') this._rooms = null
    else this._rooms?.clear()
    const running = this._running
    if (running !== null) this._settle(running)
    for (const dropped of x.buffered?.splice(0) ?? []) this._drop(dropped)
    if (abandoned) this._dropQueue()
    else if (running !== null && this._queue?.length) {
      setTimeout(() => {
        if (this._running === running) this._dropQueue()
      }, this._ns.server._closeTimeoutMs).unref()
    }
    for (const request of x.inbound?.values() ?? []) this._abandon(request, closedBeforeReply(request.event))
    x.inbound?.clear()
    for (const [id, pending] of x.outbound ?? []) {
      x.outbound.delete(id)
      clearTimeout(pending.timer)
      pending.reject(closedBeforeReply(pending.name, code))
    }
    const handlers = storeGet(this._handlers, CLOSE)
    if (handlers !== undefined) {
      this._handlers = storeSet(this._handlers, CLOSE, undefined)
      if (typeof handlers === 'function') this._callSafely(handlers, code, reason)
      else for (const handler of handlers) this._callSafely(handler, code, reason)
    }
    for (const resolve of x.closeWaiters?.splice(0) ?? []) resolve({ code, reason })
  }

  // ---- dispatch ----

  /**
   * Runs `first` (a message that found the queue empty), then queued messages in order; returns
   * when the queue is empty or an async step is pending.
   */
  _pump(first) {
    this._state |= RUNNING
    let next = first
    for (;;) {
      let message = next
      next = undefined
      if (message === undefined) {
        const queue = this._queue
        if (queue === null || queue.length === 0) break
        message = queue.shift()
      }
      if (message.request && message.done) {
        this._settle(message) // timed out while waiting for its turn: never run
        continue
      }
      const key = this._ns.raw ? RAW : message.event
      // This connection's own handler wins over the namespace's (`server.onMessage`/`onRequest`).
      const handler = message.request
        ? storeGet(this._x?.requestHandlers, key) ?? this._ns.requestHandlers.get(key)
        : storeGet(this._handlers, key) ?? this._ns.handlers.get(key)
      if (!handler) {
        this._buffer(message)
        continue
      }
      let pending
      try {
        pending = message.request ? this._runRequest(handler, message) : this._run(handler, message)
      } catch (error) {
        this._failed(error, message)
        continue
      }
      if (pending && typeof pending.then === 'function') {
        this._resumeAfter(pending, message)
        return
      }
      this._settle(message)
    }
    this._state &= ~RUNNING
  }

  /**
   * A handler returned a promise: settle its message when it is done, then carry on with the
   * queue — unless the queue already moved on without it (a request that timed out is detached,
   * see `_requestTimedOut`).
   */
  _resumeAfter(pending, message) {
    this._running = message
    pending.then(
      () => this._settle(message),
      (error) => this._failed(error, message),
    ).then(() => {
      if (this._running !== message) return
      this._running = null
      this._pump()
    })
  }

  /** Validates and calls the handler; returns a promise only when something is asynchronous. */
  _run(handler, message) {
    if (this._ns.raw) return handler(message.data, this)
    const schema = this._ns.contract?.in[message.event]
    const ctx = { event: message.event, meta: message.meta ?? undefined, conn: this }
    if (!schema) return handler(message.data, ctx)
    const result = schema['~standard'].validate(message.data)
    const proceed = (r) => (r.issues ? this._invalidData(message, r.issues) : handler(r.value, ctx))
    return typeof result?.then === 'function' ? result.then(proceed) : proceed(result)
  }

  _invalidData(message, issues) {
    if (this._ns.server._replyOnInvalid) {
      const error = { code: 'invalid_data', message: Reason.INVALID_DATA, event: message.event, issues: serialisableIssues(issues) }
      this._ns.server._native.send(this._nid, JSON.stringify({ event: 'error', data: error }))
    } else {
      this._abort(CloseCode.INVALID_PAYLOAD, Reason.INVALID_DATA)
    }
  }

  _failed(error, message) {
    if (message.request) {
      this._requestFailed(message, error)
      this._settle(message)
      return
    }
    this._ns.server._reportError(error, this)
    this._abort(CloseCode.INTERNAL_ERROR, Reason.HANDLER_FAILED)
    this._settle(message)
  }

  // ---- requests from the client ----

  /**
   * Validates the input, calls the handler, validates the output and replies. Never throws; returns
   * a promise (that never rejects) only when something is asynchronous.
   */
  _runRequest(handler, request) {
    const spec = this._ns.contract?.requests[request.event]
    if (!spec) return this._callRequestHandler(handler, request, undefined, request.data)
    try {
      const result = spec.input['~standard'].validate(request.data)
      const proceed = (r) => {
        if (!r.issues) return this._callRequestHandler(handler, request, spec, r.value)
        const body = { code: RequestErrorCode.INVALID_INPUT, message: `Invalid input for request "${request.event}": ${describeIssues(r.issues)}`, issues: serialisableIssues(r.issues) }
        this._finishRequest(request, `"error":${JSON.stringify(body)}`)
      }
      if (isThenable(result)) return result.then(proceed, (e) => this._requestFailed(request, e))
      return proceed(result)
    } catch (error) {
      this._requestFailed(request, error)
    }
  }

  _callRequestHandler(handler, request, spec, input) {
    let output
    try {
      output = handler(input, new RequestContext(request, this))
    } catch (error) {
      return this._requestFailed(request, error)
    }
    if (isThenable(output)) {
      return Promise.resolve(output).then(
        (value) => this._respond(request, spec, value),
        (error) => this._requestFailed(request, error),
      )
    }
    return this._respond(request, spec, output)
  }

  /** Validates the handler's result against the output schema and sends it. */
  _respond(request, spec, value) {
    if (request.done) return // answered already (timeout) or the connection is gone: a late result is dropped
    if (!spec) return this._replyData(request, value)
    try {
      const result = spec.output['~standard'].validate(value)
      const proceed = (r) => {
        if (!r.issues) return this._replyData(request, r.value)
        const error = new Error(`Invalid output of request handler "${request.event}": ${describeIssues(r.issues)}`)
        this._requestFailed(request, error)
      }
      if (isThenable(result)) return result.then(proceed, (e) => this._requestFailed(request, e))
      return proceed(result)
    } catch (error) {
      this._requestFailed(request, error)
    }
  }

  _replyData(request, value) {
    let json
    try {
      json = JSON.stringify(value) ?? 'null'
    } catch (error) {
      return this._requestFailed(request, error)
    }
    this._finishRequest(request, `"data":${json}`)
  }

  /** A handler threw, rejected or produced invalid output. Bugs go to onError, even late ones. */
  _requestFailed(request, error) {
    if (!isPublicError(error)) this._ns.server._reportError(error, this)
    if (request.done) return
    let json
    try {
      json = JSON.stringify(errorBody(error, this._ns.server._exposeErrors))
    } catch {
      json = errorJson(RequestErrorCode.INTERNAL, 'Internal error')
    }
    this._finishRequest(request, `"error":${json}`)
  }

  /**
   * Answers `timeout` and aborts the handler's `signal`. If the queue is waiting for this
   * request's handler, it stops waiting: the handler is detached (it may keep running; its result
   * is dropped) and the connection's next message runs now.
   */
  _requestTimedOut(request, timeoutMs) {
    if (request.done) return
    const message = `Request "${request.event}" timed out after ${timeoutMs} ms`
    this._finishRequest(request, `"error":${errorJson(RequestErrorCode.TIMEOUT, message)}`)
    request.abortReason = new RequestError(RequestErrorCode.TIMEOUT, message)
    request.controller?.abort(request.abortReason)
    this._unbuffer(request)
    if (this._running === request) {
      this._running = null
      this._settle(request)
      this._pump()
    }
  }

  /** Sends the one reply a request gets; `body` is `"data":…` or `"error":…`. */
  _finishRequest(request, body) {
    if (request.done) return
    request.done = true
    clearTimeout(request.timer)
    const inbound = this._x?.inbound
    if (inbound?.get(request.rawId) === request) inbound.delete(request.rawId)
    this._sendReply(request.rawId, body)
  }

  /** The connection closed first: nothing can be sent any more. */
  _abandon(request, reason) {
    if (request.done) return
    request.done = true
    clearTimeout(request.timer)
    request.abortReason = reason
    request.controller?.abort(reason)
  }

  _sendReply(rawId, body) {
    if ((this._state & CLOSED) === 0) this._ns.server._native.send(this._nid, `{"id":${rawId},${body}}`)
  }

  /** Closes for a fault and drops what is still queued. */
  _abort(code, reason) {
    if (this.isOpen) {
      this._state |= CLOSING
      this._ns.server._native.close(this._nid, code, reason)
    }
    this._dropQueue()
  }

  /** The message is done with (handled or dropped): acknowledge it and release its size. */
  _settle(message) {
    const size = message.size
    if (size !== 0) {
      message.size = 0
      this._ns.server._releasedBytes += size // flushed with the acks
    }
    this._acknowledge(message)
    if (size !== 0 && !this._ns.server._ackScheduled) this._ns.server._scheduleAcks()
  }

  /** Frees the message's slot in the connection's inflight window; its size stays charged. */
  _acknowledge(message) {
    if (message.ahead) {
      message.ahead = false
      this._x.ahead--
    }
    if (!message.acked) {
      message.acked = true
      this._ack()
    }
  }

  _dropQueue() {
    for (const dropped of this._queue?.splice(0) ?? []) this._drop(dropped)
  }

  /** A message that will never be handled: settled and counted in `server.stats.droppedMessages`. */
  _drop(message) {
    this._settle(message)
    this._ns.server._stats.droppedMessages++
  }

  _buffer(message) {
    // Buffered messages are bounded here (maxBufferedMessages), so they no longer hold this
    // socket back; their size still counts against the global bound until handled or dropped.
    this._acknowledge(message)
    const buffered = (this._more().buffered ??= [])
    buffered.push(message)
    if (buffered.length > this._ns.server._maxBufferedMessages) {
      const dropped = buffered.shift()
      if (dropped.request) {
        const text = `No handler for request "${dropped.event}" yet and too many messages are waiting for one`
        this._finishRequest(dropped, `"error":${errorJson(RequestErrorCode.UNAVAILABLE, text)}`)
      }
      this._drop(dropped)
    }
  }

  /** A request that timed out while buffered leaves the buffer (it was answered `timeout`). */
  _unbuffer(request) {
    const buffered = this._x?.buffered
    const i = buffered?.indexOf(request) ?? -1
    if (i >= 0) {
      buffered.splice(i, 1)
      this._settle(request)
    }
  }

  _replayBuffered(key, requests = false) {
    const x = this._x
    if (!x?.buffered?.length) return
    const matches = (m) => m.request === requests && (this._ns.raw ? RAW : m.event) === key
    const replay = x.buffered.filter(matches)
    if (replay.length === 0) return
    x.buffered = x.buffered.filter((m) => !matches(m))
    // They arrived before anything still queued, so they go first.
    ;(this._queue ??= []).unshift(...replay)
    if ((this._state & RUNNING) === 0) this._pump()
  }

  _callSafely(handler, ...args) {
    try {
      const r = handler(...args)
      if (r && typeof r.then === 'function') r.then(undefined, (e) => this._ns.server._reportError(e, this))
    } catch (error) {
      this._ns.server._reportError(error, this)
    }
  }
}

function errorJson(code, message) {
  return JSON.stringify({ code, message })
}

function closedBeforeReply(name, code) {
  const why = code === undefined ? 'the connection is closed' : `the connection closed (${code}) before the reply`
  return new RequestError(RequestErrorCode.CONNECTION_CLOSED, `Request "${name}" failed: ${why}`)
}

module.exports = { Connection, RAW }
