// Rust → JS: Rust delivers events in batches (src/bridge.rs), one JSON array text per wake-up that
// one JSON.parse decodes, plus a side list of byte blobs for raw messages. Each entry is routed to
// its connection or to the server here; while the batch's handlers run, sends are corked, so
// what they publish is written once per socket at the end.

import type { InboundAcks } from './acks'
import type { Connection } from './connection'
import type { NativeServer } from './native'
import type { Outbox } from './outbox'
import type { EnvelopeMeta } from './protocol/envelope'
import { quietTrace, type Telemetry } from './telemetry'

export const KIND_OPEN = 0
export const KIND_MESSAGE = 1
export const KIND_CLOSE = 2
export const KIND_SHUTDOWN = 3
export const KIND_RAW = 4
export const KIND_HANDSHAKE = 5
export const KIND_ABANDONED = 6
export const KIND_REQUEST = 7
export const KIND_REPLY = 8
export const KIND_CLUSTER = 9
export const KIND_REJECTED = 10

// The entry shapes of src/bridge.rs (first element the kind, `id` the connection's native id).
// Messages, requests, replies and raw messages end with their `size`: what Rust's inbound budget
// charged for them, released when they are handled or dropped.
/** Connection opened (`head` null when JS already got it with the handshake entry). */
export type OpenEntry = [kind: typeof KIND_OPEN, id: number, namespace: number, remoteAddress: string, authId: number, head: string | null, protocol: string | null]
export type MessageEntry = [kind: typeof KIND_MESSAGE, id: number, event: string, data: unknown, meta: EnvelopeMeta | null, size: number]
/** Always after the connection's messages. `abandoned` (1): Rust gave up on input the peer left behind. */
export type CloseEntry = [kind: typeof KIND_CLOSE, id: number, code: number, reason: string, abandoned: 0 | 1]
export type ShutdownEntry = [kind: typeof KIND_SHUTDOWN]
export type RawEntry = [kind: typeof KIND_RAW, id: number, isBinary: 0 | 1, blobIndex: number, size: number]
/** An upgrade held for `authenticate`. */
export type HandshakeEntry = [kind: typeof KIND_HANDSHAKE, authId: number, namespace: number, remoteAddress: string, head: string]
/** An accepted handshake failed before opening. */
export type AbandonedEntry = [kind: typeof KIND_ABANDONED, authId: number]
/** `reqId`: the request id's JSON text (echoed byte for byte in the reply). */
export type RequestEntry = [kind: typeof KIND_REQUEST, id: number, event: string, data: unknown, meta: EnvelopeMeta | null, reqId: string, size: number]
/** A reply to a server request: `replyId` as the client wrote it (parsed), `error` the client's error object or null. */
export type ReplyEntry = [kind: typeof KIND_REPLY, id: number, replyId: unknown, data: unknown, error: unknown, size: number]
/** A cluster call (presence query or sync) finished: its JSON answer, or an error message. */
export type ClusterEntry = [kind: typeof KIND_CLUSTER, callId: number, answer: unknown, error: string | null]
/** Refused in Rust (only reported when telemetry listens at warn): an upgrade (`0`) or a message (`1`). */
export type RejectedEntry =
  | [kind: typeof KIND_REJECTED, what: 0, status: number, reason: string, remoteAddress: string]
  | [kind: typeof KIND_REJECTED, what: 1, id: number, code: number, reason: string]
export type Entry = OpenEntry | MessageEntry | CloseEntry | ShutdownEntry | RawEntry | HandshakeEntry | AbandonedEntry | RequestEntry | ReplyEntry | ClusterEntry | RejectedEntry

/** What the batch dispatch needs of the server (the server implements it). */
export interface BatchHost {
  readonly _native: NativeServer
  /** Read sockets on this thread after each batch (the `inlineIo` option, resolved by Rust). */
  readonly _inlineIo: boolean
  /** Where the batch's sends collect. */
  readonly _outbox: Outbox
  readonly _connections: Map<number, Connection>
  readonly _acks: InboundAcks
  _reportError(error: unknown): void
  _opened(entry: OpenEntry): void
  _closed(id: number, code: number, reason: string, abandoned: boolean): void
  _authenticateUpgrade(authId: number, nsIndex: number, remoteAddress: string, head: string): void
  _abandonHandshake(authId: number): void
  _finishShutdown(): void
  _clusterAnswer(callId: number, answer: unknown, error: string | null): void
  _rejected(entry: RejectedEntry): void
  /** Telemetry, or null: `ws.message.received` is emitted here, at arrival. */
  readonly _telemetry: Telemetry
}

