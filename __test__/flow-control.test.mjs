// Behaviour 6: flow control both ways.
//  - outbound: a slow reader's bounded queue overflows → close 1013, server memory stays bounded,
//    healthy clients in the same room get everything in order;
//  - inbound: a client flooding a slow handler is pushed back through TCP; nothing is lost, memory
//    stays bounded; Rust stops reading a connection whose messages JS has not handled.
// Server RSS is measured in a child process (fixtures/rss-server.mjs).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  startServer,
  connect,
  nextMessage,
  waitClose,
  deferred,
  condition,
  withTimeout,
  forkFixture,
  killChild,
  MiB,
} from './helpers.mjs'

const mb = (bytes) => (bytes / MiB).toFixed(1) + ' MB'

async function startFixture(t, mode, options = {}) {
  const fx = forkFixture('rss-server.mjs', [mode, JSON.stringify(options)])
  t.after(() => killChild(fx.child))
  const ready = await fx.nextOfType('ready', 15_000)
  return { ...fx, url: `ws://127.0.0.1:${ready.port}/ws` }
}

test('slow reader: its queue overflows → 1013, server RSS grows < 64 MB, a healthy reader gets all 20 MB in order', async (t) => {
  const TOTAL = 20_000
  const SIZE = 1024
  const BATCH = 200
  // closeTimeoutMs is raised so the paused peer, which cannot read the close frame until it resumes,
  // is not terminated (1006) before the test resumes it; the code under test is the 1013.
  const fx = await startFixture(t, 'slow-reader', { closeTimeoutMs: 30_000 })

  const healthySeqs = []
  let healthyBad = null
  const healthy = await connect(fx.url, {}, { name: 'healthy' })
  t.after(() => healthy.terminate())
  const allHealthy = condition(() => healthySeqs.length === TOTAL, 30_000, 'healthy client to receive every message')
  healthy.on('message', (buf) => {
    const msg = JSON.parse(buf.toString())
    if (msg.event !== 'm') return
    const i = msg.data.i
    if (i !== healthySeqs.length && !healthyBad) healthyBad = `expected ${healthySeqs.length}, got ${i}`
    healthySeqs.push(i)
    if ((i + 1) % BATCH === 0 || i === TOTAL - 1) healthy.send(JSON.stringify({ event: 'ack', data: i }))
    allHealthy.signal()
  })
  await fx.nextOfType('connection')

  const slow = await connect(fx.url, {}, { name: 'slow' })
  t.after(() => slow.terminate())
  slow.pause() // stop reading: TCP fills, then the server's queue for it
  const slowSeqs = []
  slow.on('message', (buf) => {
    const msg = JSON.parse(buf.toString())
    if (msg.event === 'm') slowSeqs.push(msg.data.i)
  })
  const slowConn = await fx.nextOfType('connection')

  const base = await fx.request('resetPeak')
  const published = await fx.request('publish', { total: TOTAL, size: SIZE, batch: BATCH }, 60_000)
  assert.equal(published.error, undefined, published.error)
  await allHealthy.done
  const after = await fx.request('rss')
  const growth = Math.max(published.peak, after.peak) - base.rss
  t.diagnostic(
    `published ${mb(TOTAL * SIZE)} in ${published.ms} ms; server RSS ${mb(base.rss)} → peak ${mb(Math.max(published.peak, after.peak))} (growth ${mb(growth)})`,
  )

  assert.equal(healthyBad, null, `healthy client order: ${healthyBad}`)
  assert.equal(healthySeqs.length, TOTAL)

  slow.resume()
  const closed = await waitClose(slow, 10_000)
  assert.deepEqual(closed, { code: 1013, reason: 'WebSocket backpressure overflow' })
  const serverSide = await fx.nextOfType('closed', 10_000)
  assert.equal(serverSide.id, slowConn.id)
  assert.equal(serverSide.code, 1013)
  assert.ok(slowSeqs.length < TOTAL, `slow reader was cut off (got ${slowSeqs.length})`)
  assert.deepEqual(
    slowSeqs,
    Array.from({ length: slowSeqs.length }, (_, i) => i),
    'what the slow reader did get is an in-order prefix without gaps',
  )
  t.diagnostic(`slow reader received ${slowSeqs.length} messages before the 1013`)
  assert.ok(growth < 64 * MiB, `server RSS grew by ${mb(growth)} (limit 64 MB)`)
  await fx.request('exit')
})

