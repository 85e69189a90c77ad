// Shared helpers for the ferrosocket test suite.
//
// Rules these helpers enforce: no sleeps as synchronisation. Every wait is for an event, bounded by
// a timeout that rejects with a message saying what was awaited. "Nothing happens" is asserted with
// a bounded wait that must expire (`expectNoMessage`), always after a positive control.

import WebSocket from 'ws'
import net from 'node:net'
import http from 'node:http'
import crypto from 'node:crypto'
import { fork, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import path from 'node:path'
import { createServer } from '../index.js'

export const HOST = '127.0.0.1'
export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures')

// ------------------------------------------------------------------------------------------------
// Generic waiting
// ------------------------------------------------------------------------------------------------

/** Reject after `ms` with `label` unless `promise` settles first. */
export function withTimeout(promise, ms, label) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${label}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Resolve with the arguments array of the next `event` on `emitter`; reject after `ms`. */
export function waitFor(emitter, event, ms = 2000) {
  return new Promise((resolve, reject) => {
    const onEvent = (...args) => {
      clearTimeout(timer)
      resolve(args)
    }
    const timer = setTimeout(() => {
      emitter.off(event, onEvent)
      reject(new Error(`timed out after ${ms} ms waiting for '${event}'`))
    }, ms)
    emitter.once(event, onEvent)
  })
}

/** A promise plus its resolve/reject, for handlers that signal the test. */
export function deferred() {
  let resolve, reject
  const promise = new Promise((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** Resolves once `predicate()` is true, re-checked each time `signal()` is called; rejects after ms. */
export function condition(predicate, ms, label) {
  const d = deferred()
  const check = () => {
    try {
      if (predicate()) d.resolve()
    } catch (e) {
      d.reject(e)
    }
  }
  check()
  return { signal: check, done: withTimeout(d.promise, ms, label) }
}

/** Unbounded async queue: `push` values, `next(ms)` takes them in order (rejects on timeout). */
export class AsyncQueue {
  constructor(name = 'queue') {
    this.name = name
    this.items = []
    this.waiters = []
    this.endedWith = null
  }

  push(value) {
    const w = this.waiters.shift()
    if (!w) {
      this.items.push(value)
      return
    }
    if (w.kind === 'none') {
      // Someone asserted nothing would arrive: fail them, keep the value queued.
      this.items.push(value)
      w.reject(new Error(`${this.name}: expected nothing, got ${preview(value)}`))
      return
    }
    w.resolve(value)
  }

  /** No more values will come (e.g. socket closed): pending and future `next` reject immediately. */
  end(why) {
    this.endedWith = why
    for (const w of this.waiters.splice(0)) {
      if (w.kind === 'none') w.resolve()
      else w.reject(new Error(`${this.name}: ${why} while waiting for a value`))
    }
  }

  next(ms = 2000) {
    if (this.items.length) return Promise.resolve(this.items.shift())
    if (this.endedWith) return Promise.reject(new Error(`${this.name}: ${this.endedWith} while waiting for a value`))
    return new Promise((resolve, reject) => {
      const w = {
        kind: 'value',
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        reject(new Error(`${this.name}: timed out after ${ms} ms waiting for a value`))
      }, ms)
      this.waiters.push(w)
    })
  }

  /** Resolves after `ms` if nothing arrived; rejects as soon as something does (or already had). */
  expectNone(ms) {
    if (this.items.length) {
      return Promise.reject(new Error(`${this.name}: expected nothing, but ${preview(this.items[0])} was already queued`))
    }
    if (this.endedWith) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const w = {
        kind: 'none',
        resolve: () => {
          clearTimeout(timer)
          resolve()
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1)
        resolve()
      }, ms)
      this.waiters.push(w)
    })
  }
}

function preview(v) {
  const s = typeof v === 'string' ? v : JSON.stringify(v)
  return s === undefined ? String(v) : s.length > 200 ? s.slice(0, 200) + '…' : s
}

