// The browser-safe part of ferrosocket: what a client needs to speak the protocol and share a
// contract with the server. No Node API is used here or in anything it imports (checked by
// `tsc -p ts/protocol`, which compiles this folder without Node's types, and by
// scripts/check-deps.mjs, which allows these files no imports outside ts/protocol/ and ts/types.ts).

export * from './close-codes.js'
export * from './contract.js'
export * from './envelope.js'
export * from './request-error.js'
export type {
  ClientRequestInput,
  ClientRequestName,
  ClientRequestResult,
  Contract,
  EventSchemas,
  InData,
  InEvent,
  InferInput,
  InferOutput,
  OutData,
  OutEvent,
  RequestErrorCodeValue,
  RequestInput,
  RequestName,
  RequestOutput,
  RequestSchema,
  RequestSchemas,
  StandardSchemaIssue,
  StandardSchemaResult,
  StandardSchemaV1,
  UntypedContract,
} from '../types.js'
