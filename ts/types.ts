// ferrosocket — the public types, hand-written: the contract users compile against (index.d.ts
// re-exports them through lib/index.d.ts). Changes here are API changes. The values the API
// exports (createServer, defineContract, RequestError, RequestErrorCode, CloseCode) are declared
// where they are implemented, with the signatures the hand-written typings always had; the
// implementation classes are checked against the interfaces below (see ts/index.ts). The
// generated N-API surface lives in binding.d.ts.

// ---------------------------------------------------------------------------------------------
// Standard Schema (https://standardschema.dev) — the only thing we require of a schema library.
// Declared structurally so zod 4, valibot, arktype … work without a dependency on any of them.
// ---------------------------------------------------------------------------------------------

export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1
    readonly vendor: string
    readonly validate: (
      value: unknown,
    ) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>
    readonly types?: { readonly input: Input; readonly output: Output } | undefined
  }
}

export type StandardSchemaResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<StandardSchemaIssue> }

export interface StandardSchemaIssue {
  readonly message: string
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined
}

/** Value a schema produces after validation (what a handler receives). */
export type InferOutput<S> = S extends StandardSchemaV1<any, infer O> ? O : never
/** Value a schema accepts (what `publish*` takes). */
export type InferInput<S> = S extends StandardSchemaV1<infer I, any> ? I : never

// ---------------------------------------------------------------------------------------------
// Contracts
// ---------------------------------------------------------------------------------------------

export type EventSchemas = Record<string, StandardSchemaV1<any, any>>

/** A request's schemas: what the asking side sends (`input`) and what the answer carries (`output`). */
export interface RequestSchema<I extends StandardSchemaV1<any, any> = StandardSchemaV1<any, any>, O extends StandardSchemaV1<any, any> = StandardSchemaV1<any, any>> {
  readonly input: I
  readonly output: O
}
export type RequestSchemas = Record<string, RequestSchema>

/**
 * A contract names the events a namespace accepts (`in`) and emits (`out`) with their schemas, the
 * requests clients may ask the server (`requests`) and the requests the server may ask clients
 * (`clientRequests`).
 */
export interface Contract<
  In extends EventSchemas = EventSchemas,
  Out extends EventSchemas = EventSchemas,
  Req extends RequestSchemas = RequestSchemas,
  CReq extends RequestSchemas = RequestSchemas,
> {
  readonly in: In
  readonly out: Out
  readonly requests: Req
  readonly clientRequests: CReq
}

/** Used when a namespace has no contract: any event name, any data, nothing validated. */
export type UntypedContract = Contract<
  Record<string, StandardSchemaV1<any, any>>,
  Record<string, StandardSchemaV1<any, any>>,
  Record<string, RequestSchema<StandardSchemaV1<any, any>, StandardSchemaV1<any, any>>>,
  Record<string, RequestSchema<StandardSchemaV1<any, any>, StandardSchemaV1<any, any>>>
>

export type InEvent<C extends Contract> = keyof C['in'] & string
export type OutEvent<C extends Contract> = keyof C['out'] & string
export type InData<C extends Contract, E extends InEvent<C>> = InferOutput<C['in'][E]>
export type OutData<C extends Contract, E extends OutEvent<C>> = InferInput<C['out'][E]>

/** Names of requests clients may send (`requests`). */
export type RequestName<C extends Contract> = keyof C['requests'] & string
/** What an `onRequest` handler receives: the output of the request's `input` schema. */
export type RequestInput<C extends Contract, R extends RequestName<C>> = InferOutput<C['requests'][R]['input']>
/** What an `onRequest` handler returns: the input of the request's `output` schema. */
export type RequestOutput<C extends Contract, R extends RequestName<C>> = InferInput<C['requests'][R]['output']>
/** Names of requests the server may send to clients (`clientRequests`). */
export type ClientRequestName<C extends Contract> = keyof C['clientRequests'] & string
/** What `conn.request` takes: the input of the client request's `input` schema. */
export type ClientRequestInput<C extends Contract, R extends ClientRequestName<C>> = InferInput<C['clientRequests'][R]['input']>
/** What `conn.request` resolves with: the output of the client request's `output` schema. */
export type ClientRequestResult<C extends Contract, R extends ClientRequestName<C>> = InferOutput<C['clientRequests'][R]['output']>

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/** The HTTP upgrade request, as `authenticate` sees it. */
export interface UpgradeRequest {
  /** Request target: path and query string. */
  url: string
  path: string
  /** Query parameters (the last value wins for repeated keys). */
  query: Record<string, string>
  /** Lower-cased header names; repeated headers joined with `', '` (`'; '` for cookie). */
  headers: Record<string, string>
  /** Client address (honours `trustProxy`). */
  remoteAddress: string
  /** Namespace the path is mounted on (`'/'` for the default). */
  namespace: string
}