// ------------------------------------------------------------------------------------------------
// Clients (ws)
// ------------------------------------------------------------------------------------------------

const inboxes = new WeakMap()
const closes = new WeakMap()

/**
 * Attach an inbox (parsed JSON frames, in order) and a close tracker to `ws`. Done at creation so
 * no frame or close event is missed between awaits.
 */
export function track(ws, name = 'client') {
  if (inboxes.has(ws)) return ws
  const inbox = new AsyncQueue(name)
  inboxes.set(ws, inbox)
  ws.on('message', (data, isBinary) => {
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data).toString('utf8')
    let msg
    try {
      msg = JSON.parse(text)
    } catch {
      msg = { __unparsable: text, isBinary }
    }
    inbox.push(msg)
  })
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      const info = { code, reason: reason.toString('utf8') }
      inbox.end(`socket closed (${info.code} ${JSON.stringify(info.reason)})`)
      resolve(info)
    })
  })
  closes.set(ws, closed)
  ws.on('error', () => {}) // surfaced through close/timeouts; never an uncaught exception
  return ws
}

/** Open a `ws` client to `url`; resolves once open. Rejects on error, unexpected response, or timeout. */
export function connect(url, options = {}, { name = 'client', timeoutMs = 3000 } = {}) {
  const ws = track(new WebSocket(url, options), name)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error(`${name}: timed out after ${timeoutMs} ms opening ${url}`))
    }, timeoutMs)
    ws.once('open', () => {
      clearTimeout(timer)
      resolve(ws)
    })
    ws.once('unexpected-response', (req, res) => {
      clearTimeout(timer)
      reject(Object.assign(new Error(`${name}: unexpected HTTP ${res.statusCode} opening ${url}`), { statusCode: res.statusCode }))
      req.destroy()
    })
    ws.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

export function inboxOf(ws) {
  return track(ws) && inboxes.get(ws)
}

/** Next parsed message received by `ws` (in arrival order). */
export function nextMessage(ws, ms = 2000) {
  return inboxOf(ws).next(ms)
}

/** The next `n` messages received by `ws`. */
export async function collect(ws, n, ms = 5000) {
  const inbox = inboxOf(ws)
  const out = []
  const deadline = Date.now() + ms
  while (out.length < n) {
    const left = deadline - Date.now()
    if (left <= 0) throw new Error(`${inbox.name}: got ${out.length}/${n} messages within ${ms} ms`)
    try {
      out.push(await inbox.next(left))
    } catch (e) {
      e.message += ` (had ${out.length}/${n})`
      throw e
    }
  }
  return out
}

/** Bounded wait that must expire: rejects if `ws` receives any message within `ms`. */
export function expectNoMessage(ws, ms = 300) {
  return inboxOf(ws).expectNone(ms)
}

/** `{ code, reason }` of the close of `ws` (resolves immediately if already closed). */
export function waitClose(ws, ms = 3000) {
  track(ws)
  return withTimeout(closes.get(ws), ms, `close of ${inboxOf(ws).name}`)
}

/** Rejects if `ws` closes within `ms`. */
export async function expectStaysOpen(ws, ms) {
  track(ws)
  const closed = closes.get(ws)
  const result = await Promise.race([closed, new Promise((r) => setTimeout(() => r('open'), ms))])
  if (result !== 'open') throw new Error(`${inboxOf(ws).name} closed unexpectedly: ${result.code} ${JSON.stringify(result.reason)}`)
}

export function send(ws, event, data) {
  ws.send(JSON.stringify({ event, data }))
}

/** Send through the echo handler and expect the same data back next. */
export async function assertEcho(ws, data = { ping: Math.random() }, ms = 2000) {
  send(ws, 'echo', data)
  const msg = await nextMessage(ws, ms)
  if (JSON.stringify(msg) !== JSON.stringify({ event: 'echo', data })) {
    throw new Error(`echo mismatch: sent ${JSON.stringify(data)}, got ${JSON.stringify(msg)}`)
  }
}

