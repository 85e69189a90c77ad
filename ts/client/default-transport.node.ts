// The default transport of the Node entry (node.ts). Node only: not part of the browser build.
//
// ┌──────────────────────────────────────────────────────────────────────────────────────────────┐
// │ THE NATIVE TRANSPORT PLUGS IN HERE. When ts/client/native-transport.ts (the addon's           │
// │ tokio-tungstenite client, branch native-client) lands, return it first:                       │
// │     import { nativeTransport } from './native-transport.js'                                   │
// │     export function defaultTransport(): Transport { return nativeTransport }                  │
// │ It is preferred over a global WebSocket: it sees the HTTP status of a refused upgrade (so 401 │
// │ and 403 stop the reconnects) and honours headers, ca and maxInboundBytes.                     │
// └──────────────────────────────────────────────────────────────────────────────────────────────┘

import { browserTransport, globalWebSocket } from './browser-transport.js'
import type { Transport } from './transport.js'

export function defaultTransport(): Transport {
  // Until then: Node ≥ 22 has a global WebSocket (undici's); Node 20 has none.
  if (globalWebSocket()) return browserTransport()
  throw new Error(
    'ferrosocket/client: no default transport in this Node.js yet (the native transport is not built in, and there is no global WebSocket before Node 22). ' +
      'Pass one: createClient(contract, url, { transport }), a function (url, handlers, options) => socket as described in ferrosocket/client\'s Transport type.',
  )
}
