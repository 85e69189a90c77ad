// Namespace-level handlers: `server.onMessage` / `server.onRequest` / `server.onRawMessage` register
// one function for every connection of a namespace (ctx.conn is the sender) instead of closures per
// connection. Same rules as the per-connection handlers: validated data, one message at a time per
// connection in arrival order, a throwing handler closes only its connection 1011.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { z } from 'zod'
import { defineContract } from '../index.js'
import { startServer, send, nextMessage, collect, waitClose, withTimeout, deferred, connect } from './helpers.mjs'

const contract = defineContract({
  in: { hello: z.object({ n: z.number() }), slow: z.number(), mine: z.unknown(), boom: z.unknown() },
  out: { hi: z.object({ n: z.number(), from: z.string() }), done: z.number(), mine: z.string() },
  requests: { add: { input: z.object({ a: z.number(), b: z.number() }), output: z.number() } },
})
const noConnectionHandlers = { onConnection: () => {} }

test('server.onMessage handles an event for every connection; ctx.conn is the sender', async (t) => {
  const h = await startServer({ contract }, noConnectionHandlers)
  t.after(() => h.close())
  h.server.onMessage('hello', (data, ctx) => {
    assert.equal(ctx.event, 'hello')
    ctx.conn.publish('hi', { n: data.n, from: ctx.conn.id })
  })
  const [a, connA] = await h.client({ name: 'a' })
  const [b, connB] = await h.client({ name: 'b' })
  send(a, 'hello', { n: 1 })
  send(b, 'hello', { n: 2 })
  assert.deepEqual(await nextMessage(a), { event: 'hi', data: { n: 1, from: connA.id } })
  assert.deepEqual(await nextMessage(b), { event: 'hi', data: { n: 2, from: connB.id } })
})

test('namespace handlers keep per-connection order with async handlers; connections run concurrently', async (t) => {
  const h = await startServer({ contract }, noConnectionHandlers)
  t.after(() => h.close())
  const release = deferred()
  h.server.onMessage('slow', async (n, ctx) => {
    if (n === 0) await release.promise // the first message of connection a waits
    ctx.conn.publish('done', n)
  })
  const [a] = await h.client({ name: 'a' })
  const [b] = await h.client({ name: 'b' })
  for (let n = 0; n < 5; n++) send(a, 'slow', n)
  send(b, 'slow', 7)
  assert.deepEqual(await nextMessage(b), { event: 'done', data: 7 }, 'b is not held up by a')
  release.resolve()
  const got = await collect(a, 5)
  assert.deepEqual(got.map((m) => m.data), [0, 1, 2, 3, 4])
})

test("a connection's own handler wins over the namespace's", async (t) => {
  const h = await startServer({ contract }, {
    onConnection: (conn) => conn.onMessage('mine', () => conn.publish('mine', 'connection')),
  })
  t.after(() => h.close())
  h.server.onMessage('mine', (_, ctx) => ctx.conn.publish('mine', 'namespace'))
  const [ws] = await h.client()
  send(ws, 'mine', null)
  assert.deepEqual(await nextMessage(ws), { event: 'mine', data: 'connection' })
})

test('invalid data, unknown events and throwing namespace handlers close only the sender', async (t) => {
  const errors = []
  const h = await startServer({ contract, onError: (e) => errors.push(e) }, noConnectionHandlers)
  t.after(() => h.close())
  h.server.onMessage('hello', (data, ctx) => ctx.conn.publish('hi', { n: data.n, from: 'x' }))
  h.server.onMessage('boom', () => {
    throw new Error('handler bug')
  })
  assert.throws(() => h.server.onMessage('nope', () => {}), /Unknown inbound event "nope"/)
  assert.throws(() => h.server.onMessage('hello', 'not a function'), TypeError)
  assert.throws(() => h.server.onRawMessage(() => {}), /raw-mode/)
  const [healthy] = await h.client({ name: 'healthy' })
  const [invalid] = await h.client({ name: 'invalid' })
  const [throwing] = await h.client({ name: 'throwing' })
  send(invalid, 'hello', { n: 'not a number' })
  send(throwing, 'boom', null)
  assert.equal((await waitClose(invalid)).code, 1007)
  assert.equal((await waitClose(throwing)).code, 1011)
  assert.equal(errors.length, 1)
  assert.match(errors[0].message, /handler bug/)
  send(healthy, 'hello', { n: 3 })
  assert.deepEqual(await nextMessage(healthy), { event: 'hi', data: { n: 3, from: 'x' } })
})

