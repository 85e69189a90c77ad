// The default transport of the browser entry (index.ts): the platform's WebSocket. Browser-safe.

import { browserTransport, globalWebSocket } from './browser-transport.js'
import type { Transport } from './transport.js'

export function defaultTransport(): Transport {
  if (globalWebSocket()) return browserTransport()
  throw new Error('ferrosocket/client: there is no global WebSocket here; pass a transport (createClient(contract, url, { transport }))')
}
