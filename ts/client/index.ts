// `ferrosocket/client` for browsers (and any runtime with a global WebSocket): plain ES modules
// (lib/client-esm/client/index.js), no bundler needed. Browser-safe.

import { clientFactory, type CreateClient } from './client.js'
import { defaultTransport } from './default-transport.js'

export * from './exports.js'

/** Creates a client of a ferrosocket server and starts connecting. See README "Client". */
export const createClient: CreateClient = clientFactory(defaultTransport)
