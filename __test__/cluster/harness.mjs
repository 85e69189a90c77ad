// Parent side of the Redis cluster tests: a redis-server plus N node processes (cluster/node.mjs),
// each driven over IPC, and `ws` clients connected to them. Everything started here is remembered,
// so `killEverything()` (in the test file's `after`) stops it even when a test failed half-way.
import { fork } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { AsyncQueue, connect, deferred, nextMessage, send, withTimeout } from '../helpers.mjs'
import { killAllRedis, startRedis } from './redis.mjs'

const NODE_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node.mjs')
const liveChildren = new Set()
const liveClients = new Set()
let prefixes = 0

/**
 * Resolves with the first truthy value of `probe()` (sync or async), re-checked every `everyMs`;
 * rejects after `ms` with `label` and the last value or error seen. For state that converges
 * (presence after a node died, stats after Redis came back), never as a sleep.
 */
export async function waitUntil(probe, ms, label, everyMs = 25) {
  const deadline = Date.now() + ms
  let last
  for (;;) {
    try {
      last = await probe()
      if (last) return last
    } catch (e) {
      last = e
    }
    if (Date.now() >= deadline) {
      const seen = last instanceof Error ? `error: ${last.message}` : JSON.stringify(last)
      throw new Error(`timed out after ${ms} ms waiting for ${label} (last: ${seen})`)
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** One node process. */
export class ClusterNode {
  constructor(nodeId, { redisUrl, prefix, nodeTimeoutMs }) {
    this.nodeId = nodeId
    this.port = undefined
    this.events = new AsyncQueue(`node ${nodeId} events`)
    this.closedIds = new Map() // connection id → { code, reason }, from the node's onClose
    this.closeWaiters = new Map()
    this.errors = []
    this.exit = null
    this.replies = new Map()
    this.nextReq = 1
    this.child = fork(NODE_SCRIPT, [], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: {
        ...process.env,
        FS_NODE_ID: nodeId,
        FS_REDIS: redisUrl,
        FS_PREFIX: prefix,
        FS_NODE_TIMEOUT_MS: String(nodeTimeoutMs),
      },
    })
    liveChildren.add(this.child)
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        liveChildren.delete(this.child)
        this.exit = { code, signal }
        const why = `node ${nodeId} exited (code ${code}, signal ${signal})`
        this.events.end(why)
        for (const d of this.replies.values()) d.reject(new Error(why))
        this.replies.clear()
        resolve(this.exit)
      })
    })
    this.child.on('message', (m) => {
      if (m && m.reqId !== undefined) {
        const d = this.replies.get(m.reqId)
        this.replies.delete(m.reqId)
        if (d) m.ok ? d.resolve(m.result) : d.reject(new Error(`node ${nodeId}: ${m.error}`))
        return
      }
      if (m?.type === 'closed') {
        this.closedIds.set(m.id, { code: m.code, reason: m.reason })
        this.closeWaiters.get(m.id)?.resolve({ code: m.code, reason: m.reason })
        return
      }
      if (m?.type === 'error') this.errors.push(m.message)
      this.events.push(m)
    })
  }

  async ready(ms = 10_000) {
    for (;;) {
      const m = await this.events.next(ms)
      if (m.type === 'ready') {
        this.port = m.port
        return this
      }
    }
  }

  get alive() {
    return this.exit === null
  }

  url({ user, ns } = {}) {
    const p = ns ? `/ws/${ns}` : '/ws'
    return `ws://127.0.0.1:${this.port}${p}${user ? `?user=${encodeURIComponent(user)}` : ''}`
  }

  request(cmd, args = {}, ms = 8000) {
    if (!this.alive) return Promise.reject(new Error(`node ${this.nodeId} is not running (${JSON.stringify(this.exit)})`))
    const reqId = this.nextReq++
    const d = deferred()
    this.replies.set(reqId, d)
    this.child.send({ cmd, reqId, ...args })
    return withTimeout(d.promise, ms, `node ${this.nodeId}'s reply to ${cmd}`)
  }

  broadcast(event, data, namespace) {
    return this.request('publish', { kind: 'broadcast', event, data, namespace })
  }
  publishToRoom(room, event, data, namespace) {
    return this.request('publish', { kind: 'room', room, event, data, namespace })
  }
  publishToUser(userId, event, data, namespace) {
    return this.request('publish', { kind: 'user', userId, event, data, namespace })
  }
  publishToAudience(audience, event, data) {
    return this.request('publish', { kind: 'audience', audience, event, data })
  }
  /** `count` publishes of one kind in one synchronous loop on the node, data `{ ...data, seq }`. */
  publishMany(kind, args, count) {
    return this.request('publish', { kind, ...args, count })
  }
  presence(method, ...args) {
    return this.request('presence', { method, args })
  }
  sync(timeoutMs) {
    return this.request('sync', { timeoutMs })
  }
  stats() {
    return this.request('stats')
  }
  closeConnections(audience, code, reason) {
    return this.request('closeConnections', { audience, code, reason })
  }
  async shutdown() {
    const result = await this.request('shutdown', {}, 10_000)
    return result
  }

  /** Resolves `{ code, reason }` once this node's `onClose` fired for connection `id`. */
  closedOnNode(id, ms = 3000) {
    if (this.closedIds.has(id)) return Promise.resolve(this.closedIds.get(id))
    if (!this.closeWaiters.has(id)) this.closeWaiters.set(id, deferred())
    return withTimeout(this.closeWaiters.get(id).promise, ms, `onClose of ${id} on node ${this.nodeId}`)
  }

  kill9() {
    if (this.alive) process.kill(this.child.pid, 'SIGKILL')
    return withTimeout(this.exited, 5000, `exit of node ${this.nodeId} after SIGKILL`)
  }
}

