// Frames sent while the client is not connected, kept until the next connection opens. Bounded:
// past `max` the oldest frame is dropped (and its `onDrop` runs, e.g. to reject a request), and every
// drop is counted. Browser-safe.

export interface QueuedFrame {
  readonly text: string
  /** Runs when the frame has been handed to a connection. */
  readonly onSent?: () => void
  /** Runs when the frame is dropped instead of sent. */
  readonly onDrop?: () => void
}

export class SendQueue {
  private frames: QueuedFrame[] = []
  private head = 0
  /** Frames dropped so far (pushed out by newer ones, or discarded with `clear`). */
  dropped = 0

  constructor(private readonly max: number) {
    if (!(max >= 0 && Number.isInteger(max))) throw new RangeError(`maxQueued must be an integer ≥ 0, got ${max}`)
  }

  get size(): number {
    return this.frames.length - this.head
  }

  /** Queues `frame`; when full, drops the oldest first. With `max` 0 the frame itself is dropped. */
  push(frame: QueuedFrame): void {
    if (this.max === 0) {
      this.drop(frame)
      return
    }
    if (this.size >= this.max) this.drop(this.shift()!)
    this.frames.push(frame)
  }

  /** The oldest frame, removed; undefined when empty. */
  shift(): QueuedFrame | undefined {
    if (this.head >= this.frames.length) return undefined
    const frame = this.frames[this.head]
    this.head++
    // Compact now and then, so a long-lived queue does not keep consumed slots.
    if (this.head > 64 && this.head * 2 > this.frames.length) {
      this.frames = this.frames.slice(this.head)
      this.head = 0
    }
    return frame
  }

  /** Puts a frame back at the front (it could not be sent after all). */
  unshift(frame: QueuedFrame): void {
    if (this.head > 0) this.frames[--this.head] = frame
    else this.frames.unshift(frame)
  }

  /** Drops everything (counted). */
  clear(): void {
    const frames = this.frames.slice(this.head)
    this.frames = []
    this.head = 0
    for (const frame of frames) this.drop(frame)
  }

  private drop(frame: QueuedFrame): void {
    this.dropped++
    frame.onDrop?.()
  }
}
