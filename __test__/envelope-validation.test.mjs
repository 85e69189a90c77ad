// Behaviour 3: envelope parsing and validation. Each failure closes only the sender, with the code
// and reason of design §4; `onInvalidMessage: 'reply'` answers with an `error` event instead.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { z } from 'zod'
import { defineContract } from '../index.js'
import {
  startServer,
  send,
  nextMessage,
  collect,
  waitClose,
  assertEcho,
  echo,
  withTimeout,
  deferred,
  expectNoMessage,
} from './helpers.mjs'

const contract = defineContract({
  in: {
    echo: z.unknown(),
    'chat:send': z.object({ room: z.string(), text: z.string() }),
    boom: z.unknown(),
  },
  out: {
    echo: z.unknown(),
    'chat:message': z.object({ room: z.string(), text: z.string() }),
    tick: z.number(),
  },
})

function contractServer(extra = {}, hooks = {}) {
  return startServer({ contract, onError: () => {}, ...extra }, {
    onConnection(conn) {
      echo(conn)
      conn.onMessage('chat:send', (data) => {
        hooks.onChat?.(data)
        conn.publish('chat:message', data)
      })
      conn.onMessage('boom', () => {
        throw new Error('handler exploded')
      })
    },
  })
}

/**
 * `offend(ws)` misbehaves on one connection; that connection must close with `expected` (client side
 * and server side) while a bystander connected before and after keeps working.
 */
async function expectOnlySenderClosed(t, offend, expected, options = {}) {
  const h = await contractServer(options)
  t.after(() => h.close())
  const [bystander, bystanderConn] = await h.client({ name: 'bystander' })
  const [ws, conn] = await h.client({ name: 'offender' })
  await assertEcho(ws) // the offender worked before misbehaving
  offend(ws)
  assert.deepEqual(await waitClose(ws), expected)
  assert.equal((await withTimeout(conn.waitForClose(), 2000, 'server-side waitForClose()')).code, expected.code)
  assert.equal(conn.isOpen, false)
  assert.equal(bystanderConn.isOpen, true)
  await assertEcho(bystander)
  const [late] = await h.client({ name: 'late client' })
  await assertEcho(late)
}

test('text and binary frames carrying the JSON envelope are both accepted', async (t) => {
  const h = await contractServer()
  t.after(() => h.close())
  const [ws] = await h.client()
  ws.send(JSON.stringify({ event: 'echo', data: 'as text' }))
  assert.deepEqual(await nextMessage(ws), { event: 'echo', data: 'as text' })
  ws.send(Buffer.from(JSON.stringify({ event: 'echo', data: 'as binary' })), { binary: true })
  assert.deepEqual(await nextMessage(ws), { event: 'echo', data: 'as binary' })
  ws.send(JSON.stringify({ event: 'echo', data: 1, meta: { traceparent: '00-a-b-01' } }))
  assert.deepEqual(await nextMessage(ws), { event: 'echo', data: 1 })
  // A message split over fragments is one message.
  ws.send('{"event":"echo",', { fin: false })
  ws.send('"data":"fragmented"}', { fin: true })
  assert.deepEqual(await nextMessage(ws), { event: 'echo', data: 'fragmented' })
})