test('flood: 100,000 messages at a timer-awaiting handler are all handled in order; server RSS grows < 64 MB', async (t) => {
  const N = 100_000
  const fx = await startFixture(t, 'flood')
  const ws = await connect(fx.url, {}, { name: 'flooder', timeoutMs: 5000 })
  t.after(() => ws.terminate())
  await fx.nextOfType('connection')
  const base = await fx.request('resetPeak')

  const pad = 'p'.repeat(480) // ~512-byte messages: 50 MB in total, so unbounded buffering would show
  const started = Date.now()
  for (let i = 0; i < N; i++) {
    const msg = JSON.stringify({ event: 'seq', data: { i, pad } })
    // Wait for the socket to take our bytes every so often, so the client never holds more than a
    // few hundred KB in JS; TCP backpressure from the server then throttles the loop.
    if (i % 500 === 499 || ws.bufferedAmount > MiB) {
      await withTimeout(
        new Promise((resolve, reject) => ws.send(msg, (err) => (err ? reject(err) : resolve()))),
        20_000,
        `the socket to accept message ${i}`,
      )
    } else {
      ws.send(msg)
    }
  }
  ws.send(JSON.stringify({ event: 'end', data: null }))
  const done = await nextMessage(ws, 30_000)
  const elapsed = Date.now() - started
  const after = await fx.request('rss')
  const growth = after.peak - base.rss
  t.diagnostic(`flood of ${N} handled in ${elapsed} ms; server RSS ${mb(base.rss)} → peak ${mb(after.peak)} (growth ${mb(growth)})`)
  assert.equal(done.event, 'done')
  assert.equal(done.data.firstBad, null, `order broken: ${JSON.stringify(done.data.firstBad)}`)
  assert.equal(done.data.handled, N, 'every message handled, none lost')
  assert.ok(growth < 64 * MiB, `server RSS grew by ${mb(growth)} (limit 64 MB)`)
  await fx.request('exit')
})

test('inbound: while JS has not handled a connection’s messages, Rust stops reading its socket', async (t) => {
  const N = 32_000 // 32 MB: far more than the kernel socket buffers on both ends can hold
  const gate = deferred()
  const handled = []
  let notify = () => {}
  const h = await startServer({}, {
    onConnection(conn) {
      conn.onMessage('m', async (d) => {
        handled.push(d.i)
        notify()
        if (d.i === 0) await gate.promise
      })
    },
  })
  t.after(() => {
    gate.resolve()
    return h.close()
  })
  const [ws] = await h.client()
  const pad = 'q'.repeat(1000)
  for (let i = 0; i < N - 1; i++) ws.send(JSON.stringify({ event: 'm', data: { i, pad } }))
  let lastWritten = false
  const lastSent = new Promise((resolve) =>
    ws.send(JSON.stringify({ event: 'm', data: { i: N - 1, pad } }), () => {
      lastWritten = true
      resolve()
    }),
  )

  // Bounded wait that must expire: the client cannot hand all 32 MB to TCP while the server holds back.
  const first = condition(() => handled.length >= 1, 3000, 'the first message to be handled')
  notify = first.signal
  await first.done
  await Promise.race([lastSent, new Promise((r) => setTimeout(r, 1500))])
  assert.equal(lastWritten, false, 'the server kept reading although its handler was blocked')
  assert.equal(handled.length, 1, 'the blocked handler is not re-entered')
  t.diagnostic(`client still holds ${mb(ws.bufferedAmount)} unsent while the handler is blocked`)

  // Release the handler: everything arrives, in order, and the client's buffer drains.
  const all = condition(() => handled.length === N, 30_000, `all ${N} messages handled`)
  notify = all.signal
  gate.resolve()
  await all.done
  await withTimeout(lastSent, 10_000, 'the last send to be written')
  assert.deepEqual(handled, Array.from({ length: N }, (_, i) => i))
})

