// The public API: what index.js exports and index.d.ts types (through lib/index.d.ts).

import { binding } from './native'
import { Server as ServerImpl, type UntypedServer } from './server'
import type { Contract, Server, ServerOptions, UntypedContract } from './types'

export type * from './types'
export { CloseCode } from './protocol/close-codes'
export { defineContract } from './protocol/contract'
export { RequestError, RequestErrorCode } from './protocol/request-error'
export { METRICS_CONTENT_TYPE } from './metrics'
export { exportAsyncAPI } from './asyncapi'
export type { AsyncAPIDocument, AsyncAPIOptions, AsyncAPISchemaContext, AsyncAPIServer, AsyncAPISource, JSONSchema } from './asyncapi'

export function createServer<C extends Contract = UntypedContract, NS extends Record<string, Contract> = {}, D = undefined>(
  options?: ServerOptions<C, NS, D>,
): Server<C, NS, D> {
  return typed<C, NS, D>(new ServerImpl(options))
}

/**
 * The one conversion from the implementation to the public generic types. The implementation is
 * checked (`implements`) against the untyped instantiation of `Server`, and `Connection` against
 * that of the public `Connection`; a server with a contract is the same object, which validates
 * against the contract at run time, seen through the contract's types.
 */
function typed<C extends Contract, NS extends Record<string, Contract>, D>(server: UntypedServer): Server<C, NS, D> {
  return server as Server<C, NS, D>
}

/** @internal Test hooks; not part of the supported API. */
export const __testing = Object.freeze({ panic: (): void => binding.testPanic() })
