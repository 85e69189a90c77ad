// The TypeScript layer (ts/ compiled to lib/): the entry point exports what lib/index exports, and
// the module split costs idle connections nothing: a Connection keeps the 14 fields it had as
// hand-written JS (each field is 8 bytes on every connection; see ts/state.ts).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { startServer } from './helpers.mjs'

const require = createRequire(import.meta.url)

test('index.js exports exactly what lib/index exports, as a plain object', () => {
  const api = require('../index.js')
  const lib = require('../lib/index.js')
  assert.deepEqual(Object.keys(api).sort(), Object.keys(lib).filter((k) => k !== '__esModule').sort())
  for (const key of Object.keys(api)) assert.equal(api[key], lib[key], key)
  assert.equal(api.__esModule, undefined)
  for (const key of Object.keys(api)) assert.equal(typeof Object.getOwnPropertyDescriptor(api, key).get, 'undefined', `${key} is a data property`)
})

test('an idle connection has the same 14 own fields as before the TypeScript port', async (t) => {
  const h = await startServer({}, { onConnection: () => {} })
  t.after(() => h.close())
  const [, conn] = await h.client()
  assert.deepEqual(Object.keys(conn), [
    '_ns', '_nid', '_req', 'remoteAddress', 'protocol', 'userId', 'data', '_openedAt', '_state', '_handlers', '_queue', '_running', '_rooms', '_x',
  ])
  assert.equal(conn._x, null, 'an idle connection has no Extra')
})