/** Accept the upgrade, optionally naming the user and attaching data to the connection. */
export interface AuthAccept<D> {
  userId?: string
  data?: D
}

/** Reject the upgrade with this HTTP status (400–599) and body. */
export interface AuthReject {
  status: number
  message?: string
}

export type AuthResult<D> = AuthAccept<D> | AuthReject | boolean | null | undefined

export interface ServerOptions<
  C extends Contract = UntypedContract,
  NS extends Record<string, Contract> = {},
  D = undefined,
> {
  /** Interface to bind. Default `'0.0.0.0'`. */
  host?: string
  /** TCP port; `0` picks an ephemeral port (read `server.port` after `listen()`). Default `0`. */
  port?: number
  /** Upgrade path of the default namespace. Default `'/ws'`. Other namespaces mount at `${path}/${name}`. */
  path?: string
  /** Contract of the default namespace. Without one, events are untyped and unvalidated. */
  contract?: C
  /** Extra namespaces by name, each with its own contract (or `null` for untyped). */
  namespaces?: { [K in keyof NS]: NS[K] | null }
  /** Largest accepted message in bytes; larger closes 1009. Default `65536`. */
  maxPayload?: number
  /**
   * permessage-deflate (RFC 7692) for clients that offer it, e.g. every browser (see README
   * "Compression"). Default off. `true` takes the defaults.
   */
  compression?: boolean | CompressionOptions
  /** Names this process in connection ids (`${nodeId}:${n}`), so ids stay unique across the nodes of a cluster. Default `${hostname}-${pid}`. */
  nodeId?: string
  /** Several nodes: `{ bus }`, a bus the application provides (see README "Running several nodes"). */
  cluster?: ClusterOptions
  /** Metrics options (`server.metrics()` always works; see README "Metrics"). */
  metrics?: MetricsOptions
  /** Telemetry events (see README "Telemetry"). */
  telemetry?: TelemetryOptions
  /** Ping interval; a connection with no pong (or any frame) by the next ping closes 1001. `0` disables. Default `{ intervalMs: 30000 }`. */
  heartbeat?: { intervalMs?: number }
  /** Per-connection outbound queue bound; overflow closes the connection 1013. Default `{ maxQueuedMessages: 1000, maxBufferedBytes: 1048576 }`. */
  backpressure?: { maxQueuedMessages?: number; maxBufferedBytes?: number }
  /** Maximum open connections; extra handshakes are closed 1013 `concurrency-limit-exceeded`. `0` = unlimited. Default `0`. */
  maxConnections?: number
  /** Messages of one connection handed to JS but not yet handled before Rust stops reading that socket. Default `100`. */
  maxInflightMessages?: number
  /** Messages buffered per connection for events that have no handler yet (oldest dropped). Default `100`. */
  maxBufferedMessages?: number
  /** Inbound bytes received and not yet handled (waiting for the JS thread, queued, buffered or running), across all connections, at which every reader pauses. Each message counts its size plus 256 B. Default `16777216` (16 MiB); see README "Inbound limits". */
  maxPendingBytes?: number
  /** Wait this long for the peer's close frame before terminating the TCP connection. Default `5000`. */
  closeTimeoutMs?: number
  /** `'close'` (default) closes a connection that sends invalid input; `'reply'` answers with an `error` event instead. */
  onInvalidMessage?: 'close' | 'reply'
  /** `'envelope'` (default): JSON `{event,data}` messages. `'raw'`: every message reaches `conn.onRawMessage` as it came (no contract), e.g. an echo server. */
  messageFormat?: 'envelope' | 'raw'
  /** Slowest allowed HTTP upgrade (request head); slower clients are dropped. Default `10000`. */
  handshakeTimeoutMs?: number
  /** Rust I/O threads. Default: available cores. */
  workerThreads?: number
  /**
   * The JS thread reads sockets itself between its batches of events, and the Rust I/O threads
   * yield the CPU to it. For a process confined to one CPU, where the two threads otherwise take
   * turns on it for every batch. Default `false` (see the README's Benchmarks for what it gains
   * and where it loses).
   */
  inlineIo?: boolean
  /**
   * Decide each upgrade before the WebSocket exists (Rust holds the socket meanwhile). Return
   * `{ userId?, data? }` (or `true`) to accept; `false`/nothing or a thrown error rejects with 401;
   * `{ status, message }` rejects with that status. A thrown error's `status` is used and its
   * message sent only when `error.expose` is true. Must settle within `handshakeTimeoutMs` (else 503).
   */
  authenticate?: (request: UpgradeRequest) => AuthResult<D> | Promise<AuthResult<D>>
  /**
   * Allowed `Origin` values: exact (`'https://app.example'`), host only (`'app.example'`, any scheme)
   * or subdomain wildcards (`'*.example.com'`). Others get 403. Requests without `Origin` (non-browser
   * clients) are allowed. Default: any origin — see README "Security".
   */
  allowedOrigins?: string[]
  /**
   * Which proxies may set the client address via `X-Forwarded-For` / `X-Real-IP`: `true` (all),
   * a hop count, or proxy addresses / CIDR ranges. Default: none (the TCP peer address).
   */
  trustProxy?: boolean | number | string | string[]
  /** Subprotocols spoken; the first one the client offers that is listed here is selected. */
  protocols?: string[]
  /** Refuse (400) clients that offer none of `protocols`. Default `false`. */
  requireProtocol?: boolean
  /** Do not bind a port: connections arrive only through `handleUpgrade`. Default `false`. */
  noListen?: boolean
  /** Called with errors thrown by message handlers (the connection is closed 1011) and with non-public errors of request handlers (answered `internal`, the connection stays open). Default: `console.error`. */
  onError?: (error: unknown, conn: Connection<any, any> | undefined) => void
  /** A client request not answered within this many ms is answered `{ code: 'timeout' }` (a late result is dropped); also the default `timeoutMs` of `conn.request`. `0` disables. Default `15000`. */
  requestTimeoutMs?: number
  /** Send the message of every error a request handler throws. By default only `RequestError`s (and errors with `expose: true`) keep their message; others say `Internal error`. Default `false`. */
  exposeErrors?: boolean
}

