// Sends made while a batch of events is dispatched (ts/batch.ts) are collected here and handed to
// Rust in one N-API call when the batch ends, instead of one call each: a handler that answers
// every message costs an array push, not a crossing into Rust with its own string conversion.
//
// Only envelope texts made by the protocol encoders (ts/protocol) come here. They are JSON, which
// never holds a raw U+0000 (JSON.stringify escapes every control character), so the payloads travel
// as one string joined by NUL, which Rust splits. Everything else that writes to or closes a
// connection first flushes the outbox (`Server#_output`), so a connection sees its frames in the
// order the app made them.

import type { InboundAcks } from './acks'
import type { NativeServer } from './native'

/** Sends collected before the outbox flushes by itself (a handler publishing in a loop). */
export const MAX_OUTBOX_SENDS = 4096

export class Outbox {
  /** True while a batch dispatches: `add` is then the way to send. */
  collecting = false
  private readonly ids: number[] = []
  private readonly payloads: string[] = []

  /** Queues `payload` for connection `nid` (bound: {@link MAX_OUTBOX_SENDS}, then a flush). */
  add(native: NativeServer, nid: number, payload: string): void {
    this.ids.push(nid)
    this.payloads.push(payload)
    if (this.ids.length >= MAX_OUTBOX_SENDS) this.flush(native)
  }

  /** Hands every queued send to Rust, in order. */
  flush(native: NativeServer): void {
    if (this.ids.length === 0) return
    const [ids, joined] = this.take()
    native.sendMany(ids, joined)
  }

  /**
   * Ends a batch's dispatch (`NativeServer#finishBatch`): hands over the queued sends, uncorks,
   * and acknowledges what `acks` holds (Rust reads on sooner, and the event loop's own ack flush
   * finds nothing); with `assist`, returns the next batch read on this thread ('' when none).
   */
  finish(native: NativeServer, acks: InboundAcks, assist: boolean): string {
    this.collecting = false
    const handled = acks.take()
    const pairs = handled?.pairs ?? null
    const released = handled?.released ?? 0
    if (this.ids.length === 0) return native.finishBatch(null, null, pairs, released, assist)
    const [ids, joined] = this.take()
    return native.finishBatch(ids, joined, pairs, released, assist)
  }

  private take(): [Float64Array, string] {
    const taken: [Float64Array, string] = [Float64Array.from(this.ids), this.payloads.join('\0')]
    this.ids.length = 0
    this.payloads.length = 0
    return taken
  }
}
