// What the dashboard shows, gathered on the server: a history of the counters sampled once a
// second (so a page opened now still draws the last five minutes), the recent warn/error
// telemetry events, and on demand the namespaces, their largest rooms and one connection's
// details. Everything here is bounded by a named constant whatever the peers do; the page only
// ever asks for snapshots of it (read-only).

import type { Connection } from '../connection'
import { entryOf } from '../presence'
import type { Telemetry } from '../telemetry'
import type { NativeServer } from '../native'
import type { Presence, PresenceEntry, PresenceStats, ServerStats, TelemetryEvent, ConnectionStats } from '../types'

/** Samples kept: five minutes at one per second. */
export const MAX_HISTORY_SAMPLES = 300
/** Interval between samples. */
export const SAMPLE_INTERVAL_MS = 1000
/** Recent warn/error events kept (oldest dropped). */
export const MAX_RECENT_EVENTS = 200
/** Largest rooms listed per namespace, by default and at most. */
export const DEFAULT_ROOMS_LISTED = 50
export const MAX_ROOMS_LISTED = 1000
/** Connections one lookup answers with (a user may have many). */
export const MAX_LOOKUP_RESULTS = 100
/** Rooms shown per looked-up connection. */
const MAX_ROOMS_PER_CONNECTION = 100
/** A `detail` value longer than this (as JSON) is cut, so one event cannot make a snapshot large. */
const MAX_DETAIL_CHARS = 2000

/** One point of the history: totals at `time`, and rates per second since the previous sample. */
export interface Sample {
  time: number
  connections: number
  messagesReceived: number
  messagesSent: number
  bytesReceived: number
  bytesSent: number
  messagesRejected: number
  /** Per second since the previous sample (0 for the first). */
  rates: { messagesReceived: number; messagesSent: number; bytesReceived: number; bytesSent: number }
}

/** A recent event as the page shows it (detail cut to a bounded JSON text). */
export interface RecentEvent {
  /** Increases by one per event recorded: the page's cursor. */
  seq: number
  time: number
  level: string
  name: string
  connectionId: string | undefined
  namespace: string | undefined
  userId: string | undefined
  traceId: string | undefined
  detail: string
}

export interface NamespaceView {
  name: string
  connections: number
  messagesReceived: number
  messagesSent: number
  rooms: number
  largestRooms: { name: string; members: number }[]
}

export interface ConnectionView extends PresenceEntry {
  /** Only for connections of this node: the rest is known to presence alone. */
  local: boolean
  remoteAddress?: string
  openedAt?: number
  lastSeenAt?: number
  rttMs?: number
  stats?: ConnectionStats
  roomsTotal: number
}

/** What the collector needs of its server (narrow on purpose: nothing here can publish or close). */
export interface DashboardSource {
  readonly nodeId: string
  readonly stats: ServerStats
  readonly presence: Presence
  readonly _native: NativeServer
  readonly _telemetry: Telemetry
  readonly _namespaces: readonly { readonly name: string; readonly index: number }[]
  readonly _redisCluster: boolean
  getConnection(id: string): Connection | undefined
}

export class Collector {
  private readonly history: Sample[] = []
  private readonly events: RecentEvent[] = []
  private timer: ReturnType<typeof setInterval> | undefined
  private seq = 0
  private readonly untap: () => void
  readonly startedAt = Date.now()

  constructor(private readonly source: DashboardSource) {
    // Warn and error events are what an operator looks for; the tap also turns on Rust's
    // reports of refused upgrades and messages.
    this.untap = source._telemetry.tap('warn', (event) => this.record(event))
    source._native.setReportRejections(true)
    this.sample()
    this.timer = setInterval(() => this.sample(), SAMPLE_INTERVAL_MS)
    this.timer.unref?.()
  }