/** Traffic counters of a namespace, or of the whole server. */
export interface CompressionOptions {
  /** Messages with a smaller payload are sent uncompressed. Default `256` (bytes). */
  threshold?: number
  /** zlib level, 0 (stored) to 9 (smallest). Default `3`: a publish is compressed once whatever its audience, so for fan-out a better ratio costs almost nothing; one-to-one sends pay it per message. */
  level?: number
  /** Largest window the server compresses with, 9–15. Default `15`. */
  serverMaxWindowBits?: number
}

export interface TrafficStats {
  /** Open connections. */
  connections: number
  /** Data messages received (requests and replies included). */
  messagesReceived: number
  /** Of those, refused: not JSON, not an envelope, an event or request not in the contract, or data its schema refused. */
  messagesRejected: number
  /** Messages queued for sending (each delivery of a publish, replies, requests). */
  messagesSent: number
  /** Bytes read from the sockets. */
  bytesReceived: number
  /** Bytes of the frames queued for sending. */
  bytesSent: number
  /** Messages and bytes waiting in outbound queues now. */
  queuedMessages: number
  queuedBytes: number
}

export interface ServerStats extends TrafficStats {
  /** The same counters per namespace name. */
  namespaces: Record<string, TrafficStats>
  /** Connections opened (upgrades completed). */
  connectionsOpened: number
  /** Connections closed, by close code (1006: ended without a close handshake). */
  connectionsClosed: Record<string, number>
  /** Upgrades refused, by HTTP status. */
  handshakesRejected: Record<string, number>
  /** Publish calls by what they addressed. */
  publishes: Record<'connection' | 'room' | 'user' | 'audience' | 'broadcast', number>
  /** Connections closed 1013 because their outbound queue overflowed. */
  backpressureCloses: number
  /** With `compression`: messages compressed, once per publish however many recipients share the compressed frame (messages other nodes deliver here are not counted). */
  compressedMessages: number
  /** Replies from clients whose id matched no pending `conn.request` (unknown ids and late replies after a timeout). */
  unknownReplies: number
  /** Messages and requests received but never handled: buffered without a handler and pushed out (`maxBufferedMessages`) or still buffered at close, queued when the connection ended without a close handshake, or queued behind a handler that failed. */
  droppedMessages: number
  /** Inbound bytes counted against `maxPendingBytes` now: received and not yet handled or dropped (in the batch for JS, queued, buffered or running). */
  inboundPendingBytes: number
  /** With `cluster.bus`: publishes the bus refused (threw or rejected); those reached this node only. */
  busPublishErrors: number
  /** In a cluster: messages of other nodes received and delivered here (with `cluster.redis`, only for rooms and users with a member on this node, broadcasts, and connections of this node). */
  busReceived: number
  /** With `cluster.redis`: bus messages handed to Redis (one per target channel of a publish). */
  busPublished: number
  /** With `cluster.redis`: cross-node messages lost — not sent because Redis was unavailable or the queue was full, or received faster than delivered. Delivery across nodes is at most once. */
  busDropped: number
  /** With `cluster.redis`: channels this node is subscribed to (its own, each namespace's broadcast, and every room and user with a member here). */
  busSubscriptions: number
  /** With `cluster.redis`: both connections to Redis are up. */
  redisConnected: boolean
  /** With `cluster.redis`: times the connection to Redis was lost and made again. */
  redisReconnects: number
}

