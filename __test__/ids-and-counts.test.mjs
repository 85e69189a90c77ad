// Connection ids are unique across nodes (`${nodeId}:${n}`), and publishing says how far it got:
// publish* return how many connections of this process they reached, conn.publish whether it queued.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import os from 'node:os'
import { startServer, nextMessage, expectNoMessage } from './helpers.mjs'
import { createServer } from '../index.js'

test('nodeId defaults to hostname-pid and prefixes every connection id; getConnection takes those ids', async (t) => {
  const h = await startServer({}, { onConnection() {} })
  t.after(() => h.close())
  assert.equal(h.server.nodeId, `${os.hostname()}-${process.pid}`)
  const [, a] = await h.client()
  const [, b] = await h.client()
  assert.match(a.id, new RegExp(`^${h.server.nodeId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+$`))
  assert.notEqual(a.id, b.id)
  assert.equal(h.server.getConnection(a.id), a)
  assert.equal(h.server.getConnection(`other-node:${a.id.split(':').pop()}`), undefined, 'same number, other node')
  assert.equal(h.server.getConnection(a.id.split(':').pop()), undefined, 'a bare number is not an id')
})

test('the nodeId option names the node; it must be a non-empty string', async (t) => {
  const h = await startServer({ nodeId: 'api-1' }, { onConnection() {} })
  t.after(() => h.close())
  const [, conn] = await h.client()
  assert.equal(h.server.nodeId, 'api-1')
  assert.match(conn.id, /^api-1:\d+$/)
  assert.throws(() => createServer({ nodeId: '' }), /nodeId must be a non-empty string/)
  assert.throws(() => createServer({ nodeId: 7 }), /nodeId must be a non-empty string/)
})

test('publish* return how many local connections they reached; audience ids of other nodes reach nobody here', async (t) => {
  const h = await startServer({ nodeId: 'n1' }, { onConnection() {} })
  t.after(() => h.close())
  const clients = []
  for (let i = 0; i < 3; i++) clients.push(await h.client())
  const [[wsA, a], [wsB, b], [wsC, c]] = clients
  a.join('r')
  b.join('r')
  c.setUserId('u')
  assert.equal(h.server.broadcast('all', 1), 3)
  assert.equal(h.server.publishToRoom('r', 'room', 2), 2)
  assert.equal(h.server.publishToRoom('empty', 'room', 2), 0)
  assert.equal(h.server.publishToUser('u', 'user', 3), 1)
  const remote = `n2:${a.id.split(':')[1]}` // the same number on another node
  assert.equal(h.server.publishToAudience({ rooms: ['r'], except: [remote] }, 'aud', 4), 2, 'an except of another node excludes nobody here')
  assert.equal(h.server.publishToAudience({ connections: [remote, c.id] }, 'aud', 5), 1)
  for (const [ws, expected] of [[wsA, ['all', 'room', 'aud']], [wsB, ['all', 'room', 'aud']], [wsC, ['all', 'user', 'aud']]]) {
    for (const event of expected) assert.equal((await nextMessage(ws)).event, event)
  }
  await expectNoMessage(wsA, 100)
})

test('conn.publish returns true when queued and false once the connection is closed', async (t) => {
  const h = await startServer({}, { onConnection() {} })
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  assert.equal(conn.publish('hi', 1), true)
  assert.deepEqual(await nextMessage(ws), { event: 'hi', data: 1 })
  ws.close(1000)
  await conn.waitForClose()
  assert.equal(conn.publish('hi', 2), false)
})