  /** Stops sampling and listening (the server shut down). */
  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.untap()
    if (!this.source._telemetry.warn) this.source._native.setReportRejections(false)
  }

  private record(event: TelemetryEvent): void {
    let detail: string
    try {
      detail = JSON.stringify(event.detail) ?? ''
    } catch {
      detail = String(event.detail)
    }
    if (detail.length > MAX_DETAIL_CHARS) detail = `${detail.slice(0, MAX_DETAIL_CHARS)}…`
    this.events.push({
      seq: ++this.seq,
      time: event.time,
      level: event.level,
      name: event.name,
      connectionId: event.connectionId,
      namespace: event.namespace,
      userId: event.userId,
      traceId: event.traceId,
      detail,
    })
    if (this.events.length > MAX_RECENT_EVENTS) this.events.splice(0, this.events.length - MAX_RECENT_EVENTS)
  }

  /** Takes one sample of the totals (also called once at start, so rates have a base). */
  sample(now = Date.now()): Sample {
    const s = this.source.stats
    const last = this.history[this.history.length - 1]
    const seconds = last === undefined ? 0 : (now - last.time) / 1000
    const rate = (value: number, before: number | undefined): number =>
      seconds > 0 && before !== undefined ? Math.max(0, (value - before) / seconds) : 0
    const sample: Sample = {
      time: now,
      connections: s.connections,
      messagesReceived: s.messagesReceived,
      messagesSent: s.messagesSent,
      bytesReceived: s.bytesReceived,
      bytesSent: s.bytesSent,
      messagesRejected: s.messagesRejected,
      rates: {
        messagesReceived: rate(s.messagesReceived, last?.messagesReceived),
        messagesSent: rate(s.messagesSent, last?.messagesSent),
        bytesReceived: rate(s.bytesReceived, last?.bytesReceived),
        bytesSent: rate(s.bytesSent, last?.bytesSent),
      },
    }
    this.history.push(sample)
    if (this.history.length > MAX_HISTORY_SAMPLES) this.history.splice(0, this.history.length - MAX_HISTORY_SAMPLES)
    return sample
  }

  /** The page's periodic poll: counters now, the samples taken after time `since`, the events after number `afterEvent`. */
  async state(since: number, afterEvent: number, roomsListed: number): Promise<object> {
    const stats = this.source.stats
    const native = this.source._native
    const namespaces: NamespaceView[] = this.source._namespaces.map((ns) => {
      const traffic = stats.namespaces[ns.name]
      const rooms = native.largestRooms(ns.index, roomsListed)
      return {
        name: ns.name,
        connections: traffic?.connections ?? 0,
        messagesReceived: traffic?.messagesReceived ?? 0,
        messagesSent: traffic?.messagesSent ?? 0,
        rooms: rooms.total,
        largestRooms: rooms.names.map((name, i) => ({ name, members: rooms.sizes[i] ?? 0 })),
      }
    })
    let cluster: { presence: PresenceStats | null; error?: string } | null = null
    if (this.source._redisCluster) {
      try {
        cluster = { presence: await this.source.presence.getStats() }
      } catch (error) {
        cluster = { presence: null, error: error instanceof Error ? error.message : String(error) }
      }
    }
    return {
      nodeId: this.source.nodeId,
      now: Date.now(),
      startedAt: this.startedAt,
      stats,
      namespaces,
      cluster,
      history: this.history.filter((s) => s.time > since),
      events: this.events.filter((e) => e.seq > afterEvent),
      limits: { historySamples: MAX_HISTORY_SAMPLES, sampleIntervalMs: SAMPLE_INTERVAL_MS, recentEvents: MAX_RECENT_EVENTS, roomsListed },
    }
  }

  /**
   * Connections matching `query`: a connection id (this node's in detail, another node's from
   * presence), else a user id (every namespace; the whole cluster with `cluster.redis`).
   */
  async lookup(query: string): Promise<{ connections: ConnectionView[]; truncated: boolean }> {
    const local = this.source.getConnection(query)
    if (local !== undefined) return { connections: [this.view(local)], truncated: false }
    const byId = await this.source.presence.getConnection(query)
    const entries = byId !== null ? [byId] : await this.source.presence.getUserConnections(query)
    const truncated = entries.length > MAX_LOOKUP_RESULTS
    const connections = entries.slice(0, MAX_LOOKUP_RESULTS).map((entry) => {
      const conn = this.source.getConnection(entry.connectionId)
      const rooms = entry.rooms ?? []
      return conn !== undefined ? this.view(conn) : { ...entry, rooms: rooms.slice(0, MAX_ROOMS_PER_CONNECTION), roomsTotal: rooms.length, local: false }
    })
    return { connections, truncated }
  }

  private view(conn: Connection): ConnectionView {
    const entry = entryOf(conn, this.source.nodeId)
    const rooms = entry.rooms ?? []
    return {
      ...entry,
      rooms: rooms.slice(0, MAX_ROOMS_PER_CONNECTION),
      roomsTotal: rooms.length,
      local: true,
      remoteAddress: conn.remoteAddress,
      openedAt: conn.openedAt,
      lastSeenAt: conn.lastSeenAt,
      rttMs: conn.rtt,
      stats: conn.stats,
    }
  }
}
