// Contract export as an AsyncAPI 3.0.0 document (README "Contract export (AsyncAPI)"). Browser-safe
// in practice: it uses no Node API and imports only types (a server is recognised by its shape, not
// by importing ./server).
//
// Perspective: the document describes the ferrosocket server, the application AsyncAPI 3 operations
// are written from. `in` events are `receive` operations, `out` events `send` operations; a request
// (client → server) is a `receive` operation whose `reply` the server sends; a client request
// (server → client) is a `send` operation whose `reply` the server receives.
//
// Schemas: what travels on the wire in each direction. What the server receives is what its
// validation accepts: the schema's *input* JSON Schema (`in` events, a request's `input`, a client
// request's `output`). What the server sends is the value its validation produced, serialised: the
// schema's *output* JSON Schema (`out` events, a request's `output`, a client request's `input`).

import type { Contract, RequestSchema, Server, StandardSchemaV1 } from './types'

/** A JSON Schema (draft-07, the dialect of AsyncAPI 3.0 schema objects) as a plain object. */
export type JSONSchema = Record<string, unknown>

/** Where a schema sits, as the `jsonSchema` option sees it. */
export interface AsyncAPISchemaContext {
  /** Event or request name. */
  event: string
  /** Namespace name (`'/'` for the default one). */
  namespace: string
  /** `'receive'`: the server receives this data; `'send'`: the server sends it. */
  direction: 'receive' | 'send'
  /** Which JSON Schema is wanted: `'input'` (what the schema accepts) for data the server receives, `'output'` for data it sends. */
  io: 'input' | 'output'
  /** `'event'` (`in`/`out`), `'request'` (the asking side's data) or `'reply'` (the answer's data). */
  part: 'event' | 'request' | 'reply'
}

/** A server of the AsyncAPI document: `wss://host:port/prefix` or the AsyncAPI 3 server object fields. */
export type AsyncAPIServer =
  | string
  | {
      host: string
      protocol: 'ws' | 'wss'
      pathname?: string
      title?: string
      summary?: string
      description?: string
      protocolVersion?: string
    }

export interface AsyncAPIOptions {
  /** `info.title`. */
  title: string
  /** `info.version`: the version of your API (not of AsyncAPI). */
  version: string
  /** `info.description`; a paragraph about the envelope and the perspective is appended. */
  description?: string
  /** `servers`, by name (`[A-Za-z0-9_.-]+`). */
  servers?: Record<string, AsyncAPIServer>
  /** Channel address of a bare contract (a server's channels use its namespace paths). Default `'/'`. */
  address?: string
  /**
   * Converts a schema the built-in conversions could not (no Standard JSON Schema, no zod
   * `toJSONSchema`, or they threw). Return a draft-07 JSON Schema, or `undefined` to give up (the
   * data is then described as `{}` with a `description` saying so).
   */
  jsonSchema?: (schema: StandardSchemaV1, context: AsyncAPISchemaContext) => JSONSchema | undefined
}

/** The AsyncAPI 3.0.0 document: a plain JSON object. */
export interface AsyncAPIDocument {
  asyncapi: '3.0.0'
  info: { title: string; version: string; description?: string }
  defaultContentType: 'application/json'
  servers?: Record<string, Record<string, unknown>>
  channels: Record<string, Record<string, unknown>>
  operations: Record<string, Record<string, unknown>>
  components: { schemas: Record<string, JSONSchema>; messages: Record<string, Record<string, unknown>> }
  [extension: `x-${string}`]: unknown
}

/** What `exportAsyncAPI` accepts: a contract (any of its maps may be missing) or a server. */
export type AsyncAPISource = Partial<Contract> | Server<any, any, any>