/** One connection's traffic (`conn.stats`, a snapshot). */
export interface ConnectionStats {
  messagesReceived: number
  bytesReceived: number
  messagesSent: number
  bytesSent: number
  /** Frames and bytes waiting in its outbound queue. */
  queuedMessages: number
  queuedBytes: number
  /** Its messages received and not yet handled (queued behind a handler, or buffered without one). */
  pendingMessages: number
}

export type TelemetryLevel = 'debug' | 'info' | 'warn' | 'error'

/** W3C trace context of a message (from `meta.traceparent`) or a connection (the upgrade's `traceparent` header). */
export interface TraceContext {
  traceId: string
  /** A new span id for this handler run (or connection). */
  spanId: string
  /** The sender's span: the `traceparent`'s parent id. */
  parentSpanId: string
  sampled: boolean
}

/** One telemetry record (see README "Telemetry"). */
export interface TelemetryEvent {
  name: string
  level: TelemetryLevel
  /** Unix ms. */
  time: number
  nodeId: string
  connectionId: string | undefined
  namespace: string | undefined
  userId: string | undefined
  traceId: string | undefined
  spanId: string | undefined
  parentSpanId: string | undefined
  sampled: boolean | undefined
  /** What happened: reason, close code, sizes, event name, payload preview… */
  detail: Record<string, unknown>
}

export interface TelemetryOptions {
  /** Receives every recorded event; a sink that throws is ignored (and counted). */
  onEvent?: (event: TelemetryEvent) => void
  /**
   * An OpenTelemetry Tracer (`trace.getTracer('…')` of `@opentelemetry/api`, an optional peer
   * dependency): spans for connections, handled messages and publishes. See README "Telemetry".
   */
  tracer?: { startSpan(name: string, options?: any, context?: any): unknown }
  /**
   * Publishes made while a handler runs carry its trace in `meta.traceparent` (the handler's span as
   * parent), so a client or another service continues the trace. Default `false`.
   */
  propagate?: boolean
  /** Events below this level are not even built. Default `'info'`. */
  level?: TelemetryLevel
  sampling?: {
    /** Share of events recorded, 0–1. Default 1. */
    defaultRate?: number
    rateByEvent?: Record<string, number>
    /** At most this many records per second (the rest are left out). Default unlimited. */
    maxRecordsPerSecond?: number
    /** Levels recorded whatever the sampling and the cap. Default `['warn', 'error']`. */
    alwaysRecordLevels?: TelemetryLevel[]
  }
  /** `'preview'`: add `detail.payload`, the first `maxPayloadPreviewBytes` characters of the data. Default `false`. */
  capturePayload?: false | 'preview'
  maxPayloadPreviewBytes?: number
}

