// Held upgrades: Rust holds an upgrade while the application's `authenticate` decides (README
// "Authentication"). The verdict goes back to Rust; an accepted upgrade's parsed request, user and
// data wait here until its connection opens.

import type { Namespace } from './namespace'
import type { NativeServer } from './native'
import type { AuthResult, UpgradeRequest } from './types'
import { parseHead, type ParsedRequest } from './upgrade-request'

/** What `authenticate` accepted, kept until the connection opens. */
export interface Accepted {
  request: ParsedRequest
  userId: string | undefined
  data: unknown
}

/** What the handshake code needs of the server (the server implements it). */
export interface HandshakeHost {
  readonly _native: NativeServer
  readonly _namespaces: readonly Namespace[]
  /** Called as a method of the server, as it always was. */
  readonly _authenticate: ((request: UpgradeRequest) => AuthResult<unknown> | Promise<AuthResult<unknown>>) | undefined
  /**
   * auth id → what `authenticate` accepted, until the connection opens (bound: accepted
   * handshakes not yet open; Rust reports each one that fails before opening, KIND_ABANDONED).
   */
  readonly _authStash: Map<number, Accepted>
  _reportError(error: unknown): void
}

/** The shape of an error `authenticate` may throw (http-errors convention). */
interface HttpErrorLike {
  status?: unknown
  expose?: unknown
  message?: unknown
}

/** Runs `authenticate` for a held upgrade and tells Rust the verdict. */
export function authenticateUpgrade(host: HandshakeHost, authId: number, nsIndex: number, remoteAddress: string, head: string): void {
  const parsed = parseHead(head)
  const request: UpgradeRequest = { ...parsed, remoteAddress, namespace: host._namespaces[nsIndex].name }
  const reject = (status: number, message: string): boolean => host._native.resolveHandshake(authId, false, null, status, message)
  let verdict: Promise<AuthResult<unknown>>
  try {
    // Rust holds upgrades for JS only when the server was given an `authenticate`.
    verdict = Promise.resolve(host._authenticate!(request))
  } catch (error) {
    verdict = Promise.reject(error)
  }
  verdict.then(
    (result) => {
      if (result && typeof result === 'object' && typeof (result as { status?: unknown }).status === 'number') {
        const { status, message } = result as { status: number; message?: string }
        return reject(status, message ?? '')
      }
      if (!result) return reject(401, '')
      const accepted = result === true ? {} : (result as { userId?: unknown; data?: unknown })
      if (accepted.userId !== undefined && (typeof accepted.userId !== 'string' || accepted.userId === '')) {
        host._reportError(new TypeError('authenticate: userId must be a non-empty string'))
        return reject(500, '')
      }
      const userId = accepted.userId as string | undefined
      host._authStash.set(authId, { request: parsed, userId, data: accepted.data })
      if (!host._native.resolveHandshake(authId, true, userId ?? null, null, null)) {
        host._authStash.delete(authId) // the client left or the handshake timed out meanwhile
      }
      return undefined
    },
    (error: unknown) => {
      // A thrown error rejects with its `status` (default 401); its message is not sent to the
      // client unless it is marked `expose` (as in http-errors).
      const e = error as HttpErrorLike | null | undefined
      const status = Number.isInteger(e?.status) ? (e?.status as number) : 401
      reject(status, e?.expose ? String(e.message) : '')
    },
  )
}

/** What `authenticate` accepted for the connection that opens now, if anything (removed from the stash). */
export function takeAccepted(host: HandshakeHost, authId: number): Accepted | undefined {
  const accepted = host._authStash.get(authId)
  host._authStash.delete(authId)
  return accepted
}
