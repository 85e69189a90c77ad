'use strict'
// Two chat nodes sharing one Redis: `npm run example:cluster`, open both printed URLs (one per
// node, as a load balancer would spread users), join the same room on each, chat.
// Starts its own `redis-server` (Debian: apt-get install redis-server) on a free port with
// persistence off, and stops it with the nodes on Ctrl-C. REDIS_URL=redis://… uses yours instead.

const { spawn } = require('node:child_process')
const net = require('node:net')
const path = require('node:path')

const CHAT = path.join(__dirname, '..', 'chat', 'server.js')
const children = []

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
    probe.on('error', reject)
  })
}

/** Resolves once something accepts connections on `port` (or rejects after `ms`). */
async function waitForPort(port, ms) {
  const deadline = Date.now() + ms
  for (;;) {
    const open = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => (socket.end(), resolve(true)))
      socket.on('error', () => resolve(false))
    })
    if (open) return
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port} after ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function start(command, args, env) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit'] })
  children.push(child)
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`${path.basename(args[0] ?? command)} exited (${signal ?? code}); stopping`)
      stop()
    }
  })
  return child
}

let stopping = false
function stop() {
  stopping = true
  for (const child of children) child.kill('SIGTERM')
  setTimeout(() => process.exit(0), 3000).unref()
}

async function main() {
  let url = process.env.REDIS_URL
  if (!url) {
    const port = await freePort()
    const redis = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], {})
    redis.on('error', (error) => {
      console.error(`cannot start redis-server (${error.message}); install it (apt-get install redis-server) or set REDIS_URL`)
      process.exit(1)
    })
    await waitForPort(port, 5000)
    url = `redis://127.0.0.1:${port}`
    console.log(`cluster example: redis-server on ${url} (pid ${redis.pid}); two chat nodes follow, one URL each`)
  }
  const base = Number(process.env.PORT ?? 3000)
  start(process.execPath, [CHAT], { REDIS_URL: url, PORT: String(base), WS_PORT: String(base + 1) })
  start(process.execPath, [CHAT], { REDIS_URL: url, PORT: String(base + 2), WS_PORT: String(base + 3) })
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

main().catch((error) => {
  console.error(error)
  stop()
})
