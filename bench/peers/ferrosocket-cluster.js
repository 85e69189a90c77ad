'use strict'
// Peer for the cluster benchmark (bench/cluster.js): one node of a ferrosocket cluster over Redis,
// `createServer({ nodeId, cluster: { redis: REDIS_URL, prefix: PREFIX } })`, through the public API
// with the handlers of peers/ferrosocket.js:
//   sub   -> conn.join(room); await server.presence.sync(); conn.publish('subscribed', data)
//            (sync: the join is in Redis and its subscription active, so a publish another node
//            makes after the reply reaches this member)
//   bcast -> server.publishToRoom(room, 'bcast', data)  (local members + the other nodes via Redis)
// On SIGTERM it prints `STATS <json>` (server.stats: bus counters) before shutting down.
const path = require('path')
const { createServer } = require(path.join(__dirname, '..', '..', 'index.js'))
const { port, host, listening, onExit } = require('./common')

async function main() {
  const url = process.env.REDIS_URL
  if (!url) throw new Error('REDIS_URL is required')
  const server = createServer({
    port: port(),
    host: host(),
    path: '/ws',
    ...(process.env.NODE_ID ? { nodeId: process.env.NODE_ID } : {}),
    cluster: { redis: url, prefix: process.env.PREFIX || 'ferrosocket' },
  })
  server.onMessage('sub', async (d, { conn }) => {
    conn.join(d.room)
    await server.presence.sync()
    conn.publish('subscribed', d)
  })
  server.onMessage('bcast', (d) => server.publishToRoom(d.room, 'bcast', d))
  await server.listen()
  listening(server.port)
  onExit(async () => {
    try {
      process.stdout.write(`STATS ${JSON.stringify(server.stats, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))}\n`)
    } catch {}
    await server.shutdown(1001, 'bench done', { timeoutMs: 500 })
  })
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
