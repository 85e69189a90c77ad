// ESM entry of `ferrosocket/client` in Node: the same module instance as `require('ferrosocket/client')`
// (lib/client/node.js), re-exported by name, so RequestError is one class whether the server and
// the client are imported or required. Browsers get lib/client-esm/ instead (package.json exports).
import client from './lib/client/node.js'

export const {
  createClient,
  defineContract,
  CloseCode,
  RequestError,
  RequestErrorCode,
  DEFAULT_RECONNECT,
  backoffDelay,
  reconnectsAfterClose,
  reconnectsAfterFailure,
  browserTransport,
  createNativeTransport,
} = client
export default client
