// Request/response (design §3): the typed error both directions use, and the rule that decides
// what a failed request tells the peer. Browser-safe.
//
// A thrown error becomes `{"id", "error": {"code", "message"}}`. `code` is `error.code` when it is a
// non-empty string, otherwise `internal`. The message reaches the client only when the error is
// *public*: an instance of `RequestError`, or any error with `expose === true` (the http-errors
// convention). Other errors are bugs as far as the client is concerned: they are reported to the
// server's `onError` and their message is replaced by `Internal error`, unless the server option
// `exposeErrors` is set.

import type { RequestErrorCodeValue } from '../types.js'

/** Error codes ferrosocket itself produces. Applications may use any other string. */
export const RequestErrorCode: {
  readonly INTERNAL: 'internal'
  readonly INVALID_INPUT: 'invalid_input'
  readonly INVALID_OUTPUT: 'invalid_output'
  readonly TIMEOUT: 'timeout'
  readonly UNKNOWN_REQUEST: 'unknown_request'
  readonly DUPLICATE_ID: 'duplicate_id'
  readonly UNAVAILABLE: 'unavailable'
  readonly CONNECTION_CLOSED: 'connection_closed'
} = Object.freeze({
  INTERNAL: 'internal',
  INVALID_INPUT: 'invalid_input',
  INVALID_OUTPUT: 'invalid_output',
  TIMEOUT: 'timeout',
  UNKNOWN_REQUEST: 'unknown_request',
  DUPLICATE_ID: 'duplicate_id',
  UNAVAILABLE: 'unavailable',
  CONNECTION_CLOSED: 'connection_closed',
})

/** What the peer sees instead of the message of a non-public error. */
export const HIDDEN_MESSAGE = 'Internal error'

/** The `error` object of an error reply (and of the `error` event of `onInvalidMessage: 'reply'`). */
export interface ErrorBody {
  code: string
  message: string
  issues?: unknown[]
}

/**
 * A failed request. Thrown in an `onRequest` handler, its `code` and `message` are sent to the
 * client. `conn.request` rejects with one on an error reply, a timeout or a closed connection.
 */
export class RequestError extends Error {
  // `declare`: typed here, set in the constructor (an `issues` key exists only when given).
  declare readonly name: 'RequestError'
  declare readonly code: RequestErrorCodeValue | (string & {})
  /** Validation issues (`invalid_input`, `invalid_output`), when there are any. */
  declare readonly issues?: unknown[]

  /**
   * @param code machine-readable code sent to the peer (`error.code`)
   * @param message human-readable message sent to the peer
   */
  constructor(code: RequestErrorCodeValue | (string & {}), message?: string, options?: { issues?: unknown[]; cause?: unknown }) {
    super(message ?? String(code), options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'RequestError'
    this.code = String(code)
    if (options?.issues !== undefined) this.issues = options.issues
  }
}

/** What a caught value may carry; anything may be thrown. */
interface ErrorLike {
  code?: unknown
  message?: unknown
  expose?: unknown
  issues?: unknown
}

const like = (error: unknown): ErrorLike | undefined =>
  error !== null && (typeof error === 'object' || typeof error === 'function') ? (error as ErrorLike) : undefined

/** True when the error's message may be shown to the peer. */
export function isPublicError(error: unknown): boolean {
  return error instanceof RequestError || (error !== null && typeof error === 'object' && (error as ErrorLike).expose === true)
}

/** `error.code` when it is a non-empty string, else `internal`. */
function codeOf(error: unknown): string {
  const code = like(error)?.code
  return typeof code === 'string' && code !== '' ? code : RequestErrorCode.INTERNAL
}

/** `{ code, message, issues? }` sent for a thrown `error`. */
export function errorBody(error: unknown, exposeErrors: boolean): ErrorBody {
  const code = codeOf(error)
  let message = HIDDEN_MESSAGE
  if (exposeErrors || isPublicError(error)) {
    const own = like(error)?.message
    message = error instanceof Error ? error.message : typeof own === 'string' ? own : String(error)
  }
  const body: ErrorBody = { code, message }
  if (error instanceof RequestError && Array.isArray(error.issues)) body.issues = error.issues
  return body
}

/** The `RequestError` a request rejects with when the peer answers `{ id, error }`. */
export function fromClientError(error: unknown): RequestError {
  const code = codeOf(error)
  const own = like(error)
  const message = typeof own?.message === 'string' ? own.message : 'The client reported an error'
  return new RequestError(code, message, Array.isArray(own?.issues) ? { issues: own.issues } : undefined)
}

/** What a request rejects with (or its handler's `signal` aborts with) when the connection closed first (`code` once known). */
export function connectionClosed(name: string, code?: number): RequestError {
  const why = code === undefined ? 'the connection is closed' : `the connection closed (${code}) before the reply`
  return new RequestError(RequestErrorCode.CONNECTION_CLOSED, `Request "${name}" failed: ${why}`)
}