/** Close codes of README "Close codes", carried as `x-ferrosocket-close-codes`. */
const CLOSE_CODES: ReadonlyArray<{ code: number; reason: string; situation: string }> = [
  { code: 1001, reason: 'Server shutting down', situation: 'server shutdown (reason configurable)' },
  { code: 1001, reason: 'Heartbeat timeout', situation: 'nothing received by the next ping' },
  { code: 1002, reason: 'Protocol error', situation: 'WebSocket protocol violation (bad frame)' },
  { code: 1007, reason: 'Invalid message payload', situation: 'frame not valid JSON, not an envelope, invalid UTF-8, or a malformed reply' },
  { code: 1007, reason: 'Invalid event data', situation: "data fails the event's schema" },
  { code: 1008, reason: 'Unknown event', situation: 'event not in the contract (a frame without id; with an id it is answered unknown_request)' },
  { code: 1009, reason: 'Message too large', situation: 'message larger than maxPayload' },
  { code: 1009, reason: 'Too many fragments', situation: 'message in more than max(1024, maxPayload / 64) fragments' },
  { code: 1011, reason: 'Message handling failed', situation: 'a message handler threw or rejected' },
  { code: 1011, reason: 'Internal error', situation: 'internal failure while running the connection' },
  { code: 1013, reason: 'WebSocket backpressure overflow', situation: 'outbound queue overflow' },
  { code: 1013, reason: 'concurrency-limit-exceeded', situation: 'over maxConnections' },
]

const PERSPECTIVE =
  'This document describes the ferrosocket server: `receive` operations are messages clients send to it, ' +
  '`send` operations messages it sends to clients. Every message is a JSON envelope ' +
  '`{"event", "data", "meta"?}`; a request adds an `id`, and its reply is `{"id", "data"}` or ' +
  '`{"id", "error": {"code", "message", "issues"?}}` on the same connection. Close codes: `x-ferrosocket-close-codes`.'

// Shared schemas (components.schemas).
const META = 'ferrosocket.EnvelopeMeta'
const REQUEST_ID = 'ferrosocket.RequestId'
const ERROR_BODY = 'ferrosocket.ErrorBody'
const INVALID_INPUT = 'ferrosocket.InvalidInput'
const SHARED_SCHEMAS: Record<string, JSONSchema> = {
  [META]: {
    type: 'object',
    description: 'Trace context (W3C traceparent/tracestate).',
    properties: { traceparent: { type: 'string' }, tracestate: { type: 'string' } },
  },
  [REQUEST_ID]: { type: ['string', 'number'], description: 'Chosen by the asking side; echoed in the reply.' },
  [INVALID_INPUT]: {
    type: 'object',
    description: "What a server with onInvalidMessage: 'reply' sends instead of closing the connection.",
    properties: {
      code: { enum: ['invalid_payload', 'unknown_event', 'invalid_data'] },
      message: { type: 'string' },
      event: { type: 'string', description: 'The event whose data failed its schema (invalid_data).' },
      issues: { type: 'array', items: { type: 'object', properties: { message: { type: 'string' }, path: { type: 'array', items: { type: ['string', 'number'] } } }, required: ['message'] } },
    },
    required: ['code', 'message'],
  },
  [ERROR_BODY]: {
    type: 'object',
    properties: {
      code: { type: 'string', description: 'e.g. internal, invalid_input, invalid_output, timeout, unknown_request, duplicate_id, unavailable, or an application code' },
      message: { type: 'string' },
      issues: {
        type: 'array',
        items: {
          type: 'object',
          properties: { message: { type: 'string' }, path: { type: 'array', items: { type: ['string', 'number'] } } },
          required: ['message'],
        },
      },
    },
    required: ['code', 'message'],
  },
}

const schemaRef = (key: string): JSONSchema => ({ $ref: `#/components/schemas/${pointer(key)}` })

/** A JSON Pointer segment. */
function pointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1')
}

/** A JSON Pointer segment as a name: percent-decoded (as URI fragments are), `~1` and `~0` unescaped. */
function unescapeSegment(segment: string): string {
  let decoded = segment
  try {
    decoded = decodeURIComponent(segment)
  } catch {
    // not percent-encoded after all
  }
  return decoded.replace(/~1/g, '/').replace(/~0/g, '~')
}

/** A key AsyncAPI accepts for components and ids: `[A-Za-z0-9_.-]+`. */
function safeKey(name: string): string {
  const key = name.replace(/[^A-Za-z0-9_.-]/g, '_')
  return key === '' ? '_' : key
}

