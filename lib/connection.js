'use strict'
// One WebSocket as the application sees it: typed handlers run one message at a time in arrival
// order (async handlers are awaited), messages for events without a handler yet are buffered,
// and every handled message is acknowledged so Rust can resume reading a paused socket.

const { hasEvent, serialisableIssues } = require('./contract')
const { parseHead } = require('./request')
const { CloseCode, Reason, assertSendableCode } = require('./close-codes')

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
    this.rooms = new Set()
    this._handlers = new Map()
    this._queue = []
    this._buffered = []
    this._running = false
    this._closing = false
    this._closeInfo = undefined
    this._closeHandlers = []
    this._closeWaiters = []
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
    this._handlers.set(event, handler)
    this._replayBuffered(event)
    return this
  }

  /** Raw-mode namespaces: receive each message as a string (text) or Buffer (binary). */
  onRawMessage(handler) {
    this._handlers.set(RAW, handler)
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
      this._closeHandlers.push(handler)
    }
    return this
  }

  waitForClose() {
    if (this._closeInfo) return Promise.resolve({ ...this._closeInfo })
    return new Promise((resolve) => this._closeWaiters.push(resolve))
  }

  join(room) {
    if (this.isOpen) {
      this._server._native.join(this._nid, String(room))
      this.rooms.add(String(room))
    }
    return this
  }

  leave(room) {
    if (this.rooms.delete(String(room)) && this._closeInfo === undefined) {
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
    this._queue.push({ event, data, meta, acked: false })
    if (!this._running) this._pump()
  }

  _closed(code, reason) {
    this._closeInfo = { code, reason }
    this._closing = true
    this.rooms.clear()
    for (const handler of this._closeHandlers.splice(0)) this._callSafely(handler, code, reason)
    for (const resolve of this._closeWaiters.splice(0)) resolve({ code, reason })
  }

  // ---- dispatch ----

  /** Runs queued messages in order; returns when the queue is empty or an async step is pending. */
  _pump() {
    this._running = true
    while (this._queue.length > 0) {
      const message = this._queue.shift()
      const key = this._ns.raw ? RAW : message.event
      const handler = this._handlers.get(key)
      if (!handler) {
        this._buffer(message)
        continue
      }
      let pending
      try {
        pending = this._run(handler, message)
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
    this._server._reportError(error, this)
    this._abort(CloseCode.INTERNAL_ERROR, Reason.HANDLER_FAILED)
    this._settle(message)
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
    if (!message.acked) {
      message.acked = true
      this._server._ack(this)
    }
  }

  _buffer(message) {
    this._settle(message) // buffered messages are bounded here, so they no longer hold Rust back
    this._buffered.push(message)
    if (this._buffered.length > this._server._maxBufferedMessages) this._buffered.shift()
  }

  _replayBuffered(key) {
    if (this._buffered.length === 0) return
    const matches = (m) => (this._ns.raw ? RAW : m.event) === key
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

module.exports = { Connection }
