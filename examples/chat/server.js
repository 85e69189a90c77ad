'use strict'
// Chat example: `npm start`, open the printed URL in two browser tabs, pick the same room, chat.
// Node's http module serves the page and the browser build of ferrosocket/client (plain ES modules
// from lib/client-esm/, mapped to the name 'ferrosocket/client' by an import map in the page: no
// bundler); ferrosocket serves the WebSocket on its own port (WS_PORT, default PORT + 1: give the
// same WS_PORT to a restarted process and open pages reconnect to it by themselves).
// With REDIS_URL set it is one node of a cluster (examples/cluster starts two): rooms, the online
// count and messages span every node.

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

const REDIS_URL = process.env.REDIS_URL
const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1'])

async function main() {
  const cluster = REDIS_URL ? { redis: REDIS_URL, prefix: 'chat-example' } : undefined
  // compression: permessage-deflate with browsers that offer it (all current ones do); messages of
  // 256 bytes or more are sent compressed.
  const ws = createServer({ host: HOST, port: WS_PORT, path: '/ws', contract: chat, cluster, compression: true })

  /** Members of a room on every node (this process alone without a cluster). */
  const online = async (room) => {
    await ws.presence.sync() // this node's latest join/leave is visible to the query
    return (await ws.presence.getRoomMembers(room)).length
  }

  ws.onConnection((conn) => {
    let room
    let name
    conn.onMessage('chat:join', async (data) => {
      if (room) await leave(room)
      room = data.room
      name = data.name
      conn.join(room)
      ws.publishToRoom(room, 'chat:presence', { room, name, joined: true, online: await online(room) })
    })
    conn.onMessage('chat:send', (data) => {
      if (!room) return
      ws.publishToRoom(room, 'chat:message', { room, from: name, text: data.text, at: Date.now() })
    })
    const leave = async (left) => {
      conn.leave(left)
      ws.publishToRoom(left, 'chat:presence', { room: left, name, joined: false, online: await online(left) })
    }
    conn.onClose(() => room && leave(room))
  })
  await ws.listen()

  const page = fs.readFileSync(path.join(__dirname, 'index.html'), 'utf8')
  const clientDir = path.join(__dirname, '..', '..', 'lib', 'client-esm')
  // The operators' dashboard at /dashboard/, for this machine only (a real app checks its own auth).
  const dashboard = ws.dashboardHandler({ authorize: (req) => LOOPBACK.has(req.socket.remoteAddress) })
  const web = http.createServer((req, res) => {
    if (req.url === '/dashboard' || req.url.startsWith('/dashboard/')) return dashboard(req, res)
    const file = req.method === 'GET' && clientFile(clientDir, req.url)
    if (req.method === 'GET' && (req.url === '/' || req.url.startsWith('/?'))) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      res.end(page.replace('__WS_PORT__', String(ws.port)))
    } else if (file) {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' })
      fs.createReadStream(file).pipe(res)
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not found')
    }
  })
  await new Promise((resolve) => web.listen(PORT, HOST, resolve))
  const url = `http://${HOST === '0.0.0.0' ? '127.0.0.1' : HOST}:${web.address().port}/`
  console.log(`chat example: open ${url} in two browser tabs (WebSocket on port ${ws.port}${REDIS_URL ? `, node ${ws.nodeId} of a cluster on ${REDIS_URL}` : ''}); dashboard at ${url}dashboard/`)

  const stop = async () => {
    web.close()
    await ws.shutdown()
    process.exit(0)
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

/** `/ferrosocket/<path>.js` → that file of the client's browser build, or null (nothing outside it). */
function clientFile(dir, url) {
  const m = /^\/ferrosocket\/([\w./-]+\.js)$/.exec(url)
  if (!m) return null
  const file = path.resolve(dir, m[1])
  if (!file.startsWith(dir + path.sep) || !fs.existsSync(file)) return null
  return file
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
