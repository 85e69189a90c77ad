// The transport over the platform's WebSocket (browsers; also Node ≥ 22, Deno, Bun, workers).
// Browser-safe. A browser never shows the HTTP status of a refused upgrade, nor lets a page set
// headers or CA certificates: `failed` carries no status here, and those options are ignored.

import type { Transport, TransportConnectOptions, TransportHandlers, TransportSocket } from './transport.js'

/** The part of the WHATWG WebSocket this file uses (declared here: ts/ compiles without the DOM types). */
interface WebSocketLike {
  readonly readyState: number
  readonly bufferedAmount: number
  binaryType: string
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number; reason: string }) => void) | null
  onerror: ((event: unknown) => void) | null
  send(data: string): void
  close(code?: number, reason?: string): void
}
type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

const OPEN = 1

/** The global WebSocket constructor, when there is one. */
export function globalWebSocket(): WebSocketConstructor | undefined {
  const ctor = (globalThis as { WebSocket?: unknown }).WebSocket
  return typeof ctor === 'function' ? (ctor as WebSocketConstructor) : undefined
}

/** A Transport over `WebSocket` (default: the global one, looked up on each connect). */
export function browserTransport(WebSocket?: WebSocketConstructor): Transport {
  return (url: string, handlers: TransportHandlers, options: TransportConnectOptions): TransportSocket => {
    const Ctor = WebSocket ?? globalWebSocket()
    let phase: 'opening' | 'open' | 'done' = 'opening'
    let timer: ReturnType<typeof setTimeout> | undefined
    // Handlers are always called asynchronously (the seam's rule), also for a constructor that throws.
    const fail = (message: string): void => {
      if (phase !== 'opening') return
      phase = 'done'
      if (timer !== undefined) clearTimeout(timer)
      queueMicrotask(() => handlers.failed({ message }))
    }
    let ws: WebSocketLike | undefined
    try {
      if (!Ctor) throw new Error('there is no global WebSocket')
      ws = new Ctor(url, options.protocols ?? [])
    } catch (error) {
      fail(`WebSocket to ${url} could not be created: ${error instanceof Error ? error.message : String(error)}`)
    }
    const socket = ws
    if (socket) {
      socket.binaryType = 'arraybuffer'
      if (options.handshakeTimeoutMs !== undefined && options.handshakeTimeoutMs > 0) {
        timer = setTimeout(() => {
          fail(`opening handshake not complete after ${options.handshakeTimeoutMs} ms`)
          socket.close()
        }, options.handshakeTimeoutMs)
      }
      socket.onopen = () => {
        if (phase !== 'opening') return
        phase = 'open'
        if (timer !== undefined) clearTimeout(timer)
        handlers.open()
      }
      socket.onmessage = (event) => {
        if (phase !== 'open') return
        if (typeof event.data !== 'string') {
          socket.close(1003, 'Binary frames are not supported')
          return
        }
        if (options.maxPayload !== undefined && event.data.length > options.maxPayload) {
          socket.close(1009, 'Message too large')
          return
        }
        handlers.message(event.data)
      }
      socket.onerror = () => {} // a close event follows; it carries what can be known
      socket.onclose = (event) => {
        if (phase === 'open') {
          phase = 'done'
          handlers.close(event.code, event.reason)
        } else {
          fail(`WebSocket to ${url} failed to open (close code ${event.code}${event.reason ? ` ${event.reason}` : ''})`)
        }
      }
    }
    return {
      send(text: string): boolean {
        if (!socket || phase !== 'open' || socket.readyState !== OPEN) return false
        if (options.maxOutboundBytes !== undefined && socket.bufferedAmount + text.length > options.maxOutboundBytes) return false
        socket.send(text)
        return true
      },
      close(code?: number, reason?: string): void {
        if (!socket) return
        if (phase === 'opening') fail('closed before the connection opened')
        try {
          // Browsers accept only 1000 and 3000–4999 from a page; anything else closes 1000.
          if (code === undefined || code === 1000 || (code >= 3000 && code <= 4999)) socket.close(code, reason)
          else socket.close(1000, reason)
        } catch {
          socket.close()
        }
      },
      get bufferedAmount(): number {
        return socket?.bufferedAmount ?? 0
      },
    }
  }
}
