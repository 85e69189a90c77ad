// The browser-safe protocol module (ts/protocol, compiled to lib/protocol): the envelope encoders
// every frame the server writes goes through, the decoder a client uses (same rules as the
// server's src/envelope.rs), and that it stays free of Node: its compiled files require only
// each other.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)
const protocol = require('../lib/protocol/index.js')
const api = require('../index.js')

test('protocol: the public values are the protocol module\'s', () => {
  assert.equal(api.RequestError, protocol.RequestError)
  assert.equal(api.RequestErrorCode, protocol.RequestErrorCode)
  assert.equal(api.CloseCode, protocol.CloseCode)
  assert.equal(api.defineContract, protocol.defineContract)
})

test('protocol: encoders write the wire frames', () => {
  assert.equal(protocol.encodeEvent('chat:message', { text: 'hi' }), '{"event":"chat:message","data":{"text":"hi"}}')
  assert.equal(protocol.encodeEvent('ping', undefined), '{"event":"ping","data":null}')
  assert.equal(protocol.encodeRequest('confirm', { q: 1 }, 3), '{"event":"confirm","data":{"q":1},"id":3}')
  assert.equal(protocol.encodeRequest('confirm', null, 'a"b'), '{"event":"confirm","data":null,"id":"a\\"b"}')
  // A received id is echoed as the JSON text it came in, byte for byte.
  assert.equal(protocol.encodeDataReply('1.50', [1]), '{"id":1.50,"data":[1]}')
  assert.equal(protocol.encodeErrorReply('"r\\u0031"', { code: 'nope', message: 'no' }), '{"id":"r\\u0031","error":{"code":"nope","message":"no"}}')
  assert.throws(() => protocol.encodeDataReply('1', 1n), TypeError)
})

test('protocol: decodeFrame classifies frames with the server\'s rules', () => {
  const d = protocol.decodeFrame
  assert.deepEqual(d('{"event":"chat:send","data":{"a":[1,2]},"meta":{"traceparent":"x"}}'), { kind: 'event', event: 'chat:send', data: { a: [1, 2] }, meta: { traceparent: 'x' } })
  assert.deepEqual(d('{"event":"ping"}'), { kind: 'event', event: 'ping', data: null, meta: undefined })
  assert.deepEqual(d('{"event":"ping","id":null,"meta":null}'), { kind: 'event', event: 'ping', data: null, meta: undefined })
  assert.deepEqual(d('{"event":"q","data":1,"id":"r1","error":5}'), { kind: 'request', event: 'q', data: 1, meta: undefined, id: 'r1' })
  assert.deepEqual(d('{"id":3,"data":{"ok":[true]}}'), { kind: 'reply', id: 3, data: { ok: [true] } })
  assert.deepEqual(d('{"id":1,"data":null}'), { kind: 'reply', id: 1, data: null })
  assert.deepEqual(d('{"id":"a","error":{"code":"nope","message":"no"}}'), { kind: 'error-reply', id: 'a', error: { code: 'nope', message: 'no' } })
  assert.deepEqual(d('{"id":1,"data":null,"error":{}}'), { kind: 'error-reply', id: 1, error: {} })
  const reasons = {
    'not json': 'not a JSON object',
    '{"event":': 'not JSON',
    '["event","x"]': 'not a JSON object',
    '{}': 'missing event',
    '{"data":1}': 'missing event',
    '{"id":null,"data":1}': 'missing event',
    '{"id":1}': 'reply has neither data nor error',
    '{"id":1,"error":null}': 'reply has neither data nor error',
    '{"id":1,"data":1,"error":{"code":"x"}}': 'reply has both data and error',
    '{"id":1,"error":"x"}': 'reply error is not an object',
    '{"id":1,"error":[]}': 'reply error is not an object',
    '{"id":true,"data":1}': 'id is not a string or number',
    '{"event":"x","id":{}}': 'id is not a string or number',
    '{"event":5}': 'event is not a string',
    '{"event":""}': 'empty event name',
    '{"event":"x","meta":3}': 'meta is not an object',
    '{"event":"x","meta":[]}': 'meta is not an object',
  }
  for (const [text, reason] of Object.entries(reasons)) assert.deepEqual(d(text), { kind: 'invalid', reason }, text)
  // What the encoders write decodes back.
  assert.deepEqual(d(protocol.encodeRequest('q', [1], 7)), { kind: 'request', event: 'q', data: [1], meta: undefined, id: 7 })
  assert.deepEqual(d(protocol.encodeErrorReply('7', { code: 'c', message: 'm' })), { kind: 'error-reply', id: 7, error: { code: 'c', message: 'm' } })
})

test('protocol: error bodies and client errors', () => {
  const { RequestError, errorBody, fromClientError, isPublicError, connectionClosed } = protocol
  assert.deepEqual(errorBody(new RequestError('room_full', 'Room a is full'), false), { code: 'room_full', message: 'Room a is full' })
  assert.deepEqual(errorBody(new RequestError('bad', 'no', { issues: [{ message: 'x', path: [] }] }), false), { code: 'bad', message: 'no', issues: [{ message: 'x', path: [] }] })
  assert.deepEqual(errorBody(Object.assign(new Error('secret'), { code: 'db' }), false), { code: 'db', message: 'Internal error' })
  assert.deepEqual(errorBody(new Error('shown'), true), { code: 'internal', message: 'shown' })
  assert.deepEqual(errorBody({ expose: true, message: 'public' }, false), { code: 'internal', message: 'public' })
  assert.equal(isPublicError('text'), false)
  const e = fromClientError({ code: 'declined', message: 'no', issues: [1] })
  assert.ok(e instanceof RequestError)
  assert.deepEqual([e.code, e.message, e.issues], ['declined', 'no', [1]])
  assert.deepEqual([fromClientError({}).code, fromClientError({}).message], ['internal', 'The client reported an error'])
  assert.equal(connectionClosed('confirm', 1006).message, 'Request "confirm" failed: the connection closed (1006) before the reply')
  assert.ok(!('issues' in new RequestError('x')), 'no issues key unless given')
})

test('protocol: the compiled module requires nothing outside lib/protocol', () => {
  const dir = path.join(ROOT, 'lib', 'protocol')
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.js'))
  assert.ok(files.length >= 5, `compiled protocol files: ${files}`)
  for (const file of files) {
    for (const [, spec] of fs.readFileSync(path.join(dir, file), 'utf8').matchAll(/require\("([^"]+)"\)/g)) {
      assert.match(spec, /^\.\/[\w-]+(\.js)?$/, `${file} requires ${spec}`)
    }
  }
})
