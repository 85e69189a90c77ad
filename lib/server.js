'use strict'
// The server as the application sees it: options and namespaces, connection events, publishing
// (validate + serialise once in JS, fan out in Rust) and lifecycle. Rust delivers events in
// batches (see src/bridge.rs for the entry shapes); one JSON.parse decodes a whole batch.

const os = require('os')
const { NativeServer } = require('./native')
const { Connection, RAW } = require('./connection')
const { validateOutbound, hasEvent } = require('./contract')
const { CloseCode, Reason, assertSendableCode } = require('./close-codes')
const { parseHead, packHead, headFromIncomingMessage } = require('./request')

const KIND_OPEN = 0
const KIND_MESSAGE = 1
const KIND_CLOSE = 2
const KIND_SHUTDOWN = 3
const KIND_RAW = 4
const KIND_HANDSHAKE = 5
const KIND_ABANDONED = 6
const KIND_REQUEST = 7
const KIND_REPLY = 8

const DEFAULT_NAMESPACE = '/'

function positive(name, value, fallback) {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
    throw new TypeError(`option ${name} must be a non-negative number, got ${value}`)
  }
  return value
}

/** `trustProxy`: true (every hop), a hop count, or proxy addresses/CIDR ranges (array or comma list). */
function trustProxyOptions(value) {
  if (value === undefined || value === false) return {}
  if (value === true) return { trustProxyAll: true }
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return { trustProxyHops: value }
  if (typeof value === 'string') value = value.split(',')
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return { trustProxyList: value.map((v) => v.trim()) }
  throw new TypeError('option trustProxy must be true, a hop count, or a list of proxy addresses')
}

function stringList(name, value) {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) {
    throw new TypeError(`option ${name} must be an array of non-empty strings`)
  }
  return value
}

/** Every map present, so the rest of the code never checks (contracts need not come from defineContract). */
function normaliseContract(contract) {
  if (!contract) return null
  return {
    in: contract.in ?? {},
    out: contract.out ?? {},
    requests: contract.requests ?? {},
    clientRequests: contract.clientRequests ?? {},
  }
}

/** Namespace records; each carries its server, so a connection needs only its namespace. */
function buildNamespaces(options, server) {
  const base = options.path ?? '/ws'
  if (typeof base !== 'string' || !base.startsWith('/')) throw new TypeError(`option path must start with '/', got ${base}`)
  const raw = options.messageFormat === 'raw'
  // handlers/requestHandlers: the namespace's own (`server.onMessage`/`onRequest`), shared by its
  // connections, so an application need not create closures per connection.
  const record = (index, name, path, contract) => ({ index, name, path, contract: normaliseContract(contract), raw, server, handlers: new Map(), requestHandlers: new Map() })
  const list = [record(0, DEFAULT_NAMESPACE, base, options.contract)]
  for (const [name, contract] of Object.entries(options.namespaces ?? {})) {
    if (!/^[A-Za-z0-9_.~-]+$/.test(name)) throw new TypeError(`namespace name "${name}" must be URL-safe`)
    list.push(record(list.length, name, `${base.replace(/\/$/, '')}/${name}`, contract))
  }
  return list
}

/** `nodeId`: names this process in connection ids; any non-empty string (default `${hostname}-${pid}`). */
function nodeIdOption(value) {
  if (value === undefined) return `${os.hostname()}-${process.pid}`
  if (typeof value !== 'string' || value === '') throw new TypeError('option nodeId must be a non-empty string')
  return value
}