/** `base`, or `base_2`, `base_3`… whichever `used` does not hold yet; records it. */
function unique(used: Set<string>, base: string): string {
  let key = base
  for (let n = 2; used.has(key); n++) key = `${base}_${n}`
  used.add(key)
  return key
}

interface NamespaceView {
  name: string
  path: string
  contract: Partial<Contract> | null
  raw: boolean
  /** The server answers invalid input with an `error` event (`onInvalidMessage: 'reply'`). */
  replyOnInvalid: boolean
}

/** The namespaces of a server (recognised by its `_namespaces` records), or one for a contract. */
function namespacesOf(source: AsyncAPISource, address: string): NamespaceView[] {
  const { _namespaces: records, _replyOnInvalid: replyOnInvalid } = source as { _namespaces?: unknown; _replyOnInvalid?: unknown }
  if (Array.isArray(records)) {
    return records.map((ns: { name: string; path: string; contract: Partial<Contract> | null; raw: boolean }) => ({
      name: ns.name,
      path: ns.path,
      contract: ns.contract,
      raw: ns.raw,
      replyOnInvalid: replyOnInvalid === true,
    }))
  }
  if (source === null || typeof source !== 'object') {
    throw new TypeError('exportAsyncAPI: expected a contract (defineContract) or a server (createServer)')
  }
  return [{ name: '/', path: address, contract: source as Partial<Contract>, raw: false, replyOnInvalid: false }]
}

function serverObject(name: string, server: AsyncAPIServer): Record<string, unknown> {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new TypeError(`exportAsyncAPI: server name "${name}" must match [A-Za-z0-9_.-]+`)
  if (typeof server === 'string') {
    let url: URL
    try {
      url = new URL(server)
    } catch {
      throw new TypeError(`exportAsyncAPI: server "${name}": "${server}" is not a URL (ws://host[:port][/path] or wss://…)`)
    }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
      throw new TypeError(`exportAsyncAPI: server "${name}": protocol must be ws: or wss:, got ${url.protocol}`)
    }
    const out: Record<string, unknown> = { host: url.host, protocol: url.protocol.slice(0, -1) }
    if (url.pathname !== '/' && url.pathname !== '') out.pathname = url.pathname
    return out
  }
  if (typeof server?.host !== 'string' || (server.protocol !== 'ws' && server.protocol !== 'wss')) {
    throw new TypeError(`exportAsyncAPI: server "${name}" needs a host and protocol 'ws' or 'wss'`)
  }
  return { ...server }
}

/** Builds the document; one instance per call. */
class Exporter {
  readonly schemas: Record<string, JSONSchema> = { ...SHARED_SCHEMAS }
  readonly messages: Record<string, Record<string, unknown>> = {}
  readonly channels: Record<string, Record<string, unknown>> = {}
  readonly operations: Record<string, Record<string, unknown>> = {}
  /** Component key of each converted schema, per io (the same schema object converts once). */
  readonly converted = new Map<StandardSchemaV1, { input?: string; output?: string }>()
  /**
   * Component message keys by contract: namespaces with the same contract share its messages. (A
   * server holds a copy of each contract, so contracts are compared by their four maps.)
   */
  readonly contractMessages: Array<{ maps: unknown[]; keys: Map<string, string> }> = []
  readonly channelIds = new Set<string>()

  constructor(readonly options: AsyncAPIOptions) {}

  /** The component key of the JSON Schema of `schema`'s data (`io` per direction). */
  data(schema: StandardSchemaV1, context: AsyncAPISchemaContext, keyBase: string): string {
    const done = this.converted.get(schema)
    const existing = done?.[context.io]
    if (existing !== undefined) return existing
    const key = unique(new Set(Object.keys(this.schemas)), keyBase)
    this.schemas[key] = {} // reserved before hoisting definitions
    this.schemas[key] = this.hoist(convert(schema, context, this.options.jsonSchema), key)
    this.converted.set(schema, { ...done, [context.io]: key })
    return key
  }

