'use strict'
// Express serves HTTP; ferrosocket takes over WebSocket upgrades on the same port.
//   node examples/express/server.js   → GET http://127.0.0.1:3000/health, ws://127.0.0.1:3000/ws

const http = require('node:http')
const express = require('express')
const { createServer } = require('../..')

async function start({ host = '127.0.0.1', port = 3000 } = {}) {
  const ws = createServer({ noListen: true, path: '/ws' })
  ws.onConnection((conn) => {
    conn.onMessage('echo', (data) => conn.publish('echo', data))
    conn.onMessage('join', (room) => {
      conn.join(room)
      conn.publish('joined', room)
    })
  })

  const app = express()
  app.use(express.json())
  app.get('/health', (req, res) => res.json({ ok: true, websockets: ws.connectionCount }))
  app.post('/rooms/:room/broadcast', (req, res) => {
    ws.publishToRoom(req.params.room, 'broadcast', req.body ?? null)
    res.json({ sent: true })
  })

  const server = http.createServer(app)
  server.on('upgrade', (req, socket, head) => ws.handleUpgrade(req, socket, head))
  await new Promise((resolve) => server.listen(port, host, resolve))
  const { port: bound } = server.address()
  return {
    url: `http://${host}:${bound}`,
    ws,
    server,
    async close() {
      await new Promise((resolve) => server.close(resolve))
      await ws.shutdown()
    },
  }
}

if (require.main === module) {
  start({ host: process.env.HOST, port: Number(process.env.PORT ?? 3000) }).then(({ url, close }) => {
    console.log(`express example: HTTP ${url}/health, WebSocket ${url.replace('http', 'ws')}/ws`)
    process.once('SIGINT', () => close().then(() => process.exit(0)))
    process.once('SIGTERM', () => close().then(() => process.exit(0)))
  })
}

module.exports = { start }
