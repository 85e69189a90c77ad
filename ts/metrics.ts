// Metrics: the Prometheus text exposition of what the server counts, and the same numbers as an
// object for `server.stats`. Almost every count lives in Rust next to the work (src/metrics.rs,
// per-connection traffic in src/conn.rs) and arrives here as one JSON snapshot per scrape; JS
// adds what only it sees: messages its schemas refused, `conn.publish` calls, and (opt-in)
// handler durations.

import type { TrafficStats } from './types'

/** The Content-Type of `server.metrics()`'s text (Prometheus text format 0.0.4). */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** Upper bounds (seconds) of the handler duration histogram's buckets. */
export const HANDLER_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** What `NativeServer.metrics()` returns (src/addon.rs). */
export interface NativeMetrics {
  opened: number
  closed: Record<string, number>
  handshakesRejected: Record<string, number>
  backpressureCloses: number
  compressed: number
  publishes: Record<'connection' | 'room' | 'user' | 'audience' | 'broadcast', number>
  namespaces: Array<{
    connections: number
    received: number
    rejected: number
    receivedBytes: number
    sent: number
    sentBytes: number
    queued: number
    queuedBytes: number
  }>
  inboundPendingBytes: number
  cluster: { published: number; received: number; dropped: number; invalid: number; reconnects: number; subscriptions: number; connected: boolean } | null
}

/** One histogram series: cumulative-ready bucket counts, sum and count. */
class Histogram {
  readonly buckets = new Array<number>(HANDLER_BUCKETS.length).fill(0)
  sum = 0
  count = 0

  observe(seconds: number): void {
    this.sum += seconds
    this.count++
    for (let i = 0; i < HANDLER_BUCKETS.length; i++) {
      if (seconds <= (HANDLER_BUCKETS[i] as number)) {
        this.buckets[i]!++
        return
      }
    }
  }
}

/**
 * Handler durations by event, from the call to the end of its promise. Only events that have a
 * handler are timed, so the label set is the application's event names, not what peers send.
 */
export class HandlerTimer {
  readonly byEvent = new Map<string, Histogram>()

  /** Times one handler run that started at `start` (performance.now()); `pending` may be a promise. */
  track(event: string, start: number, pending: unknown): void {
    const done = (): void => {
      let h = this.byEvent.get(event)
      if (h === undefined) this.byEvent.set(event, (h = new Histogram()))
      h.observe((performance.now() - start) / 1000)
    }
    if (pending !== null && typeof pending === 'object' && typeof (pending as PromiseLike<unknown>).then === 'function') {
      ;(pending as PromiseLike<unknown>).then(done, done)
    } else {
      done()
    }
  }
}

/** What JS counts itself. */
export class JsMetrics {
  /** Per namespace index: messages and requests whose data the contract's schema refused. */
  readonly rejected: number[]
  /** `conn.publish` calls (Rust's `send` also carries replies and requests, so it cannot count them). */
  connectionPublishes = 0
  /** Set with `metrics: { handlerDuration: true }`. */
  readonly handlers: HandlerTimer | null

  constructor(namespaces: number, handlerDuration: boolean) {
    this.rejected = new Array<number>(namespaces).fill(0)
    this.handlers = handlerDuration ? new HandlerTimer() : null
  }
}

/** `server.stats`' traffic part, per namespace and in total. */
export function trafficStats(native: NativeMetrics, js: JsMetrics, names: readonly string[]): { total: TrafficStats; namespaces: Record<string, TrafficStats> } {
  const total: TrafficStats = { connections: 0, messagesReceived: 0, messagesRejected: 0, messagesSent: 0, bytesReceived: 0, bytesSent: 0, queuedMessages: 0, queuedBytes: 0 }
  const namespaces: Record<string, TrafficStats> = {}
  native.namespaces.forEach((ns, i) => {
    const t: TrafficStats = {
      connections: ns.connections,
      messagesReceived: ns.received,
      messagesRejected: ns.rejected + (js.rejected[i] ?? 0),
      messagesSent: ns.sent,
      bytesReceived: ns.receivedBytes,
      bytesSent: ns.sentBytes,
      queuedMessages: ns.queued,
      queuedBytes: ns.queuedBytes,
    }
    namespaces[names[i] ?? String(i)] = t
    for (const key of Object.keys(total) as Array<keyof TrafficStats>) total[key] += t[key]
  })
  return { total, namespaces }
}

/** A label value as the exposition format wants it: `\`, `"` and newlines escaped. */
function label(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function number(n: number): string {
  return Number.isFinite(n) ? String(n) : n > 0 ? '+Inf' : n < 0 ? '-Inf' : 'NaN'
}

/** Writes metric families: HELP and TYPE once per family, then its samples. */
class Exposition {
  private readonly lines: string[] = []

  family(name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: Array<[labels: Record<string, string>, value: number]>): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, value] of samples) this.sample(name, labels, value)
  }

  sample(name: string, labels: Record<string, string>, value: number): void {
    const entries = Object.entries(labels)
    const text = entries.length === 0 ? '' : `{${entries.map(([k, v]) => `${k}="${label(v)}"`).join(',')}}`
    this.lines.push(`${name}${text} ${number(value)}`)
  }

  head(name: string, type: 'histogram', help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
  }

  text(): string {
    return this.lines.join('\n') + '\n'
  }
}

