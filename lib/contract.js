'use strict'
// Contracts and Standard Schema validation. Nothing here knows a schema library: anything with a
// `~standard.validate` (zod 4, valibot, arktype, …) works.

function assertSchema(schema, where) {
  if (typeof schema?.['~standard']?.validate !== 'function') {
    throw new TypeError(`defineContract: ${where} is not a Standard Schema (missing ~standard.validate)`)
  }
}

/**
 * Returns the contract with every map present: `in`/`out` map event names to schemas,
 * `requests` (client asks, server answers) and `clientRequests` (server asks, client answers) map
 * request names to `{ input, output }` schemas. The typing lives in index.d.ts.
 */
function defineContract(contract = {}) {
  const inbound = contract.in ?? {}
  const outbound = contract.out ?? {}
  const requests = contract.requests ?? {}
  const clientRequests = contract.clientRequests ?? {}
  for (const [side, map] of [['in', inbound], ['out', outbound]]) {
    for (const [event, schema] of Object.entries(map)) assertSchema(schema, `${side}["${event}"]`)
  }
  for (const [side, map] of [['requests', requests], ['clientRequests', clientRequests]]) {
    for (const [name, pair] of Object.entries(map)) {
      assertSchema(pair?.input, `${side}["${name}"].input`)
      assertSchema(pair?.output, `${side}["${name}"].output`)
    }
  }
  return Object.freeze({ in: inbound, out: outbound, requests, clientRequests })
}

function hasEvent(map, event) {
  return Object.prototype.hasOwnProperty.call(map, event)
}

/** Short human summary of Standard Schema issues. */
function describeIssues(issues) {
  return issues
    .slice(0, 5)
    .map((issue) => {
      const path = (issue.path ?? []).map((p) => (typeof p === 'object' ? p.key : p)).join('.')
      return path ? `${path}: ${issue.message}` : issue.message
    })
    .join('; ')
}

/** Plain, serialisable form of issues for `error` replies. */
function serialisableIssues(issues) {
  return issues.map((issue) => ({
    message: issue.message,
    path: (issue.path ?? []).map((p) => (typeof p === 'object' ? p.key : p)).map((k) => (typeof k === 'symbol' ? String(k) : k)),
  }))
}

/** Validates synchronously against `schema`; throws a TypeError naming `what` on failure. */
function validateSync(schema, data, what) {
  const result = schema['~standard'].validate(data)
  if (typeof result?.then === 'function') {
    throw new TypeError(`The schema of ${what} is asynchronous; it must be synchronous`)
  }
  if (result.issues) throw new TypeError(`Invalid data for ${what}: ${describeIssues(result.issues)}`)
  return result.value
}

/**
 * Validates outbound data synchronously (publish throws at the call site). Returns the schema's
 * output value, which is what gets serialised.
 */
function validateOutbound(contract, event, data) {
  if (!contract) return data
  if (!hasEvent(contract.out, event)) {
    throw new TypeError(`Unknown outbound event "${event}": it is not in the contract's "out" map`)
  }
  return validateSync(contract.out[event], data, `outbound event "${event}"`)
}

/** Validates the input of a server → client request synchronously, like `validateOutbound`. */
function validateClientRequest(contract, name, data) {
  if (!contract) return data
  if (!hasEvent(contract.clientRequests, name)) {
    throw new TypeError(`Unknown client request "${name}": it is not in the contract's "clientRequests" map`)
  }
  return validateSync(contract.clientRequests[name].input, data, `client request "${name}"`)
}

module.exports = { defineContract, hasEvent, validateOutbound, validateClientRequest, describeIssues, serialisableIssues }
