// The client's public types: the contract seen from the other side. What the server receives
// (`in`) the client emits, typed by the schemas' *input*; what the server publishes (`out`) the
// client receives, typed by the schemas' *output*; the client asks `requests` and answers
// `clientRequests`. Browser-safe.

import type { EnvelopeMeta, RequestId } from '../protocol/envelope.js'
import type { Contract, InferInput, InferOutput, UntypedContract } from '../types.js'
import type { ReconnectPolicy } from './reconnect.js'
import type { Transport, TransportConnectOptions } from './transport.js'

/** Events the client may emit (the contract's `in`). */
export type EmitEvent<C extends Contract> = keyof C['in'] & string
/** What `emit` takes: the input of the event's schema. */
export type EmitData<C extends Contract, E extends EmitEvent<C>> = InferInput<C['in'][E]>
/** Events the client receives (the contract's `out`). */
export type ReceiveEvent<C extends Contract> = keyof C['out'] & string
/** What an `on` listener receives: the output of the event's schema. */
export type ReceiveData<C extends Contract, E extends ReceiveEvent<C>> = InferOutput<C['out'][E]>
/** Requests the client may ask (the contract's `requests`). */
export type AskName<C extends Contract> = keyof C['requests'] & string
/** What `request` takes: the input of the request's `input` schema. */
export type AskInput<C extends Contract, R extends AskName<C>> = InferInput<C['requests'][R]['input']>
/** What `request` resolves with: the output of the request's `output` schema. */
export type AskResult<C extends Contract, R extends AskName<C>> = InferOutput<C['requests'][R]['output']>
/** Requests the client answers (the contract's `clientRequests`). */
export type AnswerName<C extends Contract> = keyof C['clientRequests'] & string
/** What an `onRequest` handler receives: the output of the request's `input` schema. */
export type AnswerInput<C extends Contract, R extends AnswerName<C>> = InferOutput<C['clientRequests'][R]['input']>
/** What an `onRequest` handler returns: the input of the request's `output` schema. */
export type AnswerOutput<C extends Contract, R extends AnswerName<C>> = InferInput<C['clientRequests'][R]['output']>

/** `'connecting'` (first attempt, or after `connect()`), `'open'`, `'reconnecting'` (waiting or retrying), `'closed'`. */
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed'

/** What `onState` listeners get with each state. */
export interface StateInfo {
  /** Close code of the connection that ended (1006 when it ended without a close frame). */
  code?: number
  reason?: string
  /** HTTP status of a refused upgrade, when the transport can see it (not in browsers). */
  status?: number
  /** Why the last attempt failed, or why the client gave up. */
  message?: string
  /** `reconnecting`: the number of the retry scheduled (1, 2, …); `connecting`/`open`: of this attempt (0 the first). */
  attempt: number
  /** `reconnecting`: the delay before that retry, in ms. */
  delayMs?: number
  /** `closed`: true when `close()` was called; false when the client stopped on its own (resume with `connect()`). */
  byClient?: boolean
}

export type StateListener = (state: ClientState, info: StateInfo) => void

/** Second argument of an `on` listener. */
export interface EventContext<E extends string = string> {
  event: E
  meta: EnvelopeMeta | undefined
}

/** Second argument of an `onRequest` handler. */
export interface ClientRequestContext<R extends string = string> {
  event: R
  id: RequestId
  meta: EnvelopeMeta | undefined
  /** Aborts when the connection the request came on ends (the reply could not be delivered). */
  signal: AbortSignal
}

/** Counters (a snapshot). */
export interface ClientStats {
  /** Frames dropped: pushed out of the send queue (`maxQueued`), discarded when the client closed, sent while closed, or refused by a full transport buffer. */
  dropped: number
  /** Frames waiting for a connection now. */
  queued: number
  /** Requests awaiting their reply now (sent or queued). */
  pendingRequests: number
  /** Replies whose id matched no pending request (e.g. after a timeout). */
  unknownReplies: number
  /** Incoming frames not delivered: not an envelope, or (with `validate`) an unknown event or invalid data. */
  invalid: number
  /** Connections opened. */
  opens: number
}

