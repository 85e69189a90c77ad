// The server as the application sees it (the public `Server`): options and namespaces,
// connection events, namespace-level handlers, publishing (validate + serialise once in JS, fan
// out in Rust) and lifecycle. Batches from Rust are routed by batch.ts, held upgrades decided by
// handshake.ts; each connection's dispatch lives in the connection modules.

import { InboundAcks } from './acks'
import { onBatch, type BatchHost, type OpenEntry, type RejectedEntry } from './batch'
import { Outbox } from './outbox'
import { Connection } from './connection'
import {
  RAW,
  type Conn,
  type HandlerKey,
  type InboundHandler,
  type MessageFn,
  type RawFn,
  type RequestFn,
} from './handler-store'
import { authenticateUpgrade, takeAccepted, type Accepted, type HandshakeHost } from './handshake'
import { DEFAULT_NAMESPACE, createNamespaces, type ConnectionHost, type Namespace } from './namespace'
import { binding, type AudienceParts, type NativeServer } from './native'
import { checkOnInvalidMessage, metricsOption, nativeOptions, nodeIdOption, positive, type InternalOptions } from './options'
import { CloseCode, Reason, assertSendableCode } from './protocol/close-codes'
import { hasEvent } from './protocol/contract'
import { BusLink, checkBus, type BusHost } from './cluster'
import { ClusterPresence } from './cluster-presence'
import { JsMetrics, exposition, trafficStats, type NativeMetrics } from './metrics'
import { AsyncLocalStorage } from 'node:async_hooks'
import { EVENT_LEVELS, Telemetry, formatTraceparent, type EventName } from './telemetry'
import type { EnvelopeMeta } from './protocol/envelope'
import { Tracing } from './tracing'
import { Collector } from './dashboard/collector'
import { checkDashboardOptions, createDashboardHandler, type DashboardHost } from './dashboard/handler'
import { LocalPresence, type PresenceHost } from './presence'
import { globalAudience, localIds, remoteIds, serialise } from './publish'
import { isPromiseLike } from './state'
import type {
  Audience,
  AuthResult,
  BusAudience,
  BusMessage,
  DashboardHandler,
  DashboardOptions,
  Server as PublicServer,
  ServerStats,
  ShutdownOptions,
  TelemetryLevel,
  TraceContext,
  UntypedContract,
  UpgradeIncomingMessage,
  UpgradeRequest,
} from './types'
import { headFromIncomingMessage, packHead } from './upgrade-request'

/** The untyped instantiation of the public `Server`, which the implementation is checked against. */
export type UntypedServer = PublicServer<UntypedContract, Record<string, UntypedContract>, unknown>

type ConnectionHandler = (conn: Conn) => unknown

/** The parts of a Node `net.Socket` that `handleUpgrade` uses (`_handle` is Node's internal TCP handle). */
interface AdoptableSocket {
  _handle?: { fd?: unknown; readStop?: () => void } | null
  readableLength: number
  read(size: number): Buffer
  destroy(): void
}

/**
 * The implementation of the public `Server` (named so at run time, as it always was), checked
 * against its untyped instantiation.
 */
