'use strict'
// Close codes and reasons the server uses (README "Close codes"), in one place.

const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
})

const Reason = Object.freeze({
  SHUTDOWN: 'Server shutting down',
  INVALID_DATA: 'Invalid event data',
  HANDLER_FAILED: 'Message handling failed',
})

/** Codes an application may send (RFC 6455 §7.4): the registered ones plus 3000–4999. */
function assertSendableCode(code) {
  const ok = Number.isInteger(code) && ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  if (!ok) throw new RangeError(`Invalid close code ${code}: use 1000-1003, 1007-1014 or 3000-4999`)
}

module.exports = { CloseCode, Reason, assertSendableCode }
