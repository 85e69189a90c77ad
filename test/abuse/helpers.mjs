// Helpers for the abuse suite (test/abuse/). Same rules as __test__/helpers.mjs, whose helpers are
// re-exported here: no sleeps as synchronisation, every wait is for an event and has a deadline
// whose error says what was awaited. The server under test always runs in a child process
// (fixtures/abuse-server.mjs), so its RSS is its own and a crash is observed, not suffered.

import WebSocket from 'ws'
import fs from 'node:fs'
import path from 'node:path'
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { withTimeout, deferred, encodeFrame, MiB, HOST } from '../../__test__/helpers.mjs'

export {
  withTimeout,
  deferred,
  connect,
  nextMessage,
  waitClose,
  encodeFrame,
  rawConnect,
  RawHttpPeer,
  upgradeHead,
  websocketKey,
  MiB,
  HOST,
} from '../../__test__/helpers.mjs'

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures')

export const mb = (bytes) => (bytes / MiB).toFixed(1) + ' MiB'

/** Resolves on the next turn of the event loop (lets I/O callbacks run; not a timed sleep). */
export const nextTurn = () => new Promise((resolve) => setImmediate(resolve))

// ------------------------------------------------------------------------------------------------
// The server process
// ------------------------------------------------------------------------------------------------

const STDERR_TAIL_BYTES = 4096

/**
 * Forks fixtures/abuse-server.mjs with `config` ({ options, quiet, rssPushMs }) and waits for it
 * to listen. The child is SIGKILLed in `t.after` if still running. Returned handle:
 *   port, url                        where it listens (127.0.0.1)
 *   request(cmd, extra, ms)          IPC request/reply; rejects if the child exits first
 *   waitEvent(match, ms, label)      first event (ever received, not yet taken) whose `type` is
 *                                    `match` or for which `match(event)` is true
 *   onRss(fn)                        called with every pushed { rss, peak, at } (config.rssPushMs;
 *                                    sent from a timer in the fixture, so only while its loop runs)
 *   exitInfo                         null while running, then { code, signal, at }
 *   exited                           promise of exitInfo
 *   stderrHead(), stderrTail()       the first / last few KB the child wrote to stderr (crash
 *                                    reports)
 */
export async function startAbuseServer(t, config = {}, { readyMs = 15_000 } = {}) {
  const child = fork(path.join(FIXTURES, 'abuse-server.mjs'), [JSON.stringify(config)], {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  })
  let head = ''
  let tail = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk) => {
    if (head.length < STDERR_TAIL_BYTES) head += chunk.slice(0, STDERR_TAIL_BYTES - head.length)
    tail = (tail + chunk).slice(-STDERR_TAIL_BYTES)
  })
  const events = []
  let waiters = []
  const rssListeners = []
  const replies = new Map()
  let nextId = 1
  const exitD = deferred()
  const fx = {
    child,
    port: undefined,
    url: undefined,
    exitInfo: null,
    exited: exitD.promise,
    stderrTail: () => tail,
    /** The first few KB of stderr (a V8 "FATAL ERROR … heap limit" report starts there). */
    stderrHead: () => head,
    onRss(fn) {
      rssListeners.push(fn)
    },
    request(cmd, extra = {}, ms = 5000) {
      if (fx.exitInfo) return Promise.reject(new Error(`fixture already exited (${describeExit(fx.exitInfo)}) before '${cmd}'`))
      const reqId = nextId++
      const d = deferred()
      replies.set(reqId, d)
      child.send({ cmd, reqId, ...extra })
      return withTimeout(d.promise, ms, `fixture reply to '${cmd}'`).finally(() => replies.delete(reqId))
    },
    waitEvent(match, ms = 5000, label = typeof match === 'string' ? `fixture event '${match}'` : 'a fixture event') {
      const test = typeof match === 'string' ? (e) => e.type === match : match
      const i = events.findIndex(test)
      if (i >= 0) return Promise.resolve(events.splice(i, 1)[0])
      if (fx.exitInfo) return Promise.reject(new Error(`fixture exited (${describeExit(fx.exitInfo)}) while waiting for ${label}`))
      const d = deferred()
      const w = { test, d }
      waiters.push(w)
      return withTimeout(d.promise, ms, label).finally(() => {
        waiters = waiters.filter((x) => x !== w)
      })
    },
  }
  child.on('message', (m) => {
    if (m && m.reqId !== undefined) {
      replies.get(m.reqId)?.resolve(m)
      return
    }
    if (m?.type === 'rss') {
      for (const fn of rssListeners) fn(m)
      return
    }
    const w = waiters.find((x) => x.test(m))
    if (w) {
      waiters = waiters.filter((x) => x !== w)
      w.d.resolve(m)
    } else {
      events.push(m)
    }
  })
  child.on('exit', (code, signal) => {
    fx.exitInfo = { code, signal, at: Date.now() }
    const err = new Error(`fixture exited (${describeExit(fx.exitInfo)})`)
    for (const d of replies.values()) d.reject(err)
    replies.clear()
    for (const w of waiters) w.d.reject(err)
    waiters = []
    exitD.resolve(fx.exitInfo)
  })
  t.after(async () => {
    if (fx.exitInfo) return
    child.kill('SIGKILL')
    await withTimeout(fx.exited, 5000, 'the killed fixture to exit').catch(() => {})
  })
  const ready = await fx.waitEvent('ready', readyMs)
  fx.port = ready.port
  fx.url = `ws://${HOST}:${ready.port}/ws`
  return fx
}

