'use strict'
// Echo server: every message goes back as it came (text as text, binary as binary), no contract
// and no envelope. Used for the Autobahn conformance suite:
//   PORT=9001 node examples/echo/server.js & ../shared/tools/autobahn.sh 9001 --path /

const { createServer } = require('../..')

async function main() {
  const server = createServer({
    host: process.env.HOST ?? '127.0.0.1',
    port: Number(process.env.PORT ?? 9001),
    path: process.env.WS_PATH ?? '/',
    messageFormat: 'raw',
    maxPayload: 64 * 1024 * 1024, // Autobahn section 9 sends messages up to 16 MiB
    backpressure: { maxQueuedMessages: 10_000, maxBufferedBytes: 256 * 1024 * 1024 },
    heartbeat: { intervalMs: 0 },
    compression: process.env.COMPRESSION !== '0', // permessage-deflate: Autobahn sections 12 and 13
  })
  server.onConnection((conn) => conn.onRawMessage((data) => conn.sendRaw(data)))
  await server.listen()
  console.log(`echo server listening on ws://127.0.0.1:${server.port}${process.env.WS_PATH ?? '/'}`)
  const stop = () => server.shutdown().then(() => process.exit(0))
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
