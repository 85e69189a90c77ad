// `ferrosocket/client` in Node (require and import): the same client with Node's default transport,
// the addon's native one, plus `createNativeTransport` to size its pool.

import { clientFactory, type CreateClient } from './client.js'
import { defaultTransport } from './default-transport.node.js'

export * from './exports.js'
export { createNativeTransport, type NativeTransportOptions } from './native-transport.node.js'

/** Creates a client of a ferrosocket server and starts connecting. See README "Client". */
export const createClient: CreateClient = clientFactory(defaultTransport)
