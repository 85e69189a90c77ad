// Close codes and reasons the server uses (README "Close codes"), in one place. Browser-safe.

/** Close codes used by the server (RFC 6455 §7.4). */
export const CloseCode: {
  readonly NORMAL: 1000
  readonly GOING_AWAY: 1001
  readonly INVALID_PAYLOAD: 1007
  readonly POLICY_VIOLATION: 1008
  readonly MESSAGE_TOO_BIG: 1009
  readonly INTERNAL_ERROR: 1011
  readonly TRY_AGAIN_LATER: 1013
} = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
})

/** Close reasons the JS layer sends (the Rust core has its own for the cases it closes itself). */
export const Reason = Object.freeze({
  SHUTDOWN: 'Server shutting down',
  INVALID_DATA: 'Invalid event data',
  HANDLER_FAILED: 'Message handling failed',
} as const)

/** Codes an application may send (RFC 6455 §7.4): the registered ones plus 3000–4999. */
export function assertSendableCode(code: unknown): asserts code is number {
  if (typeof code !== 'number' || !Number.isInteger(code) || !isSendable(code)) {
    throw new RangeError(`Invalid close code ${code}: use 1000-1003, 1007-1014 or 3000-4999`)
  }
}

function isSendable(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}
