'use strict'
// Contracts and Standard Schema validation. Nothing here knows a schema library: anything with a
// `~standard.validate` (zod 4, valibot, arktype, …) works.

/** Returns the contract with both maps present; the identity at runtime, the typing in index.d.ts. */
function defineContract(contract = {}) {
  const inbound = contract.in ?? {}
  const outbound = contract.out ?? {}
  for (const [side, map] of [['in', inbound], ['out', outbound]]) {
    for (const [event, schema] of Object.entries(map)) {
      if (typeof schema?.['~standard']?.validate !== 'function') {
        throw new TypeError(`defineContract: ${side}["${event}"] is not a Standard Schema (missing ~standard.validate)`)
      }
    }
  }
  return Object.freeze({ in: inbound, out: outbound })
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

/**
 * Validates outbound data synchronously (publish throws at the call site). Returns the schema's
 * output value, which is what gets serialised.
 */
function validateOutbound(contract, event, data) {
  if (!contract) return data
  if (!hasEvent(contract.out, event)) {
    throw new TypeError(`Unknown outbound event "${event}": it is not in the contract's "out" map`)
  }
  const result = contract.out[event]['~standard'].validate(data)
  if (typeof result?.then === 'function') {
    throw new TypeError(`The schema of outbound event "${event}" is asynchronous; publish needs a synchronous schema`)
  }
  if (result.issues) {
    throw new TypeError(`Invalid data for outbound event "${event}": ${describeIssues(result.issues)}`)
  }
  return result.value
}

module.exports = { defineContract, hasEvent, validateOutbound, describeIssues, serialisableIssues }
