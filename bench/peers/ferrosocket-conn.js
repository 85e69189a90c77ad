'use strict'
// Peer: ferrosocket with its handlers registered per connection (`conn.onMessage` closures, the
// way `ws` and Socket.IO apps are written); otherwise identical to `ferrosocket.js`, which
// registers them once for the namespace. Same protocol as the other peers:
//   echo  -> conn.publish('echo', data)              (data parsed in JS, re-serialised on publish)
//   sub   -> conn.join(room); conn.publish('subscribed', data)
//   bcast -> server.publishToRoom(room, 'bcast', data)  (serialised once, fanned out in Rust)
// FERROSOCKET_COMPRESSION: as in ferrosocket.js (the `*-deflate` workloads).
const path = require('path')
const { createServer } = require(path.join(__dirname, '..', '..', 'index.js'))
const { port, host, listening, onExit, ferrosocketCompression } = require('./common')

async function main() {
  const server = createServer({ port: port(), host: host(), path: '/ws', compression: ferrosocketCompression() })
  server.onConnection((conn) => {
    conn.onMessage('echo', (d) => conn.publish('echo', d))
    conn.onMessage('sub', (d) => {
      conn.join(d.room)
      conn.publish('subscribed', d)
    })
    conn.onMessage('bcast', (d) => server.publishToRoom(d.room, 'bcast', d))
  })
  await server.listen()
  listening(server.port)
  onExit(() => server.shutdown(1001, 'bench done', { timeoutMs: 500 }))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
