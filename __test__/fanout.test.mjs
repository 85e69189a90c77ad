// Behaviour 5: fan-out — rooms, users on several connections, audiences (each connection at most
// once, `except` excluded), broadcast per namespace, one serialisation per publish.
//
// "Does not receive" is always shown with a positive control: the recipients got the message, the
// non-recipient's bounded wait expires, and then a later broadcast is first in line for it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, nextMessage, expectNoMessage, assertEcho } from './helpers.mjs'

const QUIET_MS = 300

/** `ws` got nothing so far, and the next broadcast `marker` is the first thing it receives. */
async function expectNothingBefore(h, wsList, namespace) {
  await Promise.all(wsList.map((ws) => expectNoMessage(ws, QUIET_MS)))
  const marker = { marker: Math.random() }
  if (namespace) h.server.broadcast('marker', marker, namespace)
  else h.server.broadcast('marker', marker)
  for (const ws of wsList) assert.deepEqual(await nextMessage(ws), { event: 'marker', data: marker })
}

test('publishToRoom reaches the members of the room and no one else', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [a, connA] = await h.client({ name: 'A' })
  const [b, connB] = await h.client({ name: 'B' })
  const [c, connC] = await h.client({ name: 'C' })
  connA.join('room-1')
  connB.join('room-1')
  connC.join('room-2')
  h.server.publishToRoom('room-1', 'chat', { text: 'for room 1' })
  assert.deepEqual(await nextMessage(a), { event: 'chat', data: { text: 'for room 1' } })
  assert.deepEqual(await nextMessage(b), { event: 'chat', data: { text: 'for room 1' } })
  await expectNothingBefore(h, [c])
  // A marker reached A and B too; drain it so the next assertions start clean.
  await nextMessage(a)
  await nextMessage(b)

  // After B leaves, only A gets room-1 traffic.
  connB.leave('room-1')
  h.server.publishToRoom('room-1', 'chat', { text: 'after leave' })
  assert.deepEqual(await nextMessage(a), { event: 'chat', data: { text: 'after leave' } })
  await expectNothingBefore(h, [b, c])
  await nextMessage(a)

  // A room nobody is in, and a room whose only member closed, are silent no-ops.
  h.server.publishToRoom('empty-room', 'chat', { text: 'nobody' })
  connC.close()
  await connC.waitForClose()
  h.server.publishToRoom('room-2', 'chat', { text: 'closed member' })
  await expectNothingBefore(h, [a, b])
})

test('a closed connection leaves its rooms', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [a, connA] = await h.client({ name: 'A' })
  const [, connB] = await h.client({ name: 'B' })
  connA.join('r')
  connB.join('r')
  connB.close()
  await connB.waitForClose()
  h.server.publishToRoom('r', 'chat', 1)
  assert.deepEqual(await nextMessage(a), { event: 'chat', data: 1 })
  await assertEcho(a)
})

test('publishToUser reaches every connection of that user, and only them', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const [tab1, c1] = await h.client({ name: 'u1 tab 1' })
  const [tab2, c2] = await h.client({ name: 'u1 tab 2' })
  const [other, c3] = await h.client({ name: 'u2' })
  const [anon] = await h.client({ name: 'anonymous' })
  c1.setUserId('u1')
  c2.setUserId('u1')
  c3.setUserId('u2')
  h.server.publishToUser('u1', 'dm', { text: 'to u1' })
  assert.deepEqual(await nextMessage(tab1), { event: 'dm', data: { text: 'to u1' } })
  assert.deepEqual(await nextMessage(tab2), { event: 'dm', data: { text: 'to u1' } })
  await expectNothingBefore(h, [other, anon])
  await nextMessage(tab1)
  await nextMessage(tab2)

  // clearUserId and re-assigning move the connection out of the user.
  c2.clearUserId()
  c3.setUserId('u1')
  h.server.publishToUser('u1', 'dm', { text: 'again' })
  assert.deepEqual(await nextMessage(tab1), { event: 'dm', data: { text: 'again' } })
  assert.deepEqual(await nextMessage(other), { event: 'dm', data: { text: 'again' } })
  await expectNothingBefore(h, [tab2, anon])
})

test('publishToAudience: rooms ∪ users ∪ connections − except, each connection exactly once', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const names = ['A', 'B', 'C', 'D', 'E', 'F', 'G']
  const ws = {}
  const conn = {}
  for (const n of names) [ws[n], conn[n]] = await h.client({ name: n })
  conn.A.join('r1').join('r2') // in both rooms
  conn.B.join('r2')
  conn.C.join('r1').setUserId('u1') // by room and by user
  conn.D.join('r1') // by room and by id
  conn.E.join('r1').join('r2') // excluded
  conn.F.setUserId('u1').join('elsewhere') // by user only
  // G: in nothing
  h.server.publishToAudience(
    { rooms: ['r1', 'r2'], users: ['u1'], connections: [conn.D.id, conn.B.id], except: [conn.E.id] },
    'news',
    { n: 1 },
  )
  const recipients = ['A', 'B', 'C', 'D', 'F']
  for (const n of recipients) assert.deepEqual(await nextMessage(ws[n]), { event: 'news', data: { n: 1 } }, n)
  // Exactly once: after the marker broadcast, each recipient's next frame is the marker, not a duplicate.
  await expectNothingBefore(h, [ws.E, ws.G])
  for (const n of recipients) assert.deepEqual((await nextMessage(ws[n])).event, 'marker', `${n} got a duplicate`)

  // connections only, and iterables other than arrays.
  h.server.publishToAudience({ connections: new Set([conn.G.id]) }, 'news', { n: 2 })
  assert.deepEqual(await nextMessage(ws.G), { event: 'news', data: { n: 2 } })
  // except wins over every way of being included.
  h.server.publishToAudience({ users: ['u1'], except: [conn.C.id, conn.F.id] }, 'news', { n: 3 })
  await expectNothingBefore(h, [ws.C, ws.F])
})

