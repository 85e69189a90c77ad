'use strict'
// Peer for the cluster benchmark (bench/cluster.js): one node of a Socket.IO cluster over Redis.
// Same handlers and framing as peers/socketio.js (websocket transport only); the adapter is
// @socket.io/redis-adapter with two clients of the `redis` package on REDIS_URL:
//   ADAPTER=redis    createAdapter(pub, sub)         (classic Pub/Sub: every node PSUBSCRIBEs to
//                                                     every broadcast of the namespace)
//   ADAPTER=sharded  createShardedAdapter(pub, sub)  (Redis 7 sharded Pub/Sub, one SSUBSCRIBE per
//                                                     room a node has members of: "dynamic" mode)
//   sub   -> socket.join(room); emit 'subscribed'
//   bcast -> io.to(room).emit('bcast', data)   (local members + one Redis publish for the others)
const http = require('http')
const { Server } = require('socket.io')
const { createClient } = require('redis')
const { createAdapter, createShardedAdapter } = require('@socket.io/redis-adapter')
const { port, host, listening, onExit } = require('./common')

async function main() {
  const url = process.env.REDIS_URL
  if (!url) throw new Error('REDIS_URL is required')
  const kind = process.env.ADAPTER || 'redis'
  if (kind !== 'redis' && kind !== 'sharded') throw new Error(`ADAPTER must be redis or sharded, not ${kind}`)
  const pubClient = createClient({ url })
  const subClient = pubClient.duplicate()
  for (const c of [pubClient, subClient]) c.on('error', (e) => console.error(`redis client: ${e.message}`))
  await Promise.all([pubClient.connect(), subClient.connect()])

  const httpServer = http.createServer()
  const io = new Server(httpServer, {
    transports: ['websocket'],
    serveClient: false,
    perMessageDeflate: false,
    httpCompression: false,
    maxHttpBufferSize: 1e6,
    adapter: kind === 'sharded' ? createShardedAdapter(pubClient, subClient) : createAdapter(pubClient, subClient),
  })

  io.on('connection', (socket) => {
    socket.on('sub', (data) => {
      socket.join(data.room)
      socket.emit('subscribed', data)
    })
    socket.on('bcast', (data) => io.to(data.room).emit('bcast', data))
  })

  await new Promise((resolve) => httpServer.listen({ port: port(), host: host(), backlog: 4096 }, resolve))
  listening(httpServer.address().port)
  onExit(async () => {
    await new Promise((resolve) => io.close(() => resolve()))
    await Promise.allSettled([pubClient.quit(), subClient.quit()])
  })
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
