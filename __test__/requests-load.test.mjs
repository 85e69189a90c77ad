// Load: 100 connections × 1,000 requests each (32 in flight per connection), every reply checked
// for the right id and value. The same code is the benchmark `node bench/requests.mjs`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runRequestLoad } from '../bench/requests.mjs'

test('100 connections × 1,000 requests are all answered correctly', async (t) => {
  const r = await runRequestLoad({ connections: 100, requests: 1000, window: 32, timeoutMs: 90_000 })
  t.diagnostic(`${r.answered} requests in ${(r.elapsedMs / 1000).toFixed(2)} s: ${r.perSecond} requests/s`)
  assert.equal(r.wrong, 0, r.firstWrong)
  assert.equal(r.answered, 100_000)
})