/**
 * A redis-server and one node process per id in `nodeIds`, all ready. Registers cleanup on `t`.
 * `prefix` defaults to a fresh one per cluster.
 */
export async function startCluster(t, { nodeIds = ['n1', 'n2', 'n3'], nodeTimeoutMs = 1500, prefix } = {}) {
  const redis = await startRedis()
  const cluster = { redis, nodes: [] }
  t.after(() => stopCluster(cluster))
  const options = { redisUrl: redis.url, prefix: prefix ?? `fstest${process.pid}x${++prefixes}`, nodeTimeoutMs }
  cluster.nodes = nodeIds.map((id) => new ClusterNode(id, options))
  await Promise.all(cluster.nodes.map((n) => n.ready()))
  return cluster
}

async function stopCluster(cluster) {
  for (const ws of liveClients) ws.terminate()
  liveClients.clear()
  await Promise.all(cluster.nodes.map((n) => n.kill9().catch(() => {})))
  await cluster.redis.stop().catch(() => {})
}

/** Every node process and redis-server still running, and every client: gone. */
export async function killEverything() {
  for (const ws of liveClients) ws.terminate()
  liveClients.clear()
  await Promise.all(
    [...liveChildren].map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          child.once('exit', resolve)
          child.kill('SIGKILL')
        }),
    ),
  )
  await killAllRedis()
}

process.once('exit', () => {
  for (const child of liveChildren) {
    try {
      process.kill(child.pid, 'SIGKILL')
    } catch {}
  }
})

/**
 * A `ws` client of `node` (default namespace, or `ns`), authenticated as `user` if given.
 * Resolves once the node said hello: `{ ws, id, node, name }`.
 */
export async function openClient(node, { user, ns, name } = {}) {
  name ??= `${user ?? 'anon'}@${node.nodeId}${ns ? `/${ns}` : ''}`
  const ws = await connect(node.url({ user, ns }), {}, { name })
  liveClients.add(ws)
  ws.once('close', () => liveClients.delete(ws))
  const hello = await nextMessage(ws, 3000)
  if (hello.event !== 'hello') throw new Error(`${name}: expected hello first, got ${JSON.stringify(hello)}`)
  return { ws, id: hello.data.id, node, name, ns: ns ?? '/', userId: hello.data.userId }
}

async function expectAck(client, op) {
  const msg = await nextMessage(client.ws, 3000)
  if (msg.event !== 'ack' || msg.data.op !== op) throw new Error(`${client.name}: expected ack of ${op}, got ${JSON.stringify(msg)}`)
}

/** The client asks its node to join `room`; resolves once the node has done it (locally). */
export async function join(client, room) {
  send(client.ws, 'join', { room })
  await expectAck(client, 'join')
}

export async function leave(client, room) {
  send(client.ws, 'leave', { room })
  await expectAck(client, 'leave')
}

/** `userId` null clears it. */
export async function setUser(client, userId) {
  send(client.ws, 'user', { userId })
  await expectAck(client, 'user')
  client.userId = userId
}

/** `await presence.sync()` on every running node. */
export function syncAll(nodes) {
  return Promise.all(nodes.filter((n) => n.alive).map((n) => n.sync()))
}