/** Install the standard `echo` handler (untyped servers). */
export function echo(conn) {
  conn.onMessage('echo', (data) => conn.publish('echo', data))
}

/** HTTP status of a WebSocket upgrade attempt that is expected to be refused. */
export function upgradeStatus(url, ms = 3000) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error(`timed out after ${ms} ms waiting for the upgrade response of ${url}`))
    }, ms)
    ws.on('unexpected-response', (req, res) => {
      clearTimeout(timer)
      resolve(res.statusCode)
      req.destroy()
    })
    ws.on('open', () => {
      clearTimeout(timer)
      ws.terminate()
      resolve(101)
    })
    ws.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** Plain HTTP GET; resolves `{ status, headers, body }`. */
export function httpGet(url, ms = 3000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        clearTimeout(timer)
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') })
      })
    })
    const timer = setTimeout(() => {
      req.destroy()
      reject(new Error(`timed out after ${ms} ms on GET ${url}`))
    }, ms)
    req.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

// ------------------------------------------------------------------------------------------------
// Servers
// ------------------------------------------------------------------------------------------------

/**
 * Start a server on 127.0.0.1:0. `onConnection(conn)` runs synchronously in the server's connection
 * callback (register handlers there); every connection is also queued per namespace so a test can
 * pair a client with its server-side `conn`. Returns a harness with `close()` for `t.after`.
 */
export async function startServer(options = {}, { onConnection = echo } = {}) {
  const server = createServer({ host: HOST, port: 0, ...options })
  const queues = new Map()
  const queueFor = (ns) => {
    if (!queues.has(ns)) queues.set(ns, new AsyncQueue(`connections of namespace ${ns}`))
    return queues.get(ns)
  }
  const clients = new Set()
  server.onConnection((conn) => {
    onConnection(conn, '/')
    queueFor('/').push(conn)
  })
  for (const ns of Object.keys(options.namespaces ?? {})) {
    server.onConnection(ns, (conn) => {
      onConnection(conn, ns)
      queueFor(ns).push(conn)
    })
  }
  await server.listen()
  const port = server.port
  const basePath = options.path ?? '/ws'
  const h = {
    server,
    port,
    url: (p = basePath) => `ws://${HOST}:${port}${p}`,
    nsUrl: (ns) => `ws://${HOST}:${port}${basePath}/${ns}`,
    nextConnection: (ns = '/', ms = 3000) => queueFor(ns).next(ms),
    expectNoConnection: (ns = '/', ms = 300) => queueFor(ns).expectNone(ms),
    /** Open a client and await its server-side connection. Returns `[ws, conn]`. */
    async client({ ns = '/', name, options: wsOptions } = {}) {
      const url = ns === '/' ? h.url() : h.nsUrl(ns)
      const ws = await connect(url, wsOptions, { name: name ?? `client ${clients.size + 1}` })
      clients.add(ws)
      const conn = await h.nextConnection(ns)
      return [ws, conn]
    },
    adopt(ws) {
      clients.add(ws)
      return ws
    },
    shutdownDone: false,
    async close() {
      for (const ws of clients) ws.terminate()
      if (!h.shutdownDone) {
        h.shutdownDone = true
        await withTimeout(server.shutdown(1001, 'test over', { timeoutMs: 1000 }), 10_000, 'server.shutdown() in cleanup')
      }
    },
  }
  return h
}

// ------------------------------------------------------------------------------------------------
// Raw WebSocket client over net (for peers that misbehave on purpose)
// ------------------------------------------------------------------------------------------------

/**
 * Encode one masked client frame. `rsv` sets the reserved bits (RSV1 = 4, RSV2 = 2, RSV3 = 1), e.g.
 * RSV1 on the first frame of a permessage-deflate message.
 */
