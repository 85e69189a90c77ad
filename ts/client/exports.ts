// What both entry points of `ferrosocket/client` export besides createClient: the protocol values
// shared with the server (one implementation, ts/protocol) and the client's types. Browser-safe.

export { CloseCode } from '../protocol/close-codes.js'
export { defineContract } from '../protocol/contract.js'
export { RequestError, RequestErrorCode } from '../protocol/request-error.js'
export { DEFAULT_RECONNECT, backoffDelay, reconnectsAfterClose, reconnectsAfterFailure, type ReconnectPolicy } from './reconnect.js'
export { browserTransport } from './browser-transport.js'
export type { CreateClient } from './client.js'
export type * from './types.js'
export type * from './transport.js'
export type { EnvelopeMeta, RequestId } from '../protocol/envelope.js'
export type {
  Contract,
  EventSchemas,
  InferInput,
  InferOutput,
  RequestErrorCodeValue,
  RequestSchema,
  RequestSchemas,
  StandardSchemaV1,
  UntypedContract,
} from '../types.js'
