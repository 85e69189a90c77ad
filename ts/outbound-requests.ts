// Requests from the server to the client (`conn.request`): validate and send `{event, data, id}`
// with an id unique per connection, settle the promise when the reply arrives (validated against
// the contract's output schema), on timeout, or when the connection closes. Replies never wait in
// the connection's queue, and while replies are awaited the queue reads ahead
// (dispatch-queue#readAhead) so the reply can arrive behind a handler that waits for it.

import { ack, readAhead } from './dispatch-queue'
import { describeIssues, isPending, serialisableIssues, validateClientRequest } from './protocol/contract'
import { encodeRequest } from './protocol/envelope'
import { RequestError, RequestErrorCode, connectionClosed, fromClientError } from './protocol/request-error'
import { State, more, type ConnectionState, type Extra, type PendingRequest } from './state'
import type { RequestOptions, StandardSchemaResult } from './types'

/**
 * Asks the client: sends `{event, data, id}` and resolves with the `data` of its reply (validated
 * against the output schema). Rejects with a `RequestError` on an error reply, a timeout or when
 * the connection closes first. Unknown names and invalid data throw synchronously, like publish.
 */
export function sendRequest(conn: ConnectionState, name: string, data: unknown, options: RequestOptions | undefined): Promise<unknown> {
  if (typeof name !== 'string' || name === '') throw new TypeError('request name must be a non-empty string')
  if (conn._ns.raw) throw new TypeError('raw-mode namespaces have no requests')
  const server = conn._ns.server
  const value = validateClientRequest(conn._ns.contract, name, data)
  const timeoutMs: unknown = options?.timeoutMs ?? server._requestTimeoutMs
  if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) {
    throw new TypeError(`timeoutMs must be a non-negative number, got ${timeoutMs}`)
  }
  const x = more(conn)
  const id = ++x.nextRequestId
  const payload = encodeRequest(name, value, id)
  if ((conn._state & State.CLOSING) !== 0) return Promise.reject(connectionClosed(name))
  return new Promise((resolve, reject) => {
    const pending: PendingRequest = { name, resolve, reject, timer: undefined }
    const outbound = (x.outbound ??= new Map())
    outbound.set(id, pending)
    if (timeoutMs > 0) {
      pending.timer = setTimeout(() => {
        if (outbound.get(id) !== pending) return
        outbound.delete(id)
        reject(new RequestError(RequestErrorCode.TIMEOUT, `Client request "${name}" timed out after ${timeoutMs} ms`))
      }, timeoutMs)
    }
    if (!server._output().send(conn._nid, payload)) {
      outbound.delete(id)
      clearTimeout(pending.timer)
      reject(connectionClosed(name))
      return
    }
    readAhead(conn)
  })
}

/** A reply to `conn.request`: settles its promise now, whatever the queue is doing. */
export function receiveReply(conn: ConnectionState, id: unknown, data: unknown, error: unknown): void {
  ack(conn)
  const outbound = conn._x?.outbound
  const pending = typeof id === 'number' ? outbound?.get(id) : undefined
  if (!pending) {
    conn._ns.server._stats.unknownReplies++
    return
  }
  ;(outbound as Map<number, PendingRequest>).delete(id as number)
  clearTimeout(pending.timer)
  if (error) return pending.reject(fromClientError(error))
  const spec = conn._ns.contract?.clientRequests[pending.name]
  if (!spec) return pending.resolve(data)
  const settle = (r: StandardSchemaResult<unknown>): void => {
    if (r.issues) {
      const message = `Invalid reply to client request "${pending.name}": ${describeIssues(r.issues)}`
      pending.reject(new RequestError(RequestErrorCode.INVALID_OUTPUT, message, { issues: serialisableIssues(r.issues) }))
    } else {
      pending.resolve(r.value)
    }
  }
  try {
    const result = spec.output['~standard'].validate(data)
    if (isPending(result)) result.then(settle, pending.reject)
    else settle(result)
  } catch (e) {
    pending.reject(e)
  }
}

/** The connection closed (`code`): every request still awaiting a reply rejects `connection_closed`. */
export function rejectPending(x: Extra, code: number): void {
  const outbound = x.outbound
  if (outbound === null) return
  for (const [id, pending] of outbound) {
    outbound.delete(id)
    clearTimeout(pending.timer)
    pending.reject(connectionClosed(pending.name, code))
  }
}