/** The Prometheus text of every metric. `bus`: a custom bus's counters (`cluster.bus`), if any. */
export function exposition(native: NativeMetrics, js: JsMetrics, names: readonly string[], bus: { received: number; publishErrors: number } | null): string {
  const out = new Exposition()
  const perNs = <T>(f: (ns: NativeMetrics['namespaces'][number], i: number) => T): Array<[string, T]> =>
    native.namespaces.map((ns, i) => [names[i] ?? String(i), f(ns, i)])
  out.family('ferrosocket_connections', 'gauge', 'Open WebSocket connections.', perNs((ns) => ns.connections).map(([namespace, v]) => [{ namespace }, v]))
  out.family('ferrosocket_connections_opened_total', 'counter', 'WebSocket connections opened (upgrades completed).', [[{}, native.opened]])
  out.family(
    'ferrosocket_connections_closed_total',
    'counter',
    'WebSocket connections closed, by close code (1006: ended without a close handshake).',
    Object.entries(native.closed).map(([code, n]) => [{ code }, n]),
  )
  out.family(
    'ferrosocket_handshakes_rejected_total',
    'counter',
    'Upgrade requests refused, by HTTP status.',
    Object.entries(native.handshakesRejected).map(([status, n]) => [{ status }, n]),
  )
  const received: Array<[Record<string, string>, number]> = []
  for (const [namespace, [accepted, rejected]] of perNs((ns, i) => {
    const rejected = ns.rejected + (js.rejected[i] ?? 0)
    return [ns.received - rejected, rejected] as const
  })) {
    received.push([{ namespace, outcome: 'accepted' }, accepted], [{ namespace, outcome: 'rejected' }, rejected])
  }
  out.family('ferrosocket_messages_received_total', 'counter', 'Data messages received; rejected: not JSON, not in the contract, or refused by its schema.', received)
  out.family('ferrosocket_messages_sent_total', 'counter', 'Messages queued for sending to a connection (each delivery of a publish counts once).', perNs((ns) => ns.sent).map(([namespace, v]) => [{ namespace }, v]))
  const sum = (f: (ns: NativeMetrics['namespaces'][number]) => number): number => native.namespaces.reduce((a, ns) => a + f(ns), 0)
  out.family('ferrosocket_bytes_received_total', 'counter', 'Bytes read from WebSocket connections (frames as sent by peers).', [[{}, sum((ns) => ns.receivedBytes)]])
  out.family('ferrosocket_bytes_sent_total', 'counter', 'Bytes of messages queued for WebSocket connections (encoded frames).', [[{}, sum((ns) => ns.sentBytes)]])
  const publishes = { ...native.publishes, connection: js.connectionPublishes }
  out.family(
    'ferrosocket_publishes_total',
    'counter',
    'Publish calls, by what they addressed.',
    (['connection', 'room', 'user', 'audience', 'broadcast'] as const).map((target) => [{ target }, publishes[target] ?? 0]),
  )
  out.family('ferrosocket_backpressure_closes_total', 'counter', 'Connections closed 1013 because their outbound queue overflowed.', [[{}, native.backpressureCloses]])
  out.family('ferrosocket_messages_compressed_total', 'counter', 'Messages compressed with permessage-deflate (once per publish, shared by its recipients).', [[{}, native.compressed]])
  out.family('ferrosocket_inbound_pending_bytes', 'gauge', 'Inbound bytes received and not yet handled, counted against maxPendingBytes.', [[{}, native.inboundPendingBytes]])
  out.family('ferrosocket_outbound_queued_bytes', 'gauge', 'Bytes waiting in connections\' outbound queues.', [[{}, sum((ns) => ns.queuedBytes)]])
  if (js.handlers !== null && js.handlers.byEvent.size > 0) {
    const name = 'ferrosocket_handler_duration_seconds'
    out.head(name, 'histogram', 'Time from calling a message or request handler to the end of its promise, by event.')
    for (const [event, h] of js.handlers.byEvent) {
      let cumulative = 0
      HANDLER_BUCKETS.forEach((le, i) => {
        cumulative += h.buckets[i] ?? 0
        out.sample(`${name}_bucket`, { event, le: String(le) }, cumulative)
      })
      out.sample(`${name}_bucket`, { event, le: '+Inf' }, h.count)
      out.sample(`${name}_sum`, { event }, h.sum)
      out.sample(`${name}_count`, { event }, h.count)
    }
  }
  const c = native.cluster
  if (c !== null) {
    out.family('ferrosocket_cluster_messages_published_total', 'counter', 'Bus messages this node handed to Redis.', [[{}, c.published]])
    out.family('ferrosocket_cluster_messages_received_total', 'counter', 'Bus messages of other nodes received by this node.', [[{}, c.received]])
    out.family('ferrosocket_cluster_messages_dropped_total', 'counter', 'Cross-node messages lost: Redis unavailable, queue full, or received too late.', [[{}, c.dropped]])
    out.family('ferrosocket_cluster_reconnects_total', 'counter', 'Reconnections to Redis.', [[{}, c.reconnects]])
    out.family('ferrosocket_cluster_subscriptions', 'gauge', 'Channels this node is subscribed to.', [[{}, c.subscriptions]])
    out.family('ferrosocket_cluster_connected', 'gauge', '1 while both connections to Redis are up.', [[{}, c.connected ? 1 : 0]])
  } else if (bus !== null) {
    out.family('ferrosocket_cluster_messages_received_total', 'counter', 'Bus messages of other nodes received by this node.', [[{}, bus.received]])
    out.family('ferrosocket_cluster_messages_dropped_total', 'counter', 'Publishes the custom bus refused.', [[{}, bus.publishErrors]])
  }
  return out.text()
}
