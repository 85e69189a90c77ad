'use strict'
// One WebSocket as the application sees it: typed handlers run one message at a time in arrival
// order (async handlers are awaited), messages for events without a handler yet are buffered,
// and every handled message is acknowledged so Rust can resume reading a paused socket.
//
// Requests from the client share that queue (a request is a message that gets a reply). Replies
// to the server's own requests (`conn.request`) never queue: they settle their promise as soon as
// the batch arrives, so a handler awaiting one cannot deadlock its own connection.

const { hasEvent, serialisableIssues, describeIssues, validateClientRequest } = require('./contract')
const { parseHead } = require('./request')
const { CloseCode, Reason, assertSendableCode } = require('./close-codes')
const { RequestError, RequestErrorCode, isPublicError, errorBody, fromClientError } = require('./requests')

const isThenable = (v) => v !== null && (typeof v === 'object' || typeof v === 'function') && typeof v.then === 'function'

/** What a request handler receives as its second argument. */
class RequestContext {
  constructor(request) {
    this._request = request
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

class Connection {
  /**
   * @param {import('./server').Server} server
   * @param {{ remoteAddress: string, head: string, request?: object, userId?: string, data?: unknown, protocol?: string }} opened
   */
  constructor(server, nativeId, namespace, opened) {
    this._server = server
    this._nid = nativeId
    this._ns = namespace
    this._head = opened.head
    this._request = opened.request
    this.id = String(nativeId)
    this.namespace = namespace.name
    this.remoteAddress = opened.remoteAddress
    this.protocol = opened.protocol ?? undefined
    this.data = opened.data
    this.openedAt = Date.now()
    this.userId = opened.userId ?? undefined
    // Collections are created on first use: an idle connection should cost a few hundred bytes
    // of JS heap, and most connections never use most of them.
    this._rooms = null
    this._handlers = null
    this._requestHandlers = null
    /** Client → server requests received and not answered yet, by id JSON text. */
    this._inbound = null
    /** Server → client requests awaiting a reply, by id. */
    this._outbound = null
    this._nextRequestId = 0
    /** Queued messages acknowledged early while replies are awaited (see `_readAhead`). */
    this._ahead = 0
    this._queue = []
    this._buffered = null
    this._running = false
    this._closing = false
    this._closeInfo = undefined
    this._closeHandlers = null
    this._closeWaiters = null
  }

  /** Rooms this connection has joined. */
  get rooms() {
    return (this._rooms ??= new Set())
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
    if (this._closeInfo === undefined) this._lastSeenAt = this._server._native.lastSeen(this._nid) ?? this._lastSeenAt
    return this._lastSeenAt ?? this.openedAt
  }

  _parsedRequest() {
    this._request ??= parseHead(this._head ?? 'GET / HTTP/1.1\r\n\r\n')
    this._head = undefined
    return this._request
  }

  get isOpen() {
    return !this._closing && this._closeInfo === undefined
  }

  /** Last heartbeat round-trip in milliseconds (undefined before the first pong). */
  get rtt() {
    const ms = this._closeInfo ? null : this._server._native.rtt(this._nid)
    return ms ? ms : undefined
  }

  onMessage(event, handler) {
    if (typeof handler !== 'function') throw new TypeError('onMessage needs a handler function')
    const contract = this._ns.contract
    if (contract && !hasEvent(contract.in, event)) {
      throw new TypeError(`Unknown inbound event "${event}": it is not in the contract's "in" map`)
    }
    ;(this._handlers ??= new Map()).set(event, handler)
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
    ;(this._requestHandlers ??= new Map()).set(name, handler)
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
    const value = validateClientRequest(this._ns.contract, name, data)
    const timeoutMs = options?.timeoutMs ?? this._server._requestTimeoutMs
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) {
      throw new TypeError(`timeoutMs must be a non-negative number, got ${timeoutMs}`)
    }
    const id = ++this._nextRequestId
    const payload = `{"event":${JSON.stringify(name)},"data":${JSON.stringify(value) ?? 'null'},"id":${id}}`
    if (!this.isOpen) return Promise.reject(closedBeforeReply(name))
    return new Promise((resolve, reject) => {
      const pending = { name, resolve, reject, timer: undefined }
      ;(this._outbound ??= new Map()).set(id, pending)
      if (timeoutMs > 0) {
        pending.timer = setTimeout(() => {
          if (this._outbound.get(id) !== pending) return
          this._outbound.delete(id)
          reject(new RequestError(RequestErrorCode.TIMEOUT, `Client request "${name}" timed out after ${timeoutMs} ms`))
        }, timeoutMs)
      }
      if (!this._server._native.send(this._nid, payload)) {
        this._outbound.delete(id)
        clearTimeout(pending.timer)
        reject(closedBeforeReply(name))
        return
      }
      this._readAhead()
    })
  }

  /** Raw-mode namespaces: receive each message as a string (text) or Buffer (binary). */
  onRawMessage(handler) {
    ;(this._handlers ??= new Map()).set(RAW, handler)
    this._replayBuffered(RAW)
    return this
  }

  publish(event, data) {
    const payload = this._server._serialise(this._ns, event, data)
    if (this._closeInfo === undefined) this._server._native.send(this._nid, payload)
  }

  /** Raw-mode send: a string goes as a text frame, a Buffer/Uint8Array as a binary frame. */
  sendRaw(data) {
    if (this._closeInfo !== undefined) return
    if (typeof data === 'string') this._server._native.send(this._nid, data)
    else this._server._native.sendBinary(this._nid, Buffer.isBuffer(data) ? data : Buffer.from(data))
  }

  onClose(handler) {
    if (this._closeInfo) {
      const { code, reason } = this._closeInfo
      queueMicrotask(() => this._callSafely(handler, code, reason))
    } else {
      ;(this._closeHandlers ??= []).push(handler)
    }
    return this
  }

  waitForClose() {
    if (this._closeInfo) return Promise.resolve({ ...this._closeInfo })
    return new Promise((resolve) => (this._closeWaiters ??= []).push(resolve))
  }

  join(room) {
    if (this.isOpen) {
      this._server._native.join(this._nid, String(room))
      ;(this._rooms ??= new Set()).add(String(room))
    }
    return this
  }

  leave(room) {
    if (this._rooms?.delete(String(room)) && this._closeInfo === undefined) {
      this._server._native.leave(this._nid, String(room))
    }
    return this
  }

  setUserId(userId) {
    if (typeof userId !== 'string' || userId === '') throw new TypeError('setUserId needs a non-empty string')
    if (this._closeInfo === undefined) this._server._native.setUser(this._nid, userId)
    this.userId = userId
    return this
  }

  clearUserId() {
    if (this._closeInfo === undefined) this._server._native.setUser(this._nid, null)
    this.userId = undefined
    return this
  }

  close(code = CloseCode.NORMAL, reason = '') {
    assertSendableCode(code)
    if (!this.isOpen) return
    this._closing = true
    this._server._native.close(this._nid, code, String(reason))
  }

  // ---- called by the server ----

  _receive(event, data, meta) {
    this._enqueue({ event, data, meta, acked: false, ahead: false, request: false })
  }

  /** A request from the client; `rawId` is its id's JSON text, echoed verbatim in the reply. */
  _receiveRequest(event, data, meta, rawId) {
    if (this._inbound?.has(rawId)) {
      // The original keeps running and gets its own reply; only the duplicate is refused.
      this._server._ack(this)
      this._sendReply(rawId, `"error":${errorJson(RequestErrorCode.DUPLICATE_ID, 'A request with this id is already in flight')}`)
      return
    }
    const request = { event, data, meta, acked: false, ahead: false, request: true, rawId, done: false, timer: undefined, controller: undefined, abortReason: undefined }
    ;(this._inbound ??= new Map()).set(rawId, request)
    const timeoutMs = this._server._requestTimeoutMs
    if (timeoutMs > 0) request.timer = setTimeout(() => this._requestTimedOut(request, timeoutMs), timeoutMs)
    this._enqueue(request)
  }

  /** A reply to `conn.request`: settles its promise now, whatever the queue is doing. */
  _receiveReply(id, data, error) {
    this._server._ack(this)
    const pending = typeof id === 'number' ? this._outbound?.get(id) : undefined
    if (!pending) {
      this._server._stats.unknownReplies++
      return
    }
    this._outbound.delete(id)
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
    this._queue.push(message)
    if (this._outbound?.size > 0) this._readAhead(message)
    if (!this._running) this._pump()
  }

  /**
   * While this connection awaits replies from its client, queued messages are acknowledged on
   * arrival (at most `maxInflightMessages` of them at a time), so Rust keeps reading the socket
   * and finds the reply even when the handler at the head of the queue is the one waiting for it.
   * With `message`, only that one is considered; otherwise the whole queue.
   */
  _readAhead(message) {
    const max = this._server._maxInflightMessages
    for (const m of message ? [message] : this._queue) {
      if (this._ahead >= max) return
      if (!m.acked) {
        m.acked = true
        m.ahead = true
        this._ahead++
        this._server._ack(this)
      }
    }
  }

  _closed(code, reason) {
    this._closeInfo = { code, reason }
    this._closing = true
    this._rooms?.clear()
    for (const request of this._inbound?.values() ?? []) this._abandon(request, closedBeforeReply(request.event))
    this._inbound?.clear()
    for (const [id, pending] of this._outbound ?? []) {
      this._outbound.delete(id)
      clearTimeout(pending.timer)
      pending.reject(closedBeforeReply(pending.name, code))
    }
    for (const handler of this._closeHandlers?.splice(0) ?? []) this._callSafely(handler, code, reason)
    for (const resolve of this._closeWaiters?.splice(0) ?? []) resolve({ code, reason })
  }

  // ---- dispatch ----

  /** Runs queued messages in order; returns when the queue is empty or an async step is pending. */
  _pump() {
    this._running = true
    while (this._queue.length > 0) {
      const message = this._queue.shift()
      if (message.request && message.done) {
        this._settle(message) // timed out while waiting for its turn: never run
        continue
      }
      const key = this._ns.raw ? RAW : message.event
      const handler = (message.request ? this._requestHandlers : this._handlers)?.get(key)
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
        pending.then(
          () => this._settle(message),
          (error) => this._failed(error, message),
        ).then(() => this._pump())
        return
      }
      this._settle(message)
    }
    this._running = false
  }

