'use strict'
// Fastify serves HTTP; ferrosocket takes over WebSocket upgrades on the same port.
//   node examples/fastify/server.js   → GET http://127.0.0.1:3000/health, ws://127.0.0.1:3000/ws

const Fastify = require('fastify')
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

  const app = Fastify()
  app.get('/health', async () => ({ ok: true, websockets: ws.connectionCount }))
  app.post('/rooms/:room/broadcast', async (request) => {
    ws.publishToRoom(request.params.room, 'broadcast', request.body ?? null)
    return { sent: true }
  })
  // Fastify does not use 'upgrade' itself: every upgrade request goes to ferrosocket (which
  // answers 404 for paths it does not serve).
  app.server.on('upgrade', (req, socket, head) => ws.handleUpgrade(req, socket, head))

  await app.listen({ host, port })
  const { port: bound } = app.server.address()
  return {
    url: `http://${host}:${bound}`,
    ws,
    app,
    async close() {
      await app.close()
      await ws.shutdown()
    },
  }
}

if (require.main === module) {
  start({ host: process.env.HOST, port: Number(process.env.PORT ?? 3000) }).then(({ url, close }) => {
    console.log(`fastify example: HTTP ${url}/health, WebSocket ${url.replace('http', 'ws')}/ws`)
    process.once('SIGINT', () => close().then(() => process.exit(0)))
    process.once('SIGTERM', () => close().then(() => process.exit(0)))
  })
}

module.exports = { start }
