// One cluster node as a process, for __test__/cluster-redis.test.mjs: a ferrosocket server with
// `cluster: { redis, prefix, nodeTimeoutMs }` and a small app, driven by its parent over IPC.
//
// Environment: FS_NODE_ID, FS_REDIS (redis URL), FS_PREFIX, FS_NODE_TIMEOUT_MS.
//
// The app, in the default namespace and in namespace `game`:
// - `authenticate` sets the user id from `?user=NAME` (no `user`: no user id);
// - on open the client gets `hello { id, node, userId }` (so the test knows its connection id);
// - client events `join {room}`, `leave {room}`, `user {userId | null}` change the connection and are
//   answered `ack {op, ...}` once done (done locally; Redis is written asynchronously).
//
// Parent → node (IPC `{ cmd, reqId, ... }`, answered `{ reqId, ok, result | error }`):
// - `publish { kind, ... }`: kind `broadcast {event, data, namespace?}`, `room {room, event, data, namespace?}`,
//   `user {userId, event, data, namespace?}`, `audience {audience, event, data}`; with `count: n` it
//   publishes n times in one synchronous loop, `data` becoming `{ ...data, seq: i }`. Returns what
//   each call returned (a number, or an array of them with `count`).
// - `presence { method, args }`: `await server.presence[method](...args)`.
// - `sync { timeoutMs? }`: `await server.presence.sync(timeoutMs)`.
// - `closeConnections { audience, code, reason }`, `stats` (a copy of server.stats).
// - `shutdown`: `await server.shutdown()`, answer, exit.
// Node → parent, unprompted: `{ type: 'ready', port, nodeId }`, `{ type: 'closed', id, code, reason }`,
// `{ type: 'error', message }` (onError).
import { createServer } from '../../index.js'

const nodeId = process.env.FS_NODE_ID
const nodeTimeoutMs = Number(process.env.FS_NODE_TIMEOUT_MS)

function tell(message) {
  if (process.connected) process.send(message)
}

// The parent owns this process: if it goes away (test runner killed), do not linger.
process.on('disconnect', () => process.exit(0))

const server = createServer({
  host: '127.0.0.1',
  port: 0,
  nodeId,
  namespaces: { game: null },
  cluster: { redis: process.env.FS_REDIS, prefix: process.env.FS_PREFIX, nodeTimeoutMs },
  authenticate: (req) => (req.query.user ? { userId: req.query.user } : true),
  onError: (error) => {
    console.error(`[node ${nodeId}] onError:`, error)
    tell({ type: 'error', message: String(error?.message ?? error) })
  },
})

function app(conn) {
  conn.publish('hello', { id: conn.id, node: nodeId, userId: conn.userId ?? null })
  conn.onClose((code, reason) => tell({ type: 'closed', id: conn.id, code, reason }))
}
server.onConnection(app)
server.onConnection('game', app)

for (const ns of [undefined, 'game']) {
  const on = (event, handler) => (ns === undefined ? server.onMessage(event, handler) : server.onMessage(ns, event, handler))
  on('join', (data, { conn }) => {
    conn.join(data.room)
    conn.publish('ack', { op: 'join', room: data.room })
  })
  on('leave', (data, { conn }) => {
    conn.leave(data.room)
    conn.publish('ack', { op: 'leave', room: data.room })
  })
  on('user', (data, { conn }) => {
    if (data.userId === null) conn.clearUserId()
    else conn.setUserId(data.userId)
    conn.publish('ack', { op: 'user', userId: data.userId })
  })
}

function publishOnce(m, data) {
  switch (m.kind) {
    case 'broadcast':
      return server.broadcast(m.event, data, m.namespace)
    case 'room':
      return server.publishToRoom(m.room, m.event, data, m.namespace)
    case 'user':
      return server.publishToUser(m.userId, m.event, data, m.namespace)
    case 'audience':
      return server.publishToAudience(m.audience, m.event, data)
    default:
      throw new Error(`unknown publish kind ${m.kind}`)
  }
}

const commands = {
  publish(m) {
    if (m.count === undefined) return publishOnce(m, m.data)
    const reached = []
    for (let seq = 0; seq < m.count; seq++) reached.push(publishOnce(m, { ...m.data, seq }))
    return reached
  },
  presence(m) {
    return server.presence[m.method](...(m.args ?? []))
  },
  async sync(m) {
    await (m.timeoutMs === undefined ? server.presence.sync() : server.presence.sync(m.timeoutMs))
    return true
  },
  closeConnections(m) {
    return server.closeConnections(m.audience, m.code, m.reason)
  },
  stats() {
    return { ...server.stats }
  },
  async shutdown(m) {
    await server.shutdown(1001, 'node shutting down', { timeoutMs: m.timeoutMs ?? 2000 })
    return true
  },
}

process.on('message', async (m) => {
  let reply
  try {
    const command = commands[m.cmd]
    if (!command) throw new Error(`unknown command ${m.cmd}`)
    reply = { reqId: m.reqId, ok: true, result: await command(m) }
  } catch (e) {
    reply = { reqId: m.reqId, ok: false, error: String(e?.message ?? e) }
  }
  if (m.cmd === 'shutdown' && reply.ok) {
    process.send(reply, () => process.exit(0))
    return
  }
  tell(reply)
})

await server.listen()
tell({ type: 'ready', port: server.port, nodeId })