/**
 * RSS of process `pid` in bytes, read from /proc (Linux): works while the process's own JS thread
 * is too busy to sample or answer IPC. Null when it cannot be read (process gone).
 */
export function readRss(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : null
  } catch {
    return null
  }
}

/**
 * Samples the fixture's RSS from outside every `ms` (see readRss), calling `onSample(rss)`.
 * Returns `{ peak(), samples(), stop() }`; stopped automatically when the fixture exits.
 */
export function watchRss(fx, ms, onSample = () => {}) {
  let peak = 0
  let samples = 0
  const timer = setInterval(() => {
    const rss = readRss(fx.child.pid)
    if (rss === null) return
    samples++
    if (rss > peak) peak = rss
    onSample(rss)
  }, ms)
  fx.exited.then(() => clearInterval(timer))
  return { peak: () => peak, samples: () => samples, stop: () => clearInterval(timer) }
}

/** One line from a crashed fixture's stderr: V8's FATAL ERROR line and its last GC lines, if any. */
export function crashReport(fx) {
  const lines = fx.stderrHead().split('\n').map((l) => l.trim()).filter(Boolean)
  const fatal = lines.filter((l) => /FATAL|heap limit|out of memory|panicked|Mark-Compact|Scavenge/i.test(l)).slice(0, 4)
  return (fatal.length ? fatal : lines.slice(0, 3)).join(' | ') || '(nothing on stderr)'
}

export function describeExit(info) {
  return info.signal ? `signal ${info.signal}` : `code ${info.code}`
}

/**
 * Asks the fixture to shut its server down and waits for the process to exit by itself. Resolves
 * `{ ok, code, signal, ms, error? }` (never rejects): ok is true for exit code 0 within `ms`.
 */
export async function shutdownAndExit(fx, ms = 10_000) {
  const started = Date.now()
  if (fx.exitInfo) return { ok: false, ...fx.exitInfo, ms: 0, error: `already exited (${describeExit(fx.exitInfo)})` }
  try {
    const r = await fx.request('exit', {}, ms)
    if (r.error) throw new Error(r.error)
    const info = await withTimeout(fx.exited, Math.max(1, ms - (Date.now() - started)), 'the fixture process to exit after shutdown')
    return { ok: info.code === 0 && info.signal === null, code: info.code, signal: info.signal, ms: Date.now() - started }
  } catch (e) {
    return { ok: false, code: fx.exitInfo?.code ?? null, signal: fx.exitInfo?.signal ?? null, ms: Date.now() - started, error: e.message }
  }
}

// ------------------------------------------------------------------------------------------------
// The healthy client: a real `ws` client that measures round trips while the server is abused
// ------------------------------------------------------------------------------------------------

/**
 * Opens a `ws` client that sends `{"event":"ping","data":{"seq"}}` every `intervalMs` and times
 * the matching `pong`. `stop()` ends the pinging and returns the summary:
 *   { sent, answered, maxRttMs, p50RttMs, maxOutstandingMs, disconnected: null | { code, reason, at } }
 * `maxOutstandingMs` is the age of the oldest ping still unanswered at stop (a stall that never
 * ended counts as a round trip at least that long). Call `close()` when done.
 */
