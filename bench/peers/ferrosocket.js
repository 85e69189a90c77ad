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
//   FERROSOCKET_DASHBOARD_POLL_MS=<ms>  the dashboard mounted on a local HTTP server and its
//                                  ./api/state fetched that often (an operator's open page)
// Compression (the `*-deflate` workloads of run.js):
//   FERROSOCKET_COMPRESSION=1      createServer({ compression: true }) (permessage-deflate, spec
//                                  defaults: threshold 256, level 1); JSON for an object, e.g.
//                                  FERROSOCKET_COMPRESSION='{"level":6}'
// Threads: FERROSOCKET_WORKER_THREADS=<n>  createServer({ workerThreads: n }) (the multi-core
//          peers of run.js); FERROSOCKET_INLINE_IO=0|1  createServer({ inlineIo }) (the ferrosocket-inline peer)
const path = require('path')
const { createServer } = require(path.join(__dirname, '..', '..', 'index.js'))
const { port, host, listening, onExit, ferrosocketCompression } = require('./common')

async function openDashboard(server, pollMs) {
  const http = require('http')
  const dashboard = server.dashboardHandler({ authorize: () => true })
  const web = http.createServer((req, res) => dashboard(req, res))
  await new Promise((resolve) => web.listen(0, '127.0.0.1', resolve))
  web.unref()
  const url = `http://127.0.0.1:${web.address().port}/dashboard/api/state`
  setInterval(() => http.get(url, (res) => res.resume()).on('error', () => {}), pollMs).unref()
}

async function main() {
  const level = process.env.FERROSOCKET_TELEMETRY
  const telemetry = level ? { level, onEvent: () => {} } : undefined
  const threads = Number(process.env.FERROSOCKET_WORKER_THREADS) || undefined
  const inline = process.env.FERROSOCKET_INLINE_IO
  const inlineIo = inline === undefined ? undefined : inline === '1'
  const server = createServer({ port: port(), host: host(), path: '/ws', telemetry, compression: ferrosocketCompression(), workerThreads: threads, inlineIo })
  const scrapeMs = Number(process.env.FERROSOCKET_SCRAPE_MS)
  if (scrapeMs > 0) setInterval(() => void server.metrics(), scrapeMs).unref()
  const pollMs = Number(process.env.FERROSOCKET_DASHBOARD_POLL_MS)
  if (pollMs > 0) await openDashboard(server, pollMs)
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