const invalidPayloads = {
  'text that is not JSON': (ws) => ws.send('not json at all'),
  'truncated JSON': (ws) => ws.send('{"event":"echo","data":'),
  'a JSON array': (ws) => ws.send('[1,2,3]'),
  'a JSON string': (ws) => ws.send('"echo"'),
  'JSON null': (ws) => ws.send('null'),
  'a JSON number': (ws) => ws.send('42'),
  'an object without event': (ws) => ws.send('{"data":1}'),
  'a non-string event': (ws) => ws.send('{"event":42,"data":1}'),
  'a binary frame that is not JSON': (ws) => ws.send(Buffer.from([1, 2, 3, 4]), { binary: true }),
  'a text frame with invalid UTF-8': (ws) =>
    ws.send(Buffer.concat([Buffer.from('{"event":"echo","data":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), {
      binary: false,
    }),
  'a binary frame with invalid UTF-8': (ws) =>
    ws.send(Buffer.concat([Buffer.from('{"event":"echo","data":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), {
      binary: true,
    }),
}

for (const [name, offend] of Object.entries(invalidPayloads)) {
  test(`${name} closes only the sender with 1007 "Invalid message payload"`, (t) =>
    expectOnlySenderClosed(t, offend, { code: 1007, reason: 'Invalid message payload' }))
}

test('an event not in the contract closes only the sender with 1008 "Unknown event"', (t) =>
  expectOnlySenderClosed(t, (ws) => send(ws, 'chat:delete', { id: 1 }), { code: 1008, reason: 'Unknown event' }))

test('data failing the event schema closes only the sender with 1007 "Invalid event data"', async (t) => {
  let handled = 0
  const h = await contractServer({}, { onChat: () => handled++ })
  t.after(() => h.close())
  const [bystander] = await h.client({ name: 'bystander' })
  const [ws] = await h.client({ name: 'offender' })
  send(ws, 'chat:send', { room: 'r', text: 'valid' })
  assert.deepEqual(await nextMessage(ws), { event: 'chat:message', data: { room: 'r', text: 'valid' } })
  send(ws, 'chat:send', { room: 'r', text: 42 })
  assert.deepEqual(await waitClose(ws), { code: 1007, reason: 'Invalid event data' })
  assert.equal(handled, 1, 'the handler never saw the invalid data')
  send(bystander, 'chat:send', { room: 'r', text: 'still fine' })
  assert.deepEqual(await nextMessage(bystander), { event: 'chat:message', data: { room: 'r', text: 'still fine' } })
})

test('a message larger than maxPayload closes only the sender with 1009 "Message too large"', async (t) => {
  const envelope = (len) => {
    const head = '{"event":"echo","data":"'
    const s = head + 'x'.repeat(len - head.length - 2) + '"}'
    assert.equal(Buffer.byteLength(s), len)
    return s
  }
  const h = await contractServer({ maxPayload: 1024 })
  t.after(() => h.close())
  const [bystander] = await h.client({ name: 'bystander' })
  const [ws, conn] = await h.client({ name: 'offender' })
  ws.send(envelope(1024)) // exactly maxPayload is accepted
  assert.equal((await nextMessage(ws)).data.length, 1024 - 26)
  ws.send(envelope(1025))
  assert.deepEqual(await waitClose(ws), { code: 1009, reason: 'Message too large' })
  assert.equal((await withTimeout(conn.waitForClose(), 2000, 'waitForClose()')).code, 1009)
  await assertEcho(bystander)

  // The limit applies to the whole message, not to each fragment.
  const [frag] = await h.client({ name: 'fragmenter' })
  const body = envelope(1500)
  frag.send(body.slice(0, 500), { fin: false })
  frag.send(body.slice(500, 1000), { fin: false })
  frag.send(body.slice(1000), { fin: true })
  assert.deepEqual(await waitClose(frag), { code: 1009, reason: 'Message too large' })
  await assertEcho(bystander)
})

test('maxPayload defaults to 64 KiB', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [ws] = await h.client()
  const big = 'y'.repeat(60 * 1024)
  send(ws, 'echo', big)
  assert.equal((await nextMessage(ws)).data, big)
  send(ws, 'echo', 'z'.repeat(64 * 1024))
  assert.deepEqual(await waitClose(ws), { code: 1009, reason: 'Message too large' })
})

test('a handler that throws closes only its connection with 1011 "Message handling failed"', (t) =>
  expectOnlySenderClosed(t, (ws) => send(ws, 'boom', null), { code: 1011, reason: 'Message handling failed' }))

test('invalid input on one connection never loses messages queued for healthy ones', async (t) => {
  const h = await contractServer()
  t.after(() => h.close())
  const [healthy, healthyConn] = await h.client({ name: 'healthy' })
  const [bad, badConn] = await h.client({ name: 'offender' })
  healthyConn.join('r')
  badConn.join('r')
  const closing = deferred()
  badConn.onClose(() => closing.resolve())
  for (let i = 0; i < 300; i++) h.server.publishToRoom('r', 'tick', i)
  bad.send('garbage')
  for (let i = 300; i < 600; i++) h.server.publishToRoom('r', 'tick', i)
  await withTimeout(closing.promise, 3000, 'offender onClose')
  for (let i = 600; i < 700; i++) h.server.publishToRoom('r', 'tick', i)
  const got = await collect(healthy, 700, 10_000)
  assert.deepEqual(
    got.map((m) => m.data),
    Array.from({ length: 700 }, (_, i) => i),
  )
  assert.equal((await waitClose(bad)).code, 1007)
})

// ------------------------------------------------------------------------------------------------
// onInvalidMessage: 'reply'
// ------------------------------------------------------------------------------------------------

function assertErrorEvent(msg, code) {
  assert.equal(msg.event, 'error', `expected an error event, got ${JSON.stringify(msg)}`)
  assert.equal(msg.data.code, code, `error code in ${JSON.stringify(msg)}`)
  assert.equal(typeof msg.data.message, 'string')
  assert.ok(msg.data.message.length > 0)
}

test("onInvalidMessage: 'reply' answers invalid input with an error event and keeps the connection", async (t) => {
  let handled = 0
  const h = await contractServer({ onInvalidMessage: 'reply' }, { onChat: () => handled++ })
  t.after(() => h.close())
  const [ws, conn] = await h.client()

  ws.send('not json')
  assertErrorEvent(await nextMessage(ws), 'invalid_payload')
  ws.send('{"data":1}')
  assertErrorEvent(await nextMessage(ws), 'invalid_payload')
  ws.send(Buffer.from('[1,2'), { binary: true })
  assertErrorEvent(await nextMessage(ws), 'invalid_payload')
  // (Invalid UTF-8 in a text frame is left out here: RFC 6455 §8.1 requires failing the connection.)

  send(ws, 'chat:delete', { id: 1 })
  assertErrorEvent(await nextMessage(ws), 'unknown_event')

  send(ws, 'chat:send', { room: 'r', text: 42 })
  const invalid = await nextMessage(ws)
  assertErrorEvent(invalid, 'invalid_data')
  if (invalid.data.issues !== undefined) assert.ok(Array.isArray(invalid.data.issues), 'issues is an array when present')
  assert.equal(handled, 0)

  assert.equal(conn.isOpen, true)
  await assertEcho(ws)
  send(ws, 'chat:send', { room: 'r', text: 'ok' })
  assert.deepEqual(await nextMessage(ws), { event: 'chat:message', data: { room: 'r', text: 'ok' } })
  assert.equal(handled, 1)
  await expectNoMessage(ws, 100)
})
