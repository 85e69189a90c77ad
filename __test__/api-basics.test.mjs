// Behaviour 2: the API of design §5 — server and connection surface, contracts (Standard Schema),
// outbound validation, close/onClose/waitForClose.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { z } from 'zod'
import { defineContract } from '../index.js'
import {
  startServer,
  connect,
  send,
  nextMessage,
  expectNoMessage,
  waitClose,
  assertEcho,
  echo,
  deferred,
  withTimeout,
} from './helpers.mjs'

test('a connection exposes id, namespace, userId, remoteAddress, rooms and isOpen', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [, a] = await h.client()
  const [, b] = await h.client()
  assert.equal(typeof a.id, 'string')
  assert.ok(a.id.length > 0)
  assert.notEqual(a.id, b.id, 'ids are unique')
  assert.equal(a.namespace, '/')
  assert.equal(a.userId, undefined)
  assert.equal(a.remoteAddress, '127.0.0.1')
  assert.ok(a.rooms instanceof Set, 'rooms is a Set')
  assert.equal(a.rooms.size, 0)
  assert.equal(a.isOpen, true)
  assert.equal(h.server.connectionCount, 2)
  assert.equal(h.server.getConnection(a.id), a, 'getConnection returns the same connection object')
  assert.equal(h.server.getConnection(b.id), b)
  assert.equal(h.server.getConnection('no-such-id'), undefined)
})

test('conn.publish sends {event,data} frames; a publish in onConnection arrives first', async (t) => {
  const h = await startServer({}, {
    onConnection(conn) {
      conn.publish('welcome', { id: conn.id })
      echo(conn)
    },
  })
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  assert.deepEqual(await nextMessage(ws), { event: 'welcome', data: { id: conn.id } })
  await assertEcho(ws, { nested: { list: [1, 'two', null, true] } })
  for (const data of [0, 'text', null, [], { ü: '€ ✓ 😀' }]) {
    conn.publish('value', data)
    assert.deepEqual(await nextMessage(ws), { event: 'value', data })
  }
})

test('join/leave update conn.rooms; setUserId/clearUserId update conn.userId; they chain', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [, conn] = await h.client()
  assert.equal(conn.join('a'), conn)
  conn.join('b').join('a')
  assert.deepEqual([...conn.rooms].sort(), ['a', 'b'])
  assert.equal(conn.leave('a'), conn)
  assert.deepEqual([...conn.rooms], ['b'])
  conn.leave('not-joined')
  assert.deepEqual([...conn.rooms], ['b'])
  assert.equal(conn.setUserId('u1'), conn)
  assert.equal(conn.userId, 'u1')
  conn.setUserId('u2')
  assert.equal(conn.userId, 'u2')
  assert.equal(conn.clearUserId(), conn)
  assert.equal(conn.userId, undefined)
})

test('conn.close(code, reason) reaches the client; onClose and waitForClose report it', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  const [other] = await h.client()
  const onClose = deferred()
  assert.equal(conn.onClose((code, reason) => onClose.resolve({ code, reason })), conn)
  const waited = conn.waitForClose()
  conn.close(4000, 'bye now')
  assert.deepEqual(await waitClose(ws), { code: 4000, reason: 'bye now' })
  assert.deepEqual(await withTimeout(onClose.promise, 2000, 'onClose'), { code: 4000, reason: 'bye now' })
  assert.deepEqual(await withTimeout(waited, 2000, 'waitForClose()'), { code: 4000, reason: 'bye now' })
  assert.equal(conn.isOpen, false)
  // waitForClose after the fact still resolves.
  assert.deepEqual(await withTimeout(conn.waitForClose(), 2000, 'late waitForClose()'), { code: 4000, reason: 'bye now' })
  // Publishing to a closed connection is a silent no-op.
  assert.doesNotThrow(() => conn.publish('late', { x: 1 }))
  assert.equal(h.server.getConnection(conn.id), undefined)
  assert.equal(h.server.connectionCount, 1)
  await assertEcho(other)
})

test('conn.close() defaults to code 1000', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  conn.close()
  assert.equal((await waitClose(ws)).code, 1000)
  assert.equal((await withTimeout(conn.waitForClose(), 2000, 'waitForClose()')).code, 1000)
})

