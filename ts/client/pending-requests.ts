// Client → server requests awaiting their reply: ids, timeouts, the bound on how many are pending,
// and what happens to them when a connection drops. Browser-safe.
//
// A request is either *queued* (its frame waits in the send queue for a connection) or *sent* (on
// the current connection). A connection that ends rejects the sent ones with `connection_closed`
// (they may or may not have run on the server: a request is never sent twice); queued ones wait for
// the next connection. The timeout runs from the call, whatever the phase.

import type { RequestId } from '../protocol/envelope.js'
import { RequestError, RequestErrorCode, connectionClosed, fromClientError } from '../protocol/request-error.js'

interface Pending {
  readonly name: string
  sent: boolean
  timer: ReturnType<typeof setTimeout> | undefined
  /** Checks and converts the reply's data (the output schema with `validate`); throws a RequestError. */
  readonly accept: (data: unknown) => unknown
  readonly resolve: (value: unknown) => void
  readonly reject: (error: RequestError) => void
}

export class PendingRequests {
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  /** Replies whose id matched no pending request (never sent, or already settled, e.g. timed out). */
  unknownReplies = 0

  constructor(private readonly max: number) {
    if (!(max >= 1 && Number.isInteger(max))) throw new RangeError(`maxPendingRequests must be an integer ≥ 1, got ${max}`)
  }

  get size(): number {
    return this.pending.size
  }

  /**
   * Registers a request. Returns its id and promise, or throws a RequestError (`unavailable`) when
   * `max` requests are already pending.
   */
  add(name: string, timeoutMs: number, accept: (data: unknown) => unknown): { id: number; promise: Promise<unknown> } {
    if (this.pending.size >= this.max) {
      throw new RequestError(RequestErrorCode.UNAVAILABLE, `Request "${name}" refused: ${this.max} requests are already pending (maxPendingRequests)`)
    }
    const id = this.nextId++
    let entry!: Pending
    const promise = new Promise<unknown>((resolve, reject) => {
      entry = { name, sent: false, timer: undefined, accept, resolve, reject }
    })
    if (timeoutMs > 0) {
      entry.timer = setTimeout(() => {
        this.settle(id)?.reject(new RequestError(RequestErrorCode.TIMEOUT, `Request "${name}" timed out after ${timeoutMs} ms`))
      }, timeoutMs)
    }
    this.pending.set(id, entry)
    return { id, promise }
  }

  /** The request's frame went out on the current connection. */
  markSent(id: number): void {
    const entry = this.pending.get(id)
    if (entry) entry.sent = true
  }

  /** Rejects one request (its frame was dropped, or could not be sent). */
  reject(id: number, error: RequestError): void {
    this.settle(id)?.reject(error)
  }

  /** A reply `{id, data}`; false when the id matched no pending request (counted). */
  resolve(id: RequestId, data: unknown): boolean {
    const entry = typeof id === 'number' ? this.settle(id) : undefined
    if (!entry) {
      this.unknownReplies++
      return false
    }
    try {
      entry.resolve(entry.accept(data))
    } catch (error) {
      entry.reject(error instanceof RequestError ? error : new RequestError(RequestErrorCode.INVALID_OUTPUT, String(error)))
    }
    return true
  }

  /** A reply `{id, error}`; false when the id matched no pending request (counted). */
  fail(id: RequestId, error: unknown): boolean {
    const entry = typeof id === 'number' ? this.settle(id) : undefined
    if (!entry) {
      this.unknownReplies++
      return false
    }
    entry.reject(fromServerError(error))
    return true
  }

  /** The connection ended: rejects every sent request (`connection_closed`, with the close code when known). */
  connectionLost(code?: number): void {
    for (const [id, entry] of [...this.pending]) if (entry.sent) this.settle(id)?.reject(connectionClosed(entry.name, code))
  }

  /** The client is closed: rejects every request, sent or queued. */
  rejectAll(): void {
    for (const [id, entry] of [...this.pending]) this.settle(id)?.reject(connectionClosed(entry.name))
  }

  private settle(id: number): Pending | undefined {
    const entry = this.pending.get(id)
    if (!entry) return undefined
    this.pending.delete(id)
    if (entry.timer !== undefined) clearTimeout(entry.timer)
    return entry
  }
}

/** The RequestError for an error reply: its code (`internal` when missing) and message. */
function fromServerError(error: unknown): RequestError {
  const converted = fromClientError(error)
  // fromClientError is written for the server's side; only its fallback message says so.
  const own = (error as { message?: unknown } | null)?.message
  return typeof own === 'string' ? converted : new RequestError(converted.code, 'The server reported an error', converted.issues ? { issues: converted.issues } : undefined)
}
