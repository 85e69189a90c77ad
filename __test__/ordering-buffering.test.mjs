// Behaviour 4: per-connection ordering (one message at a time, async handlers awaited) and buffering
// of messages whose event has no handler yet (default 100 per connection, oldest dropped).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  startServer,
  send,
  nextMessage,
  expectNoMessage,
  assertEcho,
  echo,
  deferred,
  condition,
  withTimeout,
} from './helpers.mjs'

const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i)

test('1,000 messages through an async handler run one at a time, in arrival order', async (t) => {
  const order = []
  let active = 0
  let maxActive = 0
  const h = await startServer({}, {
    onConnection(conn) {
      conn.onMessage('seq', async (n) => {
        active++
        maxActive = Math.max(maxActive, active)
        // Vary how long each message takes so out-of-order dispatch would show.
        if (n % 3 === 0) await new Promise((r) => setImmediate(r))
        else if (n % 3 === 1) await Promise.resolve()
        if (n % 97 === 0) await new Promise((r) => setTimeout(r, 2))
        order.push(n)
        active--
      })
      conn.onMessage('done', () => conn.publish('done', { count: order.length }))
    },
  })
  t.after(() => h.close())
  const [ws] = await h.client()
  for (let i = 0; i < 1000; i++) send(ws, 'seq', i)
  send(ws, 'done', null)
  assert.deepEqual(await nextMessage(ws, 15_000), { event: 'done', data: { count: 1000 } })
  assert.equal(maxActive, 1, 'handlers of one connection never overlap')
  assert.deepEqual(order, range(0, 1000))
})

test('a slow handler delays only its own connection: different connections run concurrently', async (t) => {
  const bHandled = deferred()
  const h = await startServer({}, {
    onConnection(conn) {
      echo(conn)
      // A's handler only finishes once B's handler has run: this deadlocks if connections were serialised.
      conn.onMessage('wait-for-b', async () => {
        await bHandled.promise
        conn.publish('a-done', null)
      })
      conn.onMessage('b', () => {
        bHandled.resolve()
        conn.publish('b-done', null)
      })
    },
  })
  t.after(() => h.close())
  const [a] = await h.client({ name: 'A' })
  const [b] = await h.client({ name: 'B' })
  send(a, 'wait-for-b', null)
  send(a, 'echo', 'queued behind the slow handler')
  send(b, 'b', null)
  assert.deepEqual(await nextMessage(b, 3000), { event: 'b-done', data: null })
  assert.deepEqual(await nextMessage(a, 3000), { event: 'a-done', data: null })
  assert.deepEqual(await nextMessage(a, 3000), { event: 'echo', data: 'queued behind the slow handler' })
})

test('a handler’s publish order is the order the client receives', async (t) => {
  const h = await startServer({}, {
    onConnection(conn) {
      conn.onMessage('burst', async (n) => {
        for (let i = 0; i < n; i++) {
          conn.publish('item', i)
          if (i % 50 === 0) await new Promise((r) => setImmediate(r))
        }
      })
    },
  })
  t.after(() => h.close())
  const [ws] = await h.client()
  send(ws, 'burst', 500)
  for (let i = 0; i < 500; i++) assert.deepEqual(await nextMessage(ws), { event: 'item', data: i })
})

test('messages for an event with no handler yet are buffered and delivered in order on registration', async (t) => {
  const h = await startServer({}, {
    onConnection(conn) {
      echo(conn)
      // Registering 'late' happens in another handler, after some 'late' messages arrived.
      conn.onMessage('register', () => {
        conn.onMessage('late', (n) => conn.publish('late', n))
      })
    },
  })
  t.after(() => h.close())
  const [ws] = await h.client()
  for (let i = 0; i < 10; i++) send(ws, 'late', i)
  send(ws, 'echo', 'not blocked by buffered messages')
  send(ws, 'register', null)
  for (let i = 10; i < 15; i++) send(ws, 'late', i)
  assert.deepEqual(await nextMessage(ws), { event: 'echo', data: 'not blocked by buffered messages' })
  const got = []
  for (let i = 0; i < 15; i++) got.push((await nextMessage(ws)).data)
  assert.deepEqual(got, range(0, 15))
})