export class Server implements UntypedServer, ConnectionHost, BatchHost, HandshakeHost, PresenceHost, BusHost {
  readonly _nodeId: string
  readonly _idPrefix: string
  readonly _acks: InboundAcks
  readonly _namespaces: readonly Namespace[]
  readonly _namespaceByName: Map<string, Namespace>
  readonly _connectionHandlers: ConnectionHandler[][]
  readonly _connections: Map<number, Connection>
  readonly _epoch: number
  readonly _maxBufferedMessages: number
  readonly _maxInflightMessages: number
  readonly _requestTimeoutMs: number
  readonly _closeTimeoutMs: number
  readonly _exposeErrors: boolean
  readonly _stats: { unknownReplies: number; droppedMessages: number; busPublishErrors: number; busReceived: number }
  readonly _metrics: JsMetrics
  readonly _telemetry: Telemetry
  readonly _tracing: Tracing | null
  readonly _propagation: AsyncLocalStorage<TraceContext> | null
  readonly _replyOnInvalid: boolean
  readonly _onError: (error: unknown, conn: Conn | undefined) => void
  _port: number | undefined
  _started: boolean
  readonly _noListen: boolean
  readonly _authenticate: ((request: UpgradeRequest) => AuthResult<unknown> | Promise<AuthResult<unknown>>) | undefined
  readonly _authStash: Map<number, Accepted>
  _keepAlive: ReturnType<typeof setInterval> | undefined
  _shutdown: Promise<void> | undefined
  _shutdownResolve: (() => void) | undefined
  readonly _native: NativeServer
  /** Rust resolved `inlineIo` to on: each batch ends by reading sockets here (ts/batch.ts). */
  readonly _inlineIo: boolean
  /** Sends made while a batch dispatches, handed to Rust in one call (ts/outbox.ts). */
  readonly _outbox: Outbox = new Outbox()
  /** Who is connected: this process's index (ts/presence.ts), or the whole Redis cluster (ts/cluster-presence.ts). */
  readonly presence: LocalPresence | ClusterPresence
  /** With `cluster.redis`: Rust forwards publishes to the other nodes, which need ids of theirs. */
  readonly _redisCluster: boolean
  /** The other nodes, through the application's bus (`cluster.bus`); undefined for one node. */
  readonly _bus: BusLink | undefined
  /** The dashboard's sampler and event log, made by the first `dashboardHandler` call. */
  _collector: Collector | undefined

  constructor(options: InternalOptions = {}) {
    this._nodeId = nodeIdOption(options.nodeId)
    /** Prefix of every connection id of this server: `${nodeId}:`. */
    this._idPrefix = `${this._nodeId}:`
    this._acks = new InboundAcks((pairs, releasedBytes) => this._native.ack(pairs, releasedBytes))
    this._namespaces = createNamespaces(options, this, this._acks)
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
    this._stats = { unknownReplies: 0, droppedMessages: 0, busPublishErrors: 0, busReceived: 0 }
    this._metrics = new JsMetrics(this._namespaces.length, metricsOption(options.metrics))
    const tel = options.telemetry
    if (tel !== undefined && (tel === null || typeof tel !== 'object' || (tel.onEvent === undefined && tel.tracer === undefined))) {
      throw new TypeError('option telemetry needs onEvent (events) or tracer (OpenTelemetry spans)')
    }
    this._telemetry = new Telemetry(tel, this._nodeId)
    this._tracing = tel?.tracer === undefined ? null : new Tracing(tel.tracer)
    if (tel?.propagate !== undefined && typeof tel.propagate !== 'boolean') throw new TypeError('option telemetry.propagate must be a boolean')
    this._propagation = tel?.propagate === true ? new AsyncLocalStorage<TraceContext>() : null
    this._replyOnInvalid = options.onInvalidMessage === 'reply'
    this._onError = options.onError ?? ((error) => console.error('[ferrosocket]', error))
    this._port = undefined
    this._started = false
    this._noListen = options.noListen === true
    this._authenticate = options.authenticate
    this._authStash = new Map()
    this._keepAlive = undefined
    this._shutdown = undefined
    this._shutdownResolve = undefined
    if (this._authenticate !== undefined && typeof this._authenticate !== 'function') {
      throw new TypeError('option authenticate must be a function')
    }
    checkOnInvalidMessage(options.onInvalidMessage)
    const native = nativeOptions(options, this._nodeId, this._namespaces, this._replyOnInvalid, this._authenticate !== undefined)
    native.reportRejections = this._telemetry.warn
    this._redisCluster = native.clusterRedisUrl !== undefined
    this._native = new binding.NativeServer(native, (json) => onBatch(this, json))
    this._inlineIo = this._native.inlineIo
    this.presence = this._redisCluster ? new ClusterPresence(this) : new LocalPresence(this)
    const cluster = (options as { cluster?: { bus?: unknown } }).cluster
    const bus = checkBus(cluster?.bus)
    this._bus = bus === undefined ? undefined : new BusLink(bus, this)
    this._collector = undefined
  }

