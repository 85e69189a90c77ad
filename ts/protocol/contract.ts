// Contracts and Standard Schema validation. Browser-safe, and nothing here knows a schema library:
// anything with a `~standard.validate` (zod 4, valibot, arktype, …) works.

import type {
  Contract,
  EventSchemas,
  RequestSchemas,
  StandardSchemaIssue,
  StandardSchemaResult,
  StandardSchemaV1,
} from '../types.js'

/** A contract with every map present, as the rest of the code uses it (contracts need not come from defineContract). */
export type NormalisedContract = Contract<EventSchemas, EventSchemas, RequestSchemas, RequestSchemas>

/** What a caller may pass as a contract: any of the maps may be missing. */
export interface ContractInput {
  in?: EventSchemas
  out?: EventSchemas
  requests?: RequestSchemas
  clientRequests?: RequestSchemas
}

function assertSchema(schema: unknown, where: string): void {
  const standard = (schema as Partial<StandardSchemaV1> | null | undefined)?.['~standard']
  if (typeof standard?.validate !== 'function') {
    throw new TypeError(`defineContract: ${where} is not a Standard Schema (missing ~standard.validate)`)
  }
}

/**
 * Returns the contract with every map present: `in`/`out` map event names to schemas,
 * `requests` (client asks, server answers) and `clientRequests` (server asks, client answers) map
 * request names to `{ input, output }` schemas.
 */
export function defineContract<
  const In extends EventSchemas = {},
  const Out extends EventSchemas = {},
  const Req extends RequestSchemas = {},
  const CReq extends RequestSchemas = {},
>(contract: { in?: In; out?: Out; requests?: Req; clientRequests?: CReq }): Contract<In, Out, Req, CReq>
export function defineContract(contract: ContractInput = {}): NormalisedContract {
  const inbound = contract.in ?? {}
  const outbound = contract.out ?? {}
  const requests = contract.requests ?? {}
  const clientRequests = contract.clientRequests ?? {}
  for (const [side, map] of [['in', inbound], ['out', outbound]] as const) {
    for (const [event, schema] of Object.entries(map)) assertSchema(schema, `${side}["${event}"]`)
  }
  for (const [side, map] of [['requests', requests], ['clientRequests', clientRequests]] as const) {
    for (const [name, pair] of Object.entries(map)) {
      assertSchema(pair?.input, `${side}["${name}"].input`)
      assertSchema(pair?.output, `${side}["${name}"].output`)
    }
  }
  return Object.freeze({ in: inbound, out: outbound, requests, clientRequests })
}

/** Every map present; null without a contract. */
export function normaliseContract(contract: ContractInput | null | undefined): NormalisedContract | null {
  if (!contract) return null
  return {
    in: contract.in ?? {},
    out: contract.out ?? {},
    requests: contract.requests ?? {},
    clientRequests: contract.clientRequests ?? {},
  }
}

export function hasEvent(map: object, event: PropertyKey): boolean {
  return Object.prototype.hasOwnProperty.call(map, event)
}

const pathKeys = (issue: StandardSchemaIssue): PropertyKey[] =>
  (issue.path ?? []).map((p) => (typeof p === 'object' ? p.key : p))

/** Short human summary of Standard Schema issues. */
export function describeIssues(issues: ReadonlyArray<StandardSchemaIssue>): string {
  return issues
    .slice(0, 5)
    .map((issue) => {
      const path = pathKeys(issue).join('.')
      return path ? `${path}: ${issue.message}` : issue.message
    })
    .join('; ')
}

/** Plain, serialisable form of issues for `error` replies. */
export function serialisableIssues(issues: ReadonlyArray<StandardSchemaIssue>): { message: string; path: (string | number)[] }[] {
  return issues.map((issue) => ({
    message: issue.message,
    path: pathKeys(issue).map((k) => (typeof k === 'symbol' ? String(k) : k)),
  }))
}

/** A `validate` result: sync, or a promise of one (async schemas). */
export type ValidationResult<T = unknown> = StandardSchemaResult<T> | Promise<StandardSchemaResult<T>>

/** True for a promise-like `validate` result. */
export function isPending<T>(result: ValidationResult<T>): result is Promise<StandardSchemaResult<T>> {
  return typeof (result as { then?: unknown } | null)?.then === 'function'
}

/** Validates synchronously against `schema`; throws a TypeError naming `what` on failure. */
export function validateSync(schema: StandardSchemaV1, data: unknown, what: string): unknown {
  const result = schema['~standard'].validate(data)
  if (isPending(result)) {
    throw new TypeError(`The schema of ${what} is asynchronous; it must be synchronous`)
  }
  if (result.issues) throw new TypeError(`Invalid data for ${what}: ${describeIssues(result.issues)}`)
  return result.value
}

/**
 * Validates outbound data synchronously (publish throws at the call site). Returns the schema's
 * output value, which is what gets serialised.
 */
export function validateOutbound(contract: NormalisedContract | null, event: string, data: unknown): unknown {
  if (!contract) return data
  if (!hasEvent(contract.out, event)) {
    throw new TypeError(`Unknown outbound event "${event}": it is not in the contract's "out" map`)
  }
  return validateSync(contract.out[event], data, `outbound event "${event}"`)
}

/** Validates the input of a server → client request synchronously, like `validateOutbound`. */
export function validateClientRequest(contract: NormalisedContract | null, name: string, data: unknown): unknown {
  if (!contract) return data
  if (!hasEvent(contract.clientRequests, name)) {
    throw new TypeError(`Unknown client request "${name}": it is not in the contract's "clientRequests" map`)
  }
  return validateSync(contract.clientRequests[name].input, data, `client request "${name}"`)
}
