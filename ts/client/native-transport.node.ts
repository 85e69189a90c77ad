// The client transport for Node: sockets run on the addon's Rust threads (src/client/: tokio-
// tungstenite, rustls), so one process holds 10,000+ client connections cheaply. One pool per
// process, created on first use; its events arrive in batches (one N-API call, one JSON.parse for
// all connections) and are dispatched here to each connection's handlers, in order.
//
// Inbound flow control is native: a batch's bytes are released when `onBatch` returns, i.e. once
// every handler in it has run, so the handlers must process messages synchronously (the client's
// protocol logic does). A connection whose unprocessed bytes exceed `maxInboundBytes` stops
// reading until then.

import { binding } from '../native.js'
import type { NativeClientPool, NativeClientConnectOptions, NativeClientPoolOptions } from '../native.js'
import type { Transport, TransportConnectOptions, TransportHandlers, TransportSocket } from './transport.js'

// Entry kinds of a batch (src/client/events.rs):
// [0, id, protocol|null] opened · [1, id, text] message · [2, id, code, reason] closed ·
// [3, id, status|null, message] failed
const OPENED = 0
const MESSAGE = 1
const CLOSED = 2
const FAILED = 3

type Entry =
  | [typeof OPENED, number, string | null]
  | [typeof MESSAGE, number, string]
  | [typeof CLOSED, number, number, string]
  | [typeof FAILED, number, number | null, string]

/** Pool-wide options of a transport made by `createNativeTransport`. */
export interface NativeTransportOptions {
  /** Threads running the sockets (default 1: enough for many thousands of connections). */
  workerThreads?: number
  /** How long a peer has to answer a close frame before the socket is dropped (default 5000). */
  closeTimeoutMs?: number
}

class NativeSocket implements TransportSocket {
  private readonly pool: NativeClientPool
  private readonly id: number
  /** Set when the final event (`close` or `failed`) is dispatched: the id is gone in Rust. */
  ended: boolean

  constructor(pool: NativeClientPool, id: number) {
    this.pool = pool
    this.id = id
    this.ended = false
  }

  send(text: string): boolean {
    return !this.ended && this.pool.send(this.id, text)
  }

  close(code?: number, reason?: string): void {
    if (!this.ended) this.pool.close(this.id, code, reason)
  }

  get bufferedAmount(): number {
    return this.ended ? 0 : this.pool.bufferedAmount(this.id)
  }
}

interface Live {
  handlers: TransportHandlers
  socket: NativeSocket
}

/** A handler's exception must not cost the rest of the batch its events: rethrown afterwards. */
function rethrowLater(error: unknown): void {
  process.nextTick(() => {
    throw error
  })
}

function toNative(options: TransportConnectOptions): NativeClientConnectOptions {
  const o: NativeClientConnectOptions = {}
  if (options.headers !== undefined) o.headers = options.headers
  if (options.protocols !== undefined) o.protocols = options.protocols
  if (options.ca !== undefined) o.ca = options.ca
  if (options.caOnly !== undefined) o.caOnly = options.caOnly
  if (options.maxInboundBytes !== undefined) o.maxInboundBytes = options.maxInboundBytes
  if (options.maxOutboundBytes !== undefined) o.maxOutboundBytes = options.maxOutboundBytes
  if (options.maxPayload !== undefined) o.maxPayload = options.maxPayload
  if (options.handshakeTimeoutMs !== undefined) o.handshakeTimeoutMs = options.handshakeTimeoutMs
  return o
}

/**
 * A transport with its own pool of native sockets (its own Rust threads). Most programs want the
 * shared `nativeTransport` instead; this one is for other pool options, and for tests.
 */
export function createNativeTransport(options: NativeTransportOptions = {}): Transport {
  const live = new Map<number, Live>()
  let pool: NativeClientPool | undefined

  const dispatch = (entry: Entry): void => {
    const connection = live.get(entry[1])
    if (connection === undefined) return
    const { handlers, socket } = connection
    switch (entry[0]) {
      case OPENED:
        handlers.open()
        break
      case MESSAGE:
        handlers.message(entry[2])
        break
      case CLOSED:
        live.delete(entry[1])
        socket.ended = true
        handlers.close(entry[2], entry[3])
        break
      case FAILED:
        live.delete(entry[1])
        socket.ended = true
        handlers.failed(entry[2] === null ? { message: entry[3] } : { status: entry[2], message: entry[3] })
        break
    }
  }

  const onBatch = (json: string): void => {
    if (json === '') return
    const entries = JSON.parse(json) as Entry[]
    for (const entry of entries) {
      try {
        dispatch(entry)
      } catch (error) {
        rethrowLater(error)
      }
    }
  }

  const poolOptions: NativeClientPoolOptions = {}
  if (options.workerThreads !== undefined) poolOptions.workerThreads = options.workerThreads
  if (options.closeTimeoutMs !== undefined) poolOptions.closeTimeoutMs = options.closeTimeoutMs

  return (url, handlers, connectOptions) => {
    pool ??= new binding.NativeClientPool(poolOptions, onBatch)
    const id = pool.connect(url, toNative(connectOptions))
    const socket = new NativeSocket(pool, id)
    live.set(id, { handlers, socket })
    return socket
  }
}

/** The Node transport: one shared pool of native sockets per process, created on first connect. */
export const nativeTransport: Transport = createNativeTransport()