async function bufferedOverflow(t, options, sent, kept) {
  const h = await startServer(options, {
    onConnection(conn) {
      conn.onMessage('sync', () => conn.publish('synced', null))
    },
  })
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  for (let i = 0; i < sent; i++) send(ws, 'late', i)
  send(ws, 'sync', null)
  // 'sync' is dispatched after every earlier 'late' message has arrived (and been buffered).
  assert.deepEqual(await nextMessage(ws, 5000), { event: 'synced', data: null })
  const got = []
  let notify = () => {}
  conn.onMessage('late', (n) => {
    got.push(n)
    notify()
  })
  const enough = condition(() => got.length >= kept, 5000, `${kept} buffered 'late' messages`)
  notify = enough.signal
  await enough.done
  // Positive control first-in-line: a fresh 'late' after the buffered ones comes next, nothing else.
  send(ws, 'late', 'fresh')
  const last = condition(() => got.length >= kept + 1, 3000, "the fresh 'late' message")
  notify = last.signal
  await last.done
  assert.deepEqual(got, [...range(sent - kept, sent), 'fresh'], `only the newest ${kept} were kept, in order`)
  await expectNoMessage(ws, 50)
}

test('the buffer keeps the newest 100 by default: 150 arrive, 50..149 are delivered', (t) =>
  bufferedOverflow(t, {}, 150, 100))

test('maxBufferedMessages sets the buffer size (10 of 25 kept)', (t) =>
  bufferedOverflow(t, { maxBufferedMessages: 10 }, 25, 10))

test('buffered messages for one event do not hold back handled events of the same connection', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  for (let i = 0; i < 50; i++) send(ws, 'unhandled', i)
  await assertEcho(ws, 'handled right away')
  const got = []
  const done = condition(() => got.length === 50, 3000, 'the 50 buffered messages')
  conn.onMessage('unhandled', (n) => {
    got.push(n)
    done.signal()
  })
  await done.done
  assert.deepEqual(got, range(0, 50))
  await withTimeout(assertEcho(ws), 2000, 'echo after delivery')
})

test('messages of many connections arriving interleaved keep each connection’s order', async (t) => {
  const CONNS = 10
  const PER = 300
  const seen = new Map()
  let active = 0
  let overlapped = 0
  const h = await startServer({}, {
    onConnection(conn) {
      let mine = 0
      seen.set(conn.id, [])
      conn.onMessage('seq', async (n) => {
        if (++mine > 1) overlapped++
        active++
        if (n % 7 === 0) await new Promise((r) => setImmediate(r))
        seen.get(conn.id).push(n)
        active--
        mine--
      })
      conn.onMessage('done', () => conn.publish('done', seen.get(conn.id).length))
    },
  })
  t.after(() => h.close())
  const clients = []
  for (let i = 0; i < CONNS; i++) clients.push(await h.client({ name: `c${i}` }))
  for (let n = 0; n < PER; n++) for (const [ws] of clients) send(ws, 'seq', n)
  for (const [ws] of clients) send(ws, 'done', null)
  for (const [ws] of clients) assert.deepEqual(await nextMessage(ws, 15_000), { event: 'done', data: PER })
  assert.equal(overlapped, 0, 'handlers of one connection never overlap')
  for (const [, conn] of clients) assert.deepEqual(seen.get(conn.id), range(0, PER))
})

test('a handler\'s sends, room publishes, raw frames and close reach the client in the order it made them', async (t) => {
  // Within a batch, conn.publish is collected and handed to Rust at the end (ts/outbox.ts); every
  // other write or close must first hand over what was collected.
  // While a batch is corked every frame queues, so the per-connection queue bound is raised.
  const h = await startServer({ backpressure: { maxQueuedMessages: 10_000 } }, {
    onConnection(conn) {
      conn.join('room')
      conn.onMessage('go', () => {
        conn.publish('n', 1)
        h.server.publishToRoom('room', 'n', 2)
        conn.publish('n', 3)
        h.server.broadcast('n', 4)
        conn.publish('n', 5)
        h.server.publishToAudience({ connections: [conn.id] }, 'n', 6)
        for (let i = 7; i < 5007; i++) conn.publish('n', i) // past the outbox's bound of 4,096
        conn.close(4001, 'after all of them')
      })
    },
  })
  t.after(() => h.close())
  const [ws] = await h.client()
  const got = []
  ws.on('message', (m) => got.push(JSON.parse(String(m)).data))
  const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve([code, String(reason)])))
  send(ws, 'go', null)
  assert.deepEqual(await withTimeout(closed, 5000, 'the close after the sends'), [4001, 'after all of them'])
  assert.deepEqual(got, range(1, 5007))
})
