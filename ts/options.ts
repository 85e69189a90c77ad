// Server options: checked and normalised here, once, in the order the server reads them (so the
// first bad option is the one reported); the native part is typed against binding.d.ts.

import type { Namespace } from './namespace'
import type { NativeNamespaceOptions, NativeServerOptions } from './native'
import type { ServerOptions, UntypedContract } from './types'
import { hostname } from 'node:os'

/** The options `createServer` accepts, untyped, plus the hidden test hooks. */
export type InternalOptions = ServerOptions<UntypedContract, Record<string, UntypedContract>, unknown> & {
  /** Test hook: Rust panics on this event (panic-safety tests). */
  __testPanicOnEvent?: string
  /** The bench's Rust-only reference handlers (src/hooks/). */
  __referenceHandlers?: boolean
}

/** `undefined` (the default applies) or a boolean. */
function optionalBoolean(name: string, value: unknown): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw new TypeError(`option ${name} must be a boolean`)
  return value
}

/** A non-negative finite number, or `fallback` when absent. */
export function positive<F extends number | undefined>(name: string, value: unknown, fallback: F): number | F {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !(value >= 0) || !Number.isFinite(value)) {
    throw new TypeError(`option ${name} must be a non-negative number, got ${value}`)
  }
  return value
}

type TrustProxy = Pick<NativeServerOptions, 'trustProxyAll' | 'trustProxyHops' | 'trustProxyList'>

/** `trustProxy`: true (every hop), a hop count, or proxy addresses/CIDR ranges (array or comma list). */
export function trustProxyOptions(value: unknown): TrustProxy {
  if (value === undefined || value === false) return {}
  if (value === true) return { trustProxyAll: true }
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return { trustProxyHops: value }
  if (typeof value === 'string') value = value.split(',')
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return { trustProxyList: value.map((v: string) => v.trim()) }
  throw new TypeError('option trustProxy must be true, a hop count, or a list of proxy addresses')
}

export function stringList(name: string, value: unknown): string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) {
    throw new TypeError(`option ${name} must be an array of non-empty strings`)
  }
  return value
}

/** `nodeId`: names this process in connection ids; any non-empty string (default `${hostname}-${pid}`). */
export function nodeIdOption(value: unknown): string {
  if (value === undefined) return `${hostname()}-${process.pid}`
  if (typeof value !== 'string' || value === '') throw new TypeError('option nodeId must be a non-empty string')
  return value
}

/** `metrics: { handlerDuration }`: whether handlers are timed. */
export function metricsOption(value: unknown): boolean {
  if (value === undefined) return false
  if (value === null || typeof value !== 'object') throw new TypeError('option metrics must be an object')
  const timed = (value as { handlerDuration?: unknown }).handlerDuration
  if (timed !== undefined && typeof timed !== 'boolean') throw new TypeError('option metrics.handlerDuration must be a boolean')
  return timed === true
}

/** `onInvalidMessage`: `'close'` (default) or `'reply'`. */
export function checkOnInvalidMessage(value: unknown): void {
  if (value !== undefined && value !== 'close' && value !== 'reply') {
    throw new TypeError(`option onInvalidMessage must be 'close' or 'reply'`)
  }
}

/** What Rust is told about each namespace. */
function nativeNamespace(ns: Namespace): NativeNamespaceOptions {
  return {
    name: ns.name,
    path: ns.path,
    events: ns.contract ? Object.keys(ns.contract.in) : undefined,
    requests: ns.contract ? Object.keys(ns.contract.requests) : undefined,
    raw: ns.raw,
  }
}