test('broadcast reaches every connection of one namespace, and only that namespace', async (t) => {
  const h = await startServer({ namespaces: { game: null, chat: null } })
  t.after(() => h.close())
  const [d1] = await h.client({ name: 'default 1' })
  const [d2] = await h.client({ name: 'default 2' })
  const [g1, gc1] = await h.client({ ns: 'game', name: 'game 1' })
  const [g2] = await h.client({ ns: 'game', name: 'game 2' })
  const [c1] = await h.client({ ns: 'chat', name: 'chat 1' })

  h.server.broadcast('hello', 'default')
  assert.deepEqual(await nextMessage(d1), { event: 'hello', data: 'default' })
  assert.deepEqual(await nextMessage(d2), { event: 'hello', data: 'default' })
  await expectNothingBefore(h, [g1, g2], 'game')
  await expectNothingBefore(h, [c1], 'chat')

  h.server.broadcast('hello', 'game', 'game')
  assert.deepEqual(await nextMessage(g1), { event: 'hello', data: 'game' })
  assert.deepEqual(await nextMessage(g2), { event: 'hello', data: 'game' })
  await expectNothingBefore(h, [d1, d2])
  await expectNothingBefore(h, [c1], 'chat')

  // Rooms, users and audiences are per namespace too.
  gc1.join('lobby').setUserId('u1')
  const [dl, dc] = await h.client({ name: 'default in lobby' })
  dc.join('lobby').setUserId('u1')
  h.server.publishToRoom('lobby', 'room', 'game lobby', 'game')
  assert.deepEqual(await nextMessage(g1), { event: 'room', data: 'game lobby' })
  h.server.publishToUser('u1', 'user', 'game u1', 'game')
  assert.deepEqual(await nextMessage(g1), { event: 'user', data: 'game u1' })
  h.server.publishToAudience({ namespace: 'game', rooms: ['lobby'] }, 'aud', 'game audience')
  assert.deepEqual(await nextMessage(g1), { event: 'aud', data: 'game audience' })
  await expectNothingBefore(h, [d1, d2, dl])
  await expectNothingBefore(h, [g2], 'game')
})

test('rooms and users of the default namespace do not leak into another namespace', async (t) => {
  const h = await startServer({ namespaces: { game: null } })
  t.after(() => h.close())
  const [d, dc] = await h.client({ name: 'default' })
  const [g, gc] = await h.client({ ns: 'game', name: 'game' })
  dc.join('lobby').setUserId('u1')
  gc.join('lobby').setUserId('u1')
  h.server.publishToRoom('lobby', 'room', 1)
  h.server.publishToUser('u1', 'user', 2)
  h.server.publishToAudience({ rooms: ['lobby'], users: ['u1'] }, 'aud', 3)
  assert.deepEqual(await nextMessage(d), { event: 'room', data: 1 })
  assert.deepEqual(await nextMessage(d), { event: 'user', data: 2 })
  assert.deepEqual(await nextMessage(d), { event: 'aud', data: 3 })
  await expectNothingBefore(h, [g], 'game')
})

test('a publish serialises its payload once, whatever the number of recipients', async (t) => {
  const h = await startServer()
  t.after(() => h.close())
  const clients = []
  for (let i = 0; i < 5; i++) {
    const [ws, conn] = await h.client()
    conn.join('r').setUserId('u')
    clients.push(ws)
  }
  let calls = 0
  const data = {
    toJSON() {
      calls++
      return { v: 1 }
    },
  }
  h.server.publishToRoom('r', 'once', data)
  h.server.broadcast('once', data)
  h.server.publishToUser('u', 'once', data)
  h.server.publishToAudience({ rooms: ['r'], users: ['u'] }, 'once', data)
  for (const ws of clients) {
    for (let i = 0; i < 4; i++) assert.deepEqual(await nextMessage(ws), { event: 'once', data: { v: 1 } })
  }
  assert.equal(calls, 4, 'toJSON ran once per publish, not once per recipient')
})

test('a room of 200 connections receives 50 publishes each, in order', async (t) => {
  const N = 200
  const M = 50
  const h = await startServer()
  t.after(() => h.close())
  const clients = []
  for (let i = 0; i < N; i++) {
    const [ws, conn] = await h.client({ name: `member ${i}` })
    conn.join('big')
    clients.push(ws)
  }
  for (let i = 0; i < M; i++) h.server.publishToRoom('big', 'n', i)
  for (const ws of clients) {
    const got = []
    for (let i = 0; i < M; i++) got.push((await nextMessage(ws, 5000)).data)
    assert.deepEqual(got, Array.from({ length: M }, (_, i) => i))
  }
})
