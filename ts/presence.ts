// Presence: who is connected, answered from this process's fan-out index (the Rust registry, for
// room and user lookups) and its Connection objects (for user ids and rooms). Without a cluster
// this is the whole answer; a cluster answers the same calls for every node.

import type { Connection } from './connection'
import { DEFAULT_NAMESPACE, type Namespace } from './namespace'
import type { NativeServer } from './native'
import type { Presence, PresenceEntry, PresenceStats } from './types'

/** What presence needs of its server. */
export interface PresenceHost {
  readonly nodeId: string
  readonly _native: NativeServer
  readonly _connections: Map<number, Connection>
  readonly _namespaces: readonly Namespace[]
  _namespace(name: string): Namespace
  _localId(id: unknown): number | undefined
}

/** The entry of one open connection. Reads the rooms without turning a single room into a Set. */
export function entryOf(conn: Connection, nodeId: string): PresenceEntry {
  const rooms = conn._rooms
  return {
    connectionId: conn.id,
    nodeId,
    namespace: conn.namespace,
    userId: conn.userId ?? null,
    rooms: rooms === null ? [] : typeof rooms === 'string' ? [rooms] : [...rooms],
  }
}

export class LocalPresence implements Presence {
  constructor(private readonly host: PresenceHost) {}

  private entries(ids: number[]): PresenceEntry[] {
    const out: PresenceEntry[] = []
    for (const id of ids) {
      const conn = this.host._connections.get(id)
      if (conn !== undefined) out.push(entryOf(conn, this.host.nodeId))
    }
    return out.sort((a, b) => (a.connectionId < b.connectionId ? -1 : a.connectionId > b.connectionId ? 1 : 0))
  }

  async getRoomMembers(room: string, namespace: string = DEFAULT_NAMESPACE): Promise<PresenceEntry[]> {
    const ns = this.host._namespace(namespace)
    return this.entries(this.host._native.roomMembers(ns.index, String(room)))
  }

  async getUserConnections(userId: string, namespace?: string): Promise<PresenceEntry[]> {
    const namespaces = namespace === undefined ? this.host._namespaces : [this.host._namespace(namespace)]
    return this.entries(namespaces.flatMap((ns) => this.host._native.userConnections(ns.index, String(userId))))
  }

  async getConnection(connectionId: string): Promise<PresenceEntry | null> {
    const id = this.host._localId(connectionId)
    const conn = id === undefined ? undefined : this.host._connections.get(id)
    return conn === undefined ? null : entryOf(conn, this.host.nodeId)
  }

  async getConnectionCount(namespace?: string): Promise<number> {
    if (namespace === undefined) return this.host._native.totals()[0] ?? 0
    return this.host._native.namespaceCount(this.host._namespace(namespace).index)
  }

  async getStats(): Promise<PresenceStats> {
    const [connections = 0, rooms = 0, users = 0] = this.host._native.totals()
    return { nodes: 1, connections, rooms, users }
  }

  /** Nothing to wait for: this process's index is the whole answer. */
  async sync(): Promise<void> {}
}
