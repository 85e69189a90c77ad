// Telemetry events (`telemetry: { onEvent, level, sampling, capturePayload }`): what happened to
// which connection, as structured records for a log pipeline. Nothing is built when nobody
// listens: callers check the level's flag (`tel.debug`, `tel.info`, …) before making an event,
// so an event below the configured level costs one property read. Sampling and a per-second cap
// apply after that; `alwaysRecordLevels` (default warn and error) bypass both. A sink that throws
// is counted and never reaches the server.
//
// Also the W3C trace context: `traceparent` parsed once per message that carries one.

import type { Conn } from './handler-store'
import type { TelemetryEvent, TelemetryLevel, TelemetryOptions, TraceContext } from './types'

const LEVELS: Record<TelemetryLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 }

/** Every event name and its level. */
export const EVENT_LEVELS = {
  'ws.connection.opened': 'info',
  'ws.connection.closed': 'info',
  'ws.handshake.rejected': 'warn',
  'ws.message.received': 'debug',
  'ws.message.rejected': 'warn',
  'ws.message.buffered': 'debug',
  'ws.message.buffer.dropped': 'warn',
  'ws.message.dispatched': 'debug',
  'ws.message.failed': 'error',
  'ws.publish.queued': 'debug',
  'ws.publish.sent': 'debug',
  'ws.publish.dropped': 'warn',
  'ws.publish.rejected': 'warn',
  'ws.publish.failed': 'error',
  'ws.heartbeat.timeout': 'warn',
  'ws.backpressure.overflow': 'warn',
  'ws.backpressure.delayed': 'info',
  'ws.trace.invalid': 'debug',
} as const satisfies Record<string, TelemetryLevel>

export type EventName = keyof typeof EVENT_LEVELS

/** The W3C `traceparent`: version 00, 32 hex trace id, 16 hex parent id, 2 hex flags; no all-zero ids. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** A random 8-byte span id in hex (the span of this handler run). */
function newSpanId(): string {
  let id = ''
  for (let i = 0; i < 4; i++) id += ((Math.random() * 0x10000) | 0).toString(16).padStart(4, '0')
  return id === '0000000000000000' ? '0000000000000001' : id
}

/** Parses a `traceparent`; null when absent, `'invalid'` when malformed. */
export function parseTraceparent(value: unknown): TraceContext | 'invalid' | null {
  if (value === undefined || value === null) return null
  const m = typeof value === 'string' ? TRACEPARENT.exec(value.trim()) : null
  if (!m) return 'invalid'
  const [, version, traceId, parentId, flags] = m as unknown as [string, string, string, string, string]
  if (version === 'ff' || /^0+$/.test(traceId) || /^0+$/.test(parentId)) return 'invalid'
  return { traceId, spanId: newSpanId(), parentSpanId: parentId, sampled: (parseInt(flags, 16) & 1) === 1 }
}

function rate(value: unknown, name: string): number {
  if (value === undefined) return 1
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) throw new TypeError(`option ${name} must be a number from 0 to 1`)
  return value
}

/** A `traceparent` naming `trace`'s span as the parent (what a handler's publishes carry with `propagate`). */
export function formatTraceparent(trace: TraceContext): string {
  return `00-${trace.traceId}-${trace.spanId}-${trace.sampled ? '01' : '00'}`
}

/** The trace context of a `meta`, or undefined when it has none or a malformed one (not reported). */
export function quietTrace(meta: { traceparent?: unknown } | null | undefined): TraceContext | undefined {
  const parsed = meta == null ? null : parseTraceparent(meta.traceparent)
  return parsed === null || parsed === 'invalid' ? undefined : parsed
}

/**
 * The trace context of a message's `meta` (undefined without a `traceparent`). A malformed one is
 * reported as `ws.trace.invalid` (debug) and otherwise ignored: it never rejects the message.
 */
export function traceOf(
  tel: Telemetry,
  conn: Conn,
  meta: { traceparent?: unknown } | null | undefined,
  span?: { spanId: string } | undefined,
): TraceContext | undefined {
  const parsed = parseTraceparent(meta?.traceparent)
  // With an OpenTelemetry tracer the handler's span id is the span's own.
  if (parsed !== 'invalid') return parsed === null ? undefined : span === undefined ? parsed : { ...parsed, spanId: span.spanId }
  if (tel.debug) tel.emit('ws.trace.invalid', conn, { traceparent: String(meta?.traceparent).slice(0, 128) })
  return undefined
}

/** A listener inside the server (the dashboard's recent events): no sampling, its own minimum level. */
export type TelemetryTap = (event: TelemetryEvent) => void

/**
 * The server's one telemetry switchboard. It always exists; with no `telemetry.onEvent` and no
 * tap every level flag is false, so each call site's `tel.debug`/`tel.warn`… check is all that
 * runs. The app's sink gets sampling and the per-second cap; taps (added later, e.g. by a
 * dashboard) get every event at or above their level and bound what they keep themselves.
 */