/** `metrics` option. */
export interface MetricsOptions {
  /** Time every message and request handler into `ferrosocket_handler_duration_seconds` (two clock reads per message). Default `false`. */
  handlerDuration?: boolean
}

export interface ShutdownOptions {
  /** How long to wait for peers to complete the close handshake before terminating them. Default `5000`. */
  timeoutMs?: number
}

// ---------------------------------------------------------------------------------------------
// Server and connections
// ---------------------------------------------------------------------------------------------

export interface Audience<NSName extends string = string> {
  /** Namespace name; default namespace is `'/'`. */
  namespace?: NSName
  rooms?: Iterable<string>
  users?: Iterable<string>
  /** Connection ids (`conn.id`). */
  connections?: Iterable<string>
  /** Connection ids excluded from the union of the others. */
  except?: Iterable<string>
}

/** The audience of a publish as it crosses nodes: names and global connection ids only. */
export interface BusAudience {
  everyone?: boolean
  rooms?: string[]
  users?: string[]
  /** Connection ids (`conn.id`, `${nodeId}:${n}`). */
  connections?: string[]
  except?: string[]
}

/** One publish on its way to the other nodes. */
export interface BusMessage {
  /** `nodeId` of the publishing node (it delivered to its own connections already). */
  origin: string
  /** Namespace name. */
  namespace: string
  audience: BusAudience
  /** The encoded envelope, validated and serialised once by the publishing node. */
  payload: string
}

/**
 * A bus between the nodes, provided by the application (any engine: a message broker, NATS,
 * Postgres LISTEN/NOTIFY…). It must deliver each message to every other subscribed node; the
 * sender's own copy is ignored.
 */
export interface ClusterBus {
  publish(message: BusMessage): void | PromiseLike<void>
  /** Calls `handler` for each message; returns a function that stops it. */
  subscribe(handler: (message: BusMessage) => void): (() => void) | void
  /** Called once by `server.shutdown()`. */
  shutdown?(): void | PromiseLike<void>
}

/** Several nodes through a bus the application provides. */
export interface BusClusterOptions {
  bus: ClusterBus
}

/** Several nodes through Redis, spoken from Rust (see README "Running several nodes"). */
export interface RedisClusterOptions {
  /** `redis://[user:password@]host:port[/db]`, or `{ url }`. */
  redis: string | { url: string }
  /** Start of every key and channel name (several apps can share one Redis). Default `'ferrosocket'`. */
  prefix?: string
  /** A node whose heartbeat is older than this is dead: its connections leave presence. Heartbeats go out every third of it. Default `10000`, at least `300`. */
  nodeTimeoutMs?: number
  /** Sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7+) or plain channels. Default `'auto'`: sharded when the server has it. Every node of a cluster must use the same. */
  sharded?: 'auto' | boolean
}

export type ClusterOptions = BusClusterOptions | RedisClusterOptions

/** One connection as presence reports it. */
export interface PresenceEntry {
  /** `conn.id`: `${nodeId}:${n}`. */
  connectionId: string
  nodeId: string
  namespace: string
  userId: string | null
  rooms?: string[]
}

export interface PresenceStats {
  nodes: number
  connections: number
  /** Rooms with at least one member (a name used in two namespaces counts twice). */
  rooms: number
  /** Users with at least one connection (per namespace, like rooms). */
  users: number
}

/**
 * Who is connected. Without a cluster the answers come from this process's index; the methods are
 * async so that a cluster can answer the same calls for every node.
 */