export function encodeFrame(opcode, payload, { fin = true, mask = true, rsv = 0 } = {}) {
  payload = Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
  const len = payload.length
  let header
  if (len < 126) {
    header = Buffer.alloc(2)
    header[1] = len
  } else if (len < 65536) {
    header = Buffer.alloc(4)
    header[1] = 126
    header.writeUInt16BE(len, 2)
  } else {
    header = Buffer.alloc(10)
    header[1] = 127
    header.writeBigUInt64BE(BigInt(len), 2)
  }
  header[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | opcode
  if (!mask) return Buffer.concat([header, payload])
  header[1] |= 0x80
  const key = crypto.randomBytes(4)
  const masked = Buffer.alloc(len)
  for (let i = 0; i < len; i++) masked[i] = payload[i] ^ key[i & 3]
  return Buffer.concat([header, key, masked])
}

/**
 * Decodes one server frame from the front of `buf`: `{ frame: { opcode, fin, rsv, payload, at, code?,
 * reason? }, rest }` (`rsv`: the three reserved bits, RSV1 = 4), or null while the frame is
 * incomplete. Masked frames (servers must not send them) are tolerated so a test can still see what
 * arrived.
 */
export function takeServerFrame(buf) {
  if (buf.length < 2) return null
  const opcode = buf[0] & 0x0f
  let len = buf[1] & 0x7f
  let off = 2
  if (len === 126) {
    if (buf.length < 4) return null
    len = buf.readUInt16BE(2)
    off = 4
  } else if (len === 127) {
    if (buf.length < 10) return null
    len = Number(buf.readBigUInt64BE(2))
    off = 10
  }
  if (buf[1] & 0x80) off += 4
  if (buf.length < off + len) return null
  const payload = buf.subarray(off, off + len)
  const frame = { opcode, fin: (buf[0] & 0x80) !== 0, rsv: (buf[0] >> 4) & 7, payload, at: Date.now() }
  if (opcode === 8 && payload.length >= 2) {
    frame.code = payload.readUInt16BE(0)
    frame.reason = payload.subarray(2).toString('utf8')
  }
  return { frame, rest: buf.subarray(off + len) }
}

/**
 * Handshake by hand over `net`. The returned peer never answers anything on its own (no pong, no
 * close reply): `frames` is an AsyncQueue of `{ opcode, payload, code?, reason? }` sent by the server,
 * `ended` resolves when the server ends/destroys the TCP connection.
 */
export function rawConnect(port, urlPath = '/ws', ms = 3000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, HOST)
    const key = crypto.randomBytes(16).toString('base64')
    const frames = new AsyncQueue('raw peer')
    let buf = Buffer.alloc(0)
    let upgraded = false
    let endedResolve
    const ended = new Promise((r) => (endedResolve = r))
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`raw handshake timed out after ${ms} ms`))
    }, ms)
    socket.on('error', () => {})
    socket.on('close', () => {
      endedResolve(Date.now())
      frames.end('TCP connection closed')
      if (!upgraded) {
        clearTimeout(timer)
        reject(new Error('raw handshake: connection closed before 101'))
      }
    })
    socket.on('end', () => endedResolve(Date.now()))
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      if (!upgraded) {
        const idx = buf.indexOf('\r\n\r\n')
        if (idx < 0) return
        const head = buf.subarray(0, idx).toString('latin1')
        buf = buf.subarray(idx + 4)
        clearTimeout(timer)
        if (!/^HTTP\/1\.1 101/.test(head)) {
          socket.destroy()
          reject(new Error(`raw handshake refused: ${head.split('\r\n')[0]}`))
          return
        }
        upgraded = true
        resolve(peer)
      }
      for (let taken; (taken = takeServerFrame(buf)); ) {
        buf = taken.rest
        frames.push(taken.frame)
      }
    })
    const peer = {
      socket,
      frames,
      ended,
      /** Next frame that is not a ping/pong. */
      async nextData(ms2 = 2000) {
        for (;;) {
          const f = await frames.next(ms2)
          if (f.opcode !== 9 && f.opcode !== 10) return f
        }
      },
      sendText(text) {
        socket.write(encodeFrame(1, Buffer.from(text)))
      },
      sendFrame(opcode, payload, opts) {
        socket.write(encodeFrame(opcode, payload, opts))
      },
      destroy() {
        socket.destroy()
      },
    }
    socket.write(
      `GET ${urlPath} HTTP/1.1\r\nHost: ${HOST}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    )
  })
}

// ------------------------------------------------------------------------------------------------
// Child processes
// ------------------------------------------------------------------------------------------------

/** Resolves `{ code, signal }` when `child` exits; rejects after `ms`. */
/**
 * Runs `node <file> ...args` on ephemeral ports (PORT=0, HOST=127.0.0.1, plus `env`), killed after
 * the test, and resolves with `{ child, url, line }`: the first http(s) or ws(s) URL the program
 * prints, and the line it was on.
 */
export async function startPrintingUrl(t, file, args = [], ms = 10_000, env = {}) {
  const child = spawn(process.execPath, [file, ...args], {
    cwd: path.dirname(file),
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(() => killChild(child))
  const lines = new AsyncQueue(`${path.basename(file)} output`)
  for (const stream of [child.stdout, child.stderr]) {
    stream.setEncoding('utf8')
    stream.on('data', (chunk) => chunk.split('\n').forEach((l) => l && lines.push(l)))
  }
  child.on('exit', (code) => lines.end(`${path.basename(file)} exited with ${code}`))
  for (;;) {
    const line = await lines.next(ms)
    const url = /((?:https?|wss?):\/\/[^\s'"]+)/.exec(line)?.[1]
    if (url) return { child, line, url: url.replace('0.0.0.0', '127.0.0.1').replace('localhost', '127.0.0.1') }
  }
}

export function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  }
  return withTimeout(
    new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    ms,
    `exit of child ${child.pid}`,
  )
}

/** Kill a child we started (by its handle) and wait for it to be gone. */
export async function killChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGKILL')
  await waitExit(child, 5000).catch(() => {})
}

/**
 * Fork an IPC fixture from `__test__/fixtures`. Returns `{ child, messages, request(cmd, ms) }` where
 * `messages` is an AsyncQueue of every IPC message and `request` sends `{ cmd, ...args }` and awaits
 * the reply carrying the same `reqId`.
 */
export function forkFixture(name, args = [], { execArgv = [] } = {}) {
  const child = fork(path.join(FIXTURES, name), args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv,
  })
  const messages = new AsyncQueue(`fixture ${name}`)
  const replies = new Map()
  let nextId = 1
  child.on('message', (m) => {
    if (m && m.reqId && replies.has(m.reqId)) {
      replies.get(m.reqId).resolve(m)
      replies.delete(m.reqId)
    } else {
      messages.push(m)
    }
  })
  child.on('exit', (code, signal) => {
    messages.end(`fixture exited (code ${code}, signal ${signal})`)
    for (const d of replies.values()) d.reject(new Error(`fixture ${name} exited (code ${code}, signal ${signal})`))
    replies.clear()
  })
  return {
    child,
    messages,
    request(cmd, extra = {}, ms = 5000) {
      const reqId = nextId++
      const d = deferred()
      replies.set(reqId, d)
      child.send({ cmd, reqId, ...extra })
      return withTimeout(d.promise, ms, `fixture reply to '${cmd}'`)
    },
    /** Next IPC message with `type`, skipping others (kept nowhere). */
    async nextOfType(type, ms = 5000) {
      const deadline = Date.now() + ms
      for (;;) {
        const m = await messages.next(Math.max(1, deadline - Date.now()))
        if (m && m.type === type) return m
      }
    },
  }
}

/** Spawn `node <fixture>` with piped stdout (lines queued). */
export function spawnFixture(name, args = []) {
  const child = spawn(process.execPath, [path.join(FIXTURES, name), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const lines = new AsyncQueue(`stdout of ${name}`)
  let pending = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk) => {
    pending += chunk
    let i
    while ((i = pending.indexOf('\n')) >= 0) {
      lines.push(pending.slice(0, i))
      pending = pending.slice(i + 1)
    }
  })
  child.stdout.on('end', () => lines.end('stdout ended'))
  return { child, lines }
}

export const MiB = 1024 * 1024

// ------------------------------------------------------------------------------------------------
// Handshake-level clients (authentication, policy, attach mode)
// ------------------------------------------------------------------------------------------------

/**
 * Attempt a WebSocket upgrade with a real `ws` client. Resolves `{ status: 101, ws }` once it opens
 * (the socket is `track`ed; the caller closes it) or `{ status, headers, body }` for a refused
 * upgrade, body read to its end. Rejects on a network error or after `ms`.
 * `options` are `ws` client options (`headers`, `origin`, …) plus `protocols`.
 */
export function tryUpgrade(url, { protocols, ...options } = {}, ms = 3000) {
  return new Promise((resolve, reject) => {
    const ws = protocols === undefined ? new WebSocket(url, options) : new WebSocket(url, protocols, options)
    track(ws, `upgrade ${url}`)
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error(`timed out after ${ms} ms waiting for the upgrade response of ${url}`))
    }, ms)
    ws.once('open', () => {
      clearTimeout(timer)
      resolve({ status: 101, ws })
    })
    ws.once('unexpected-response', (req, res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('error', () => {})
      res.on('end', () => {
        clearTimeout(timer)
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') })
        req.destroy()
      })
    })
    ws.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** A random, valid `Sec-WebSocket-Key`. */
export function websocketKey() {
  return crypto.randomBytes(16).toString('base64')
}

/**
 * Text of an upgrade request head. `key: null` / `version: null` omit those headers; `headers` adds
 * more (name → value).
 */
export function upgradeHead(urlPath = '/ws', { method = 'GET', key = websocketKey(), version = '13', headers = {}, host = HOST } = {}) {
  let head = `${method} ${urlPath} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
  if (key !== null) head += `Sec-WebSocket-Key: ${key}\r\n`
  if (version !== null) head += `Sec-WebSocket-Version: ${version}\r\n`
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`
  return head + '\r\n'
}

/** One complete HTTP response at the start of `buf` (Content-Length bodies, or up to EOF), or null. */
function parseHttpResponse(buf, eof) {
  const idx = buf.indexOf('\r\n\r\n')
  if (idx < 0) return null
  const lines = buf.subarray(0, idx).toString('latin1').split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0])
  if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(lines[0])}`)
  const headers = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
  }
  const status = Number(m[1])
  const start = idx + 4
  if (status === 101 || status === 204 || status === 304) {
    return { length: start, response: { status, statusText: m[2] ?? '', headers, body: '' } }
  }
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    // Minimal chunked decoding (what express/fastify may send).
    let off = start
    const parts = []
    for (;;) {
      const eol = buf.indexOf('\r\n', off)
      if (eol < 0) return null
      const size = parseInt(buf.subarray(off, eol).toString('latin1'), 16)
      if (buf.length < eol + 2 + size + 2) return null
      if (size === 0) {
        const body = Buffer.concat(parts).toString('utf8')
        return { length: eol + 4, response: { status, statusText: m[2] ?? '', headers, body } }
      }
      parts.push(buf.subarray(eol + 2, eol + 2 + size))
      off = eol + 2 + size + 2
    }
  }
  if (headers['content-length'] !== undefined) {
    const len = Number(headers['content-length'])
    if (buf.length < start + len) return null
    const body = buf.subarray(start, start + len).toString('utf8')
    return { length: start + len, response: { status, statusText: m[2] ?? '', headers, body } }
  }
  if (!eof) return null
  return { length: buf.length, response: { status, statusText: m[2] ?? '', headers, body: buf.subarray(start).toString('utf8') } }
}