test('a client-initiated close fires onClose with the client code and reason', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  const closed = deferred()
  conn.onClose((code, reason) => closed.resolve({ code, reason }))
  ws.close(4100, 'client bye')
  assert.deepEqual(await withTimeout(closed.promise, 2000, 'onClose'), { code: 4100, reason: 'client bye' })
  assert.equal(conn.isOpen, false)
  assert.equal((await waitClose(ws)).code, 4100)
})

test('onConnection(namespace, handler) receives that namespace’s connections only', async (t) => {
  const seen = []
  const h = await startServer({ namespaces: { game: null } }, {
    onConnection(conn, ns) {
      seen.push([ns, conn.namespace])
      echo(conn)
    },
  })
  t.after(() => h.close())
  await h.client({ ns: 'game' })
  await h.client()
  assert.deepEqual(seen, [
    ['game', 'game'],
    ['/', '/'],
  ])
})

// ------------------------------------------------------------------------------------------------
// Contracts: Standard Schema in, handler gets the schema's output
// ------------------------------------------------------------------------------------------------

const chat = defineContract({
  in: {
    'chat:send': z.object({ room: z.string(), text: z.string().max(2000), n: z.number().default(7) }),
    echo: z.unknown(),
  },
  out: {
    'chat:message': z.object({ room: z.string(), from: z.string(), text: z.string() }),
    echo: z.unknown(),
    got: z.unknown(),
  },
})

test('defineContract returns the contract; a handler receives the validated (output) value and ctx', async (t) => {
  assert.ok(chat.in['chat:send'])
  assert.ok(chat.out['chat:message'])
  const got = []
  const h = await startServer({ contract: chat }, {
    onConnection(conn) {
      echo(conn)
      conn.onMessage('chat:send', (data, ctx) => {
        got.push({ data, ctx })
        conn.publish('got', null)
      })
    },
  })
  t.after(() => h.close())
  const [ws] = await h.client()
  // zod strips unknown keys and applies the default: the handler sees the schema output, not the raw data.
  send(ws, 'chat:send', { room: 'lobby', text: 'hi', extra: 'dropped' })
  await nextMessage(ws)
  ws.send(JSON.stringify({ event: 'chat:send', data: { room: 'r', text: 't', n: 1 }, meta: { traceparent: '00-abc-def-01' } }))
  await nextMessage(ws)
  assert.deepEqual(got[0].data, { room: 'lobby', text: 'hi', n: 7 })
  assert.equal(got[0].ctx.event, 'chat:send')
  assert.equal(got[0].ctx.meta, undefined)
  assert.deepEqual(got[1].data, { room: 'r', text: 't', n: 1 })
  assert.deepEqual(got[1].ctx.meta, { traceparent: '00-abc-def-01' })
})

test('any Standard Schema works: a hand-written one and an async zod refinement', async (t) => {
  const doubled = {
    '~standard': {
      version: 1,
      vendor: 'handmade',
      validate: (v) => (typeof v === 'number' ? { value: v * 2 } : { issues: [{ message: 'expected a number' }] }),
    },
  }
  const contract = defineContract({
    in: {
      double: doubled,
      slow: z.string().refine(async (s) => {
        await new Promise((r) => setImmediate(r))
        return s.startsWith('ok')
      }),
    },
    out: { result: z.unknown() },
  })
  const h = await startServer({ contract }, {
    onConnection(conn) {
      conn.onMessage('double', (n) => conn.publish('result', n))
      conn.onMessage('slow', (s) => conn.publish('result', s))
    },
  })
  t.after(() => h.close())
  const [ws] = await h.client()
  send(ws, 'double', 21)
  assert.deepEqual(await nextMessage(ws), { event: 'result', data: 42 })
  send(ws, 'slow', 'ok then')
  assert.deepEqual(await nextMessage(ws), { event: 'result', data: 'ok then' })
  send(ws, 'double', 'twenty')
  assert.deepEqual(await waitClose(ws), { code: 1007, reason: 'Invalid event data' })
  const [ws2] = await h.client()
  send(ws2, 'slow', 'not ok')
  assert.deepEqual(await waitClose(ws2), { code: 1007, reason: 'Invalid event data' })
})