  /**
   * Moves `definitions`/`$defs` of a converted schema to components.schemas and rewrites its local
   * `$ref`s (`#`, `#/definitions/X`, `#/properties/…`) to point into the document.
   */
  hoist(schema: JSONSchema, ownKey: string): JSONSchema {
    const defs: Record<string, unknown> = { ...(isObject(schema.definitions) ? schema.definitions : {}), ...(isObject(schema.$defs) ? schema.$defs : {}) }
    const { definitions: _d, $defs: _D, $schema: _s, ...root } = schema
    const defKeys = new Map<string, string>()
    for (const name of Object.keys(defs)) {
      const base = safeKey(name)
      let key = base
      // A definition equal to one already hoisted (zod's `.meta({ id })` reused by several schemas) is shared.
      for (let n = 2; key in this.schemas && JSON.stringify(this.schemas[key]) !== JSON.stringify(defs[name]); n++) key = `${base}_${n}`
      defKeys.set(name, key)
    }
    const rewrite = (ref: string): string => {
      if (!ref.startsWith('#')) return ref
      const m = /^#\/(definitions|\$defs)\/([^/]*)(.*)$/.exec(ref)
      if (m) {
        const name = unescapeSegment(m[2])
        const key = defKeys.get(name)
        if (key !== undefined) return `#/components/schemas/${pointer(key)}${m[3]}`
      }
      return `#/components/schemas/${pointer(ownKey)}${ref.slice(1)}`
    }
    const walk = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(walk)
      if (!isObject(value)) return value
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value)) out[k] = k === '$ref' && typeof v === 'string' ? rewrite(v) : walk(v)
      return out
    }
    for (const [name, key] of defKeys) if (!(key in this.schemas)) this.schemas[key] = walk(defs[name]) as JSONSchema
    return walk(root) as JSONSchema
  }

  namespace(ns: NamespaceView): void {
    const channelId = unique(this.channelIds, ns.name === '/' ? 'default' : safeKey(ns.name))
    const channel: Record<string, unknown> = { address: ns.path, title: ns.name === '/' ? 'Default namespace' : `Namespace ${ns.name}` }
    const channelMessages: Record<string, unknown> = {}
    this.channels[channelId] = channel
    if (ns.raw) {
      channel.description = "Raw namespace (messageFormat: 'raw'): messages are passed through as they came, without an envelope or contract."
      return
    }
    if (ns.contract === null) {
      channel.description = 'Namespace without a contract: any event name and data, not validated.'
      return
    }
    channel.description = `WebSocket endpoint of namespace ${ns.name === '/' ? "'/' (the default)" : `'${ns.name}'`}. JSON envelopes; close codes in x-ferrosocket-close-codes.`
    channel.messages = channelMessages
    const contract = ns.contract
    const maps = [contract.in, contract.out, contract.requests, contract.clientRequests]
    let componentKeys = this.contractMessages.find((c) => c.maps.every((m, i) => m === maps[i]))?.keys
    if (componentKeys === undefined) {
      componentKeys = new Map<string, string>()
      this.contractMessages.push({ maps, keys: componentKeys })
    }
    const keys = componentKeys
    const used = new Set<string>()
    const channelRef = { $ref: `#/channels/${pointer(channelId)}` }
    const messageRef = (key: string) => ({ $ref: `#/channels/${pointer(channelId)}/messages/${pointer(key)}` })

    /** Adds a message to the channel (and, once per contract, to components); returns its channel key. */
    const message = (slot: string, build: () => Record<string, unknown>): string => {
      let componentKey = keys.get(slot)
      if (componentKey === undefined) {
        componentKey = unique(new Set(Object.keys(this.messages)), `${channelId}.${slot}`)
        this.messages[componentKey] = build()
        keys.set(slot, componentKey)
      }
      const key = unique(used, slot)
      channelMessages[key] = { $ref: `#/components/messages/${pointer(componentKey)}` }
      return key
    }
    const dataRef = (schema: StandardSchemaV1, context: Omit<AsyncAPISchemaContext, 'namespace' | 'io'>, slot: string): JSONSchema => {
      const io = context.direction === 'receive' ? 'input' : 'output'
      return schemaRef(this.data(schema, { ...context, namespace: ns.name, io }, `${channelId}.${slot}.data`))
    }
    const envelope = (event: string, data: JSONSchema, direction: 'receive' | 'send', id: boolean): JSONSchema => ({
      type: 'object',
      properties: {
        event: { const: event },
        data,
        ...(id ? { id: schemaRef(REQUEST_ID) } : {}),
        meta: schemaRef(META),
      },
      // The server reads an absent `data` as null; it always sends one.
      required: ['event', ...(direction === 'send' ? ['data'] : []), ...(id ? ['id'] : [])],
    })
    const reply = (data: JSONSchema): JSONSchema => ({
      oneOf: [
        { type: 'object', properties: { id: schemaRef(REQUEST_ID), data }, required: ['id', 'data'] },
        { type: 'object', properties: { id: schemaRef(REQUEST_ID), error: schemaRef(ERROR_BODY) }, required: ['id', 'error'] },
      ],
    })

    const events: Array<['in' | 'out', 'receive' | 'send']> = [['in', 'receive'], ['out', 'send']]
    for (const [side, direction] of events) {
      for (const [event, schema] of Object.entries(contract[side] ?? {})) {
        const slot = `${side}.${safeKey(event)}`
        const key = message(slot, () => ({
          name: event,
          title: event,
          summary: direction === 'receive' ? `Event a client sends (contract "in")` : `Event the server publishes (contract "out")`,
          payload: envelope(event, dataRef(schema, { event, direction, part: 'event' }, slot), direction, false),
        }))
        this.operations[unique(new Set(Object.keys(this.operations)), `${channelId}.${slot}`)] = {
          action: direction,
          channel: channelRef,
          summary: direction === 'receive' ? `Clients send ${event}` : `The server sends ${event}`,
          messages: [messageRef(key)],
        }
      }
    }

    if (ns.replyOnInvalid) {
      const key = message('ferrosocket.error', () => ({
        name: 'error',
        title: 'error',
        summary: "Invalid input answered instead of closing the connection (onInvalidMessage: 'reply')",
        payload: envelope('error', schemaRef(INVALID_INPUT), 'send', false),
      }))
      this.operations[unique(new Set(Object.keys(this.operations)), `${channelId}.ferrosocket.error`)] = {
        action: 'send',
        channel: channelRef,
        summary: 'The server answers invalid input with an error event',
        messages: [messageRef(key)],
      }
    }

    const requests: Array<['requests' | 'clientRequests', 'receive' | 'send']> = [['requests', 'receive'], ['clientRequests', 'send']]
    for (const [side, direction] of requests) {
      const map: Record<string, RequestSchema> = contract[side] ?? {}
      const replyDirection = direction === 'receive' ? 'send' : 'receive'
      const label = side === 'requests' ? 'request' : 'clientRequest'
      for (const [name, pair] of Object.entries(map)) {
        const slot = `${label}.${safeKey(name)}`
        const requestKey = message(slot, () => ({
          name,
          title: name,
          summary: side === 'requests' ? 'Request a client sends (contract "requests"); the server replies' : 'Request the server sends (contract "clientRequests"); the client replies',
          payload: envelope(name, dataRef(pair.input, { event: name, direction, part: 'request' }, slot), direction, true),
        }))
        const replyKey = message(`${slot}.reply`, () => ({
          name: `${name}.reply`,
          title: `Reply to ${name}`,
          summary: `{id, data} or {id, error}, with the id of the ${name} request`,
          payload: reply(dataRef(pair.output, { event: name, direction: replyDirection, part: 'reply' }, `${slot}.reply`)),
        }))
        this.operations[unique(new Set(Object.keys(this.operations)), `${channelId}.${slot}`)] = {
          action: direction,
          channel: channelRef,
          summary: side === 'requests' ? `Clients ask ${name}; the server replies` : `The server asks ${name}; the client replies`,
          messages: [messageRef(requestKey)],
          reply: { channel: channelRef, messages: [messageRef(replyKey)] },
        }
      }
    }
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value)

