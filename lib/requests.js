'use strict'
// Request/response (design §3): the typed error both directions use, and the rule that decides
// what a failed request tells the client.
//
// A thrown error becomes `{"id", "error": {"code", "message"}}`. `code` is `error.code` when it is a
// non-empty string, otherwise `internal`. The message reaches the client only when the error is
// *public*: an instance of `RequestError`, or any error with `expose === true` (the http-errors
// convention). Other errors are bugs as far as the client is concerned: they are reported to the
// server's `onError` and their message is replaced by `Internal error`, unless the server option
// `exposeErrors` is set.

/** Error codes ferrosocket itself produces. Applications may use any other string. */
const RequestErrorCode = Object.freeze({
  INTERNAL: 'internal',
  INVALID_INPUT: 'invalid_input',
  INVALID_OUTPUT: 'invalid_output',
  TIMEOUT: 'timeout',
  UNKNOWN_REQUEST: 'unknown_request',
  DUPLICATE_ID: 'duplicate_id',
  UNAVAILABLE: 'unavailable',
  CONNECTION_CLOSED: 'connection_closed',
})

const HIDDEN_MESSAGE = 'Internal error'

class RequestError extends Error {
  /**
   * @param {string} code machine-readable code sent to the peer (`error.code`)
   * @param {string} [message] human-readable message sent to the peer
   * @param {{ issues?: unknown[], cause?: unknown }} [options]
   */
  constructor(code, message, options) {
    super(message ?? String(code), options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'RequestError'
    this.code = String(code)
    if (options?.issues !== undefined) this.issues = options.issues
  }
}

/** True when the error's message may be shown to the client. */
function isPublicError(error) {
  return error instanceof RequestError || (error !== null && typeof error === 'object' && error.expose === true)
}

/** `{ code, message, issues? }` sent for a thrown `error`. */
function errorBody(error, exposeErrors) {
  const code = typeof error?.code === 'string' && error.code !== '' ? error.code : RequestErrorCode.INTERNAL
  let message = HIDDEN_MESSAGE
  if (exposeErrors || isPublicError(error)) {
    message = error instanceof Error ? error.message : typeof error?.message === 'string' ? error.message : String(error)
  }
  const body = { code, message }
  if (error instanceof RequestError && Array.isArray(error.issues)) body.issues = error.issues
  return body
}

/** The `RequestError` a server request rejects with when the client answers `{ id, error }`. */
function fromClientError(error) {
  const code = typeof error?.code === 'string' && error.code !== '' ? error.code : RequestErrorCode.INTERNAL
  const message = typeof error?.message === 'string' ? error.message : 'The client reported an error'
  return new RequestError(code, message, Array.isArray(error?.issues) ? { issues: error.issues } : undefined)
}

module.exports = { RequestError, RequestErrorCode, isPublicError, errorBody, fromClientError }