/**
 * A raw TCP client that speaks HTTP/1.1 by hand and, after a 101, WebSocket frames: for requests a
 * real client would not send (bad versions, huge heads, slow heads) and for several requests on one
 * connection (attach mode). `request(text)` writes and awaits the next complete response
 * `{ status, statusText, headers, body }`; after a 101 the server's frames go to `frames`
 * (`{ opcode, payload, code?, reason? }`). `ended` resolves (with the time) when the server closes.
 */
export class RawHttpPeer {
  static connect(port, ms = 3000) {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, HOST)
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new Error(`raw TCP connect to ${port} timed out after ${ms} ms`))
      }, ms)
      socket.once('connect', () => {
        clearTimeout(timer)
        socket.setNoDelay(true)
        resolve(new RawHttpPeer(socket))
      })
      socket.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
    })
  }

  constructor(socket) {
    this.socket = socket
    this.buf = Buffer.alloc(0)
    this.mode = 'http'
    this.eof = false
    this.bytesReceived = 0
    this.frames = new AsyncQueue('raw http peer frames')
    this._waiter = null
    let endedResolve
    this.ended = new Promise((r) => (endedResolve = r))
    socket.on('error', () => {})
    socket.on('data', (chunk) => {
      this.bytesReceived += chunk.length
      this.buf = Buffer.concat([this.buf, chunk])
      this._pump()
    })
    const onEnd = () => {
      if (this.eof) return
      this.eof = true
      endedResolve(Date.now())
      this._pump()
      this.frames.end('TCP connection closed')
    }
    socket.on('end', onEnd)
    socket.on('close', onEnd)
  }

  _pump() {
    if (this.mode === 'http') {
      const w = this._waiter
      if (!w) return
      let parsed
      try {
        parsed = parseHttpResponse(this.buf, this.eof)
      } catch (e) {
        this._waiter = null
        return w.reject(e)
      }
      if (parsed) {
        this._waiter = null
        this.buf = this.buf.subarray(parsed.length)
        if (parsed.response.status === 101) this.mode = 'ws'
        w.resolve(parsed.response)
        if (this.mode === 'ws') this._pump()
      } else if (this.eof) {
        this._waiter = null
        w.reject(new Error(`connection closed before a complete HTTP response (had ${this.buf.length} bytes: ${JSON.stringify(this.buf.subarray(0, 120).toString('latin1'))})`))
      }
      return
    }
    for (let taken; (taken = takeServerFrame(this.buf)); ) {
      this.buf = taken.rest
      this.frames.push(taken.frame)
    }
  }

  /** The next complete HTTP response (rejects on timeout or if the server closes first). */
  response(ms = 3000) {
    if (this.mode !== 'http') return Promise.reject(new Error('already upgraded'))
    if (this._waiter) return Promise.reject(new Error('a response is already awaited'))
    const d = deferred()
    this._waiter = d
    this._pump()
    return withTimeout(d.promise, ms, 'an HTTP response on the raw connection').finally(() => {
      if (this._waiter === d) this._waiter = null
    })
  }

  /** Write `text` (or bytes) and await the next response. */
  request(data, ms = 3000) {
    const p = this.response(ms)
    this.socket.write(data)
    return p
  }

  write(data) {
    this.socket.write(data)
  }

  /** Next frame from the server that is not a ping/pong. */
  async nextData(ms = 2000) {
    for (;;) {
      const f = await this.frames.next(ms)
      if (f.opcode !== 9 && f.opcode !== 10) return f
    }
  }

  /** Next data frame parsed as a JSON envelope. */
  async nextJson(ms = 2000) {
    const f = await this.nextData(ms)
    if (f.opcode !== 1 && f.opcode !== 2) throw new Error(`expected a data frame, got opcode ${f.opcode} ${f.code ?? ''} ${f.reason ?? ''}`)
    return JSON.parse(f.payload.toString('utf8'))
  }

  sendText(text) {
    this.socket.write(encodeFrame(1, Buffer.from(text)))
  }

  sendJson(event, data) {
    this.sendText(JSON.stringify({ event, data }))
  }

  destroy() {
    this.socket.destroy()
  }
}