/**
 * The draft-07 JSON Schema of `schema`'s input or output: through the Standard JSON Schema interface
 * (`~standard.jsonSchema`: recent zod 4, valibot, ArkType …), else a zod 4 `toJSONSchema` method, else the caller's
 * converter, else `{}` with a description. Never throws.
 */
function convert(
  schema: StandardSchemaV1,
  context: AsyncAPISchemaContext,
  custom: AsyncAPIOptions['jsonSchema'],
): JSONSchema {
  const failures: string[] = []
  const attempt = (what: string, run: () => unknown): JSONSchema | undefined => {
    try {
      const result = run()
      if (isObject(result)) return result
      if (result !== undefined) failures.push(`${what} returned ${typeof result}`)
    } catch (error) {
      failures.push(`${what}: ${error instanceof Error ? error.message : String(error)}`)
    }
    return undefined
  }
  let standard: { vendor?: unknown; jsonSchema?: Record<string, unknown> } | undefined
  let converter: unknown
  try {
    standard = (schema as { '~standard'?: typeof standard })['~standard']
    converter = standard?.jsonSchema?.[context.io]
  } catch (error) {
    failures.push(`~standard: ${error instanceof Error ? error.message : String(error)}`)
  }
  if (typeof converter === 'function') {
    const found = attempt('~standard.jsonSchema', () => converter({ target: 'draft-07' }))
    if (found) return found
  }
  const toJSONSchema = (schema as { toJSONSchema?: unknown }).toJSONSchema
  if (typeof toJSONSchema === 'function') {
    const found = attempt('toJSONSchema', () => toJSONSchema.call(schema, { target: 'draft-07', io: context.io }))
    if (found) return found
  }
  if (custom) {
    const found = attempt('the jsonSchema option', () => custom(schema, context))
    if (found) return found
  }
  if (typeof converter === 'function' && failures.length > 0) {
    // zod's option: parts JSON Schema cannot express (a Date, a transform) become `{}` instead of throwing.
    const partial = attempt('~standard.jsonSchema (lenient)', () => converter({ target: 'draft-07', libraryOptions: { unrepresentable: 'any' } }))
    if (partial) {
      const note = `Parts of this schema that JSON Schema cannot express are shown as {} (${failures[0]}).`
      return { ...partial, description: typeof partial.description === 'string' ? `${partial.description}\n\n${note}` : note }
    }
  }
  const vendor = typeof standard?.vendor === 'string' ? standard.vendor : 'unknown'
  return {
    description:
      `Could not convert the ${context.io} of this ${vendor} schema to JSON Schema` +
      (failures.length > 0 ? ` (${failures.join('; ')})` : ' (the library offers no JSON Schema conversion; pass the jsonSchema option)') +
      '. Any JSON value is shown as allowed; the server still validates with the schema.',
  }
}