  /** Bound port (undefined before `listen()` resolves, as documented). */
  get port(): number {
    return this._port as number
  }

  /** Names this process in connection ids (`${nodeId}:${n}`), unique across a cluster's nodes. */
  get nodeId(): string {
    return this._nodeId
  }

  get connectionCount(): number {
    return this._connections.size
  }

  /**
   * Counters, as a snapshot. `unknownReplies`: replies whose id matched no pending `conn.request`
   * (late replies to timed-out requests included). `droppedMessages`: messages received but never
   * handled (see README "Inbound limits"). `inboundPendingBytes`: what the global inbound bound
   * (`maxPendingBytes`) currently counts.
   */
  get stats(): ServerStats {
    const native = this._nativeMetrics()
    const { total, namespaces } = trafficStats(native, this._metrics, this._namespaces.map((ns) => ns.name))
    return {
      ...total,
      namespaces,
      connectionsOpened: native.opened,
      connectionsClosed: native.closed,
      handshakesRejected: native.handshakesRejected,
      publishes: { ...native.publishes, connection: this._metrics.connectionPublishes },
      backpressureCloses: native.backpressureCloses,
      compressedMessages: native.compressed,
      unknownReplies: this._stats.unknownReplies,
      droppedMessages: this._stats.droppedMessages,
      inboundPendingBytes: native.inboundPendingBytes,
      busPublishErrors: this._stats.busPublishErrors,
      ...this._redisStats(native.cluster),
    }
  }

  /** The dashboard's listener (ts/dashboard/): every call shares one collector, made on the first. */
  dashboardHandler(options: DashboardOptions): DashboardHandler {
    checkDashboardOptions(options)
    this._collector ??= new Collector(this)
    const host: DashboardHost = {
      closeConnection: (id, code, reason) => {
        const conn = this.getConnection(id)
        if (conn === undefined || !conn.isOpen) return false
        conn.close(code, reason)
        return true
      },
      reportError: (error) => this._reportError(error),
    }
    return createDashboardHandler(this._collector, host, options)
  }

  /** Prometheus text of every counter; see README "Metrics". */
  async metrics(): Promise<string> {
    const bus = this._bus === undefined ? null : { received: this._stats.busReceived, publishErrors: this._stats.busPublishErrors }
    return exposition(this._nativeMetrics(), this._metrics, this._namespaces.map((ns) => ns.name), bus)
  }

  _nativeMetrics(): NativeMetrics {
    return JSON.parse(this._native.metrics()) as NativeMetrics
  }

  /** The Rust cluster link's counters (zeros without `cluster.redis`). */
  _redisStats(c: NativeMetrics['cluster']): Pick<ServerStats, 'busReceived' | 'busPublished' | 'busDropped' | 'busSubscriptions' | 'redisConnected' | 'redisReconnects'> {
    if (c === null) return { busReceived: this._stats.busReceived, busPublished: 0, busDropped: 0, busSubscriptions: 0, redisConnected: false, redisReconnects: 0 }
    return { busReceived: c.received, busPublished: c.published, busDropped: c.dropped, busSubscriptions: c.subscriptions, redisConnected: c.connected, redisReconnects: c.reconnects }
  }