  /** Validates and calls the handler; returns a promise only when something is asynchronous. */
  _run(handler, message) {
    if (this._ns.raw) return handler(message.data)
    const schema = this._ns.contract?.in[message.event]
    const ctx = { event: message.event, meta: message.meta ?? undefined }
    if (!schema) return handler(message.data, ctx)
    const result = schema['~standard'].validate(message.data)
    const proceed = (r) => (r.issues ? this._invalidData(message, r.issues) : handler(r.value, ctx))
    return typeof result?.then === 'function' ? result.then(proceed) : proceed(result)
  }

  _invalidData(message, issues) {
    if (this._server._replyOnInvalid) {
      const error = { code: 'invalid_data', message: Reason.INVALID_DATA, event: message.event, issues: serialisableIssues(issues) }
      this._server._native.send(this._nid, JSON.stringify({ event: 'error', data: error }))
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
    this._server._reportError(error, this)
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
      output = handler(input, new RequestContext(request))
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
    if (!isPublicError(error)) this._server._reportError(error, this)
    if (request.done) return
    let json
    try {
      json = JSON.stringify(errorBody(error, this._server._exposeErrors))
    } catch {
      json = errorJson(RequestErrorCode.INTERNAL, 'Internal error')
    }
    this._finishRequest(request, `"error":${json}`)
  }

  _requestTimedOut(request, timeoutMs) {
    if (request.done) return
    const message = `Request "${request.event}" timed out after ${timeoutMs} ms`
    this._finishRequest(request, `"error":${errorJson(RequestErrorCode.TIMEOUT, message)}`)
    request.abortReason = new RequestError(RequestErrorCode.TIMEOUT, message)
    request.controller?.abort(request.abortReason)
    this._unbuffer(request)
  }

  /** Sends the one reply a request gets; `body` is `"data":…` or `"error":…`. */
  _finishRequest(request, body) {
    if (request.done) return
    request.done = true
    clearTimeout(request.timer)
    if (this._inbound?.get(request.rawId) === request) this._inbound.delete(request.rawId)
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
    if (this._closeInfo === undefined) this._server._native.send(this._nid, `{"id":${rawId},${body}}`)
  }

  /** Closes for a fault and drops what is still queued (acknowledging it). */
  _abort(code, reason) {
    if (this.isOpen) {
      this._closing = true
      this._server._native.close(this._nid, code, reason)
    }
    for (const dropped of this._queue.splice(0)) this._settle(dropped)
  }

  _settle(message) {
    if (message.ahead) {
      message.ahead = false
      this._ahead--
    }
    if (!message.acked) {
      message.acked = true
      this._server._ack(this)
    }
  }

  _buffer(message) {
    this._settle(message) // buffered messages are bounded here, so they no longer hold Rust back
    ;(this._buffered ??= []).push(message)
    if (this._buffered.length > this._server._maxBufferedMessages) {
      const dropped = this._buffered.shift()
      if (dropped.request) {
        const text = `No handler for request "${dropped.event}" yet and too many messages are waiting for one`
        this._finishRequest(dropped, `"error":${errorJson(RequestErrorCode.UNAVAILABLE, text)}`)
      }
    }
  }

  /** A request that timed out while buffered leaves the buffer. */
  _unbuffer(request) {
    const i = this._buffered?.indexOf(request) ?? -1
    if (i >= 0) this._buffered.splice(i, 1)
  }

  _replayBuffered(key, requests = false) {
    if (!this._buffered?.length) return
    const matches = (m) => m.request === requests && (this._ns.raw ? RAW : m.event) === key
    const replay = this._buffered.filter(matches)
    if (replay.length === 0) return
    this._buffered = this._buffered.filter((m) => !matches(m))
    // They arrived before anything still queued, so they go first.
    this._queue.unshift(...replay)
    if (!this._running) this._pump()
  }

  _callSafely(handler, ...args) {
    try {
      const r = handler(...args)
      if (r && typeof r.then === 'function') r.then(undefined, (e) => this._server._reportError(e, this))
    } catch (error) {
      this._server._reportError(error, this)
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

module.exports = { Connection }