export interface Presence<NSName extends string = string> {
  getRoomMembers(room: string, namespace?: NSName): Promise<PresenceEntry[]>
  /** Without `namespace`: the user's connections in every namespace. */
  getUserConnections(userId: string, namespace?: NSName): Promise<PresenceEntry[]>
  getConnection(connectionId: string): Promise<PresenceEntry | null>
  /**
   * Resolves once every membership change made on this node so far (opens, closes, joins,
   * leaves, user changes) is visible to the whole cluster: in presence, and subscribed to, so a
   * publish from another node made afterwards reaches it. At once without `cluster.redis`.
   * Rejects after `timeoutMs` (default 5000) when Redis is unavailable.
   */
  sync(timeoutMs?: number): Promise<void>
  /** Without `namespace`: every namespace. */
  getConnectionCount(namespace?: NSName): Promise<number>
  getStats(): Promise<PresenceStats>
}

export interface MessageContext<Conn = Connection<any, unknown>> {
  event: string
  /** `meta` of the envelope (trace context), if the client sent one. */
  meta: { traceparent?: string; tracestate?: string } | undefined
  /** The parsed `meta.traceparent` with a new span id for this run; undefined without a valid one. */
  trace: TraceContext | undefined
  /** The connection the message came from (what namespace handlers use instead of a closure). */
  conn: Conn
}

/** A promise it returns is awaited before the connection's next message; any other result is ignored. */
export type MessageHandler<T, Conn = Connection<any, unknown>> = (data: T, ctx: MessageContext<Conn>) => unknown

export interface RequestContext<Conn = Connection<any, unknown>> {
  /** The client that sent the request. */
  readonly conn: Conn
  /** The request name. */
  readonly event: string
  /** `meta` of the envelope (trace context), if the client sent one. */
  readonly meta: { traceparent?: string; tracestate?: string } | undefined
  /** The parsed `meta.traceparent` with a new span id for this run; undefined without a valid one. */
  readonly trace: TraceContext | undefined
  /** The request id as the client sent it. */
  readonly id: string | number
  /** Aborted (with a `RequestError`) when the request times out or the connection closes before the handler answers. */
  readonly signal: AbortSignal
}

export type RequestHandler<I, O, Conn = Connection<any, unknown>> = (input: I, ctx: RequestContext<Conn>) => O | Promise<O>

export interface RequestOptions {
  /** Reject with `RequestError` code `timeout` after this many ms. `0` disables. Default: the server's `requestTimeoutMs` (15000). */
  timeoutMs?: number
}

/** Codes ferrosocket produces; applications may use any other string. */
export type RequestErrorCodeValue =
  | 'internal'
  | 'invalid_input'
  | 'invalid_output'
  | 'timeout'
  | 'unknown_request'
  | 'duplicate_id'
  | 'unavailable'
  | 'connection_closed'

export interface CloseInfo {
  code: number
  reason: string
}

export interface Connection<C extends Contract = UntypedContract, D = unknown> {
  /** Unique id of this connection across every node: `${server.nodeId}:${n}`. */
  readonly id: string
  /** Namespace name; `'/'` for the default namespace. */
  readonly namespace: string
  readonly userId: string | undefined
  /** Client address: the TCP peer, or the forwarded client address when `trustProxy` allows. */
  readonly remoteAddress: string
  /** Request headers of the upgrade (lower-cased names). */
  readonly headers: Readonly<Record<string, string>>
  /** Request target of the upgrade (path and query string). */
  readonly url: string
  readonly query: Readonly<Record<string, string>>
  /** Negotiated subprotocol, if any. */
  readonly protocol: string | undefined
  /** What `authenticate` returned as `data`. */
  readonly data: D
  /** Unix time (ms) the connection opened. */
  readonly openedAt: number
  /** Unix time (ms) bytes were last received from the peer (any frame, pongs included). */
  readonly lastSeenAt: number
  /** Rooms this connection has joined. */
  readonly rooms: ReadonlySet<string>
  /** False once the connection has closed (or started closing). */
  readonly isOpen: boolean
  /** Last heartbeat round-trip in milliseconds (`undefined` before the first pong). */
  readonly rtt: number | undefined
  /** Whether this connection negotiated permessage-deflate (`compression` option; false once closed). */
  readonly compression: boolean
  /** Messages and bytes in and out so far, queued output, unhandled input (a snapshot; zeros once closed). */
  readonly stats: ConnectionStats
  /** Trace context of the upgrade request's `traceparent` header, if it had a valid one. */
  readonly trace: TraceContext | undefined

