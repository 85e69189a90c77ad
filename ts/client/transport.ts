// The seam between the client's protocol logic (ts/client/client.ts) and a socket: the browser's
// WebSocket or the addon's native client (tokio-tungstenite on Rust threads). Browser-safe types.

/** What a transport reports, in this order: `open` then any `message`s then one `close`; or one `failed` alone. */
export interface TransportHandlers {
  /** The upgrade succeeded. */
  open(): void
  /** One text frame. Binary frames are not part of the protocol: the transport closes 1003. */
  message(text: string): void
  /** The connection ended after `open` (code 1006 when there was no close frame). */
  close(code: number, reason: string): void
  /**
   * The connection never opened. `status` is the HTTP status of a refused upgrade when the
   * transport can see it (the native one can, a browser cannot); absent for DNS/TCP/TLS failures.
   */
  failed(info: { status?: number; message: string }): void
}

export interface TransportSocket {
  /** Queues one text frame. False when it was not queued: not open, or the outbound buffer is full. */
  send(text: string): boolean
  /** Starts the closing handshake (or aborts a connection still opening). Idempotent. */
  close(code?: number, reason?: string): void
  /** Bytes queued for sending and not yet written to the socket. */
  readonly bufferedAmount: number
}

export interface TransportConnectOptions {
  /** Extra upgrade request headers (native only; browsers cannot set them). */
  headers?: Record<string, string>
  /** Sec-WebSocket-Protocol offers. */
  protocols?: string[]
  /** PEM text of CA certificates to trust for wss:// in addition to (or, with `caOnly`, instead of) the bundled roots. Native only. */
  ca?: string
  caOnly?: boolean
  /** Upper bound on received bytes handed to JS and not yet processed before the transport stops reading (native only). */
  maxInboundBytes?: number
  /** Upper bound on bytes queued for sending; `send` returns false past it. */
  maxOutboundBytes?: number
  /** Limit on one received message; larger closes 1009. */
  maxPayload?: number
  /** Abort the opening handshake after this long (reported through `failed`). */
  handshakeTimeoutMs?: number
}

/** Opens one connection. Never throws for network errors: they arrive through `handlers.failed`. */
export type Transport = (url: string, handlers: TransportHandlers, options: TransportConnectOptions) => TransportSocket
