'use strict'
// Peer: the Rust-only reference. Same process, same addon and I/O core as `ferrosocket.js`, but
// the bench protocol (echo / sub / bcast) is answered inside Rust (`__referenceHandlers`, see
// src/reference.rs): no message crosses into JS. The gap to `ferrosocket` is the cost of the
// N-API boundary plus the JS handlers.
// FERROSOCKET_COMPRESSION: as in ferrosocket.js (the `*-deflate` workloads).
const path = require('path')
const { createServer } = require(path.join(__dirname, '..', '..', 'index.js'))
const { port, host, listening, onExit, ferrosocketCompression } = require('./common')

async function main() {
  const server = createServer({ port: port(), host: host(), path: '/ws', __referenceHandlers: true, compression: ferrosocketCompression() })
  await server.listen()
  listening(server.port)
  onExit(() => server.shutdown(1001, 'bench done', { timeoutMs: 500 }))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