export class Telemetry {
  debug = false
  info = false
  warn = false
  error = false
  /** Events the sink threw on, and events left out by sampling or the per-second cap. */
  sinkErrors = 0
  sampledOut = 0
  private readonly sink: ((event: TelemetryEvent) => void) | null
  /** The app sink's minimum level (Infinity without a sink). */
  private readonly sinkMin: number
  private readonly taps: { min: number; fn: TelemetryTap }[] = []
  private readonly defaultRate: number
  private readonly rates: Map<string, number>
  private readonly always: Set<TelemetryLevel>
  private readonly perSecond: number
  private windowStart = 0
  private windowCount = 0
  readonly preview: number

  constructor(
    options: TelemetryOptions | undefined,
    private readonly nodeId: string,
  ) {
    if (options?.onEvent !== undefined && typeof options.onEvent !== 'function') throw new TypeError('option telemetry.onEvent must be a function')
    const level = options?.level ?? 'info'
    if (!(level in LEVELS)) throw new TypeError(`option telemetry.level must be one of ${Object.keys(LEVELS).join(', ')}`)
    this.sink = (options?.onEvent as ((event: TelemetryEvent) => void) | undefined) ?? null
    this.sinkMin = this.sink === null ? Infinity : LEVELS[level]
    const sampling = options?.sampling ?? {}
    this.defaultRate = rate(sampling.defaultRate, 'telemetry.sampling.defaultRate')
    this.rates = new Map(Object.entries(sampling.rateByEvent ?? {}).map(([k, v]) => [k, rate(v, `telemetry.sampling.rateByEvent['${k}']`)]))
    this.always = new Set(sampling.alwaysRecordLevels ?? ['warn', 'error'])
    const cap = sampling.maxRecordsPerSecond ?? Infinity
    if (typeof cap !== 'number' || !(cap >= 0)) throw new TypeError('option telemetry.sampling.maxRecordsPerSecond must be a non-negative number')
    this.perSecond = cap
    const capture = options?.capturePayload ?? false
    if (capture !== false && capture !== 'preview') throw new TypeError("option telemetry.capturePayload must be false or 'preview'")
    const max = options?.maxPayloadPreviewBytes ?? 256
    if (!Number.isInteger(max) || max < 0) throw new TypeError('option telemetry.maxPayloadPreviewBytes must be a non-negative integer')
    this.preview = capture === 'preview' ? max : -1
    this.setFlags()
  }

  /** Adds a listener for events at `level` and above; returns its removal. */
  tap(level: TelemetryLevel, fn: TelemetryTap): () => void {
    const entry = { min: LEVELS[level], fn }
    this.taps.push(entry)
    this.setFlags()
    return () => {
      const i = this.taps.indexOf(entry)
      if (i >= 0) this.taps.splice(i, 1)
      this.setFlags()
    }
  }

  private setFlags(): void {
    const min = Math.min(this.sinkMin, ...this.taps.map((t) => t.min))
    this.debug = min <= LEVELS.debug
    this.info = min <= LEVELS.info
    this.warn = min <= LEVELS.warn
    this.error = min <= LEVELS.error
  }

  /** Whether events of `level` are recorded at all (check before building one). */
  on(level: TelemetryLevel): boolean {
    return level === 'debug' ? this.debug : level === 'info' ? this.info : level === 'warn' ? this.warn : this.error
  }

  /** A payload preview for `detail.payload` (only with `capturePayload: 'preview'`). */
  previewOf(data: unknown): string | undefined {
    if (this.preview < 0) return undefined
    let text: string
    try {
      text = typeof data === 'string' ? data : JSON.stringify(data) ?? String(data)
    } catch {
      text = String(data)
    }
    return text.length > this.preview ? text.slice(0, this.preview) : text
  }

  /** Whether the app's sink records this event: its level, then sampling and the cap. */
  private sinkWants(name: EventName, level: TelemetryLevel): boolean {
    if (LEVELS[level] < this.sinkMin) return false
    if (this.always.has(level)) return true
    const r = this.rates.get(name) ?? this.defaultRate
    if (r < 1 && Math.random() >= r) {
      this.sampledOut++
      return false
    }
    if (this.perSecond !== Infinity) {
      const now = Date.now()
      if (now - this.windowStart >= 1000) {
        this.windowStart = now
        this.windowCount = 0
      }
      if (this.windowCount >= this.perSecond) {
        this.sampledOut++
        return false
      }
      this.windowCount++
    }
    return true
  }

  /** Records `name` (the caller checked its level is on). */
  emit(name: EventName, conn: Conn | undefined, detail: Record<string, unknown>, trace?: TraceContext, levelOverride?: TelemetryLevel): void {
    const level: TelemetryLevel = levelOverride ?? EVENT_LEVELS[name]
    if (!this.on(level)) return
    const toSink = this.sinkWants(name, level)
    const rank = LEVELS[level]
    if (!toSink && !this.taps.some((t) => t.min <= rank)) return
    const event: TelemetryEvent = {
      name,
      level,
      time: Date.now(),
      nodeId: this.nodeId,
      connectionId: conn?.id,
      namespace: conn?.namespace,
      userId: conn?.userId ?? undefined,
      traceId: trace?.traceId,
      spanId: trace?.spanId,
      parentSpanId: trace?.parentSpanId,
      sampled: trace?.sampled,
      detail,
    }
    if (toSink) {
      try {
        this.sink!(event)
      } catch {
        this.sinkErrors++
      }
    }
    for (const tap of this.taps) {
      if (tap.min <= rank) tap.fn(event)
    }
  }
}