  async listen(): Promise<void> {
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
  handleUpgrade(req: UpgradeIncomingMessage, socket: object, head: Uint8Array): void {
    const sock = socket as AdoptableSocket
    if (this._shutdown) {
      sock.destroy()
      return
    }
    const handle = sock?._handle
    if (!handle || typeof handle.fd !== 'number' || handle.fd < 0) {
      throw new TypeError('ferrosocket: handleUpgrade needs a plain TCP net.Socket (terminate TLS in front of Node)')
    }
    handle.readStop?.()
    const parts: Uint8Array[] = [Buffer.from(headFromIncomingMessage(req), 'latin1')]
    if (head?.length) parts.push(Buffer.from(head))
    // Bytes Node read after the head but nobody consumed yet (an async router may have delayed us).
    if (sock.readableLength > 0) parts.push(sock.read(sock.readableLength))
    this._native.adopt(handle.fd, Buffer.concat(parts))
    this._start()
    sock.destroy()
  }

  /** Like net.Server: a running server keeps the process alive (the Rust callback is weak). */
  _start(): void {
    this._started = true
    this._keepAlive ??= setInterval(() => {}, 0x7fffffff)
  }

  onConnection(namespace: string | ConnectionHandler, handler?: ConnectionHandler): this {
    if (typeof namespace === 'function') [namespace, handler] = [DEFAULT_NAMESPACE, namespace]
    this._connectionHandlers[this._namespace(namespace).index].push(handler as ConnectionHandler)
    return this
  }

  /**
   * Handles `event` for every connection of a namespace (default: the default namespace) with one
   * function: `handler(data, ctx)`, `ctx.conn` being the sender. Same rules as `conn.onMessage`
   * (validated data, one message at a time per connection, in arrival order); a connection's own
   * handler for the event wins. Costs no memory per connection.
   */
  onMessage(namespace: string, event: string | MessageFn, handler?: MessageFn): this {
    if (typeof event === 'function') [namespace, event, handler] = [DEFAULT_NAMESPACE, namespace, event]
    return this._shareHandler(namespace, event, handler, false)
  }

  /** Answers request `name` for every connection of a namespace: `handler(input, ctx)`, `ctx.conn` being the client. */
  onRequest(namespace: string, name: string | RequestFn, handler?: RequestFn): this {
    if (typeof name === 'function') [namespace, name, handler] = [DEFAULT_NAMESPACE, namespace, name]
    return this._shareHandler(namespace, name, handler, true)
  }

  /** Registers a namespace-level message (`request` false) or request handler. */
  _shareHandler(namespace: string, key: unknown, handler: unknown, request: boolean): this {
    const ns = this._namespace(namespace)
    if (typeof handler !== 'function') throw new TypeError(`${request ? 'onRequest' : 'onMessage'} needs a handler function`)
    if (typeof key !== 'string' || key === '') throw new TypeError(`${request ? 'request name' : 'event'} must be a non-empty string`)
    if (ns.raw) throw new TypeError(request ? 'raw-mode namespaces have no requests' : 'raw-mode namespaces receive messages through onRawMessage')
    if (ns.contract && !hasEvent(request ? ns.contract.requests : ns.contract.in, key)) {
      throw new TypeError(request
        ? `Unknown request "${key}": it is not in the contract's "requests" map`
        : `Unknown inbound event "${key}": it is not in the contract's "in" map`)
    }
    if (request) ns.requestHandlers.set(key, handler as RequestFn)
    else ns.handlers.set(key, handler as MessageFn)
    this._replayBuffered(ns, key, request)
    return this
  }

  /** Raw-mode namespaces: `handler(data, conn)` for every message of every connection. */
  onRawMessage(namespace: string | RawFn, handler?: RawFn): this {
    if (typeof namespace === 'function') [namespace, handler] = [DEFAULT_NAMESPACE, namespace]
    const ns = this._namespace(namespace)
    if (typeof handler !== 'function') throw new TypeError('onRawMessage needs a handler function')
    if (!ns.raw) throw new TypeError('onRawMessage is for raw-mode namespaces (messageFormat: "raw")')
    ns.handlers.set(RAW, handler as InboundHandler)
    this._replayBuffered(ns, RAW, false)
    return this
  }

  /** Messages that arrived before their namespace handler existed run now. */
  _replayBuffered(ns: Namespace, key: HandlerKey, requests: boolean): void {
    for (const conn of this._connections.values()) if (conn._ns === ns) conn._replayBuffered(key, requests)
  }

  /** A connection of this server by its id (`conn.id`); undefined for ids of other nodes. */
  getConnection(id: string): Connection | undefined {
    const nid = this._localId(id)
    return nid === undefined ? undefined : this._connections.get(nid)
  }

  /** The native id of a connection id of this node (`${nodeId}:${n}`), else undefined. */
  _localId(id: unknown): number | undefined {
    const text = String(id)
    if (!text.startsWith(this._idPrefix)) return undefined
    const n = Number(text.slice(this._idPrefix.length))
    return Number.isSafeInteger(n) && n > 0 ? n : undefined
  }

  /**
   * Every `publish*` returns how many connections of this process it reached; with a cluster bus
   * it is also handed to the other nodes, which deliver to theirs.
   */
  broadcast(event: string, data: unknown, namespace: string = DEFAULT_NAMESPACE): number {
    const ns = this._namespace(namespace)
    const payload = this._serialise(ns, 'broadcast', event, data)
    this._bus?.send(ns.name, { everyone: true }, payload)
    return this._published(ns, 'broadcast', event, data, this._output().broadcast(ns.index, payload))
  }

  publishToRoom(room: string, event: string, data: unknown, namespace: string = DEFAULT_NAMESPACE): number {
    const ns = this._namespace(namespace)
    const payload = this._serialise(ns, 'room', event, data)
    this._bus?.send(ns.name, { rooms: [String(room)] }, payload)
    return this._published(ns, 'room', event, data, this._output().publishToRoom(ns.index, String(room), payload))
  }

  publishToUser(userId: string, event: string, data: unknown, namespace: string = DEFAULT_NAMESPACE): number {
    const ns = this._namespace(namespace)
    const payload = this._serialise(ns, 'user', event, data)
    this._bus?.send(ns.name, { users: [String(userId)] }, payload)
    return this._published(ns, 'user', event, data, this._output().publishToUser(ns.index, String(userId), payload))
  }

  publishToAudience(audience: Audience, event: string, data: unknown): number {
    const ns = this._namespace(audience?.namespace ?? DEFAULT_NAMESPACE)
    const payload = this._serialise(ns, 'audience', event, data)
    const global = globalAudience(audience)
    this._bus?.send(ns.name, global, payload)
    return this._published(ns, 'audience', event, data, this._deliver(ns, global, payload))
  }

  /**
   * Sends one envelope text (made by ts/protocol's encoders) to connection `nid`: collected while
   * a batch dispatches, else at once. True when queued; within a batch, Rust's own view (a close
   * it queued itself) is only known when the outbox flushes, so it is true there.
   */
  _send(nid: number, payload: string): boolean {
    const outbox = this._outbox
    if (outbox.collecting) {
      outbox.add(this._native, nid, payload)
      return true
    }
    return this._native.send(nid, payload)
  }

  /**
   * The native server, after it got the sends collected so far: every other call that writes to
   * or closes connections goes through here, so a connection's frames keep the app's order.
   */
  _output(): NativeServer {
    this._outbox.flush(this._native)
    return this._native
  }

  /** Validates and serialises a publish; a refusal is reported (`ws.publish.rejected`) and thrown. */
  _serialise(ns: Namespace, target: string, event: string, data: unknown, conn?: Conn): string {
    const tel = this._telemetry
    const meta = this._outgoingMeta()
    if (!tel.warn) return serialise(ns.contract, event, data, meta)
    try {
      const payload = serialise(ns.contract, event, data, meta)
      if (tel.debug) tel.emit('ws.publish.queued', conn, { namespace: ns.name, target, event, bytes: payload.length, payload: tel.previewOf(data) })
      return payload
    } catch (error) {
      if (tel.warn) tel.emit('ws.publish.rejected', conn, { namespace: ns.name, target, event, error: error instanceof Error ? error.message : String(error) })
      throw error
    }
  }

  _outgoingMeta(): EnvelopeMeta | undefined {
    const trace = this._propagation?.getStore()
    return trace === undefined ? undefined : { traceparent: formatTraceparent(trace) }
  }

  /** `ws.publish.sent` (debug) with how many connections of this node it reached; returns that count. */
  _published(ns: Namespace, target: string, event: string, data: unknown, delivered: number): number {
    const tel = this._telemetry
    if (tel.debug) tel.emit('ws.publish.sent', undefined, { namespace: ns.name, target, event, delivered, payload: tel.previewOf(data) })
    this._tracing?.published(ns.name, target, event, delivered)
    return delivered
  }

  /** Rejections Rust made (reported only when telemetry listens at warn). */
  _rejected(entry: RejectedEntry): void {
    const tel = this._telemetry
    if (!tel.warn) return
    if (entry[1] === 0) {
      tel.emit('ws.handshake.rejected', undefined, { status: entry[2], reason: entry[3], remoteAddress: entry[4] })
    } else {
      const conn = this._connections.get(entry[2])
      tel.emit('ws.message.rejected', conn, { code: entry[3] === 0 ? undefined : entry[3], reason: entry[4] })
    }
  }

  /** An event for a connection at its level, if telemetry listens there. */
  _event(name: EventName, conn: Conn | undefined, detail: Record<string, unknown>, level?: TelemetryLevel): void {
    const tel = this._telemetry
    if (tel.on(level ?? EVENT_LEVELS[name])) tel.emit(name, conn, detail, undefined, level)
  }

  /** Delivers to this node's connections in an audience given with global ids (and, with `cluster.redis`, to the other nodes'). */
  _deliver(ns: Namespace, audience: BusAudience, payload: string): number {
    const native = this._output()
    if (audience.everyone) return native.broadcast(ns.index, payload)
    return native.publishToAudience(ns.index, this._nativeAudience(audience), payload)
  }

  /**
   * The native form of an audience given with global ids: this node's ids as numbers, and (with
   * `cluster.redis` only: Rust carries them to their nodes) the other nodes' ids as given.
   */
  _nativeAudience(audience: BusAudience): AudienceParts {
    const localId = (id: unknown): number | undefined => this._localId(id)
    const remote = (ids: string[] | undefined): string[] => (this._redisCluster ? remoteIds(ids, this._idPrefix) : [])
    return {
      rooms: audience.rooms ?? [],
      users: audience.users ?? [],
      connections: localIds(audience.connections, localId),
      except: localIds(audience.except, localId),
      remoteConnections: remote(audience.connections),
      remoteExcept: remote(audience.except),
    }
  }

  /** A publish of another node, from the bus. */
  _deliverRemote(message: BusMessage): number {
    const ns = this._namespaceByName.get(message.namespace)
    if (ns === undefined || typeof message.payload !== 'string') return 0
    return this._deliver(ns, message.audience ?? {}, message.payload)
  }

  /**
   * Starts the close handshake with every connection in the audience — on every node with
   * `cluster.redis` — and resolves with how many of this process.
   */
  async closeConnections(audience: Audience, code: number = CloseCode.NORMAL, reason: string = ''): Promise<number> {
    assertSendableCode(code)
    const ns = this._namespace(audience?.namespace ?? DEFAULT_NAMESPACE)
    return this._output().closeAudience(ns.index, this._nativeAudience(globalAudience(audience)), code, String(reason))
  }

  shutdown(code: number = CloseCode.GOING_AWAY, reason: string = Reason.SHUTDOWN, options: ShutdownOptions = {}): Promise<void> {
    if (this._shutdown) return this._shutdown
    assertSendableCode(code)
    const timeoutMs = positive('timeoutMs', options.timeoutMs, 5000)
    let done: Promise<void>
    if (!this._started) {
      done = Promise.resolve()
      this._output().shutdown(code, String(reason), 0)
    } else {
      done = new Promise((resolve) => (this._shutdownResolve = resolve))
      this._output().shutdown(code, String(reason), timeoutMs)
    }
    // The bus last: until every connection is closed, other nodes' publishes still reach them.
    const bus = this._bus
    this._shutdown = bus === undefined ? done : done.then(() => bus.close()).catch((error: unknown) => this._reportError(error))
    return this._shutdown
  }

  // ---- internals used by connections, the batch dispatch and the handshake code ----

  _namespace(name: string): Namespace {
    const ns = this._namespaceByName.get(name)
    if (!ns) throw new TypeError(`Unknown namespace "${name}"`)
    return ns
  }

  _reportError(error: unknown, conn?: Conn): void {
    try {
      this._onError(error, conn)
    } catch {
      // an onError that throws must not take the dispatcher down
    }
  }

  _authenticateUpgrade(authId: number, nsIndex: number, remoteAddress: string, head: string): void {
    authenticateUpgrade(this, authId, nsIndex, remoteAddress, head)
  }

  _abandonHandshake(authId: number): void {
    this._authStash.delete(authId)
  }

  _opened(entry: OpenEntry): void {
    const id = entry[1]
    const nsIndex = entry[2]
    const authId = entry[4]
    let request = packHead(entry[5]) // parsed only if someone reads conn.headers/url/query
    let userId: string | undefined
    let data: unknown
    if (authId) {
      const accepted = takeAccepted(this, authId)
      if (accepted !== undefined) {
        request = accepted.request ?? request
        userId = accepted.userId
        data = accepted.data
      }
    }
    // `| 0` keeps openedAt a small integer, not a heap number per connection, while it fits (24 days).
    const sinceEpoch = Date.now() - this._epoch
    const openedAt = (sinceEpoch | 0) === sinceEpoch ? sinceEpoch | 0 : sinceEpoch
    const conn = new Connection(this._namespaces[nsIndex], id, request, entry[3], entry[6] ?? undefined, userId ?? undefined, data, openedAt)
    this._connections.set(id, conn)
    const tel = this._telemetry
    if (tel.info) tel.emit('ws.connection.opened', conn, { remoteAddress: entry[3], protocol: entry[6] ?? undefined }, conn.trace)
    this._tracing?.opened(conn, entry[3])
    for (const handler of this._connectionHandlers[nsIndex]) {
      try {
        const r = handler(conn)
        if (isPromiseLike(r)) {
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
  _closed(id: number, code: number, reason: string, abandoned: boolean): void {
    const conn = this._connections.get(id)
    if (!conn) return
    this._connections.delete(id)
    this._acks.forget(id)
    if (this._telemetry.warn) closedEvents(this._telemetry, conn, code, reason, abandoned)
    this._tracing?.closed(conn, code, reason)
    conn._closed(code, reason, abandoned)
  }

  _clusterAnswer(callId: number, answer: unknown, error: string | null): void {
    if (this.presence instanceof ClusterPresence) this.presence._answer(callId, answer, error)
  }

  _finishShutdown(): void {
    // Anything Rust queued before completion (close events) is already in this batch.
    this._collector?.stop()
    clearInterval(this._keepAlive)
    this._keepAlive = undefined
    this._shutdownResolve?.()
  }
}

export { DEFAULT_NAMESPACE }

/** Closes a client or the server made in order (1000, 1001 going away, 1005 no code) are info; others warn. */
const ORDERLY_CLOSES = new Set([CloseCode.NORMAL, CloseCode.GOING_AWAY, 1005])

/** `ws.connection.closed`, and what a close code and reason say happened before it. */
function closedEvents(tel: Telemetry, conn: Connection, code: number, reason: string, abandoned: boolean): void {
  if (tel.warn && code === CloseCode.GOING_AWAY && reason === 'Heartbeat timeout') tel.emit('ws.heartbeat.timeout', conn, { code, reason })
  if (tel.warn && code === 1013 && reason === 'WebSocket backpressure overflow') tel.emit('ws.backpressure.overflow', conn, { code, reason })
  const level = ORDERLY_CLOSES.has(code) ? 'info' : 'warn'
  if (tel.on(level)) tel.emit('ws.connection.closed', conn, { code, reason, abandoned }, undefined, level)
}