/**
 * Describes a contract, or every namespace of a server, as an AsyncAPI 3.0.0 document (a plain JSON
 * object): one channel per namespace path, a message per event, request and reply, operations from
 * the server's point of view. Schemas the library cannot convert become `{}` with a description;
 * only bad options throw.
 */
export function exportAsyncAPI(source: AsyncAPISource, options: AsyncAPIOptions): AsyncAPIDocument {
  if (typeof options?.title !== 'string' || typeof options.version !== 'string') {
    throw new TypeError('exportAsyncAPI: options.title and options.version (strings) are required')
  }
  const address = options.address ?? '/'
  if (typeof address !== 'string' || !address.startsWith('/')) throw new TypeError(`exportAsyncAPI: address must start with '/', got ${address}`)
  const servers = options.servers
    ? Object.fromEntries(Object.entries(options.servers).map(([name, server]) => [name, serverObject(name, server)]))
    : undefined
  const exporter = new Exporter(options)
  for (const ns of namespacesOf(source, address)) exporter.namespace(ns)
  const doc: AsyncAPIDocument = {
    asyncapi: '3.0.0',
    info: {
      title: options.title,
      version: options.version,
      description: options.description ? `${options.description}\n\n${PERSPECTIVE}` : PERSPECTIVE,
    },
    defaultContentType: 'application/json',
    ...(servers ? { servers } : {}),
    channels: exporter.channels,
    operations: exporter.operations,
    components: { schemas: exporter.schemas, messages: exporter.messages },
    'x-ferrosocket-close-codes': CLOSE_CODES.map((c) => ({ ...c })),
  }
  return doc
}
