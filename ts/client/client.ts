// The client: connection lifecycle and reconnects, the send queue, events both ways, requests both
// ways. Speaks the protocol through ts/protocol (the same encoders, decoder, RequestError and
// error-body rules as the server) and reaches sockets only through the Transport seam. Browser-safe.
//
// Lifecycle: `connecting` → `open` → (the connection ends) → `reconnecting` (one report per
// scheduled retry, with its delay) → `open` …, or → `closed` when `close()` is called, when the end
// is one the policy does not retry (reconnect.ts), or after `maxAttempts` failed retries. From
// `closed`, `connect()` starts again. Each attempt has a generation number: events of an earlier
// attempt's socket are ignored, so a late event can never act on a newer connection.

import { CloseCode } from '../protocol/close-codes.js'
import { describeIssues, hasEvent, isPending, normaliseContract, serialisableIssues, validateSync, type NormalisedContract } from '../protocol/contract.js'
import { decodeFrame, encodeDataReply, encodeErrorReply, encodeEvent, encodeRequest, type DecodedFrame } from '../protocol/envelope.js'
import { RequestError, RequestErrorCode, connectionClosed, errorBody, isPublicError } from '../protocol/request-error.js'
import type { Contract, StandardSchemaV1, UntypedContract } from '../types.js'
import { PendingRequests } from './pending-requests.js'
import { backoffDelay, mayRetry, reconnectPolicy, reconnectsAfterClose, reconnectsAfterFailure, type ReconnectPolicy } from './reconnect.js'
import { SendQueue, type QueuedFrame } from './send-queue.js'
import type { Transport, TransportConnectOptions, TransportSocket } from './transport.js'
import type { Client, ClientOptions, ClientRequestContext, ClientState, ClientStats, EventContext, StateInfo, StateListener } from './types.js'

type Listener = (data: unknown, context: EventContext<any>) => void
type RequestHandler = (input: unknown, context: ClientRequestContext<any>) => unknown

/** `createClient` as each entry point exports it (they differ only in the default transport). */
export type CreateClient = <C extends Contract = UntypedContract>(contract: C | null | undefined, url: string, options?: ClientOptions) => Client<C>

/** Makes `createClient` with `defaultTransport` used when the options name none. */
export function clientFactory(defaultTransport: () => Transport): CreateClient {
  return <C extends Contract = UntypedContract>(contract: C | null | undefined, url: string, options?: ClientOptions): Client<C> =>
    new ClientImpl(contract ?? null, url, options ?? {}, defaultTransport) as unknown as Client<C>
}

const TRANSPORT_OPTIONS = ['headers', 'protocols', 'ca', 'caOnly', 'maxInboundBytes', 'maxOutboundBytes', 'maxPayload', 'handshakeTimeoutMs'] as const

export class ClientImpl implements Client<UntypedContract> {
  private currentState: ClientState = 'connecting'
  private readonly contract: NormalisedContract | null
  private readonly policy: ReconnectPolicy | null
  private readonly transport: Transport
  private readonly connectOptions: TransportConnectOptions
  private readonly queue: SendQueue
  private readonly pending: PendingRequests
  private readonly listeners = new Map<string, Listener[]>()
  private readonly stateListeners: StateListener[] = []
  private readonly requestHandlers = new Map<string, RequestHandler>()
  /** Server → client requests running on the current connection: aborted when it ends. */
  private readonly answering = new Set<AbortController>()
  private readonly openWaiters: { resolve: () => void; reject: (error: Error) => void }[] = []
  private closeWaiters: (() => void)[] = []
  private socket: TransportSocket | undefined
  /** Incremented per attempt; events of older attempts are ignored. */
  private generation = 0
  /** Failed attempts since the last open (the number of the retry in progress or scheduled). */
  private attempt = 0
  private retryTimer: ReturnType<typeof setTimeout> | undefined
  /** `close()` was called: the end of the current socket only resolves `close()`. */
  private closedByClient = false
  private droppedDirect = 0
  private invalid = 0
  private opens = 0
  private readonly maxListeners: number
  /** Server → client requests answered at once (`maxPendingRequests` bounds these too). */
  private readonly maxAnswering: number
  private readonly requestTimeoutMs: number
  private readonly validate: boolean
  private readonly exposeErrors: boolean
  private readonly reportError: (error: unknown) => void