/** `url` option: computes the URL of each attempt (e.g. with a fresh token). */
export type UrlSource = (baseUrl: string, info: { attempt: number }) => string | Promise<string>

export interface ClientOptions extends TransportConnectOptions {
  /** Backoff between reconnect attempts; `false` never reconnects. Default `{ minDelayMs: 250, maxDelayMs: 10000, factor: 2, jitter: 0.5, maxAttempts: Infinity }`. */
  reconnect?: Partial<ReconnectPolicy> | false
  /** The URL of each attempt, recomputed on every (re)connect; gets the `url` argument of `createClient`. A rejection counts as a failed attempt. */
  url?: UrlSource
  /** A request not answered within this many ms rejects with `timeout` (counted from the call). `0` disables. Default `15000`. */
  requestTimeoutMs?: number
  /** Frames kept while not connected (oldest dropped, counted in `stats.dropped`). Default `1000`. */
  maxQueued?: number
  /** Requests awaiting a reply; past it `request` rejects with `unavailable`. Also bounds the server's requests being answered at once (more are answered `unavailable`). Default `1000`. */
  maxPendingRequests?: number
  /** Listeners per event (and `onState` listeners); past it `on` throws a RangeError. Default `100`. */
  maxListeners?: number
  /** Check outgoing `in` data and request inputs, incoming `out` data and replies with the contract's schemas (must be synchronous). Default `false`. */
  validate?: boolean
  /** Send the message of every error an `onRequest` handler throws, not only of public ones (`RequestError`, `expose: true`). Default `false`. */
  exposeErrors?: boolean
  /** Receives listener errors, non-public `onRequest` errors, and (with `validate`) refused incoming frames. Default `console.error`. */
  onError?: (error: unknown) => void
  /** Opens connections. Default: the platform's `WebSocket` (browsers); in Node the native transport (see README "Client"). */
  transport?: Transport
}

/** A client of a ferrosocket server, typed by contract `C` (seen from the client's side). */
export interface Client<C extends Contract = UntypedContract> {
  readonly state: ClientState
  readonly stats: ClientStats
  /** Listen to an `out` event; returns a function that removes the listener. */
  on<E extends ReceiveEvent<C>>(event: E, listener: (data: ReceiveData<C, E>, context: EventContext<E>) => void): () => void
  /**
   * Send an `in` event: at once when open, else queued for the next connection (`maxQueued`).
   * False when the frame was dropped (the client is closed, or the transport's buffer is full).
   */
  emit<E extends EmitEvent<C>>(event: E, data: EmitData<C, E>): boolean
  /** Ask the server; resolves with the reply's data, rejects with a `RequestError`. Queued like `emit` while not connected. */
  request<R extends AskName<C>>(name: R, input: AskInput<C, R>, options?: { timeoutMs?: number }): Promise<AskResult<C, R>>
  /** Answer a `clientRequests` request (one handler per name; a later one replaces it). Returns a function that removes it. */
  onRequest<R extends AnswerName<C>>(
    name: R,
    handler: (input: AnswerInput<C, R>, context: ClientRequestContext<R>) => AnswerOutput<C, R> | Promise<AnswerOutput<C, R>>,
  ): () => void
  /** Called on every state change, and on every scheduled retry. Returns a function that removes the listener. */
  onState(listener: StateListener): () => void
  /** Resolves once open (at once when open); rejects if the client reaches `closed` first. */
  opened(): Promise<void>
  /** Connect again after `closed`, or retry now instead of waiting for the backoff. No-op while connecting or open. */
  connect(): void
  /** Close (code 1000 by default) and stop reconnecting; resolves once the connection is gone. */
  close(code?: number, reason?: string): Promise<void>
}
