'use strict'
// Chat example: `npm start`, open the printed URL in two browser tabs, pick the same room, chat.
// Node's http module serves the page; ferrosocket serves the WebSocket on its own port.

const http = require('node:http')
const fs = require('node:fs')
const path = require('node:path')
const { z } = require('zod')
const { createServer, defineContract } = require('../..')

const HOST = process.env.HOST ?? '127.0.0.1'
const PORT = Number(process.env.PORT ?? 3000)
const WS_PORT = Number(process.env.WS_PORT ?? (PORT === 0 ? 0 : PORT + 1))

const chat = defineContract({
  in: {
    'chat:join': z.object({ room: z.string().min(1).max(64), name: z.string().min(1).max(32) }),
    'chat:send': z.object({ text: z.string().min(1).max(2000) }),
  },
  out: {
    'chat:message': z.object({ room: z.string(), from: z.string(), text: z.string(), at: z.number() }),
    'chat:presence': z.object({ room: z.string(), name: z.string(), joined: z.boolean(), online: z.number() }),
  },
})

const online = new Map() // room -> count

async function main() {
  const ws = createServer({ host: HOST, port: WS_PORT, path: '/ws', contract: chat })

  ws.onConnection((conn) => {
    let room
    let name
    conn.onMessage('chat:join', (data) => {
      if (room) leave()
      room = data.room
      name = data.name
      conn.join(room)
      online.set(room, (online.get(room) ?? 0) + 1)
      ws.publishToRoom(room, 'chat:presence', { room, name, joined: true, online: online.get(room) })
    })
    conn.onMessage('chat:send', (data) => {
      if (!room) return
      ws.publishToRoom(room, 'chat:message', { room, from: name, text: data.text, at: Date.now() })
    })
    const leave = () => {
      online.set(room, online.get(room) - 1)
      conn.leave(room)
      ws.publishToRoom(room, 'chat:presence', { room, name, joined: false, online: online.get(room) })
    }
    conn.onClose(() => room && leave())
  })
  await ws.listen()

  const page = fs.readFileSync(path.join(__dirname, 'index.html'), 'utf8')
  const web = http.createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/' || req.url.startsWith('/?'))) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      res.end(page.replace('__WS_PORT__', String(ws.port)))
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found')
    }
  })
  await new Promise((resolve) => web.listen(PORT, HOST, resolve))
  const url = `http://${HOST === '0.0.0.0' ? '127.0.0.1' : HOST}:${web.address().port}/`
  console.log(`chat example: open ${url} in two browser tabs (WebSocket on port ${ws.port})`)

  const stop = async () => {
    web.close()
    await ws.shutdown()
    process.exit(0)
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