test('outbound publish* throws synchronously on an unknown event or invalid data, naming the event', async (t) => {
  const h = await startServer({ contract: chat }, { onConnection: echo })
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  conn.join('lobby').setUserId('u1')
  const good = { room: 'lobby', from: 'srv', text: 'hello' }
  const bad = { room: 'lobby', from: 42 }

  assert.throws(() => conn.publish('nope', good), /nope/)
  assert.throws(() => conn.publish('chat:message', bad), /chat:message/)
  assert.throws(() => h.server.broadcast('nope', good), /nope/)
  assert.throws(() => h.server.broadcast('chat:message', bad), /chat:message/)
  assert.throws(() => h.server.publishToRoom('lobby', 'nope', good), /nope/)
  assert.throws(() => h.server.publishToRoom('lobby', 'chat:message', bad), /chat:message/)
  assert.throws(() => h.server.publishToUser('u1', 'nope', good), /nope/)
  assert.throws(() => h.server.publishToUser('u1', 'chat:message', bad), /chat:message/)
  assert.throws(() => h.server.publishToAudience({ rooms: ['lobby'] }, 'nope', good), /nope/)
  assert.throws(() => h.server.publishToAudience({ rooms: ['lobby'] }, 'chat:message', bad), /chat:message/)

  // Nothing of the rejected publishes reached the client: the next frame is the valid one.
  h.server.publishToRoom('lobby', 'chat:message', good)
  assert.deepEqual(await nextMessage(ws), { event: 'chat:message', data: good })
  conn.publish('chat:message', good)
  assert.deepEqual(await nextMessage(ws), { event: 'chat:message', data: good })
  await expectNoMessage(ws, 100)
  assert.equal(conn.isOpen, true)
})

test('without a contract any event name and any data go both ways unvalidated', async (t) => {
  const h = await startServer({}, {
    onConnection(conn) {
      conn.onMessage('anything:at-all', (data) => conn.publish('whatever:you-like', { got: data }))
    },
  })
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  send(ws, 'anything:at-all', { free: ['form', 1] })
  assert.deepEqual(await nextMessage(ws), { event: 'whatever:you-like', data: { got: { free: ['form', 1] } } })
  h.server.broadcast('made:up', 5)
  assert.deepEqual(await nextMessage(ws), { event: 'made:up', data: 5 })
  assert.equal(conn.isOpen, true)
})

test('connecting while another client is connected does not disturb it', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [a] = await h.client()
  const b = h.adopt(await connect(h.url()))
  await h.nextConnection()
  await assertEcho(a)
  await assertEcho(b)
})

test('close reasons longer than 123 bytes are truncated on a UTF-8 boundary', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  const long = 'é'.repeat(100) // 200 bytes; 61 × 'é' = 122 bytes is the longest whole-character prefix
  conn.close(4000, long)
  const { code, reason } = await waitClose(ws)
  assert.equal(code, 4000)
  assert.ok(Buffer.byteLength(reason) <= 123, `reason is ${Buffer.byteLength(reason)} bytes`)
  assert.equal(reason, 'é'.repeat(61))
})

test('large outbound messages (16-bit and 64-bit frame lengths) arrive intact', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  for (const size of [125, 126, 65535, 65536, 70 * 1024, 512 * 1024]) {
    const text = 'ab'.repeat(size / 2) + (size % 2 ? 'c' : '')
    conn.publish('big', text)
    const msg = await nextMessage(ws, 5000)
    assert.equal(msg.data.length, size)
    assert.equal(msg.data, text)
  }
})

test('workerThreads: 1 runs the whole server on one Rust thread', async (t) => {
  const h = await startServer({ workerThreads: 1 })
  t.after(() => h.close())
  const [a, connA] = await h.client()
  const [b, connB] = await h.client()
  connA.join('r')
  connB.join('r')
  h.server.publishToRoom('r', 'x', 1)
  assert.deepEqual(await nextMessage(a), { event: 'x', data: 1 })
  assert.deepEqual(await nextMessage(b), { event: 'x', data: 1 })
  await assertEcho(a)
})

test('publishing from inside onClose, to the closing connection or to others, is safe', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [watcher, watcherConn] = await h.client({ name: 'watcher' })
  const [leaver, leaverConn] = await h.client({ name: 'leaver' })
  watcherConn.join('r')
  leaverConn.join('r')
  const errors = []
  leaverConn.onClose(() => {
    try {
      leaverConn.publish('bye', 'to myself')
      h.server.publishToRoom('r', 'left', leaverConn.id)
    } catch (e) {
      errors.push(e)
    }
  })
  leaver.close(1000)
  assert.deepEqual(await nextMessage(watcher), { event: 'left', data: leaverConn.id })
  assert.deepEqual(errors, [])
  await waitClose(leaver)
})