  /** Handle `event`. Messages run one at a time per connection, in arrival order; async handlers are awaited. */
  onMessage<E extends InEvent<C>>(event: E, handler: MessageHandler<InData<C, E>>): this
  /** Send one event to this connection. Throws synchronously on an unknown event or invalid data; no-op once closed. */
  /** True when the event was queued; false once the connection is closing. */
  publish<E extends OutEvent<C>>(event: E, data: OutData<C, E>): boolean
  /** Answer the client's request `name`. Requests share the message queue (one at a time, arrival order); the handler's result is validated and sent as `{ id, data }`, a thrown error as `{ id, error }`. */
  onRequest<R extends RequestName<C>>(name: R, handler: RequestHandler<RequestInput<C, R>, RequestOutput<C, R>>): this
  /** Ask the client: resolves with its reply (validated). Rejects with `RequestError` (`timeout`, `connection_closed`, the client's error code, `invalid_output`). Throws synchronously on an unknown name or invalid data. */
  request<R extends ClientRequestName<C>>(name: R, data: ClientRequestInput<C, R>, options?: RequestOptions): Promise<ClientRequestResult<C, R>>
  /** Raw-mode namespaces (`messageFormat: 'raw'`): text arrives as a string, binary as bytes (a Node `Buffer`), with this connection as the second argument. Throws a TypeError on other namespaces. */
  onRawMessage(handler: (data: string | Uint8Array, conn: Connection<C, D>) => unknown): this
  /** Raw-mode send: a string goes out as a text frame, bytes as a binary frame. */
  /** True when the frame was queued; false once the connection is closing. */
  sendRaw(data: string | Uint8Array): boolean
  onClose(handler: (code: number, reason: string) => void): this
  waitForClose(): Promise<CloseInfo>
  join(room: string): this
  leave(room: string): this
  setUserId(userId: string): this
  clearUserId(): this
  /** Start the close handshake. Default code `1000`. */
  close(code?: number, reason?: string): void
}

/** The parts of Node's `http.IncomingMessage` that `handleUpgrade` reads. */
export interface UpgradeIncomingMessage {
  method?: string
  url?: string
  httpVersion: string
  rawHeaders: string[]
}

/** The request as `dashboardHandler` reads it: Node's `IncomingMessage` (Express's and Fastify's `request.raw` are ones). */
export interface DashboardRequest {
  method?: string
  url?: string
  headers: Record<string, string | string[] | undefined>
}

/** The response as `dashboardHandler` writes it: Node's `ServerResponse`. */
export interface DashboardResponse {
  statusCode: number
  readonly headersSent?: boolean
  setHeader(name: string, value: string): unknown
  end(body?: string): unknown
}

/** A Node request listener; also an Express middleware (`app.use('/dashboard', handler)`). */
export type DashboardHandler = (request: DashboardRequest, response: DashboardResponse) => void

export interface DashboardOptions {
  /**
   * Decides, for every request to the dashboard (page, files and API), whether it is served;
   * false answers 403. Required: the dashboard shows connection ids, user ids, rooms and
   * addresses.
   */
  authorize(request: DashboardRequest): boolean | Promise<boolean>
  /** Let operators close a connection from the page (code 1008). Default `false`: read-only. */
  allowActions?: boolean
  /** Largest rooms listed per namespace. Default 50, at most 1000. */
  maxRooms?: number
}

