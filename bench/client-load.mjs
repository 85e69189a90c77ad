// One client process of the client benchmark (bench/clients.js starts it, pinned to its own CPU):
// opens N connections to an echo server, measures the connect rate and the idle memory per
// connection, then runs an echo loop (every connection keeps one message in flight: send, await
// the echo, send again) and measures messages per second and per client CPU-second. Prints one
// JSON line. Kinds:
//   native  ferrosocket/client (typed client, the addon's tokio-tungstenite transport)
//   ws      the `ws` package, one WebSocket per connection, the same JSON envelope parsed and
//           re-encoded by hand (what an app does today without a client library)
// Usage: node --expose-gc bench/client-load.mjs KIND URL N SECONDS
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const [kind, url, nArg, secondsArg] = process.argv.slice(2)
const N = Number(nArg)
const SECONDS = Number(secondsArg)
/** Connections opening at once (a burst of N would only measure the listen backlog). */
const CONNECT_WINDOW = 256
const PAYLOAD = { text: 'x'.repeat(48) }

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const rss = () => {
  global.gc?.()
  return process.memoryUsage().rss
}

/** Opens one connection; resolves with `{ send(), close() }` once open. `onEcho` runs per echo. */
function opener(onEcho) {
  if (kind === 'native') {
    const { createClient } = require(path.join(ROOT, 'lib', 'client', 'node.js'))
    return async () => {
      const client = createClient(null, url, { reconnect: { maxAttempts: 0 } })
      client.on('echo', () => onEcho(send))
      const send = () => client.emit('echo', PAYLOAD)
      await client.opened()
      return { send, close: () => client.close() }
    }
  }
  if (kind === 'ws') {
    const WebSocket = require(path.join(ROOT, 'bench', 'node_modules', 'ws'))
    return () =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url, { perMessageDeflate: false })
        const send = () => ws.send(JSON.stringify({ event: 'echo', data: PAYLOAD }))
        ws.on('message', (data) => {
          const frame = JSON.parse(data.toString())
          if (frame.event === 'echo') onEcho(send)
        })
        ws.once('open', () => resolve({ send, close: () => ws.close() }))
        ws.once('error', reject)
      })
  }
  throw new Error(`unknown kind ${kind} (native or ws)`)
}

async function main() {
  let echoing = false
  let echoes = 0
  const open = opener((send) => {
    echoes++
    if (echoing) send()
  })
  await sleep(200)
  const rssBefore = rss()

  const conns = []
  const started = process.hrtime.bigint()
  let next = 0
  await Promise.all(
    Array.from({ length: CONNECT_WINDOW }, async () => {
      while (next < N) {
        next++
        conns.push(await open())
      }
    }),
  )
  const connectSeconds = Number(process.hrtime.bigint() - started) / 1e9

  await sleep(2000) // let the connect burst settle before measuring idle memory
  const rssIdle = rss()

  echoing = true
  const cpu0 = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  for (const c of conns) c.send()
  await sleep(SECONDS * 1000)
  const e = echoes
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = process.cpuUsage(cpu0)
  echoing = false
  const cpuSeconds = (cpu.user + cpu.system) / 1e6

  for (const c of conns) c.close()
  console.log(
    JSON.stringify({
      kind,
      connections: conns.length,
      connect_seconds: connectSeconds,
      connects_per_s: conns.length / connectSeconds,
      idle_bytes_per_conn: (rssIdle - rssBefore) / conns.length,
      rss_idle_mb: rssIdle / 2 ** 20,
      echo_msgs_per_s: e / seconds,
      echo_client_cpu: cpuSeconds / seconds,
      echo_msgs_per_client_cpu_s: e / cpuSeconds,
    }),
  )
  await sleep(500)
  process.exit(0)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
