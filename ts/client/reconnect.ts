// The reconnect policy: pure functions, no timers and no sockets (the client schedules; this decides).
// Browser-safe.
//
//   delay(attempt) = min(maxDelayMs, minDelayMs × factor^(attempt − 1)), then jitter takes a random
//   share of up to `jitter` off it: the result lies in [delay × (1 − jitter), delay].
//
// Which ends are retried: a connection that closed abnormally (1006, no close frame), for reasons
// on the server's side (1001 going away / shutdown, 1011 internal error, 1012 restart, 1013 try
// again later, 1014, 1005 no code) is retried; a handshake that failed without an HTTP status
// (DNS, TCP, TLS, a browser, which never sees the status) or with 408/425/429/5xx is retried.
// Not retried, because the same client would be refused again or the server ended it on purpose:
// 1000 (the server closed normally, e.g. kicked with `closeConnections`), 1002 protocol error,
// 1003 unsupported data, 1007 invalid payload or data, 1008 policy (unknown event), 1009 too big,
// 1010, application codes 4000–4999, and upgrades refused with any other 4xx (401, 403, 404, …).

/** Backoff settings (every field optional in the options; see `DEFAULT_RECONNECT`). */
export interface ReconnectPolicy {
  /** Delay before the first retry, in ms. */
  minDelayMs: number
  /** Upper bound of any delay, in ms. */
  maxDelayMs: number
  /** Growth per failed attempt (≥ 1). */
  factor: number
  /** Share of each delay that is randomised away, 0–1 (0: none). */
  jitter: number
  /** Consecutive failed attempts after which the client gives up (state `closed`). `Infinity`: never. */
  maxAttempts: number
}

export const DEFAULT_RECONNECT: Readonly<ReconnectPolicy> = Object.freeze({
  minDelayMs: 250,
  maxDelayMs: 10_000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: Infinity,
})

/** The complete policy from partial options; throws a RangeError naming a bad field. */
export function reconnectPolicy(options: Partial<ReconnectPolicy> | undefined): ReconnectPolicy {
  const policy = { ...DEFAULT_RECONNECT, ...stripUndefined(options ?? {}) }
  const { minDelayMs, maxDelayMs, factor, jitter, maxAttempts } = policy
  if (!(minDelayMs >= 0 && Number.isFinite(minDelayMs))) throw new RangeError(`reconnect.minDelayMs must be a finite number ≥ 0, got ${minDelayMs}`)
  if (!(maxDelayMs >= minDelayMs && Number.isFinite(maxDelayMs))) throw new RangeError(`reconnect.maxDelayMs must be finite and ≥ minDelayMs, got ${maxDelayMs}`)
  if (!(factor >= 1 && Number.isFinite(factor))) throw new RangeError(`reconnect.factor must be a finite number ≥ 1, got ${factor}`)
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError(`reconnect.jitter must be between 0 and 1, got ${jitter}`)
  if (!(maxAttempts >= 0) || (Number.isFinite(maxAttempts) && !Number.isInteger(maxAttempts))) {
    throw new RangeError(`reconnect.maxAttempts must be an integer ≥ 0 or Infinity, got ${maxAttempts}`)
  }
  return policy
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

/**
 * The delay before retry number `attempt` (1 = the first retry after a drop or a failed first
 * connection). `random` returns a number in [0, 1), like Math.random.
 */
export function backoffDelay(policy: ReconnectPolicy, attempt: number, random: () => number = Math.random): number {
  const exponent = Math.max(0, attempt - 1)
  const base = Math.min(policy.maxDelayMs, policy.minDelayMs * Math.pow(policy.factor, exponent))
  return Math.round(base * (1 - policy.jitter * random()))
}

/** True when retry number `attempt` is still allowed. */
export function mayRetry(policy: ReconnectPolicy, attempt: number): boolean {
  return attempt <= policy.maxAttempts
}

/** Close codes after which the client does not reconnect (see the top of this file). */
const FINAL_CLOSE_CODES: ReadonlySet<number> = new Set([1000, 1002, 1003, 1007, 1008, 1009, 1010])

/** Whether a connection that was open and closed with `code` is retried. */
export function reconnectsAfterClose(code: number): boolean {
  if (FINAL_CLOSE_CODES.has(code)) return false
  return !(code >= 4000 && code <= 4999)
}

/** Whether a handshake that failed (HTTP `status` when the transport saw one) is retried. */
export function reconnectsAfterFailure(status: number | undefined): boolean {
  if (status === undefined) return true
  if (status === 408 || status === 425 || status === 429) return true
  return !(status >= 400 && status <= 499)
}
