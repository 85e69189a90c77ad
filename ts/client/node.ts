// `ferrosocket/client` in Node (require and import): the same client with Node's default transport.

import { clientFactory, type CreateClient } from './client.js'
import { defaultTransport } from './default-transport.node.js'

export * from './exports.js'

/** Creates a client of a ferrosocket server and starts connecting. See README "Client". */
export const createClient: CreateClient = clientFactory(defaultTransport)