  constructor(
    contract: Contract | null,
    private readonly baseUrl: string,
    private readonly options: ClientOptions,
    defaultTransport: () => Transport,
  ) {
    if (typeof baseUrl !== 'string') throw new TypeError(`createClient: url must be a string, got ${typeof baseUrl}`)
    this.contract = normaliseContract(contract)
    this.policy = options.reconnect === false ? null : reconnectPolicy(options.reconnect)
    this.requestTimeoutMs = nonNegative(options.requestTimeoutMs ?? 15_000, 'requestTimeoutMs')
    this.maxListeners = nonNegative(options.maxListeners ?? 100, 'maxListeners')
    this.queue = new SendQueue(options.maxQueued ?? 1000)
    this.pending = new PendingRequests(options.maxPendingRequests ?? 1000)
    this.maxAnswering = options.maxPendingRequests ?? 1000
    this.validate = options.validate === true
    this.exposeErrors = options.exposeErrors === true
    this.reportError = options.onError ?? ((error) => console.error('ferrosocket client:', error))
    this.connectOptions = {}
    for (const key of TRANSPORT_OPTIONS) if (options[key] !== undefined) (this.connectOptions as Record<string, unknown>)[key] = options[key]
    this.transport = options.transport ?? defaultTransport()
    this.startAttempt()
  }

  get state(): ClientState {
    return this.currentState
  }

  get stats(): ClientStats {
    return {
      dropped: this.queue.dropped + this.droppedDirect,
      queued: this.queue.size,
      pendingRequests: this.pending.size,
      unknownReplies: this.pending.unknownReplies,
      invalid: this.invalid,
      opens: this.opens,
    }
  }

  // ---- public API ----------------------------------------------------------------------------

  on(event: string, listener: Listener): () => void {
    if (typeof listener !== 'function') throw new TypeError(`on("${event}"): the listener must be a function`)
    const list = this.listeners.get(event) ?? []
    if (list.length >= this.maxListeners) throw new RangeError(`on("${event}"): more than ${this.maxListeners} listeners (maxListeners); is one added per render or per message?`)
    list.push(listener)
    this.listeners.set(event, list)
    return () => {
      const current = this.listeners.get(event)
      const i = current?.indexOf(listener) ?? -1
      if (i < 0) return
      current!.splice(i, 1)
      if (current!.length === 0) this.listeners.delete(event)
    }
  }

  emit(event: string, data: unknown): boolean {
    if (typeof event !== 'string' || event === '') throw new TypeError('emit: the event name must be a non-empty string')
    if (this.validate && this.contract) {
      if (!hasEvent(this.contract.in, event)) throw new TypeError(`Unknown event "${event}": it is not in the contract's "in" map`)
      data = validateSync(this.contract.in[event], data, `event "${event}"`)
    }
    return this.send({ text: encodeEvent(event, data) })
  }

  request(name: string, input: unknown, options?: { timeoutMs?: number }): Promise<any> {
    if (typeof name !== 'string' || name === '') throw new TypeError('request: the name must be a non-empty string')
    let accept = (data: unknown): unknown => data
    if (this.validate && this.contract) {
      if (!hasEvent(this.contract.requests, name)) throw new TypeError(`Unknown request "${name}": it is not in the contract's "requests" map`)
      const schemas = this.contract.requests[name]
      input = validateSync(schemas.input, input, `request "${name}"`)
      accept = (data) => checkReply(schemas.output, data, name)
    }
    if (this.currentState === 'closed') return Promise.reject(connectionClosed(name))
    const timeoutMs = nonNegative(options?.timeoutMs ?? this.requestTimeoutMs, 'timeoutMs')
    let added: { id: number; promise: Promise<unknown> }
    try {
      added = this.pending.add(name, timeoutMs, accept)
    } catch (error) {
      return Promise.reject(error)
    }
    const { id, promise } = added
    let text: string
    try {
      text = encodeRequest(name, input, id)
    } catch (error) {
      this.pending.reject(id, new RequestError(RequestErrorCode.INVALID_INPUT, `Request "${name}": ${error instanceof Error ? error.message : String(error)}`))
      return promise
    }
    this.send({
      text,
      onSent: () => this.pending.markSent(id),
      onDrop: () => this.pending.reject(id, new RequestError(RequestErrorCode.UNAVAILABLE, `Request "${name}" was dropped before it was sent (maxQueued, or the transport's buffer is full)`)),
    })
    return promise
  }