export async function startHealthyClient(url, { intervalMs = 100, openMs = 5000 } = {}) {
  const ws = new WebSocket(url)
  const sentAt = new Map()
  const rtts = []
  let seq = 0
  let disconnected = null
  let closedByUs = false
  ws.on('error', () => {})
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('error', reject)
      ws.once('unexpected-response', (req, res) => reject(new Error(`healthy client: HTTP ${res.statusCode}`)))
    }),
    openMs,
    'the healthy client to open',
  )
  ws.on('message', (buf) => {
    let msg
    try {
      msg = JSON.parse(buf.toString('utf8'))
    } catch {
      return
    }
    if (msg.event !== 'pong') return
    const at = sentAt.get(msg.data?.seq)
    if (at === undefined) return
    sentAt.delete(msg.data.seq)
    rtts.push(Date.now() - at)
  })
  ws.on('close', (code, reason) => {
    if (!closedByUs) disconnected = { code, reason: reason.toString('utf8'), at: Date.now() }
  })
  const ping = () => {
    if (ws.readyState !== WebSocket.OPEN) return
    const s = ++seq
    sentAt.set(s, Date.now())
    ws.send(JSON.stringify({ event: 'ping', data: { seq: s } }))
  }
  const timer = setInterval(ping, intervalMs)
  const summary = () => {
    const sorted = [...rtts].sort((a, b) => a - b)
    const now = Date.now()
    let oldest = Infinity
    for (const at of sentAt.values()) oldest = Math.min(oldest, at)
    return {
      sent: seq,
      answered: rtts.length,
      maxRttMs: sorted.length ? sorted[sorted.length - 1] : null,
      p50RttMs: sorted.length ? sorted[Math.floor(sorted.length / 2)] : null,
      maxOutstandingMs: oldest === Infinity ? 0 : now - oldest,
      disconnected,
    }
  }
  return {
    ws,
    summary,
    /** Stops pinging and waits (bounded) for the pongs still in flight; returns the summary. */
    async stop(drainMs = 3000) {
      clearInterval(timer)
      if (sentAt.size > 0 && ws.readyState === WebSocket.OPEN) {
        await new Promise((resolve) => {
          const deadline = setTimeout(done, drainMs)
          const check = () => sentAt.size === 0 && done()
          function done() {
            clearTimeout(deadline)
            ws.off('message', check)
            ws.off('close', done)
            resolve()
          }
          ws.on('message', check)
          ws.once('close', done)
        })
      }
      return summary()
    },
    /** A single round trip now; resolves with its duration, rejects after `ms`. */
    roundTrip(ms = 3000) {
      const s = ++seq
      const at = Date.now()
      sentAt.set(s, at)
      const d = deferred()
      const onMsg = (buf) => {
        try {
          const msg = JSON.parse(buf.toString('utf8'))
          if (msg.event === 'pong' && msg.data?.seq === s) d.resolve(Date.now() - at)
        } catch {}
      }
      ws.on('message', onMsg)
      ws.send(JSON.stringify({ event: 'ping', data: { seq: s } }))
      return withTimeout(d.promise, ms, 'a healthy round trip').finally(() => ws.off('message', onMsg))
    },
    close() {
      clearInterval(timer)
      closedByUs = true
      ws.terminate()
    },
  }
}

// ------------------------------------------------------------------------------------------------
// Raw frames and sockets
// ------------------------------------------------------------------------------------------------

/** A masked close frame with `code` (and optional reason). */
export function closeFrame(code = 1000, reason = '') {
  const r = Buffer.from(reason)
  const payload = Buffer.alloc(2 + r.length)
  payload.writeUInt16BE(code, 0)
  r.copy(payload, 2)
  return encodeFrame(8, payload)
}

/** A masked text frame carrying `{"event","data"}` (plus `id` when given). */
export function jsonFrame(event, data, id) {
  const envelope = id === undefined ? { event, data } : { event, data, id }
  return encodeFrame(1, Buffer.from(JSON.stringify(envelope)))
}

/**
 * `text` as one text message split into `count` fragments (first frame opcode 1 with FIN clear,
 * then continuation frames, the last with FIN set), all masked, concatenated into one buffer.
 */
export function fragmentedText(text, count) {
  const bytes = Buffer.from(text)
  if (count < 1 || count > bytes.length) throw new RangeError(`cannot split ${bytes.length} bytes into ${count} fragments`)
  const frames = []
  const base = Math.floor(bytes.length / count)
  let off = 0
  for (let i = 0; i < count; i++) {
    const len = i === count - 1 ? bytes.length - off : base
    frames.push(encodeFrame(i === 0 ? 1 : 0, bytes.subarray(off, off + len), { fin: i === count - 1 }))
    off += len
  }
  return Buffer.concat(frames)
}

/**
 * Waits until the server's close frame arrives on a `rawConnect` peer or its TCP connection ends,
 * whichever first. Resolves `{ kind: 'close', code, reason, at }`, `{ kind: 'end', at }` or
 * `{ kind: 'timeout' }` after `ms`; data frames met on the way are counted in `dataFrames`.
 */
export async function awaitServerClose(peer, ms) {
  const deadline = Date.now() + ms
  let dataFrames = 0
  const ended = peer.ended.then((at) => ({ kind: 'end', at }))
  for (;;) {
    const left = deadline - Date.now()
    if (left <= 0) return { kind: 'timeout', dataFrames }
    const next = peer.frames.next(left).then(
      (frame) => ({ kind: 'frame', frame }),
      () => null, // queue ended (TCP closed) or timed out: decided below
    )
    const r = await Promise.race([next, ended])
    if (r === null) {
      if (Date.now() >= deadline) return { kind: 'timeout', dataFrames }
      return { ...(await ended), dataFrames }
    }
    if (r.kind === 'end') return { ...r, dataFrames }
    const f = r.frame
    if (f.opcode === 8) return { kind: 'close', code: f.code ?? null, reason: f.reason ?? '', at: f.at, dataFrames }
    if (f.opcode === 1 || f.opcode === 2) dataFrames++
  }
}

/** Resolves when `socket` emits 'drain' or closes; rejects after `ms`. */
export function drainOrClose(socket, ms, label = 'the socket to drain') {
  if (socket.destroyed) return Promise.resolve('closed')
  return withTimeout(
    new Promise((resolve) => {
      const onDrain = () => done('drain')
      const onClose = () => done('closed')
      function done(why) {
        socket.off('drain', onDrain)
        socket.off('close', onClose)
        resolve(why)
      }
      socket.once('drain', onDrain)
      socket.once('close', onClose)
    }),
    ms,
    label,
  )
}
