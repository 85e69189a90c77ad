'use strict'
// Peer: ferrosocket, through its public API only, handlers registered once for the namespace
// (`server.onMessage`, like uWebSockets.js's app-level handlers; `ferrosocket-conn.js` registers
// the same handlers per connection). Same protocol as the other peers:
//   echo  -> conn.publish('echo', data)              (data parsed in JS, re-serialised on publish)
//   sub   -> conn.join(room); conn.publish('subscribed', data)
//   bcast -> server.publishToRoom(room, 'bcast', data)  (serialised once, fanned out in Rust)
//
// Observability variants (the `ferrosocket-telemetry` and `ferrosocket-scraped` peers of run.js):
//   FERROSOCKET_TELEMETRY=<level>  telemetry on at that level with a sink that does nothing
//   FERROSOCKET_SCRAPE_MS=<ms>     server.metrics() called that often (a Prometheus scrape)
const path = require('path')
const { createServer } = require(path.join(__dirname, '..', '..', 'index.js'))
const { port, host, listening, onExit } = require('./common')

async function main() {
  const level = process.env.FERROSOCKET_TELEMETRY
  const telemetry = level ? { level, onEvent: () => {} } : undefined
  const server = createServer({ port: port(), host: host(), path: '/ws', telemetry })
  const scrapeMs = Number(process.env.FERROSOCKET_SCRAPE_MS)
  if (scrapeMs > 0) setInterval(() => void server.metrics(), scrapeMs).unref()
  server.onMessage('echo', (d, { conn }) => conn.publish('echo', d))
  server.onMessage('sub', (d, { conn }) => {
    conn.join(d.room)
    conn.publish('subscribed', d)
  })
  server.onMessage('bcast', (d) => server.publishToRoom(d.room, 'bcast', d))
  await server.listen()
  listening(server.port)
  onExit(() => server.shutdown(1001, 'bench done', { timeoutMs: 500 }))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