/** The options of the native server (`NativeServer`'s constructor). */
export function nativeOptions(options: InternalOptions, nodeId: string, namespaces: readonly Namespace[], replyOnInvalid: boolean, authenticate: boolean): NativeServerOptions {
  return {
    host: options.host,
    port: positive('port', options.port, undefined),
    namespaces: namespaces.map(nativeNamespace),
    maxPayload: positive('maxPayload', options.maxPayload, undefined),
    heartbeatIntervalMs: positive('heartbeat.intervalMs', options.heartbeat?.intervalMs, undefined),
    maxQueuedMessages: positive('backpressure.maxQueuedMessages', options.backpressure?.maxQueuedMessages, undefined),
    maxBufferedBytes: positive('backpressure.maxBufferedBytes', options.backpressure?.maxBufferedBytes, undefined),
    maxConnections: positive('maxConnections', options.maxConnections, undefined),
    maxInflightMessages: positive('maxInflightMessages', options.maxInflightMessages, undefined),
    maxPendingBytes: positive('maxPendingBytes', options.maxPendingBytes, undefined),
    closeTimeoutMs: positive('closeTimeoutMs', options.closeTimeoutMs, undefined),
    handshakeTimeoutMs: positive('handshakeTimeoutMs', options.handshakeTimeoutMs, undefined),
    replyOnInvalid,
    workerThreads: positive('workerThreads', options.workerThreads, undefined),
    inlineIo: optionalBoolean('inlineIo', options.inlineIo),
    allowedOrigins: stringList('allowedOrigins', options.allowedOrigins),
    ...trustProxyOptions(options.trustProxy),
    protocols: stringList('protocols', options.protocols),
    requireProtocol: options.requireProtocol === true,
    authenticate,
    panicOnEvent: options.__testPanicOnEvent,
    referenceHandlers: options.__referenceHandlers === true,
    nodeId,
    ...redisClusterOptions(options.cluster),
    ...compressionOptions(options.compression),
  }
}

/** `compression: true | { threshold, level, serverMaxWindowBits }`, checked. */
function compressionOptions(compression: unknown): Partial<NativeServerOptions> {
  if (compression === undefined || compression === false) return {}
  if (compression === true) return { compression: true }
  if (compression === null || typeof compression !== 'object') throw new TypeError('option compression must be a boolean or { threshold, level, serverMaxWindowBits }')
  const c = compression as Record<string, unknown>
  const integer = (name: string, value: unknown, min: number, max: number): number | undefined => {
    if (value === undefined) return undefined
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new TypeError(`option compression.${name} must be an integer from ${min} to ${max}`)
    return value
  }
  return {
    compression: true,
    compressionThreshold: integer('threshold', c.threshold, 0, 2 ** 31),
    compressionLevel: integer('level', c.level, 0, 9),
    compressionWindowBits: integer('serverMaxWindowBits', c.serverMaxWindowBits, 9, 15),
  }
}

/** `cluster.redis` and its companions, checked; nothing for one process or a custom bus. */
function redisClusterOptions(cluster: unknown): Partial<NativeServerOptions> {
  if (cluster === undefined) return {}
  if (cluster === null || typeof cluster !== 'object') throw new TypeError('option cluster must be an object')
  const c = cluster as Record<string, unknown>
  if (c.redis === undefined) return {}
  if (c.bus !== undefined) throw new TypeError('option cluster takes either redis or bus, not both')
  const redis = c.redis as unknown
  const url = typeof redis === 'string' ? redis : redis !== null && typeof redis === 'object' ? (redis as { url?: unknown }).url : undefined
  if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) {
    throw new TypeError("option cluster.redis must be a redis:// URL or { url: 'redis://…' }")
  }
  if (url.startsWith('rediss:')) throw new TypeError('option cluster.redis: TLS (rediss://) is not supported yet')
  const prefix = c.prefix ?? 'ferrosocket'
  if (typeof prefix !== 'string' || prefix === '') throw new TypeError('option cluster.prefix must be a non-empty string')
  const timeout = positive('cluster.nodeTimeoutMs', c.nodeTimeoutMs, 10_000)
  if (timeout < 300) throw new TypeError('option cluster.nodeTimeoutMs must be at least 300')
  const sharded = c.sharded ?? 'auto'
  if (sharded !== 'auto' && typeof sharded !== 'boolean') throw new TypeError("option cluster.sharded must be 'auto', true or false")
  return {
    clusterRedisUrl: url,
    clusterPrefix: prefix,
    clusterNodeTimeoutMs: timeout,
    clusterSharded: sharded === 'auto' ? undefined : sharded,
  }
}