async function pausedReaderOverflow(t, backpressure) {
  const h = await startServer({ backpressure, closeTimeoutMs: 15_000 })
  t.after(() => h.close())
  const [healthy, healthyConn] = await h.client({ name: 'healthy' })
  const [slow, slowConn] = await h.client({ name: 'paused' })
  slow.pause()
  slowConn.join('r')
  const closing = new Promise((resolve) => slowConn.onClose((code, reason) => resolve({ code, reason })))
  const pad = 'z'.repeat(1024)
  // 10 MB at a paused reader: more than the kernel buffers hold, so the server's own queue must fill.
  for (let i = 0; i < 10_000; i++) slowConn.publish('m', { i, pad })
  slow.resume()
  assert.deepEqual(await waitClose(slow, 10_000), { code: 1013, reason: 'WebSocket backpressure overflow' })
  assert.equal((await withTimeout(closing, 5000, 'server-side onClose')).code, 1013)
  assert.equal(healthyConn.isOpen, true)
  healthyConn.publish('still', 'fine')
  assert.deepEqual(await nextMessage(healthy), { event: 'still', data: 'fine' })
}

test('backpressure.maxBufferedBytes is honoured: a paused reader over 64 KiB queued is closed 1013', (t) =>
  pausedReaderOverflow(t, { maxQueuedMessages: 1_000_000, maxBufferedBytes: 64 * 1024 }))

test('backpressure.maxQueuedMessages is honoured: a paused reader over 10 queued messages is closed 1013', (t) =>
  pausedReaderOverflow(t, { maxQueuedMessages: 10, maxBufferedBytes: 1 << 30 }))

test('maxPendingBytes: while the JS thread is busy, Rust stops reading once that many bytes wait for it', async (t) => {
  const { Worker } = await import('node:worker_threads')
  const N = 32_000 // ~32 MB, far more than maxPendingBytes plus the kernel buffers
  const handled = []
  let notify = () => {}
  const h = await startServer({ maxPendingBytes: 1 * MiB, maxInflightMessages: 1_000_000 }, {
    onConnection(conn) {
      conn.onMessage('m', (d) => {
        handled.push(d.i)
        notify()
      })
    },
  })
  t.after(() => h.close())
  const shared = new SharedArrayBuffer(8)
  const queuedFlag = new Int32Array(shared)
  const worker = new Worker(new URL('./fixtures/flood-client-worker.mjs', import.meta.url), {
    workerData: { url: h.url(), count: N, size: 1000, shared },
  })
  t.after(() => worker.terminate())
  const events = []
  let wake = () => {}
  worker.on('message', (m) => {
    events.push(m)
    wake()
  })
  const nextEvent = (type, ms) =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const i = events.findIndex((e) => e.type === type)
          if (i >= 0) resolve(events.splice(i, 1)[0])
        }
        wake = check
        check()
      }),
      ms,
      `worker '${type}'`,
    )
  await nextEvent('open', 5000)
  await h.nextConnection()
  // Block our JS thread first; the worker gets 'go' on its own thread and sends during the block.
  // Stay blocked until the worker has handed all 32 MB to ws (seen through shared memory), then up
  // to 3 s more, during which an uncapped server would read everything and the worker's last write
  // would complete (flag [1]).
  const blockedAt = Date.now()
  worker.postMessage('go')
  while (Atomics.load(queuedFlag, 0) === 0 && Date.now() - blockedAt < 15_000) {
    /* the JS thread is busy: nothing drains the bytes Rust reads for it */
  }
  const queuedSeen = Atomics.load(queuedFlag, 0) === 1
  const graceFrom = Date.now()
  while (Atomics.load(queuedFlag, 1) === 0 && Date.now() - graceFrom < 3000) {
    /* still busy */
  }
  const writtenWhileBlocked = Atomics.load(queuedFlag, 1) === 1
  const unblockedAt = Date.now()
  assert.ok(queuedSeen, 'precondition: the worker queued its 32 MB while the JS thread was blocked')
  assert.equal(writtenWhileBlocked, false, 'the client wrote all 32 MB while the JS thread was blocked: Rust kept reading past maxPendingBytes')
  await nextEvent('queued', 5000)
  const all = condition(() => handled.length === N, 30_000, `all ${N} messages handled`)
  notify = all.signal
  await all.done
  const { lastWrittenAt, error } = await nextEvent('written', 10_000)
  assert.equal(error, null)
  assert.ok(
    lastWrittenAt >= unblockedAt,
    `the client wrote all 32 MB ${unblockedAt - lastWrittenAt} ms before the JS thread was free: Rust kept reading past maxPendingBytes`,
  )
  assert.deepEqual(handled, Array.from({ length: N }, (_, i) => i))
})