/**
 * Batches one wake-up may dispatch with `inlineIo`: after that JS returns to its event loop
 * (timers, HTTP, other I/O) even under a steady stream, and the I/O thread or the next wake-up
 * takes over.
 */
export const MAX_INLINE_ROUNDS = 16

/**
 * One wake-up from Rust: decodes the batch and dispatches it. Rust corked the server when it
 * handed the batch over, so handlers' sends only queue (collected in ts/outbox.ts); the batch ends
 * with one `finishBatch` call that hands them over and writes every touched socket once. With
 * `inlineIo`, that call also reads the sockets on this thread and returns what arrived meanwhile,
 * dispatched the same way, until nothing did or after {@link MAX_INLINE_ROUNDS} batches.
 */
export function onBatch(host: BatchHost, json: string): void {
  const outbox = host._outbox
  for (let round = 1; json; round++) {
    let entries: Entry[] | undefined
    try {
      entries = JSON.parse(json)
    } catch (error) {
      host._reportError(error)
    }
    outbox.collecting = true
    try {
      if (entries !== undefined) dispatch(host, entries)
    } finally {
      // What finishBatch returns is taken from Rust: it must be dispatched, so ask only when
      // there is a round left for it.
      json = outbox.finish(host._native, host._acks, host._inlineIo && round < MAX_INLINE_ROUNDS)
    }
  }
}

/** Routes each entry; an entry that throws is reported and does not stop the others. */
function dispatch(host: BatchHost, entries: Entry[]): void {
  let blobs: Buffer[] | undefined
  for (const entry of entries) {
    try {
      switch (entry[0]) {
        // A message for no known connection is dropped at once (its size released).
        case KIND_MESSAGE: {
          const conn = host._connections.get(entry[1])
          if (host._telemetry.debug && conn) received(host._telemetry, conn, entry[2], entry[3], entry[4], entry[5], false)
          if (conn) conn._receive(entry[2], entry[3], entry[4], entry[5])
          else host._acks.release(entry[5])
          break
        }
        case KIND_REQUEST: {
          const conn = host._connections.get(entry[1])
          if (host._telemetry.debug && conn) received(host._telemetry, conn, entry[2], entry[3], entry[4], entry[6], true)
          if (conn) conn._receiveRequest(entry[2], entry[3], entry[4], entry[5], entry[6])
          else host._acks.release(entry[6])
          break
        }
        case KIND_REPLY: {
          host._acks.release(entry[5]) // settled on arrival, never queued
          const conn = host._connections.get(entry[1])
          if (conn) conn._receiveReply(entry[2], entry[3], entry[4])
          break
        }
        case KIND_OPEN:
          host._opened(entry)
          break
        case KIND_HANDSHAKE:
          host._authenticateUpgrade(entry[1], entry[2], entry[3], entry[4])
          break
        case KIND_ABANDONED:
          host._abandonHandshake(entry[1])
          break
        case KIND_CLOSE:
          host._closed(entry[1], entry[2], entry[3], entry[4] === 1)
          break
        case KIND_RAW: {
          blobs ??= host._native.takeBlobs()
          const conn = host._connections.get(entry[1])
          const bytes = blobs[entry[3]]
          if (conn) conn._receive(undefined, entry[2] ? bytes : bytes.toString('utf8'), undefined, entry[4])
          else host._acks.release(entry[4])
          break
        }
        case KIND_SHUTDOWN:
          host._finishShutdown()
          break
        case KIND_CLUSTER:
          host._clusterAnswer(entry[1], entry[2], entry[3])
          break
        case KIND_REJECTED:
          host._rejected(entry)
          break
      }
    } catch (error) {
      host._reportError(error)
    }
  }
}

/** `ws.message.received` (debug): one event per message or request as it arrives. */
function received(tel: Telemetry, conn: Connection, event: string, data: unknown, meta: EnvelopeMeta | null, size: number, request: boolean): void {
  // Parsed quietly: an invalid one is reported once, when the handler's ctx.trace reads it.
  tel.emit('ws.message.received', conn, { event, size, request, payload: tel.previewOf(data) }, quietTrace(meta))
}
