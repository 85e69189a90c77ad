// Several nodes through a bus the application provides (cluster.bus): two servers in this process
// joined by an in-memory bus. Every publish reaches every matching connection on both nodes exactly
// once, `except` names connections on either node, and a failing bus never breaks local delivery.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, nextMessage, expectNoMessage, deferred, withTimeout } from './helpers.mjs'
import { createServer } from '../index.js'

/** An in-memory bus: every message goes to every subscriber (the sender ignores its own copy). */
function memoryBus() {
  const handlers = new Set()
  const sent = []
  return {
    sent,
    node() {
      let shut = false
      return {
        publish(message) {
          sent.push(message)
          // Like a network bus: delivered later, not inside the publishing call, and as a copy.
          const copy = JSON.parse(JSON.stringify(message))
          queueMicrotask(() => handlers.forEach((h) => h(copy)))
        },
        subscribe(handler) {
          handlers.add(handler)
          return () => handlers.delete(handler)
        },
        shutdown() {
          shut = true
        },
        get shut() {
          return shut
        },
      }
    },
  }
}

async function twoNodes(t, bus = memoryBus()) {
  const busA = bus.node()
  const busB = bus.node()
  const a = await startServer({ nodeId: 'a', cluster: { bus: busA } }, { onConnection() {} })
  const b = await startServer({ nodeId: 'b', cluster: { bus: busB } }, { onConnection() {} })
  t.after(() => Promise.all([a.close(), b.close()]))
  return { a, b, bus, busA, busB }
}

test('broadcast, room, user and audience publishes reach every matching connection on both nodes exactly once', async (t) => {
  const { a, b, bus } = await twoNodes(t)
  const [wsA1, a1] = await a.client()
  const [wsA2, a2] = await a.client()
  const [wsB1, b1] = await b.client()
  const [wsB2, b2] = await b.client()
  a1.join('r')
  b1.join('r')
  a2.setUserId('ada')
  b2.setUserId('ada')
  assert.equal(a.server.broadcast('all', 1), 2, 'the count is this node\'s')
  for (const ws of [wsA1, wsA2, wsB1, wsB2]) assert.deepEqual(await nextMessage(ws), { event: 'all', data: 1 })
  b.server.publishToRoom('r', 'room', 2)
  for (const ws of [wsA1, wsB1]) assert.deepEqual(await nextMessage(ws), { event: 'room', data: 2 })
  a.server.publishToUser('ada', 'user', 3)
  for (const ws of [wsA2, wsB2]) assert.deepEqual(await nextMessage(ws), { event: 'user', data: 3 })
  // except and connections name connections of either node.
  a.server.publishToAudience({ rooms: ['r'], users: ['ada'], except: [b1.id, a2.id] }, 'aud', 4)
  for (const ws of [wsA1, wsB2]) assert.deepEqual(await nextMessage(ws), { event: 'aud', data: 4 })
  b.server.publishToAudience({ connections: [a1.id, b2.id] }, 'direct', 5)
  for (const ws of [wsA1, wsB2]) assert.deepEqual(await nextMessage(ws), { event: 'direct', data: 5 })
  for (const ws of [wsA1, wsA2, wsB1, wsB2]) await expectNoMessage(ws, 100) // nothing twice, nothing extra
  assert.equal(bus.sent.length, 5)
  assert.deepEqual(bus.sent[1], { origin: 'b', namespace: '/', audience: { rooms: ['r'] }, payload: '{"event":"room","data":2}' })
  assert.equal(a.server.stats.busReceived, 2)
  assert.equal(b.server.stats.busReceived, 3)
})

test('a bus that throws or rejects costs only the other nodes: local delivery works, the error is counted and reported', async (t) => {
  const errors = []
  const twoErrors = deferred()
  const failing = {
    calls: 0,
    publish() {
      this.calls++
      if (this.calls === 1) throw new Error('bus down')
      return Promise.reject(new Error('bus still down'))
    },
    subscribe() {},
  }
  const h = await startServer({ nodeId: 'solo', cluster: { bus: failing }, onError: (e) => errors.push(e.message) === 2 && twoErrors.resolve() }, { onConnection() {} })
  t.after(() => h.close())
  const [ws] = await h.client()
  assert.equal(h.server.broadcast('x', 1), 1)
  assert.deepEqual(await nextMessage(ws), { event: 'x', data: 1 })
  assert.equal(h.server.broadcast('x', 2), 1)
  assert.deepEqual(await nextMessage(ws), { event: 'x', data: 2 })
  await withTimeout(twoErrors.promise, 2000, 'both bus errors reported') // the rejection arrives on a later turn
  assert.deepEqual(errors, ['bus down', 'bus still down'])
  assert.equal(h.server.stats.busPublishErrors, 2)
})

test('cluster options are checked; shutdown closes the bus', async () => {
  assert.throws(() => createServer({ cluster: { bus: {} } }), /cluster.bus must have publish\(message\) and subscribe\(handler\)/)
  const bus = memoryBus().node()
  assert.throws(() => createServer({ cluster: { redis: 'http://127.0.0.1' } }), /cluster.redis must be a redis:\/\/ URL/)
  assert.throws(() => createServer({ cluster: { redis: { url: 42 } } }), /cluster.redis must be a redis:\/\/ URL/)
  assert.throws(() => createServer({ cluster: { redis: 'rediss://127.0.0.1' } }), /TLS \(rediss:\/\/\) is not supported yet/)
  assert.throws(() => createServer({ cluster: { redis: 'redis://127.0.0.1', bus } }), /either redis or bus, not both/)
  assert.throws(() => createServer({ cluster: { redis: 'redis://127.0.0.1', nodeTimeoutMs: 100 } }), /nodeTimeoutMs must be at least 300/)
  assert.throws(() => createServer({ cluster: { redis: 'redis://127.0.0.1', prefix: '' } }), /cluster.prefix must be a non-empty string/)
  assert.throws(() => createServer({ cluster: { redis: 'redis://127.0.0.1', sharded: 'yes' } }), /cluster.sharded must be/)
  const server = createServer({ port: 0, cluster: { bus } })
  await server.listen()
  await server.shutdown()
  assert.equal(bus.shut, true)
})
