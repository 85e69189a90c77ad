// Presence across the nodes of a Redis cluster (`cluster.redis`). Each node writes its own
// connections, rooms and users to Redis from Rust (src/cluster/); a query here is one script run
// in Redis over the live nodes' entries, answered through the batch like any other event, so the
// JS thread never waits for Redis and no other node is asked anything.

import { DEFAULT_NAMESPACE, type Namespace } from './namespace'
import type { NativeServer } from './native'
import type { Presence, PresenceEntry, PresenceStats } from './types'

/** What cluster presence needs of its server. */
export interface ClusterPresenceHost {
  readonly _native: NativeServer
  readonly _namespaces: readonly Namespace[]
  _namespace(name: string): Namespace
}

/** An entry as the query script writes it: `[id, nodeId, namespace, userId|null, rooms]`. */
type RawEntry = [string, string, string, string | null, string[] | Record<string, never>]

/** Lua's JSON writes an empty list as `{}`. */
function list<T>(value: unknown): T[] {
  return Array.isArray(value) ? value : []
}

function entry(raw: RawEntry): PresenceEntry {
  const [connectionId, nodeId, namespace, userId, rooms] = raw
  return { connectionId, nodeId, namespace, userId, rooms: list<string>(rooms).sort() }
}

function entries(answer: unknown): PresenceEntry[] {
  return list<RawEntry>(answer)
    .map(entry)
    .sort((a, b) => (a.connectionId < b.connectionId ? -1 : a.connectionId > b.connectionId ? 1 : 0))
}

export class ClusterPresence implements Presence {
  private nextCall = 1
  /** Calls waiting for Rust's answer; each is answered (Redis commands time out after 5 s). */
  private readonly calls = new Map<number, { resolve: (answer: unknown) => void; reject: (error: Error) => void }>()

  constructor(private readonly host: ClusterPresenceHost) {}

  private call(start: (id: number) => void): Promise<unknown> {
    const id = this.nextCall++
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject })
      start(id)
    })
  }

  private query(args: string[]): Promise<unknown> {
    return this.call((id) => this.host._native.clusterQuery(id, args))
  }

  /** Rust's answer to call `id` (from the batch). */
  _answer(id: number, answer: unknown, error: string | null): void {
    const call = this.calls.get(id)
    if (call === undefined) return
    this.calls.delete(id)
    if (error !== null) call.reject(new Error(error))
    else call.resolve(answer)
  }

  async getRoomMembers(room: string, namespace: string = DEFAULT_NAMESPACE): Promise<PresenceEntry[]> {
    const ns = this.host._namespace(namespace)
    return entries(await this.query(['room', ns.name, String(room)]))
  }

  async getUserConnections(userId: string, namespace?: string): Promise<PresenceEntry[]> {
    const namespaces = namespace === undefined ? this.host._namespaces : [this.host._namespace(namespace)]
    return entries(await this.query(['user', String(userId), ...namespaces.map((ns) => ns.name)]))
  }

  async getConnection(connectionId: string): Promise<PresenceEntry | null> {
    const answer = await this.query(['conn', String(connectionId)])
    return Array.isArray(answer) ? entry(answer as RawEntry) : null
  }

  async getConnectionCount(namespace?: string): Promise<number> {
    const args = namespace === undefined ? ['count'] : ['count', this.host._namespace(namespace).name]
    return Number(await this.query(args))
  }

  async getStats(): Promise<PresenceStats> {
    const [nodes = 0, connections = 0, rooms = 0, users = 0] = list<number>(await this.query(['stats']))
    return { nodes, connections, rooms, users }
  }

  async sync(timeoutMs: number = 5000): Promise<void> {
    if (!(timeoutMs >= 0)) throw new TypeError('timeoutMs must be a non-negative number')
    await this.call((id) => this.host._native.clusterSync(id, timeoutMs))
  }
}
