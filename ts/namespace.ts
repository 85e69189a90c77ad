// Namespaces: one record per mounted path, carrying what its connections share (contract,
// namespace-level handlers, the server, the inbound acks), so a connection needs one field for
// all of it. And `ConnectionHost`: what a connection needs of its server.

import type { InboundAcks } from './acks'
import type { Conn, HandlerKey, InboundHandler, RequestFn } from './handler-store'
import type { JsMetrics } from './metrics'
import type { Telemetry } from './telemetry'
import type { Tracing } from './tracing'
import type { NativeServer } from './native'
import { normaliseContract, type ContractInput, type NormalisedContract } from './protocol/contract'
import type { TraceContext } from './types'
import type { AsyncLocalStorage } from 'node:async_hooks'

export const DEFAULT_NAMESPACE = '/'

/** What a connection needs of its server (the server implements it). */
export interface ConnectionHost {
  /** Prefix of every connection id of this server: `${nodeId}:`. */
  readonly _idPrefix: string
  /** `conn.openedAt` is stored as ms since this. */
  readonly _epoch: number
  readonly _native: NativeServer
  /** Sends an envelope text (collected while a batch dispatches, see ts/outbox.ts); true when queued. */
  _send(nid: number, payload: string): boolean
  /** The native server for any other write or close, after the collected sends went first. */
  _output(): NativeServer
  readonly _stats: { unknownReplies: number; droppedMessages: number }
  /** What JS counts for metrics (schema rejections, `conn.publish`, handler durations). */
  readonly _metrics: JsMetrics
  /** Telemetry events, or null when nobody listens (check `.debug`/`.info`/`.warn` before building one). */
  readonly _telemetry: Telemetry
  /** OpenTelemetry spans, or null without `telemetry.tracer`. */
  readonly _tracing: Tracing | null
  /** With `telemetry.propagate`: the trace of the handler running now (across its awaits). */
  readonly _propagation: AsyncLocalStorage<TraceContext> | null
  /** Validates and serialises a publish (with the `meta` it carries now); reports it to telemetry. */
  _serialise(ns: Namespace, target: string, event: string, data: unknown, conn?: Conn): string
  readonly _maxBufferedMessages: number
  readonly _maxInflightMessages: number
  readonly _requestTimeoutMs: number
  readonly _closeTimeoutMs: number
  readonly _exposeErrors: boolean
  readonly _replyOnInvalid: boolean
  /** Hands an error to `onError` (which must not take the dispatcher down). */
  _reportError(error: unknown, conn?: Conn): void
}

export interface Namespace {
  readonly index: number
  readonly name: string
  readonly path: string
  readonly contract: NormalisedContract | null
  readonly raw: boolean
  readonly server: ConnectionHost
  readonly acks: InboundAcks
  /** The namespace's own handlers (`server.onMessage`/`onRawMessage`), shared by its connections. */
  readonly handlers: Map<HandlerKey, InboundHandler>
  /** The namespace's own `server.onRequest` handlers. */
  readonly requestHandlers: Map<HandlerKey, RequestFn>
}

/** The options namespaces are built from. */
export interface NamespaceOptions {
  path?: unknown
  messageFormat?: unknown
  contract?: ContractInput | null | undefined
  namespaces?: Record<string, ContractInput | null | undefined> | undefined
}

/** Namespace records: the default one (`'/'`, at `path`), then each of `options.namespaces` at `${path}/${name}`. */
export function createNamespaces(options: NamespaceOptions, server: ConnectionHost, acks: InboundAcks): Namespace[] {
  const base = options.path ?? '/ws'
  if (typeof base !== 'string' || !base.startsWith('/')) throw new TypeError(`option path must start with '/', got ${base}`)
  const raw = options.messageFormat === 'raw'
  const record = (index: number, name: string, path: string, contract: ContractInput | null | undefined): Namespace => ({
    index,
    name,
    path,
    contract: normaliseContract(contract),
    raw,
    server,
    acks,
    handlers: new Map(),
    requestHandlers: new Map(),
  })
  const list = [record(0, DEFAULT_NAMESPACE, base, options.contract)]
  for (const [name, contract] of Object.entries(options.namespaces ?? {})) {
    if (!/^[A-Za-z0-9_.~-]+$/.test(name)) throw new TypeError(`namespace name "${name}" must be URL-safe`)
    list.push(record(list.length, name, `${base.replace(/\/$/, '')}/${name}`, contract))
  }
  return list
}
