// Inbound flow control, JS side: handled messages are acknowledged to Rust per connection (Rust
// stops reading a socket at `maxInflightMessages` unacknowledged messages), and the bytes of
// messages handled or dropped are released from Rust's global inbound budget (`maxPendingBytes`).
// Both go to Rust in one call per event-loop turn, whatever the number of messages.

export class InboundAcks {
  /** Handled messages per connection since the last flush (bound: open connections). */
  readonly counts: Map<number, number>
  /** Bytes of messages handled or dropped since the last flush. */
  released: number
  /** A flush is scheduled (setImmediate). */
  scheduled: boolean
  private readonly _send: (pairs: Float64Array, releasedBytes: number) => void

  /** `send` hands one flush to Rust (`NativeServer#ack`). */
  constructor(send: (pairs: Float64Array, releasedBytes: number) => void) {
    this.counts = new Map()
    this.released = 0
    this.scheduled = false
    this._send = send
  }

  /** Counts one handled message of an open connection. */
  ack(nid: number): void {
    this.counts.set(nid, (this.counts.get(nid) ?? 0) + 1)
    if (!this.scheduled) this.schedule()
  }

  /** Returns `bytes` (sizes of messages handled or dropped) to Rust's inbound budget, with the next acks. */
  release(bytes: number): void {
    this.released += bytes
    if (!this.scheduled) this.schedule()
  }

  /** A closed connection's pending count is of no use to Rust any more. */
  forget(nid: number): void {
    this.counts.delete(nid)
  }

  schedule(): void {
    this.scheduled = true
    setImmediate(() => this.flush())
  }

  flush(): void {
    const taken = this.take()
    if (taken !== null) this._send(taken.pairs, taken.released)
  }

  /**
   * Takes what waits: (id, count) pairs and the released bytes, for a caller that hands them to
   * Rust itself (a batch's `finishBatch`); null when nothing waits. The flush already scheduled
   * then finds nothing.
   */
  take(): { pairs: Float64Array; released: number } | null {
    this.scheduled = false
    const released = this.released
    if (this.counts.size === 0 && released === 0) return null
    const pairs = new Float64Array(this.counts.size * 2)
    let i = 0
    for (const [id, n] of this.counts) {
      pairs[i++] = id
      pairs[i++] = n
    }
    this.counts.clear()
    this.released = 0
    return { pairs, released }
  }
}