class Server {
  constructor(options = {}) {
    this._nodeId = nodeIdOption(options.nodeId)
    /** Prefix of every connection id of this server: `${nodeId}:`. */
    this._idPrefix = `${this._nodeId}:`
    this._namespaces = buildNamespaces(options, this)
    this._namespaceByName = new Map(this._namespaces.map((ns) => [ns.name, ns]))
    this._connectionHandlers = this._namespaces.map(() => [])
    this._connections = new Map()
    /** `conn.openedAt` is stored as ms since this: a small integer (no heap number) for 24 days. */
    this._epoch = Date.now()
    this._maxBufferedMessages = positive('maxBufferedMessages', options.maxBufferedMessages, 100)
    this._maxInflightMessages = positive('maxInflightMessages', options.maxInflightMessages, 100)
    this._requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs, 15_000)
    this._closeTimeoutMs = positive('closeTimeoutMs', options.closeTimeoutMs, 5000)
    this._exposeErrors = options.exposeErrors === true
    this._stats = { unknownReplies: 0, droppedMessages: 0 }
    this._replyOnInvalid = options.onInvalidMessage === 'reply'
    this._onError = options.onError ?? ((error) => console.error('[ferrosocket]', error))
    /** Handled messages per connection since the last flush (bound: open connections). */
    this._ackCounts = new Map()
    /** Bytes of messages handled or dropped since the last flush (released from Rust's inbound budget). */
    this._releasedBytes = 0
    this._ackScheduled = false
    this._port = undefined
    this._started = false
    this._noListen = options.noListen === true
    this._authenticate = options.authenticate
    // auth id -> { request, userId, data } until the connection opens (bound: accepted handshakes
    // not yet open; Rust reports each one that fails before opening, see KIND_ABANDONED)
    this._authStash = new Map()
    this._keepAlive = undefined
    this._shutdown = undefined
    this._shutdownResolve = undefined
    if (this._authenticate !== undefined && typeof this._authenticate !== 'function') {
      throw new TypeError('option authenticate must be a function')
    }
    if (options.onInvalidMessage !== undefined && !['close', 'reply'].includes(options.onInvalidMessage)) {
      throw new TypeError(`option onInvalidMessage must be 'close' or 'reply'`)
    }
    this._native = new NativeServer(
      {
        host: options.host,
        port: positive('port', options.port, undefined),
        namespaces: this._namespaces.map((ns) => ({
          name: ns.name,
          path: ns.path,
          events: ns.contract ? Object.keys(ns.contract.in) : undefined,
          requests: ns.contract ? Object.keys(ns.contract.requests) : undefined,
          raw: ns.raw,
        })),
        maxPayload: positive('maxPayload', options.maxPayload, undefined),
        heartbeatIntervalMs: positive('heartbeat.intervalMs', options.heartbeat?.intervalMs, undefined),
        maxQueuedMessages: positive('backpressure.maxQueuedMessages', options.backpressure?.maxQueuedMessages, undefined),
        maxBufferedBytes: positive('backpressure.maxBufferedBytes', options.backpressure?.maxBufferedBytes, undefined),
        maxConnections: positive('maxConnections', options.maxConnections, undefined),
        maxInflightMessages: positive('maxInflightMessages', options.maxInflightMessages, undefined),
        maxPendingBytes: positive('maxPendingBytes', options.maxPendingBytes, undefined),
        closeTimeoutMs: positive('closeTimeoutMs', options.closeTimeoutMs, undefined),
        handshakeTimeoutMs: positive('handshakeTimeoutMs', options.handshakeTimeoutMs, undefined),
        replyOnInvalid: this._replyOnInvalid,
        workerThreads: positive('workerThreads', options.workerThreads, undefined),
        allowedOrigins: stringList('allowedOrigins', options.allowedOrigins),
        ...trustProxyOptions(options.trustProxy),
        protocols: stringList('protocols', options.protocols),
        requireProtocol: options.requireProtocol === true,
        authenticate: this._authenticate !== undefined,
        panicOnEvent: options.__testPanicOnEvent,
        referenceHandlers: options.__referenceHandlers === true,
      },
      (json) => this._onBatch(json),
    )
  }

  get port() {
    return this._port
  }

  /** Names this process in connection ids (`${nodeId}:${n}`), unique across a cluster's nodes. */
  get nodeId() {
    return this._nodeId
  }

  get connectionCount() {
    return this._connections.size
  }

  /**
   * Counters, as a snapshot. `unknownReplies`: replies whose id matched no pending `conn.request`
   * (late replies to timed-out requests included). `droppedMessages`: messages received but never
   * handled (see README "Inbound limits"). `inboundPendingBytes`: what the global inbound bound
   * (`maxPendingBytes`) currently counts.
   */
  get stats() {
    return {
      unknownReplies: this._stats.unknownReplies,
      droppedMessages: this._stats.droppedMessages,
      inboundPendingBytes: this._native.inboundPendingBytes(),
    }
  }

  async listen() {
    if (this._shutdown) throw new Error('the server was shut down')
    if (this._noListen) throw new Error('this server was created with noListen: attach it with handleUpgrade() instead')
    this._port = this._native.listen()
    this._start()
  }

  /**
   * Takes over an upgrade received by a Node HTTP server (`server.on('upgrade', …)`): the socket's
   * file descriptor is duplicated into Rust, which runs the handshake and owns the WebSocket from
   * then on; Node's socket is destroyed (closing only Node's descriptor).
   */
  handleUpgrade(req, socket, head) {
    if (this._shutdown) {
      socket.destroy()
      return
    }
    const handle = socket?._handle
    if (!handle || typeof handle.fd !== 'number' || handle.fd < 0) {
      throw new TypeError('ferrosocket: handleUpgrade needs a plain TCP net.Socket (terminate TLS in front of Node)')
    }
    handle.readStop?.()
    const parts = [Buffer.from(headFromIncomingMessage(req), 'latin1')]
    if (head?.length) parts.push(Buffer.from(head))
    // Bytes Node read after the head but nobody consumed yet (an async router may have delayed us).
    if (socket.readableLength > 0) parts.push(socket.read(socket.readableLength))
    this._native.adopt(handle.fd, Buffer.concat(parts))
    this._start()
    socket.destroy()
  }

  /** Like net.Server: a running server keeps the process alive (the Rust callback is weak). */
  _start() {
    this._started = true
    this._keepAlive ??= setInterval(() => {}, 0x7fffffff)
  }

  onConnection(namespace, handler) {
    if (typeof namespace === 'function') [namespace, handler] = [DEFAULT_NAMESPACE, namespace]
    this._connectionHandlers[this._namespace(namespace).index].push(handler)
    return this
  }

  /**
   * Handles `event` for every connection of a namespace (default: the default namespace) with one
   * function: `handler(data, ctx)`, `ctx.conn` being the sender. Same rules as `conn.onMessage`
   * (validated data, one message at a time per connection, in arrival order); a connection's own
   * handler for the event wins. Costs no memory per connection.
   */
  onMessage(namespace, event, handler) {
    if (typeof event === 'function') [namespace, event, handler] = [DEFAULT_NAMESPACE, namespace, event]
    return this._shareHandler(namespace, event, handler, false)
  }

  /** Answers request `name` for every connection of a namespace: `handler(input, ctx)`, `ctx.conn` being the client. */
  onRequest(namespace, name, handler) {
    if (typeof name === 'function') [namespace, name, handler] = [DEFAULT_NAMESPACE, namespace, name]
    return this._shareHandler(namespace, name, handler, true)
  }

  /** Registers a namespace-level message (`request` false) or request handler. */
  _shareHandler(namespace, key, handler, request) {
    const ns = this._namespace(namespace)
    if (typeof handler !== 'function') throw new TypeError(`${request ? 'onRequest' : 'onMessage'} needs a handler function`)
    if (typeof key !== 'string' || key === '') throw new TypeError(`${request ? 'request name' : 'event'} must be a non-empty string`)
    if (ns.raw) throw new TypeError(request ? 'raw-mode namespaces have no requests' : 'raw-mode namespaces receive messages through onRawMessage')
    if (ns.contract && !hasEvent(request ? ns.contract.requests : ns.contract.in, key)) {
      throw new TypeError(request
        ? `Unknown request "${key}": it is not in the contract's "requests" map`
        : `Unknown inbound event "${key}": it is not in the contract's "in" map`)
    }
    ;(request ? ns.requestHandlers : ns.handlers).set(key, handler)
    this._replayBuffered(ns, key, request)
    return this
  }

  /** Raw-mode namespaces: `handler(data, conn)` for every message of every connection. */
  onRawMessage(namespace, handler) {
    if (typeof namespace === 'function') [namespace, handler] = [DEFAULT_NAMESPACE, namespace]
    const ns = this._namespace(namespace)
    if (typeof handler !== 'function') throw new TypeError('onRawMessage needs a handler function')
    if (!ns.raw) throw new TypeError('onRawMessage is for raw-mode namespaces (messageFormat: "raw")')
    ns.handlers.set(RAW, handler)
    this._replayBuffered(ns, RAW, false)
    return this
  }

  /** Messages that arrived before their namespace handler existed run now. */
  _replayBuffered(ns, key, requests) {
    for (const conn of this._connections.values()) if (conn._ns === ns) conn._replayBuffered(key, requests)
  }

  /** A connection of this server by its id (`conn.id`); undefined for ids of other nodes. */
  getConnection(id) {
    const nid = this._localId(id)
    return nid === undefined ? undefined : this._connections.get(nid)
  }

  /** The native id of a connection id of this node (`${nodeId}:${n}`), else undefined. */
  _localId(id) {
    const text = String(id)
    if (!text.startsWith(this._idPrefix)) return undefined
    const n = Number(text.slice(this._idPrefix.length))
    return Number.isSafeInteger(n) && n > 0 ? n : undefined
  }

  /** Every `publish*` returns how many connections of this process it reached. */
  broadcast(event, data, namespace = DEFAULT_NAMESPACE) {
    const ns = this._namespace(namespace)
    return this._native.broadcast(ns.index, this._serialise(ns, event, data))
  }

  publishToRoom(room, event, data, namespace = DEFAULT_NAMESPACE) {
    const ns = this._namespace(namespace)
    return this._native.publishToRoom(ns.index, String(room), this._serialise(ns, event, data))
  }

  publishToUser(userId, event, data, namespace = DEFAULT_NAMESPACE) {
    const ns = this._namespace(namespace)
    return this._native.publishToUser(ns.index, String(userId), this._serialise(ns, event, data))
  }

  publishToAudience(audience, event, data) {
    const ns = this._namespace(audience?.namespace ?? DEFAULT_NAMESPACE)
    const strings = (it) => Array.from(it ?? [], String)
    // Ids of other nodes match nothing here (a cluster bus will carry them to their node).
    const ids = (it) => Array.from(it ?? [], (id) => this._localId(id)).filter((n) => n !== undefined)
    return this._native.publishToAudience(
      ns.index,
      strings(audience.rooms),
      strings(audience.users),
      ids(audience.connections),
      ids(audience.except),
      this._serialise(ns, event, data),
    )
  }

  shutdown(code = CloseCode.GOING_AWAY, reason = Reason.SHUTDOWN, options = {}) {
    if (this._shutdown) return this._shutdown
    assertSendableCode(code)
    const timeoutMs = positive('timeoutMs', options.timeoutMs, 5000)
    if (!this._started) {
      this._shutdown = Promise.resolve()
      this._native.shutdown(code, String(reason), 0)
      return this._shutdown
    }
    this._shutdown = new Promise((resolve) => (this._shutdownResolve = resolve))
    this._native.shutdown(code, String(reason), timeoutMs)
    return this._shutdown
  }

  // ---- internals used by Connection ----

  _namespace(name) {
    const ns = this._namespaceByName.get(name)
    if (!ns) throw new TypeError(`Unknown namespace "${name}"`)
    return ns
  }

  /** Validates and serialises one outbound envelope: once per publish, whatever the audience. */
  _serialise(ns, event, data) {
    if (typeof event !== 'string' || event === '') throw new TypeError('event must be a non-empty string')
    const value = validateOutbound(ns.contract, event, data)
    return `{"event":${JSON.stringify(event)},"data":${JSON.stringify(value) ?? 'null'}}`
  }

  _reportError(error, conn) {
    try {
      this._onError(error, conn)
    } catch {
      // an onError that throws must not take the dispatcher down
    }
  }

  /** Counts one handled message of an open connection; acknowledgements go to Rust in one call per event-loop turn. */
  _ack(nid) {
    this._ackCounts.set(nid, (this._ackCounts.get(nid) ?? 0) + 1)
    if (!this._ackScheduled) this._scheduleAcks()
  }

  /** Returns `bytes` (sizes of messages handled or dropped) to Rust's inbound budget, with the next acks. */
  _release(bytes) {
    this._releasedBytes += bytes
    if (!this._ackScheduled) this._scheduleAcks()
  }

  _scheduleAcks() {
    this._ackScheduled = true
    setImmediate(() => this._flushAcks())
  }

  _flushAcks() {
    this._ackScheduled = false
    const released = this._releasedBytes
    if (this._ackCounts.size === 0 && released === 0) return
    const pairs = new Float64Array(this._ackCounts.size * 2)
    let i = 0
    for (const [id, n] of this._ackCounts) {
      pairs[i++] = id
      pairs[i++] = n
    }
    this._ackCounts.clear()
    this._releasedBytes = 0
    this._native.ack(pairs, released)
  }

  _onBatch(json) {
    if (!json) return
    let entries
    try {
      entries = JSON.parse(json)
    } catch (error) {
      return this._reportError(error)
    }
    // Cork while handlers run: what they publish is written once per socket at the end.
    this._native.cork()
    try {
      this._dispatch(entries)
    } finally {
      this._native.uncork()
    }
  }

  _dispatch(entries) {
    let blobs
    for (const entry of entries) {
      try {
        switch (entry[0]) {
          // Each message entry ends with its size, charged to Rust's inbound budget until the
          // message is handled or dropped; one for no known connection is dropped at once.
          case KIND_MESSAGE: {
            const conn = this._connections.get(entry[1])
            if (conn) conn._receive(entry[2], entry[3], entry[4], entry[5])
            else this._release(entry[5])
            break
          }
          case KIND_REQUEST: {
            const conn = this._connections.get(entry[1])
            if (conn) conn._receiveRequest(entry[2], entry[3], entry[4], entry[5], entry[6])
            else this._release(entry[6])
            break
          }
          case KIND_REPLY: {
            this._release(entry[5]) // settled on arrival, never queued
            const conn = this._connections.get(entry[1])
            if (conn) conn._receiveReply(entry[2], entry[3], entry[4])
            break
          }
          case KIND_OPEN:
            this._opened(entry)
            break
          case KIND_HANDSHAKE:
            this._authenticateUpgrade(entry[1], entry[2], entry[3], entry[4])
            break
          case KIND_ABANDONED:
            this._authStash.delete(entry[1])
            break
          case KIND_CLOSE:
            this._closed(entry[1], entry[2], entry[3], entry[4] === 1)
            break
          case KIND_RAW: {
            blobs ??= this._native.takeBlobs()
            const conn = this._connections.get(entry[1])
            const bytes = blobs[entry[3]]
            if (conn) conn._receive(undefined, entry[2] ? bytes : bytes.toString('utf8'), undefined, entry[4])
            else this._release(entry[4])
            break
          }
          case KIND_SHUTDOWN:
            this._finishShutdown()
            break
        }
      } catch (error) {
        this._reportError(error)
      }
    }
  }

  /** Runs `authenticate` for a held upgrade and tells Rust the verdict. */
  _authenticateUpgrade(authId, nsIndex, remoteAddress, head) {
    const parsed = parseHead(head)
    const request = { ...parsed, remoteAddress, namespace: this._namespaces[nsIndex].name }
    const reject = (status, message) => this._native.resolveHandshake(authId, false, null, status, message)
    let verdict
    try {
      verdict = Promise.resolve(this._authenticate(request))
    } catch (error) {
      verdict = Promise.reject(error)
    }
    verdict.then(
      (result) => {
        if (result && typeof result === 'object' && typeof result.status === 'number') {
          return reject(result.status, result.message ?? '')
        }
        if (!result) return reject(401, '')
        const accepted = result === true ? {} : result
        if (accepted.userId !== undefined && (typeof accepted.userId !== 'string' || accepted.userId === '')) {
          this._reportError(new TypeError('authenticate: userId must be a non-empty string'))
          return reject(500, '')
        }
        this._authStash.set(authId, { request: parsed, userId: accepted.userId, data: accepted.data })
        if (!this._native.resolveHandshake(authId, true, accepted.userId ?? null, null, null)) {
          this._authStash.delete(authId) // the client left or the handshake timed out meanwhile
        }
      },
      (error) => {
        // A thrown error rejects with its `status` (default 401); its message is not sent to the
        // client unless it is marked `expose` (as in http-errors).
        const status = Number.isInteger(error?.status) ? error.status : 401
        reject(status, error?.expose ? String(error.message) : '')
      },
    )
  }

  _opened(entry) {
    const id = entry[1]
    const nsIndex = entry[2]
    const authId = entry[4]
    let request = packHead(entry[5]) // parsed only if someone reads conn.headers/url/query
    let userId
    let data
    if (authId) {
      const stash = this._authStash.get(authId)
      this._authStash.delete(authId)
      if (stash !== undefined) {
        request = stash.request ?? request
        userId = stash.userId
        data = stash.data
      }
    }
    // `| 0` keeps openedAt a small integer, not a heap number per connection, while it fits (24 days).
    const sinceEpoch = Date.now() - this._epoch
    const openedAt = (sinceEpoch | 0) === sinceEpoch ? sinceEpoch | 0 : sinceEpoch
    const conn = new Connection(this._namespaces[nsIndex], id, request, entry[3], entry[6] ?? undefined, userId ?? undefined, data, openedAt)
    this._connections.set(id, conn)
    for (const handler of this._connectionHandlers[nsIndex]) {
      try {
        const r = handler(conn)
        if (r && typeof r.then === 'function') {
          r.then(undefined, (error) => {
            this._reportError(error, conn)
            conn._abort(CloseCode.INTERNAL_ERROR, Reason.HANDLER_FAILED)
          })
        }
      } catch (error) {
        this._reportError(error, conn)
        conn._abort(CloseCode.INTERNAL_ERROR, Reason.HANDLER_FAILED)
      }
    }
  }

  /** `abandoned`: Rust gave up on input the peer left behind (see Connection#_closed). */
  _closed(id, code, reason, abandoned) {
    const conn = this._connections.get(id)
    if (!conn) return
    this._connections.delete(id)
    this._ackCounts.delete(id)
    conn._closed(code, reason, abandoned)
  }

  _finishShutdown() {
    // Anything Rust queued before completion (close events) is already in this batch.
    clearInterval(this._keepAlive)
    this._keepAlive = undefined
    this._shutdownResolve?.()
  }
}

module.exports = { Server, DEFAULT_NAMESPACE }