test('messages that arrived before the namespace handler existed are delivered in order when it registers', async (t) => {
  const h = await startServer({ contract }, noConnectionHandlers)
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  const seen = []
  const arrived = deferred()
  // A per-connection handler for another event tells us the earlier messages reached JS.
  conn.onMessage('mine', () => arrived.resolve())
  send(ws, 'hello', { n: 1 })
  send(ws, 'hello', { n: 2 })
  send(ws, 'mine', null)
  await withTimeout(arrived.promise, 2000, 'the marker message')
  h.server.onMessage('hello', (data) => seen.push(data.n))
  assert.deepEqual(seen, [1, 2])
})

test('server.onRequest answers every connection with validated input and output; ctx.conn is the client', async (t) => {
  const h = await startServer({ contract }, noConnectionHandlers)
  t.after(() => h.close())
  h.server.onRequest('add', (input, ctx) => {
    assert.equal(typeof ctx.conn.id, 'string')
    return input.a + input.b
  })
  assert.throws(() => h.server.onRequest('nope', () => 1), /Unknown request "nope"/)
  const [ws] = await h.client()
  ws.send(JSON.stringify({ event: 'add', data: { a: 2, b: 3 }, id: 1 }))
  assert.deepEqual(await nextMessage(ws), { id: 1, data: 5 })
  ws.send(JSON.stringify({ event: 'add', data: { a: 'x' }, id: 2 }))
  const reply = await nextMessage(ws)
  assert.equal(reply.id, 2)
  assert.equal(reply.error.code, 'invalid_input')
})

test('namespace handlers are per namespace', async (t) => {
  const h = await startServer({ contract, namespaces: { game: contract } }, noConnectionHandlers)
  t.after(() => h.close())
  h.server.onMessage('hello', (d, ctx) => ctx.conn.publish('hi', { n: d.n, from: 'default' }))
  h.server.onMessage('game', 'hello', (d, ctx) => ctx.conn.publish('hi', { n: d.n, from: ctx.conn.namespace }))
  const [def] = await h.client()
  const [game] = await h.client({ ns: 'game' })
  send(def, 'hello', { n: 1 })
  send(game, 'hello', { n: 2 })
  assert.deepEqual(await nextMessage(def), { event: 'hi', data: { n: 1, from: 'default' } })
  assert.deepEqual(await nextMessage(game), { event: 'hi', data: { n: 2, from: 'game' } })
  assert.throws(() => h.server.onMessage('nowhere', 'hello', () => {}), /Unknown namespace "nowhere"/)
})

test('server.onRawMessage: one raw handler for the namespace, with the connection as second argument', async (t) => {
  const h = await startServer({ messageFormat: 'raw' }, noConnectionHandlers)
  t.after(() => h.close())
  h.server.onRawMessage((data, conn) => conn.sendRaw(typeof data === 'string' ? `echo:${data}` : data))
  const ws = h.adopt(await connect(h.url()))
  ws.send('x')
  const text = await new Promise((resolve) => ws.once('message', (m, binary) => resolve(binary ? null : String(m))))
  assert.equal(text, 'echo:x')
})

test('conn.onRawMessage: raw-mode namespaces only, like server.onRawMessage; handler(data, conn)', async (t) => {
  const h = await startServer({}, noConnectionHandlers)
  t.after(() => h.close())
  const [, conn] = await h.client()
  assert.throws(() => conn.onRawMessage(() => {}), (e) => e instanceof TypeError && /raw-mode/.test(e.message))
  const raw = await startServer({ messageFormat: 'raw' }, { onConnection: (c) => c.onRawMessage((data, self) => self.sendRaw(self === c ? `mine:${data}` : 'other')) })
  t.after(() => raw.close())
  const ws = raw.adopt(await connect(raw.url()))
  ws.send('x')
  const text = await new Promise((resolve) => ws.once('message', (m, binary) => resolve(binary ? null : String(m))))
  assert.equal(text, 'mine:x')
})