export interface Server<C extends Contract = UntypedContract, NS extends Record<string, Contract> = {}, D = undefined> {
  /** Bound port (after `listen()` resolves). */
  readonly port: number
  /** Names this process in connection ids (`${nodeId}:${n}`); the `nodeId` option, default `${hostname}-${pid}`. */
  readonly nodeId: string
  /** Number of open connections. */
  readonly connectionCount: number
  /** Counters (a snapshot; walks every connection to sum their traffic). */
  readonly stats: ServerStats
  /** Every counter in the Prometheus text format (`METRICS_CONTENT_TYPE`), for a `/metrics` endpoint. */
  metrics(): Promise<string>
  /** Who is connected: room members, a user's connections, counts (this process without a cluster). */
  readonly presence: Presence<'/' | (keyof NS & string)>
  /**
   * Starts the close handshake (`code`, default 1000, and `reason`) with every connection in the
   * audience (as `publishToAudience` selects it), e.g. to kick a user on every device; resolves with
   * how many connections of this process it closed.
   */
  closeConnections(audience: Audience<'/' | (keyof NS & string)>, code?: number, reason?: string): Promise<number>
  listen(): Promise<void>
  /**
   * Attach mode: hand an upgrade received by a Node HTTP server (`httpServer.on('upgrade', …)`) to
   * Rust. The socket's descriptor is duplicated into Rust and Node's socket destroyed; the WebSocket
   * then lives until it closes or `shutdown()`, whatever happens to the HTTP server. Linux and macOS.
   */
  handleUpgrade(request: UpgradeIncomingMessage, socket: object, head: Uint8Array): void
  onConnection(handler: (conn: Connection<C, D>) => unknown): this
  onConnection<K extends keyof NS & string>(namespace: K, handler: (conn: Connection<NS[K], D>) => unknown): this
  getConnection(id: string): Connection<any, D> | undefined

  /**
   * Handle `event` for every connection of the default namespace (or of `namespace`) with one
   * function; `ctx.conn` is the sender. Same rules as `conn.onMessage` (validated data, one message
   * at a time per connection, arrival order); a connection's own handler for the event wins. Unlike
   * closures registered per connection, it costs no memory per connection.
   */
  onMessage<E extends InEvent<C>>(event: E, handler: MessageHandler<InData<C, E>, Connection<C, D>>): this
  onMessage<K extends keyof NS & string, E extends InEvent<NS[K]>>(namespace: K, event: E, handler: MessageHandler<InData<NS[K], E>, Connection<NS[K], D>>): this
  /** Answer request `name` for every connection of the namespace; `ctx.conn` is the client. */
  onRequest<R extends RequestName<C>>(name: R, handler: RequestHandler<RequestInput<C, R>, RequestOutput<C, R>, Connection<C, D>>): this
  onRequest<K extends keyof NS & string, R extends RequestName<NS[K]>>(namespace: K, name: R, handler: RequestHandler<RequestInput<NS[K], R>, RequestOutput<NS[K], R>, Connection<NS[K], D>>): this
  /** Raw-mode namespaces: one handler for every message of every connection. */
  onRawMessage(handler: (data: string | Uint8Array, conn: Connection<C, D>) => unknown): this
  onRawMessage<K extends keyof NS & string>(namespace: K, handler: (data: string | Uint8Array, conn: Connection<NS[K], D>) => unknown): this

  broadcast<E extends OutEvent<C>>(event: E, data: OutData<C, E>): number
  broadcast<K extends keyof NS & string, E extends OutEvent<NS[K]>>(event: E, data: OutData<NS[K], E>, namespace: K): number
  publishToRoom<E extends OutEvent<C>>(room: string, event: E, data: OutData<C, E>): number
  publishToRoom<K extends keyof NS & string, E extends OutEvent<NS[K]>>(room: string, event: E, data: OutData<NS[K], E>, namespace: K): number
  publishToUser<E extends OutEvent<C>>(userId: string, event: E, data: OutData<C, E>): number
  publishToUser<K extends keyof NS & string, E extends OutEvent<NS[K]>>(userId: string, event: E, data: OutData<NS[K], E>, namespace: K): number
  publishToAudience<E extends OutEvent<C>>(audience: Audience<'/'> & { namespace?: '/' }, event: E, data: OutData<C, E>): number
  publishToAudience<K extends keyof NS & string, E extends OutEvent<NS[K]>>(audience: Audience<K> & { namespace: K }, event: E, data: OutData<NS[K], E>): number

  /**
   * A live dashboard for operators (README "Dashboard"): connections, namespaces, rooms, message
   * and byte rates, recent warn/error events, connection lookup. Mount the returned listener on
   * any path of the app's HTTP server. The first call starts a once-a-second sampler that the
   * server's shutdown stops.
   */
  dashboardHandler(options: DashboardOptions): DashboardHandler

  /** Stop accepting, flush queues, close every connection with `code`/`reason`, terminate stragglers after `timeoutMs`. */
  shutdown(code?: number, reason?: string, options?: ShutdownOptions): Promise<void>
}