  onRequest(name: string, handler: RequestHandler): () => void {
    if (typeof handler !== 'function') throw new TypeError(`onRequest("${name}"): the handler must be a function`)
    this.requestHandlers.set(name, handler)
    return () => {
      if (this.requestHandlers.get(name) === handler) this.requestHandlers.delete(name)
    }
  }

  onState(listener: StateListener): () => void {
    if (this.stateListeners.length >= this.maxListeners) throw new RangeError(`onState: more than ${this.maxListeners} listeners (maxListeners)`)
    this.stateListeners.push(listener)
    return () => {
      const i = this.stateListeners.indexOf(listener)
      if (i >= 0) this.stateListeners.splice(i, 1)
    }
  }

  opened(): Promise<void> {
    if (this.currentState === 'open') return Promise.resolve()
    if (this.currentState === 'closed') return Promise.reject(new Error('The client is closed; call connect() first'))
    return new Promise((resolve, reject) => this.openWaiters.push({ resolve, reject }))
  }

  connect(): void {
    if (this.currentState === 'reconnecting' && this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer)
      this.retryTimer = undefined
      this.startAttempt()
      return
    }
    if (this.currentState !== 'closed') return
    this.finishClose() // a socket still closing from close() no longer matters
    this.closedByClient = false
    this.attempt = 0
    this.setState('connecting', { attempt: 0 })
    this.startAttempt()
  }

  close(code: number = CloseCode.NORMAL, reason = ''): Promise<void> {
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer)
      this.retryTimer = undefined
    }
    const wasClosed = this.currentState === 'closed'
    this.closedByClient = true
    if (!wasClosed) this.stop({ attempt: this.attempt, code, reason, byClient: true })
    const socket = this.socket
    if (!socket) {
      this.generation++ // an attempt still computing its URL is abandoned
      return Promise.resolve()
    }
    const done = new Promise<void>((resolve) => this.closeWaiters.push(resolve))
    socket.close(code, reason)
    return done
  }

  // ---- connection lifecycle ------------------------------------------------------------------

  private startAttempt(): void {
    const generation = ++this.generation
    const attempt = this.attempt
    const compute = this.options.url
    if (!compute) {
      this.openSocket(this.baseUrl, generation)
      return
    }
    Promise.resolve()
      .then(() => compute(this.baseUrl, { attempt }))
      .then(
        (url) => {
          if (generation !== this.generation) return
          if (typeof url !== 'string') throw new TypeError(`the url option returned ${typeof url}, not a string`)
          this.openSocket(url, generation)
        },
        (error) => {
          if (generation === this.generation) this.attemptFailed({ message: `the url option failed: ${error instanceof Error ? error.message : String(error)}` })
        },
      )
      .catch((error) => {
        if (generation === this.generation) this.attemptFailed({ message: error instanceof Error ? error.message : String(error) })
      })
  }

  private openSocket(url: string, generation: number): void {
    const current = () => generation === this.generation
    try {
      this.socket = this.transport(
        url,
        {
          open: () => current() && this.opened_(),
          message: (text) => current() && this.received(text, generation),
          close: (code, reason) => current() && this.ended(code, reason),
          failed: (info) => current() && this.attemptFailed(info),
        },
        this.connectOptions,
      )
    } catch (error) {
      // The seam says a transport never throws for network errors; anything else is reported the same way.
      queueMicrotask(() => current() && this.attemptFailed({ message: error instanceof Error ? error.message : String(error) }))
    }
  }

  private opened_(): void {
    if (this.closedByClient) return // close() while opening: the socket's close follows
    const attempt = this.attempt
    this.attempt = 0
    this.opens++
    // Listeners run before the queue is flushed: what they send (re-joining rooms) goes first.
    this.setState('open', { attempt })
    for (const waiter of this.openWaiters.splice(0)) waiter.resolve()
    this.flush()
  }

  private flush(): void {
    for (let frame; this.currentState === 'open' && (frame = this.queue.shift()); ) this.sendNow(frame)
  }

  /** The open connection ended. */
  private ended(code: number, reason: string): void {
    this.socket = undefined
    this.connectionGone(code)
    if (this.closedByClient) {
      this.finishClose()
      return
    }
    const info = { code, reason, attempt: this.attempt }
    if (this.policy && reconnectsAfterClose(code)) this.scheduleRetry(info)
    else this.stop({ ...info, message: this.policy ? `closed ${code}: not retried (see README "Client")` : 'closed; reconnect is off' })
  }

  /** An attempt never opened. */
  private attemptFailed(info: { status?: number; message: string }): void {
    this.socket = undefined
    if (this.closedByClient) {
      this.finishClose()
      return
    }
    const state: StateInfo = { attempt: this.attempt, message: info.message }
    if (info.status !== undefined) state.status = info.status
    if (this.policy && reconnectsAfterFailure(info.status)) this.scheduleRetry(state)
    else this.stop(state)
  }

  private scheduleRetry(info: StateInfo): void {
    const policy = this.policy!
    const attempt = this.attempt + 1
    if (!mayRetry(policy, attempt)) {
      this.stop({ ...info, message: `gave up after ${this.attempt} failed attempts (maxAttempts)${info.message ? `: ${info.message}` : ''}` })
      return
    }
    this.attempt = attempt
    const delayMs = backoffDelay(policy, attempt)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.startAttempt()
    }, delayMs)
    this.setState('reconnecting', { ...info, attempt, delayMs })
  }

  /** The client stops: `closed`; requests and queued frames fail. */
  private stop(info: StateInfo): void {
    this.setState('closed', { byClient: false, ...info })
    this.pending.rejectAll()
    this.queue.clear()
    for (const waiter of this.openWaiters.splice(0)) waiter.reject(new Error(`The client closed before it opened${info.message ? `: ${info.message}` : ''}`))
  }

  private finishClose(): void {
    this.socket = undefined
    for (const resolve of this.closeWaiters.splice(0)) resolve()
  }

  /** Whatever belonged to the connection that ended. */
  private connectionGone(code: number): void {
    this.pending.connectionLost(code)
    for (const controller of this.answering) controller.abort(connectionClosed('(server request)', code))
    this.answering.clear()
  }

  private setState(state: ClientState, info: StateInfo): void {
    this.currentState = state
    for (const listener of [...this.stateListeners]) {
      try {
        listener(state, info)
      } catch (error) {
        this.reportError(error)
      }
    }
  }

  // ---- sending -------------------------------------------------------------------------------

  private send(frame: QueuedFrame): boolean {
    if (this.currentState === 'open' && this.socket) return this.sendNow(frame)
    if (this.currentState === 'closed') {
      this.drop(frame)
      return false
    }
    this.queue.push(frame)
    return true
  }

  private sendNow(frame: QueuedFrame): boolean {
    if (this.socket?.send(frame.text)) {
      frame.onSent?.()
      return true
    }
    this.drop(frame)
    return false
  }

  private drop(frame: QueuedFrame): void {
    this.droppedDirect++
    frame.onDrop?.()
  }

  // ---- receiving -----------------------------------------------------------------------------

  private received(text: string, generation: number): void {
    const frame = decodeFrame(text)
    switch (frame.kind) {
      case 'event':
        return this.deliver(frame)
      case 'request':
        return this.answer(frame, generation)
      case 'reply':
        this.pending.resolve(frame.id, frame.data)
        return
      case 'error-reply':
        this.pending.fail(frame.id, frame.error)
        return
      case 'invalid':
        this.refuse(new Error(`Invalid frame from the server (${frame.reason}): ${text.slice(0, 200)}`))
    }
  }

  private refuse(error: Error): void {
    this.invalid++
    this.reportError(error)
  }

  private deliver(frame: Extract<DecodedFrame, { kind: 'event' }>): void {
    let data = frame.data
    if (this.validate && this.contract) {
      if (!hasEvent(this.contract.out, frame.event)) {
        this.refuse(new TypeError(`Unknown event "${frame.event}" from the server: it is not in the contract's "out" map`))
        return
      }
      try {
        data = validateSync(this.contract.out[frame.event], data, `event "${frame.event}" from the server`)
      } catch (error) {
        this.refuse(error as Error)
        return
      }
    }
    const list = this.listeners.get(frame.event)
    if (!list) return
    const context: EventContext = { event: frame.event, meta: frame.meta }
    for (const listener of [...list]) {
      try {
        listener(data, context)
      } catch (error) {
        this.reportError(error)
      }
    }
  }

  /** A server → client request: run its handler, reply on the same connection. */
  private answer(frame: Extract<DecodedFrame, { kind: 'request' }>, generation: number): void {
    const idJson = JSON.stringify(frame.id)
    const name = frame.event
    const reply = (text: string): void => {
      if (generation === this.generation && this.currentState === 'open') this.socket?.send(text)
    }
    const replyError = (error: unknown): void => {
      if (!this.exposeErrors && !isPublicError(error)) this.reportError(error)
      reply(encodeErrorReply(idJson, errorBody(error, this.exposeErrors)))
    }
    const handler = this.requestHandlers.get(name)
    const schemas = this.validate && this.contract ? this.contract.clientRequests[name] : undefined
    if (!handler || (this.validate && this.contract && !hasEvent(this.contract.clientRequests, name))) {
      reply(encodeErrorReply(idJson, { code: RequestErrorCode.UNKNOWN_REQUEST, message: `Unknown request "${name}"` }))
      return
    }
    if (this.answering.size >= this.maxAnswering) {
      reply(encodeErrorReply(idJson, { code: RequestErrorCode.UNAVAILABLE, message: `Request "${name}" refused: ${this.maxAnswering} requests are already being answered` }))
      return
    }
    let input = frame.data
    if (schemas) {
      const result = schemas.input['~standard'].validate(input)
      if (isPending(result) || result.issues) {
        const issues = isPending(result) ? [] : result.issues
        const message = isPending(result) ? 'its input schema is asynchronous' : describeIssues(issues)
        reply(encodeErrorReply(idJson, { code: RequestErrorCode.INVALID_INPUT, message: `Invalid input for request "${name}": ${message}`, issues: serialisableIssues(issues) }))
        return
      }
      input = result.value
    }
    const controller = new AbortController()
    this.answering.add(controller)
    const context: ClientRequestContext = { event: name, id: frame.id, meta: frame.meta, signal: controller.signal }
    Promise.resolve()
      .then(() => handler(input, context))
      .then((output) => {
        if (schemas) validateSync(schemas.output, output, `the reply to request "${name}"`)
        reply(encodeDataReply(idJson, output))
      })
      .catch(replyError)
      .finally(() => this.answering.delete(controller))
  }
}

/** A reply's data through the request's output schema (sync); a RequestError `invalid_output` when it fails. */
function checkReply(schema: StandardSchemaV1, data: unknown, name: string): unknown {
  const result = schema['~standard'].validate(data)
  if (isPending(result)) throw new RequestError(RequestErrorCode.INVALID_OUTPUT, `The output schema of request "${name}" is asynchronous; it must be synchronous`)
  if (result.issues) {
    throw new RequestError(RequestErrorCode.INVALID_OUTPUT, `Invalid reply to request "${name}": ${describeIssues(result.issues)}`, { issues: serialisableIssues(result.issues) })
  }
  return result.value
}

function nonNegative(value: number, name: string): number {
  if (!(typeof value === 'number' && value >= 0)) throw new RangeError(`${name} must be a number ≥ 0, got ${value}`)
  return value
}
