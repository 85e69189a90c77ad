// The default transport of the Node entry (node.ts): the addon's native client (tokio-tungstenite
// on Rust threads, native-transport.node.ts). Node only: not part of the browser build. It is
// preferred over a global WebSocket (Node ≥ 22): it sees the HTTP status of a refused upgrade (so
// 401 and 403 stop the reconnects), sends `headers`, trusts `ca`, and applies `maxInboundBytes`.

import { nativeTransport } from './native-transport.node.js'
import type { Transport } from './transport.js'

export function defaultTransport(): Transport {
  return nativeTransport
}
