// server.presence without a cluster: who is connected, answered from this process (room members,
// a user's connections, one connection, counts, stats), and server.closeConnections.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, waitClose } from './helpers.mjs'

const entry = (conn, rooms) => ({ connectionId: conn.id, nodeId: 'n1', namespace: conn.namespace, userId: conn.userId ?? null, rooms })
const byId = (a, b) => (a.connectionId < b.connectionId ? -1 : 1)

test('presence answers room members, user connections, one connection, counts and stats from this process', async (t) => {
  const h = await startServer({ nodeId: 'n1', namespaces: { game: null } }, { onConnection() {} })
  t.after(() => h.close())
  const [, a] = await h.client()
  const [, b] = await h.client()
  const [, c] = await h.client({ ns: 'game' })
  a.join('lobby')
  a.join('vip')
  b.join('lobby')
  a.setUserId('ada')
  c.setUserId('ada')
  c.join('lobby')
  const p = h.server.presence
  assert.deepEqual(await p.getRoomMembers('lobby'), [entry(a, ['lobby', 'vip']), entry(b, ['lobby'])].sort(byId))
  assert.deepEqual(await p.getRoomMembers('lobby', 'game'), [entry(c, ['lobby'])])
  assert.deepEqual(await p.getRoomMembers('nobody'), [])
  assert.deepEqual(await p.getUserConnections('ada'), [entry(a, ['lobby', 'vip']), entry(c, ['lobby'])].sort(byId), 'every namespace')
  assert.deepEqual(await p.getUserConnections('ada', '/'), [entry(a, ['lobby', 'vip'])])
  assert.deepEqual(await p.getConnection(b.id), entry(b, ['lobby']))
  assert.equal(await p.getConnection('n2:1'), null, 'another node\'s id')
  assert.equal(await p.getConnectionCount(), 3)
  assert.equal(await p.getConnectionCount('game'), 1)
  assert.deepEqual(await p.getStats(), { nodes: 1, connections: 3, rooms: 3, users: 2 })
  // Changes show at once; a closed connection is gone.
  b.leave('lobby')
  a.clearUserId()
  assert.deepEqual((await p.getRoomMembers('lobby')).map((e) => e.connectionId), [a.id])
  assert.deepEqual((await p.getUserConnections('ada')).map((e) => e.connectionId), [c.id])
  c.close()
  await c.waitForClose()
  assert.equal(await p.getConnectionCount('game'), 0)
  assert.equal(await p.getConnection(c.id), null)
  await assert.rejects(p.getRoomMembers('lobby', 'nope'), /Unknown namespace "nope"/)
})

test('closeConnections kicks an audience with the given code, and nobody else', async (t) => {
  const h = await startServer({}, { onConnection() {} })
  t.after(() => h.close())
  const [wsA, a] = await h.client()
  const [wsB, b] = await h.client()
  const [wsC, c] = await h.client()
  a.setUserId('mallory')
  b.setUserId('mallory')
  c.setUserId('alice')
  assert.equal(await h.server.closeConnections({ users: ['mallory'], except: [b.id] }, 4001, 'banned'), 1)
  assert.deepEqual(await waitClose(wsA), { code: 4001, reason: 'banned' })
  assert.equal(await h.server.closeConnections({ users: ['mallory'] }, 4001, 'banned'), 1)
  assert.deepEqual(await waitClose(wsB), { code: 4001, reason: 'banned' })
  assert.equal(c.isOpen, true)
  assert.equal(await h.server.closeConnections({ rooms: ['none'] }), 0)
  await assert.rejects(h.server.closeConnections({ users: ['alice'] }, 1006), /1006/)
  assert.equal(wsC.readyState, 1)
})
