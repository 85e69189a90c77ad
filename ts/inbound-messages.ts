// Running one inbound message (an event, or a raw message in raw-mode namespaces): validate its
// data against the contract's `in` schema, call the handler with `(data, { event, meta, conn })`,
// and the two ways it can go wrong: invalid data (close 1007, or an `error` event with
// `onInvalidMessage: 'reply'`) and a handler that throws or rejects (close 1011).

import { abort, settle } from './dispatch-queue'
import type { Conn, InboundHandler, MessageFn, RawFn } from './handler-store'
import { CloseCode, Reason } from './protocol/close-codes'
import { isPending, serialisableIssues } from './protocol/contract'
import { encodeEvent } from './protocol/envelope'
import { REJECTED, type ConnectionState, type QueuedMessage } from './state'
import { traceOf } from './telemetry'
import type { MessageContext, StandardSchemaIssue, StandardSchemaResult } from './types'

/** Validates and calls the handler; returns a promise only when something is asynchronous. */
export function runMessage(conn: ConnectionState, handler: InboundHandler, message: QueuedMessage): unknown {
  const ns = conn._ns
  // A raw-mode namespace holds raw handlers only, and raw messages are strings or Buffers.
  if (ns.raw) return (handler as RawFn)(message.data as string | Uint8Array, conn)
  const event = message.event as string
  const schema = ns.contract?.in[event]
  const meta = message.meta ?? undefined
  const server = ns.server
  const trace = meta === undefined ? undefined : (server._propagation?.getStore() ?? traceOf(server._telemetry, conn, meta, server._tracing?.current()))
  const ctx: MessageContext<Conn> = { event, meta, conn, trace }
  if (!schema) return (handler as MessageFn)(message.data, ctx)
  const result = schema['~standard'].validate(message.data)
  const proceed = (r: StandardSchemaResult<unknown>): unknown =>
    r.issues ? invalidData(conn, message, r.issues) : (handler as MessageFn)(r.value, ctx)
  return isPending(result) ? result.then(proceed) : proceed(result)
}

function invalidData(conn: ConnectionState, message: QueuedMessage, issues: ReadonlyArray<StandardSchemaIssue>): typeof REJECTED {
  const server = conn._ns.server
  server._metrics.rejected[conn._ns.index]++
  const tel = server._telemetry
  if (tel.warn) tel.emit('ws.message.rejected', conn, { event: message.event, reason: 'invalid_data', issues: serialisableIssues(issues), payload: tel.previewOf(message.data) })
  if (server._replyOnInvalid) {
    const error = { code: 'invalid_data', message: Reason.INVALID_DATA, event: message.event, issues: serialisableIssues(issues) }
    server._send(conn._nid, encodeEvent('error', error))
  } else {
    abort(conn, CloseCode.INVALID_PAYLOAD, Reason.INVALID_DATA)
  }
  return REJECTED
}

/** The handler threw or rejected: reported to `onError`, the connection closed 1011. */
export function messageFailed(conn: ConnectionState, error: unknown, message: QueuedMessage): void {
  conn._ns.server._reportError(error, conn)
  const tel = conn._ns.server._telemetry
  if (tel.error) tel.emit('ws.message.failed', conn, { event: message.event, error: error instanceof Error ? error.message : String(error) })
  abort(conn, CloseCode.INTERNAL_ERROR, Reason.HANDLER_FAILED)
  settle(conn, message)
}
