// Request/response load test: C connections × N requests each, `window` requests in flight per
// connection, every reply checked (id and value). Server (ferrosocket, contract validated with zod)
// on the main thread, `ws` clients on a worker thread.
//
//   node bench/requests.mjs [--connections 100] [--requests 1000] [--window 32] [--no-contract]
//
// Prints one line with the totals and requests per second (all answered requests / wall time from
// the first request sent to the last reply received). Also used by __test__/requests-load.test.mjs.
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { z } from 'zod'
import { createServer, defineContract } from '../index.js'

const here = path.dirname(fileURLToPath(import.meta.url))

const contract = defineContract({
  requests: { add: { input: z.object({ a: z.number(), b: z.number() }), output: z.number() } },
})

function once(worker, type, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      worker.off('message', onMessage)
      reject(new Error(`timed out after ${ms} ms waiting for '${type}' from the client worker`))
    }, ms)
    const onMessage = (m) => {
      if (m.type === type) {
        clearTimeout(timer)
        worker.off('message', onMessage)
        resolve(m)
      } else if (m.type === 'error') {
        clearTimeout(timer)
        worker.off('message', onMessage)
        reject(new Error(m.message))
      }
    }
    worker.on('message', onMessage)
  })
}

/** Runs one load test; resolves `{ connections, requests, total, answered, wrong, firstWrong, elapsedMs, perSecond }`. */
export async function runRequestLoad({ connections = 100, requests = 1000, window = 32, useContract = true, timeoutMs = 120_000 } = {}) {
  const server = createServer({ host: '127.0.0.1', port: 0, contract: useContract ? contract : undefined, heartbeat: { intervalMs: 0 } })
  server.onConnection((conn) => {
    conn.onRequest('add', async ({ a, b }) => a + b)
  })
  await server.listen()
  const worker = new Worker(path.join(here, 'requests-client.mjs'), {
    workerData: { url: `ws://127.0.0.1:${server.port}/ws`, connections, requests, window },
  })
  try {
    await once(worker, 'open', 30_000)
    const done = once(worker, 'done', timeoutMs)
    worker.postMessage('go')
    const result = await done
    const total = connections * requests
    return {
      connections,
      requests,
      window,
      total,
      answered: result.answered,
      wrong: result.wrong,
      firstWrong: result.firstWrong,
      elapsedMs: result.elapsedMs,
      perSecond: Math.round((result.answered / result.elapsedMs) * 1000),
    }
  } finally {
    worker.postMessage('close')
    await worker.terminate().catch(() => {})
    await server.shutdown(1001, 'bench done', { timeoutMs: 1000 })
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`)
    return i >= 0 ? Number(process.argv[i + 1]) : fallback
  }
  const options = {
    connections: arg('connections', 100),
    requests: arg('requests', 1000),
    window: arg('window', 32),
    useContract: !process.argv.includes('--no-contract'),
  }
  const r = await runRequestLoad(options)
  console.log(
    `${r.connections} connections × ${r.requests} requests (window ${r.window}, ${options.useContract ? 'zod contract' : 'no contract'}): ` +
      `${r.answered}/${r.total} answered, ${r.wrong} wrong, ${(r.elapsedMs / 1000).toFixed(2)} s, ${r.perSecond.toLocaleString('en')} requests/s`,
  )
  if (r.wrong || r.answered !== r.total) {
    console.error(`FAILED: ${r.firstWrong ?? 'not every request was answered'}`)
    process.exitCode = 1
  }
}
