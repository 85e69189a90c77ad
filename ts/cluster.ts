// The cross-node seam for a bus the application provides (`cluster: { bus }`): every publish of
// this node is also handed to the bus as one message (namespace *name*, audience with global
// connection ids, the encoded payload), and every message another node published is delivered
// to this node's connections, in Rust, through the same native fan-out as a local publish. So each
// matching connection on each node gets it exactly once: the publishing node delivers its own,
// every other node its own, and `except` names connections on any node.
//
// Cost: a custom bus runs in JS, so every cross-node publish crosses N-API once on the receiving
// node and is serialised by the bus (the payload is already a string). A Redis bus spoken from
// Rust will not enter JS at all.

import type { BusAudience, BusMessage, ClusterBus } from './types'

/** What the bus glue needs of its server. */
export interface BusHost {
  readonly nodeId: string
  /** Delivers a message from another node to this node's connections; returns how many. */
  _deliverRemote(message: BusMessage): number
  _reportError(error: unknown): void
  _event(name: 'ws.publish.failed', conn: undefined, detail: Record<string, unknown>): void
  readonly _stats: { busPublishErrors: number; busReceived: number }
}

export function checkBus(bus: unknown): ClusterBus | undefined {
  if (bus === undefined) return undefined
  const b = bus as Partial<ClusterBus> | null
  if (!b || typeof b.publish !== 'function' || typeof b.subscribe !== 'function') {
    throw new TypeError('option cluster.bus must have publish(message) and subscribe(handler) methods')
  }
  return b as ClusterBus
}

export class BusLink {
  private readonly unsubscribe: () => void

  constructor(
    private readonly bus: ClusterBus,
    private readonly host: BusHost,
  ) {
    const unsubscribe = bus.subscribe((message) => this.received(message))
    this.unsubscribe = typeof unsubscribe === 'function' ? unsubscribe : () => {}
  }

  /** Hands one local publish to the other nodes. A failing bus never breaks local delivery. */
  send(namespace: string, audience: BusAudience, payload: string): void {
    const message: BusMessage = { origin: this.host.nodeId, namespace, audience, payload }
    try {
      const sent = this.bus.publish(message)
      if (sent && typeof (sent as PromiseLike<void>).then === 'function') {
        ;(sent as PromiseLike<void>).then(undefined, (error: unknown) => this.failed(error))
      }
    } catch (error) {
      this.failed(error)
    }
  }

  private failed(error: unknown): void {
    this.host._stats.busPublishErrors++
    this.host._event('ws.publish.failed', undefined, { reason: 'cluster bus', error: error instanceof Error ? error.message : String(error) })
    this.host._reportError(error)
  }

  private received(message: BusMessage): void {
    if (!message || message.origin === this.host.nodeId) return // our own publish, delivered already
    this.host._stats.busReceived++
    try {
      this.host._deliverRemote(message)
    } catch (error) {
      this.host._reportError(error)
    }
  }

  async close(): Promise<void> {
    this.unsubscribe()
    await this.bus.shutdown?.()
  }
}
