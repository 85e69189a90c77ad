#!/usr/bin/env node
'use strict'
// ferrosocket benchmark runner: `npm run bench` (full, several minutes) or `npm run bench -- --quick`.
// Starts each peer server in its own fresh process per workload (pinned to one CPU with taskset),
// drives it with the Rust load generator (pinned to the other CPU), samples the server's CPU and RSS,
// and writes bench/results/<date>.json, .md (tables with ratios vs ws) and .svg (bar chart).
// See bench/README.md.

const { spawn, spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')
const {
  BENCH,
  ROOT,
  CLK_TCK,
  sleep,
  reporter,
  canRun,
  runLoadgen: runLoadgenWith,
  ensureNodeDeps,
  ensureLoadgen,
  machineInfo,
  medianOf,
  stamp,
  fmtInt,
  fmtX,
  fmtPct,
  fmtMs,
} = require('./lib/harness')
const { log, fail } = reporter('bench')
const runLoadgen = (args, timeoutMs) => runLoadgenWith(args, timeoutMs, { log, wrapper: PIN.loadgen })

const SOURCES = '127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4'

// ---------------------------------------------------------------------------------------------
// options
// ---------------------------------------------------------------------------------------------

const USAGE = `usage: node bench/run.js [--quick] [--peers ws,ferrosocket,ferrosocket-rust,socketio,uws] [--workloads ids]
                        [--shape batched|fine|both] [--duration S] [--repeat N] [--out DIR] [--no-pin]
                        [--server-cpu N] [--loadgen-cpu N]
  --quick         ~1 minute per couple of peers: shorter runs (2 s) and holds; same workloads
  --peers         which servers (default: every available one; ws is the baseline of the ratios)
  --workloads     comma list of: ${'echo,fanout-1k,fanout-10k,idle-10k,idle-19k,connect'}
                  and, only when named, the compressed variants
                  ${'fanout-1k-deflate,fanout-10k-deflate,idle-10k-deflate'}
  --shape         client shape of echo, fanout-1k, fanout-10k (default both). batched: the load
                  generator's own client, many frames per write. fine: tokio-tungstenite clients, one
                  message per write (workloads echo-fine, fanout-1k-fine, fanout-10k-fine, plus chat:
                  many rooms of 10-50, each member sending now and then); both: each next to the other
  --duration S    measured seconds per throughput run (default 10, quick 2)
  --repeat N      run every workload × peer N times (peers interleaved) and report medians
  --out DIR       results directory (default bench/results)
  --no-pin        do not pin with taskset
Peers: ws (+bufferutil) and socketio from bench/node_modules (installed on first run), ferrosocket
from the repository root (needs the addon built: npm run build), uws when $UWS_DIR points to a
/work/shared/peers/get-uws.sh install. Only when named: ferrosocket-telemetry (telemetry on at info, a
no-op sink), ferrosocket-scraped (the same, plus server.metrics() every second) and
ferrosocket-dashboard (the dashboard mounted, its state fetched over HTTP every second).
Compressed workloads (*-deflate): the load generator offers permessage-deflate (--deflate) and
publishes the ~1 KB chat-message JSON (--payload json1k); each peer runs with its compression env:
FERROSOCKET_COMPRESSION=1, WS_DEFLATE=1 (or as set in the environment, e.g. WS_DEFLATE=default),
UWS_COMPRESSION=shared; socketio has no compression variant and is skipped there.`

function parseArgs(argv) {
  const o = { quick: false, pin: true, out: path.join(BENCH, 'results') }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (a.includes('=')) return a.slice(a.indexOf('=') + 1)
      if (i + 1 >= argv.length) fail(`${a} needs a value`)
      return argv[++i]
    }
    const key = a.split('=')[0]
    if (key === '--quick') o.quick = true
    else if (key === '--no-pin') o.pin = false
    else if (key === '--peers') o.peers = val().split(',').map((s) => s.trim()).filter(Boolean)
    else if (key === '--workloads') o.workloads = val().split(',').map((s) => s.trim()).filter(Boolean)
    else if (key === '--shape') {
      o.shape = val()
      if (!['batched', 'fine', 'both'].includes(o.shape)) fail(`--shape must be batched, fine or both, not ${o.shape}`)
    } else if (key === '--duration') o.duration = Number(val())
    else if (key === '--repeat') o.repeat = Math.max(1, Number(val()) | 0)
    else if (key === '--out') o.out = path.resolve(val())
    else if (key === '--server-cpu') o.serverCpu = val()
    else if (key === '--loadgen-cpu') o.loadgenCpu = val()
    else if (key === '-h' || key === '--help') {
      console.log(USAGE)
      process.exit(0)
    } else fail(`unknown argument ${a}\n${USAGE}`)
  }
  return o
}

// ---------------------------------------------------------------------------------------------
// workloads
// ---------------------------------------------------------------------------------------------

function workloads(opts) {
  const d = String(opts.duration || (opts.quick ? 2 : 10))
  const warm = opts.quick ? '0.5' : '2'
  const hold = opts.quick ? '2.5' : '10'
  const fanout = (id, subs) => ({
    id,
    title: `fanout: ${subs.toLocaleString('en-US')} subscribers, 100 B, 4 broadcasts in flight`,
    mode: 'fanout',
    args: ['--subs', String(subs), '--window', '4', '--size', '100', '--duration', d, '--warmup', warm, '--sources', SOURCES],
    kind: 'rate',
    metric: 'deliveries_per_s',
    unit: 'deliveries/s',
    latency: ['delivery_us', ['p50', 'p99'], 'delivery'],
    latency2: ['completion_us', ['p50', 'p99'], 'completion'],
  })
  // Compressed variants: run only when named. The loadgen offers permessage-deflate (no context
  // takeover either way) and publishes ~1 KB of chat-message JSON; each peer gets its compression env.
  const DEFLATE = ['--deflate', '--payload', 'json1k']
  // ws compresses per socket and creates each socket's zlib stream on its first compressed send
  // (~4.5 s for 10,000 on one core): warm up until one broadcast reached every subscriber.
  const fanoutDeflate = (id, subs) => ({
    ...fanout(id, subs),
    title: `fanout, permessage-deflate: ${subs.toLocaleString('en-US')} subscribers, 1 KB JSON, 4 broadcasts in flight`,
    args: ['--subs', String(subs), '--window', '4', ...DEFLATE, '--duration', d, '--warmup', warm, '--warmup-completions', '1', '--sources', SOURCES],
    deflate: true,
    onlyNamed: true,
  })
  // The fine client shape (loadgen --shape fine): tokio-tungstenite clients, one message per
  // write, a window slot reused only when its reply or broadcast came back. Same loads.
  const fine = (wl) => ({
    ...wl,
    id: `${wl.id}-fine`,
    title: `${wl.title} — fine clients (one message per write)`,
    args: [...wl.args, '--shape', 'fine'],
    shape: 'fine',
  })
  const echo = {
    id: 'echo',
    title: 'echo: 100 conns × 16 in flight × 64 B',
    mode: 'echo',
    args: ['--conns', '100', '--inflight', '16', '--size', '64', '--duration', d, '--warmup', warm],
    kind: 'rate',
    metric: 'msgs_per_s',
    unit: 'msg/s',
    latency: ['rtt_us', ['p50', 'p90', 'p99'], 'RTT'],
    shape: 'batched',
  }
  // Chat: 5,000 members in rooms of 10–50 (fixed seed), each sending one 100 B bcast to its room
  // every 2 s ± 50 %: 2,500 messages/s offered, each delivered to every member of the room.
  const chat = {
    id: 'chat',
    title: 'chat — fine clients: 5,000 members in rooms of 10–50, each sends one 100 B message per 2 s ± 50 % to its room',
    mode: 'chat',
    args: ['--conns', '5000', '--room-min', '10', '--room-max', '50', '--interval-ms', '2000', '--window', '1', '--size', '100', '--duration', d, '--warmup', warm, '--sources', SOURCES, '--shape', 'fine'],
    kind: 'rate',
    metric: 'deliveries_per_s',
    unit: 'deliveries/s',
    latency: ['delivery_us', ['p50', 'p99'], 'delivery'],
    latency2: ['completion_us', ['p50', 'p99'], 'completion'],
    shape: 'fine',
  }
  return [
    echo,
    fine(echo),
    { ...fanout('fanout-1k', 1000), shape: 'batched' },
    fine(fanout('fanout-1k', 1000)),
    { ...fanout('fanout-10k', 10000), shape: 'batched' },
    fine(fanout('fanout-10k', 10000)),
    chat,
    {
      id: 'idle-10k',
      title: 'idle: 10,000 connections held',
      mode: 'idle',
      args: ['--conns', '10000', '--hold', hold, '--sources', SOURCES],
      kind: 'idle',
      conns: 10000,
    },
    {
      id: 'idle-19k',
      title: 'idle: 19,000 connections held',
      mode: 'idle',
      args: ['--conns', '19000', '--hold', hold, '--sources', SOURCES],
      kind: 'idle',
      conns: 19000,
    },
    {
      id: 'connect',
      title: 'connect: 50 concurrent connect → handshake → close loops',
      mode: 'connect',
      args: ['--conns', '50', '--duration', d, '--warmup', warm, '--sources', SOURCES],
      kind: 'rate',
      metric: 'handshakes_per_s',
      unit: 'handshakes/s',
      latency: ['handshake_us', ['p50', 'p99'], 'handshake'],
    },
    fanoutDeflate('fanout-1k-deflate', 1000),
    fanoutDeflate('fanout-10k-deflate', 10000),
    {
      id: 'idle-10k-deflate',
      title: 'idle, permessage-deflate negotiated: 10,000 connections held',
      mode: 'idle',
      args: ['--conns', '10000', '--hold', hold, '--sources', SOURCES, '--deflate'],
      kind: 'idle',
      conns: 10000,
      deflate: true,
      onlyNamed: true,
    },
  ]
}

/**
 * The workloads to run. Without --workloads: the default list (not onlyNamed) in the shape(s)
 * asked for — --shape batched: echo, the fan-outs, idle and connect; fine: echo-fine,
 * fanout-1k-fine, fanout-10k-fine and chat; both (default): each batched workload followed by its fine variant, then chat,
 * then idle and connect. A named id with both shapes (echo, fanout-1k, fanout-10k) stands for
 * its variant(s) of the shape(s) asked for; other ids (`*-fine`, chat, idle, connect, the
 * compressed ones) are taken as named. The compressed workloads run only when named.
 */
function selectWorkloads(all, opts) {
  const shape = opts.shape || 'both'
  const shapes = shape === 'both' ? ['batched', 'fine'] : [shape]
  const byId = (id) => all.find((w) => w.id === id)
  const pick = (id) => {
    const w = byId(id) || fail(`unknown workload ${id}`)
    const f = byId(`${id}-fine`)
    if (w.shape !== 'batched' || !f) return [w]
    return shapes.map((s) => (s === 'fine' ? f : w))
  }
  if (opts.workloads) return [...new Map(opts.workloads.flatMap(pick).map((w) => [w.id, w])).values()]
  const defaults = all.filter((w) => !w.onlyNamed)
  if (shape === 'batched') return defaults.filter((w) => w.shape !== 'fine')
  if (shape === 'fine') return defaults.filter((w) => w.shape === 'fine')
  return defaults
}

// ---------------------------------------------------------------------------------------------
// peers
// ---------------------------------------------------------------------------------------------

// The env that turns a peer's compression on (the *-deflate workloads); a value already in the
// environment wins (e.g. WS_DEFLATE=default, FERROSOCKET_COMPRESSION='{"level":6}').
const FERRO_DEFLATE = () => ({ FERROSOCKET_COMPRESSION: process.env.FERROSOCKET_COMPRESSION || '1' })
const DEFLATE_ENV = {
  ws: () => ({ WS_DEFLATE: process.env.WS_DEFLATE || '1' }),
  uws: () => ({ UWS_COMPRESSION: process.env.UWS_COMPRESSION || 'shared' }),
}
const deflateEnv = (name) => (DEFLATE_ENV[name] || (PEERS[name].script.startsWith('ferrosocket') ? FERRO_DEFLATE : () => null))()

function uwsNode() {
  const dir = process.env.UWS_DIR
  if (!dir) return null
  const bin = path.join(dir, 'bin', 'node-uws')
  return fs.existsSync(bin) ? bin : process.execPath
}

/** A ferrosocket peer: `script` with `env` (a variant that runs only when named, when given). */
function ferrosocketPeer(script, env) {
  return {
    script,
    ...(env ? { env } : {}),
    proto: 'plain',
    path: '/ws',
    check: () => canRun(process.execPath, `require(${JSON.stringify(path.join(ROOT, 'index.js'))})`, ROOT),
  }
}

const PEERS = {
  ws: {
    script: 'ws.js',
    proto: 'plain',
    path: '/ws',
    check: () => canRun(process.execPath, "require('ws'); require('bufferutil')", BENCH),
  },
  ferrosocket: ferrosocketPeer('ferrosocket.js'),
  // inlineIo on (one CPU: the JS thread reads sockets between its batches; see the README).
  'ferrosocket-inline': ferrosocketPeer('ferrosocket.js', { FERROSOCKET_INLINE_IO: '1' }),
  // Observability cost: telemetry on at info with a no-op sink, and metrics scraped every second.
  'ferrosocket-telemetry': ferrosocketPeer('ferrosocket.js', { FERROSOCKET_TELEMETRY: 'info' }),
  'ferrosocket-scraped': ferrosocketPeer('ferrosocket.js', { FERROSOCKET_TELEMETRY: 'info', FERROSOCKET_SCRAPE_MS: '1000' }),
  // The operators' dashboard mounted, with a page open: its state polled once a second over HTTP.
  'ferrosocket-dashboard': ferrosocketPeer('ferrosocket.js', { FERROSOCKET_DASHBOARD_POLL_MS: '1000' }),
  // Multi-core: the same server with one or two Rust I/O threads (run these with --no-pin, so the
  // server may use every core).
  'ferrosocket-1io': ferrosocketPeer('ferrosocket.js', { FERROSOCKET_WORKER_THREADS: '1' }),
  'ferrosocket-2io': ferrosocketPeer('ferrosocket.js', { FERROSOCKET_WORKER_THREADS: '2' }),
  'ferrosocket-conn': ferrosocketPeer('ferrosocket-conn.js'),
  'ferrosocket-rust': ferrosocketPeer('ferrosocket-rust.js'),
  socketio: {
    script: 'socketio.js',
    proto: 'socketio',
    path: '/socket.io/?EIO=4&transport=websocket',
    check: () => canRun(process.execPath, "require('socket.io')", BENCH),
  },
  uws: {
    script: 'uws.js',
    proto: 'plain',
    path: '/ws',
    node: uwsNode,
    check: () => {
      if (!process.env.UWS_DIR) return 'UWS_DIR is not set (see /work/shared/peers/get-uws.sh)'
      // peers/uws.js listens when loaded, so only probe that the module loads the way it does
      const probe = `const d=process.env.UWS_DIR, p=require('path'); let ok=false
        for (const c of [p.join(d,'node_modules','uWebSockets.js'), p.join(d,'uws'), d]) { try { require(c); ok=true; break } catch {} }
        if (!ok) throw new Error('uWebSockets.js does not load from ' + d)`
      return canRun(uwsNode(), probe, BENCH)
    },
  },
}
const PEER_ORDER = ['ws', 'ferrosocket', 'ferrosocket-inline', 'ferrosocket-telemetry', 'ferrosocket-scraped', 'ferrosocket-dashboard', 'ferrosocket-1io', 'ferrosocket-2io', 'ferrosocket-conn', 'ferrosocket-rust', 'socketio', 'uws']

function peerVersion(name) {
  const read = (p) => {
    try {
      return JSON.parse(fs.readFileSync(p, 'utf8')).version
    } catch {
      return undefined
    }
  }
  if (name === 'ws') return `ws ${read(path.join(BENCH, 'node_modules/ws/package.json'))} + bufferutil ${read(path.join(BENCH, 'node_modules/bufferutil/package.json'))}`
  if (name === 'socketio') return `socket.io ${read(path.join(BENCH, 'node_modules/socket.io/package.json'))}`
  if (name === 'ferrosocket') return `ferrosocket ${read(path.join(ROOT, 'package.json'))}`
  if (name === 'ferrosocket-conn') return `ferrosocket ${read(path.join(ROOT, 'package.json'))} (handlers per connection)`
  if (name === 'ferrosocket-rust') return `ferrosocket ${read(path.join(ROOT, 'package.json'))} (Rust-only reference handlers)`
  if (name === 'uws') {
    const d = process.env.UWS_DIR
    return `uWebSockets.js ${read(path.join(d, 'node_modules/uWebSockets.js/package.json')) || read(path.join(d, 'uws/package.json')) || '?'}`
  }
}

// ---------------------------------------------------------------------------------------------
// processes
// ---------------------------------------------------------------------------------------------

let PIN = { server: [], loadgen: [] }

function procStat(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (k) => Number((status.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm')) || [])[1] || 0)
    const threads = kb('Threads')
    return { cpu_s: (Number(f[11]) + Number(f[12])) / CLK_TCK, rss_kb: kb('VmRSS'), hwm_kb: kb('VmHWM'), threads }
  } catch {
    return null
  }
}

/** Start a peer; resolves { child, pid, port, stderr() } once it prints LISTENING <port>. */
function startServer(name, extraEnv) {
  const peer = PEERS[name]
  const node = (peer.node && peer.node()) || process.execPath
  const script = path.join(BENCH, 'peers', peer.script)
  // Raise the fd soft limit to the hard one (19,000 idle connections need it), then exec pinned node.
  const cmd = ['bash', '-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'bench-peer', ...PIN.server, node, script]
  const child = spawn(cmd[0], cmd.slice(1), {
    cwd: BENCH,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ...peer.env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let err = ''
  child.stderr.on('data', (d) => {
    err = (err + d).slice(-4000)
  })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${name}: no LISTENING line within 20 s; stderr: ${err.trim().slice(-500)}`))
    }, 20000)
    child.stdout.on('data', (d) => {
      out += d
      const m = out.match(/LISTENING (\d+)/)
      if (m) {
        clearTimeout(timer)
        child.stdout.removeAllListeners('data')
        child.stdout.resume()
        resolve({ child, pid: child.pid, port: Number(m[1]), stderr: () => err })
      }
    })
    child.on('exit', (code, sig) => {
      clearTimeout(timer)
      reject(new Error(`${name}: exited (${code ?? sig}) before listening; stderr: ${err.trim().slice(-800)}`))
    })
  })
}

async function stopServer(s) {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return
  const exited = new Promise((r) => s.child.once('exit', r))
  s.child.kill('SIGTERM')
  const t = setTimeout(() => s.child.kill('SIGKILL'), 4000)
  await exited
  clearTimeout(t)
}

function runTimeoutMs(wl) {
  const num = (k, def) => {
    const i = wl.args.indexOf(k)
    return i >= 0 ? Number(wl.args[i + 1]) : def
  }
  const conns = num('--conns', 0) + num('--subs', 0)
  return (num('--duration', 0) + num('--warmup', 1) + num('--hold', 0) + 60 + conns / 200) * 1000
}

async function runOne(name, wl) {
  const rec = { workload: wl.id, peer: name }
  const env = wl.deflate ? deflateEnv(name) : null
  if (wl.deflate) {
    if (!env) {
      rec.error = `${name} has no compression variant`
      return rec
    }
    rec.env = env
  }
  let server
  try {
    server = await startServer(name, env)
  } catch (e) {
    rec.error = e.message
    return rec
  }
  try {
    await sleep(500) // let startup work (JIT, GC) settle before the idle baseline
    rec.server_before = procStat(server.pid)
    const url = `ws://127.0.0.1:${server.port}${PEERS[name].path}`
    const args = [wl.mode, '--url', url, '--proto', PEERS[name].proto, '--server-pid', String(server.pid), ...wl.args]
    rec.command = `loadgen ${args.map((a) => (/[?&]/.test(a) ? `'${a}'` : a)).join(' ')}`
    const r = await runLoadgen(args, runTimeoutMs(wl))
    rec.server_after = procStat(server.pid)
    rec.server_alive = server.child.exitCode === null && server.child.signalCode === null
    if (!r.json) {
      rec.error = `loadgen failed (exit ${r.code ?? r.sig}): ${r.stderr.trim().slice(-500)}`
    } else {
      rec.loadgen = r.json
    }
    if (!rec.server_alive) rec.error = (rec.error ? rec.error + '; ' : '') + `server died: ${server.stderr().trim().slice(-500)}`
  } finally {
    await stopServer(server)
  }
  rec.summary = summarize(wl, rec)
  return rec
}

// ---------------------------------------------------------------------------------------------
// summaries, ratios
// ---------------------------------------------------------------------------------------------

function summarize(wl, rec) {
  const j = rec.loadgen
  if (!j) return null
  if (wl.kind === 'idle') {
    const s = j.server || {}
    return {
      opened: j.opened,
      failed: j.failed,
      closed_early: j.closed_early,
      still_open: j.still_open,
      open_s: j.open_s,
      rss_baseline_kb: s.rss_kb_baseline,
      rss_held_kb: s.rss_kb_held,
      rss_bytes_per_conn: s.rss_bytes_per_conn,
      ...(wl.deflate ? { deflate_negotiated: j.deflate?.negotiated ?? 0 } : {}),
      ok: j.failed === 0 && j.closed_early === 0 && j.opened === wl.conns,
    }
  }
  const w = j.window || {}
  const srv = w.server || {}
  const sum = {
    rate: j[wl.metric],
    per_cpu_s: srv.per_cpu_s,
    server_cpu_util: srv.cpu_util,
    loadgen_cpu_util: w.loadgen?.cpu_util,
    ctx_switches_per_s: srv.ctx_switches_per_s,
    latency: {},
  }
  for (const lat of [wl.latency, wl.latency2].filter(Boolean)) {
    const [k, ps] = lat
    sum.latency[k] = Object.fromEntries(ps.map((p) => [p, j[k]?.[p]]))
  }
  if (wl.mode === 'fanout') {
    sum.subscribed = j.subscribed
    sum.broadcasts_per_s = j.broadcasts_per_s
    sum.wire_bytes_per_delivery = j.wire_bytes_per_delivery
    sum.payload_bytes_per_delivery = j.payload_bytes_per_delivery
    sum.ok = j.subscribed === j.params.subs && !j.publisher_error && j.conns.closed_early === 0 && j.ms_since_last_completion < 2000
    if (wl.deflate) {
      // share of the deliveries that came compressed; handshakes that negotiated the extension
      sum.compressed_share = j.deliveries ? j.compressed_deliveries / j.deliveries : null
      sum.deflate_negotiated = j.deflate?.negotiated ?? 0
      // A server compressing per recipient (ws) can take longer than a quick run's window to reach
      // 10,000 subscribers: no broadcast completes, yet deliveries flow. Here a stall is 2 s
      // without any delivery (older loadgen output: without a completion).
      const quiet = j.ms_since_last_delivery ?? j.ms_since_last_completion
      sum.ok = j.subscribed === j.params.subs && !j.publisher_error && j.conns.closed_early === 0 && quiet < 2000 && j.deliveries > 0 && (j.deflate?.inflate_errors ?? 0) === 0
    }
    if (!j.broadcasts_completed) sum.latency.completion_us = { p50: null, p99: null } // none completed in the window
  } else if (wl.mode === 'chat') {
    sum.subscribed = j.subscribed
    sum.broadcasts_per_s = j.broadcasts_per_s
    sum.offered_deliveries_per_s = j.offered_deliveries_per_s
    sum.skipped_sends = j.skipped_sends
    sum.ok = j.subscribed === j.params.conns && j.conns.closed_early === 0 && j.lost_broadcasts === 0 && j.deliveries > 0 && j.ms_since_last_completion < 2000
  } else if (wl.mode === 'echo') {
    sum.ok = j.conns.failed === 0 && j.conns.closed_early === 0 && j.messages > 0
  } else {
    sum.failed = j.failed
    sum.unclean_close = j.unclean_close
    sum.ok = j.failed === 0 && (j.unclean_close ?? 0) === 0 && j.handshakes > 0
  }
  return sum
}

/** One record per peer for a workload: the median summary over its repetitions. */
function aggregate(wl, runs, peers) {
  return peers.map((peer) => {
    const mine = runs.filter((r) => r.peer === peer)
    const good = mine.filter((r) => r.summary)
    const rec = { workload: wl.id, peer, runs: mine.length, ok_runs: good.length }
    if (!good.length) {
      rec.error = mine.find((r) => r.error)?.error || 'no result'
      return rec
    }
    rec.summary = medianOf(good.map((r) => r.summary))
    rec.summary.ok = mine.every((r) => r.summary?.ok)
    if (good.length > 1) {
      const key = wl.kind === 'idle' ? 'rss_bytes_per_conn' : 'per_cpu_s'
      const xs = good.map((r) => r.summary[key]).filter((x) => x != null)
      rec.spread = { key, min: Math.min(...xs), max: Math.max(...xs) }
    }
    return rec
  })
}

/** Ratios of each peer to ws for one workload (higher = better for rates; for idle RSS lower = better). */
function ratios(wl, recs) {
  const base = recs.find((r) => r.peer === 'ws')?.summary
  const out = {}
  for (const r of recs) {
    const s = r.summary
    if (!s || !base) continue
    if (wl.kind === 'idle') {
      out[r.peer] = {
        rss_per_conn_vs_ws: s.rss_bytes_per_conn && base.rss_bytes_per_conn ? s.rss_bytes_per_conn / base.rss_bytes_per_conn : null,
      }
    } else {
      out[r.peer] = {
        raw_vs_ws: s.rate && base.rate ? s.rate / base.rate : null,
        per_cpu_vs_ws: s.per_cpu_s && base.per_cpu_s ? s.per_cpu_s / base.per_cpu_s : null,
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// markdown
// ---------------------------------------------------------------------------------------------

const fmtKB = (b) => (b == null ? '–' : (b / 1000).toFixed(2))

/** `12,345 + 678`: a server's voluntary and involuntary context switches per second. */
function fmtSwitches(c) {
  return c ? `${fmtInt(c.voluntary)} + ${fmtInt(c.involuntary)}` : '–'
}

function markdown(report) {
  const L = []
  const m = report.machine
  L.push(`# ferrosocket benchmark — ${report.date}${report.quick ? ' (quick)' : ''}`)
  L.push('')
  L.push(`- Command: \`${report.command}\``)
  if (report.repeat > 1) L.push(`- Every workload × server ran ${report.repeat} times, servers interleaved; tables show medians.`)
  L.push(`- Machine: ${m.cpu_model}, ${m.cpus} CPUs, ${m.mem_gib} GiB RAM, Linux ${m.kernel}; Node ${m.node}; fd limit ${m.nofile}`)
  L.push(`- Pinning: ${report.pinning}`)
  L.push(`- Peers: ${report.peers.map((p) => report.peer_versions[p]).join('; ')}`)
  if (Object.keys(report.skipped).length)
    L.push(`- Skipped: ${Object.entries(report.skipped).map(([p, why]) => `${p} (${why})`).join('; ')}`)
  L.push(
    '- Per server CPU-second = work done in the measured window ÷ CPU seconds the server process used in it ' +
      '(utime+stime of all its threads, from /proc). Ratios are against `ws` in the same run.',
  )
  L.push('')

  // summary
  const others = report.peers.filter((p) => p !== 'ws')
  if (report.peers.includes('ws') && others.length) {
    L.push('## Ratios vs ws')
    L.push('')
    L.push(`| workload | client shape | measure | ${others.join(' | ')} |`)
    L.push(`|---|---|---|${others.map(() => '---:').join('|')}|`)
    for (const wl of report.workloads) {
      const r = report.ratios[wl.id] || {}
      if (wl.kind === 'idle') {
        L.push(`| ${wl.id} | – | RSS per connection (lower is better) | ${others.map((p) => fmtX(r[p]?.rss_per_conn_vs_ws)).join(' | ')} |`)
      } else {
        const sh = wl.shape || '–'
        L.push(`| ${wl.id} | ${sh} | ${wl.unit} | ${others.map((p) => fmtX(r[p]?.raw_vs_ws)).join(' | ')} |`)
        L.push(`| ${wl.id} | ${sh} | ${wl.unit.replace('/s', '')} per server CPU-s | ${others.map((p) => fmtX(r[p]?.per_cpu_vs_ws)).join(' | ')} |`)
      }
    }
    L.push('')
  }

  for (const wl of report.workloads) {
    const recs = report.aggregate[wl.id] || []
    const raw = report.runs.filter((x) => x.workload === wl.id)
    const r = report.ratios[wl.id] || {}
    L.push(`## ${wl.title}`)
    L.push('')
    if (wl.shape === 'fine') L.push('Client shape: **fine** — tokio-tungstenite connections, one message per write, a window slot reused when its reply or broadcast came back.\n')
    else if (wl.shape) L.push("Client shape: **batched** — the load generator's own client, many frames per write.\n")
    if (wl.kind === 'idle') {
      const dz = wl.deflate
      L.push(`| server | opened | failed | closed early | open time (s) | RSS before (MiB) | RSS held (MiB) | RSS / conn (KB) | vs ws |${dz ? ' deflate negotiated |' : ''}`)
      L.push(`|---|---:|---:|---:|---:|---:|---:|---:|---:|${dz ? '---:|' : ''}`)
      for (const rec of recs) {
        const s = rec.summary
        if (!s) {
          L.push(`| ${rec.peer} | error: ${String(rec.error).replace(/\|/g, '/').replace(/\n/g, ' ').slice(0, 200)} ||||||||`)
          continue
        }
        L.push(
          `| ${rec.peer} | ${fmtInt(s.opened)} | ${fmtInt(s.failed)} | ${fmtInt(s.closed_early)} | ${s.open_s?.toFixed(2)} | ${(s.rss_baseline_kb / 1024).toFixed(1)} | ${(s.rss_held_kb / 1024).toFixed(1)} | ${fmtKB(s.rss_bytes_per_conn)} | ${fmtX(r[rec.peer]?.rss_per_conn_vs_ws)} |${dz ? ` ${fmtInt(s.deflate_negotiated)} |` : ''}`,
        )
      }
    } else {
      const lats = [wl.latency, wl.latency2].filter(Boolean)
      const latCols = lats.flatMap(([, ps, label]) => ps.map((p) => `${label} ${p} (ms)`))
      const dz = wl.deflate
      const dzCols = dz ? ' wire B / delivery | payload B / delivery | compressed |' : ''
      L.push(`| server | ${wl.unit} | per server CPU-s | vs ws | vs ws per CPU-s | ${latCols.join(' | ')} | server CPU | loadgen CPU | server context switches/s (voluntary + involuntary) |${dzCols}`)
      L.push(`|---|---:|---:|---:|---:|${latCols.map(() => '---:').join('|')}|---:|---:|---:|${dz ? '---:|---:|---:|' : ''}`)
      for (const rec of recs) {
        const s = rec.summary
        if (!s) {
          L.push(`| ${rec.peer} | error: ${String(rec.error).replace(/\|/g, '/').replace(/\n/g, ' ').slice(0, 200)} |`)
          continue
        }
        const latVals = lats.flatMap(([k, ps]) => ps.map((p) => fmtMs(s.latency[k]?.[p])))
        L.push(
          `| ${rec.peer}${s.ok ? '' : ' ⚠'} | ${fmtInt(s.rate)} | ${fmtInt(s.per_cpu_s)} | ${fmtX(r[rec.peer]?.raw_vs_ws)} | ${fmtX(r[rec.peer]?.per_cpu_vs_ws)} | ${latVals.join(' | ')} | ${fmtPct(s.server_cpu_util)} | ${fmtPct(s.loadgen_cpu_util)} | ${fmtSwitches(s.ctx_switches_per_s)} |` +
            (dz ? ` ${s.wire_bytes_per_delivery?.toFixed(0) ?? '–'} | ${s.payload_bytes_per_delivery?.toFixed(0) ?? '–'} | ${fmtPct(s.compressed_share)} |` : ''),
        )
      }
    }
    if (report.repeat > 1) {
      const sp = recs.filter((x) => x.spread).map((x) => `${x.peer} ${fmtInt(x.spread.min)}–${fmtInt(x.spread.max)}`)
      L.push(`\nMedians of ${report.repeat} runs per server (peers interleaved). Range of ${wl.kind === 'idle' ? 'RSS bytes per connection' : 'work per server CPU-s'}: ${sp.join('; ')}.`)
    }
    const notes = raw.filter((x) => x.error || (x.summary && !x.summary.ok))
    for (const n of notes) L.push(`\n⚠ ${n.peer}${report.repeat > 1 ? ` (run ${n.rep + 1})` : ''}: ${n.error || describeProblem(wl, n)}`)
    if (wl.mode === 'chat') {
      for (const x of raw.filter((y) => y.loadgen)) {
        const j = x.loadgen
        if (j.skipped_sends) L.push(`\nℹ ${x.peer}: ${fmtInt(j.skipped_sends)} send times skipped in the window (a member's previous message had not reached its whole room yet): ${fmtInt(j.deliveries_per_s)} of ${fmtInt(j.offered_deliveries_per_s)} offered deliveries/s.`)
        else if (j.deliveries_per_s < 0.9 * j.offered_deliveries_per_s) L.push(`\nℹ ${x.peer}: ${fmtInt(j.deliveries_per_s)} of ${fmtInt(j.offered_deliveries_per_s)} offered deliveries/s — it fell behind the offered load (see its latencies).`)
      }
    }
    if (wl.deflate) {
      const envs = [...new Map(raw.filter((x) => x.env).map((x) => [x.peer, x.env])).entries()]
      if (envs.length) L.push(`\nCompression: ${envs.map(([p, e]) => `${p} ${Object.entries(e).map(([k, v]) => `${k}=${v}`).join(' ')}`).join('; ')}; load generator \`--deflate\` (offer: \`${raw.find((x) => x.loadgen?.deflate)?.loadgen.deflate.offer ?? '–'}\`), publishers send uncompressed.`)
      for (const x of raw.filter((y) => y.loadgen?.deflate)) {
        const dfl = x.loadgen.deflate
        if (dfl.negotiated < dfl.handshakes)
          L.push(`\nℹ ${x.peer}${report.repeat > 1 ? ` (run ${x.rep + 1})` : ''}: permessage-deflate negotiated on ${fmtInt(dfl.negotiated)} of ${fmtInt(dfl.handshakes)} connections — ${dfl.negotiated ? 'partly' : 'this run is'} uncompressed.`)
        else if (dfl.server_context_takeover) L.push(`\nℹ ${x.peer}: the server kept its compression context on ${fmtInt(dfl.server_context_takeover)} connections (response \`${dfl.response}\`).`)
        if (wl.mode === 'fanout' && x.loadgen.broadcasts_completed === 0 && x.loadgen.deliveries > 0)
          L.push(`\nℹ ${x.peer}: no broadcast reached all ${fmtInt(x.loadgen.params.subs)} subscribers within the ${x.loadgen.params.duration_s} s window; the rate counts the ${fmtInt(x.loadgen.deliveries)} deliveries that arrived in it.`)
      }
    }
    L.push('')
  }
  L.push(`Chart: [${path.basename(report.files.svg)}](${path.basename(report.files.svg)}) · raw data: [${path.basename(report.files.json)}](${path.basename(report.files.json)})`)
  L.push('')
  return L.join('\n')
}

function describeProblem(wl, rec) {
  const j = rec.loadgen
  if (!j) return 'no result'
  if (wl.kind === 'idle') return `opened ${j.opened}/${wl.conns}, failed ${j.failed}, closed early ${j.closed_early}${j.conns?.first_error ? ` (first error: ${j.conns.first_error})` : ''}`
  if (wl.mode === 'fanout')
    return `subscribed ${j.subscribed}/${j.params.subs}, closed early ${j.conns.closed_early}, failed ${j.conns.failed}, last completion ${j.ms_since_last_completion} ms before the end${j.ms_since_last_delivery != null ? ` (last delivery ${j.ms_since_last_delivery} ms)` : ''}${j.deflate?.inflate_errors ? `, ${j.deflate.inflate_errors} inflate errors (${j.deflate.first_inflate_error})` : ''}${j.publisher_error ? `, ${j.publisher_error}` : ''}${j.conns.first_error ? ` (first error: ${j.conns.first_error})` : ''}`
  if (wl.mode === 'chat')
    return `members joined ${j.subscribed}/${j.params.conns}, closed early ${j.conns.closed_early}, failed ${j.conns.failed}, ${j.lost_broadcasts} messages lost, last completion ${j.ms_since_last_completion} ms before the end${j.conns.first_error ? ` (first error: ${j.conns.first_error})` : ''}`
  if (wl.mode === 'echo') return `failed ${j.conns.failed}, closed early ${j.conns.closed_early}${j.conns.first_error ? ` (first error: ${j.conns.first_error})` : ''}`
  return `failed handshakes ${j.failed}, unclean closes ${j.unclean_close ?? 0}${j.first_error ? ` (first error: ${j.first_error})` : ''}`
}

// ---------------------------------------------------------------------------------------------
// SVG chart (hand-written: grouped bars, one group per workload, one bar per server, ws = 1)
// ---------------------------------------------------------------------------------------------

const COLORS = { ws: '#8c8c8c', ferrosocket: '#d9480f', 'ferrosocket-rust': '#f59f00', socketio: '#1971c2', uws: '#2f9e44' }
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function svgPanel(y0, title, groups, peers, width) {
  // groups: [{ label, values: {peer: ratio|null} }]
  const H = 300
  const left = 60
  const right = 20
  const top = y0 + 40
  const plotH = H - 90
  const plotW = width - left - right
  const max = Math.max(1.2, ...groups.flatMap((g) => Object.values(g.values).filter((v) => Number.isFinite(v)))) * 1.15
  const step = max > 8 ? 2 : max > 4 ? 1 : max > 2 ? 0.5 : 0.25
  const y = (v) => top + plotH - (v / max) * plotH
  const out = []
  out.push(`<text x="${left}" y="${y0 + 22}" font-size="15" font-weight="bold">${esc(title)}</text>`)
  for (let t = 0; t <= max + 1e-9; t += step) {
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e9ecef"/>`)
    out.push(`<text x="${left - 6}" y="${(y(t) + 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#495057">${t}×</text>`)
  }
  out.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(1).toFixed(1)}" y2="${y(1).toFixed(1)}" stroke="#495057" stroke-dasharray="4 3"/>`)
  const gw = plotW / Math.max(1, groups.length)
  const bw = Math.min(34, (gw - 16) / Math.max(1, peers.length))
  groups.forEach((g, gi) => {
    const gx = left + gi * gw + (gw - bw * peers.length) / 2
    peers.forEach((p, pi) => {
      const v = g.values[p]
      const x = gx + pi * bw
      if (!Number.isFinite(v)) {
        out.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${(top + plotH - 4).toFixed(1)}" font-size="10" text-anchor="middle" fill="#adb5bd">n/a</text>`)
        return
      }
      const h = Math.max(1, (v / max) * plotH)
      out.push(`<rect x="${(x + 2).toFixed(1)}" y="${(top + plotH - h).toFixed(1)}" width="${(bw - 4).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[p] || '#868e96'}"><title>${esc(p)}: ${v.toFixed(2)}×</title></rect>`)
      out.push(`<text x="${(x + bw / 2).toFixed(1)}" y="${(top + plotH - h - 4).toFixed(1)}" font-size="10" text-anchor="middle">${v >= 10 ? v.toFixed(0) : v.toFixed(2)}</text>`)
    })
    const lines = g.label.split('\n')
    lines.forEach((ln, li) =>
      out.push(`<text x="${(left + gi * gw + gw / 2).toFixed(1)}" y="${top + plotH + 16 + li * 13}" font-size="11" text-anchor="middle" fill="#212529">${esc(ln)}</text>`),
    )
  })
  out.push(`<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#495057"/>`)
  return { svg: out.join('\n'), height: H }
}

function svgChart(report) {
  const width = 920
  const peers = report.peers
  const label = (wl) =>
    ({ echo: 'echo\n100×16×64 B', 'echo-fine': 'echo\nfine clients', 'fanout-1k-fine': 'fanout 1k\nfine clients', 'fanout-10k-fine': 'fanout 10k\nfine clients', chat: 'chat rooms\nfine clients', 'fanout-1k': 'fanout\n1k subs', 'fanout-10k': 'fanout\n10k subs', 'idle-10k': 'idle 10k\nmemory', 'idle-19k': 'idle 19k\nmemory', connect: 'connect\nrate', 'fanout-1k-deflate': 'fanout 1k\ndeflate', 'fanout-10k-deflate': 'fanout 10k\ndeflate', 'idle-10k-deflate': 'idle 10k\ndeflate' })[wl.id] || wl.id
  const perCpu = report.workloads.map((wl) => ({
    label: label(wl),
    values: Object.fromEntries(
      peers.map((p) => {
        const r = report.ratios[wl.id]?.[p]
        return [p, wl.kind === 'idle' ? (r?.rss_per_conn_vs_ws ? 1 / r.rss_per_conn_vs_ws : null) : r?.per_cpu_vs_ws]
      }),
    ),
  }))
  const raw = report.workloads
    .filter((wl) => wl.kind !== 'idle')
    .map((wl) => ({ label: label(wl), values: Object.fromEntries(peers.map((p) => [p, report.ratios[wl.id]?.[p]?.raw_vs_ws])) }))
  const legendY = 66
  const p1 = svgPanel(70, 'Per server CPU-second vs ws (idle: ws RSS per connection ÷ server’s) — higher is better', perCpu, peers, width)
  const p2 = raw.length ? svgPanel(70 + p1.height, 'Raw throughput per second vs ws — higher is better', raw, peers, width) : { svg: '', height: 0 }
  const height = 70 + p1.height + p2.height + 30
  const legend = peers
    .map((p, i) => `<rect x="${60 + i * 150}" y="${legendY - 10}" width="12" height="12" fill="${COLORS[p] || '#868e96'}"/><text x="${78 + i * 150}" y="${legendY}" font-size="12">${esc(p)}</text>`)
    .join('\n')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="60" y="28" font-size="18" font-weight="bold">ferrosocket vs peers — ${esc(report.date.slice(0, 16).replace('T', ' '))} UTC${report.quick ? ' (quick run)' : ''}</text>
<text x="60" y="44" font-size="11" fill="#495057">${esc(`${report.machine.cpu_model}, ${report.machine.cpus} CPUs; ${report.pinning}; ratios vs ws from one run`)}</text>
${legend}
${p1.svg}
${p2.svg}
<text x="60" y="${height - 10}" font-size="10" fill="#868e96">${esc(report.command)}</text>
</svg>
`
}

// ---------------------------------------------------------------------------------------------
// setup
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const hasTaskset = spawnSync('taskset', ['-V']).status === 0
  const cpus = os.cpus().length
  let pinning = 'not pinned'
  if (opts.pin && hasTaskset && cpus >= 2) {
    const sc = opts.serverCpu ?? '1'
    const lc = opts.loadgenCpu ?? '0'
    PIN = { server: ['taskset', '-c', sc], loadgen: ['taskset', '-c', lc] }
    pinning = `server pinned to CPU ${sc}, load generator to CPU ${lc} (taskset)`
  } else if (opts.pin) {
    pinning = hasTaskset ? `not pinned (${cpus} CPU)` : 'not pinned (no taskset)'
  }

  ensureNodeDeps(['ws', 'bufferutil', 'socket.io'], log)
  ensureLoadgen({ log, fail })
  // keep the runner itself off the server's CPU (after building, which should use every core)
  if (PIN.loadgen.length) spawnSync('taskset', ['-a', '-p', '-c', PIN.loadgen[2], String(process.pid)], { stdio: 'ignore' })

  const wls = selectWorkloads(workloads(opts), opts)
  // The observability variants run only when named (--peers): they answer a question about one change.
  const wanted = opts.peers || PEER_ORDER.filter((p) => !PEERS[p].env)
  for (const p of wanted) if (!PEERS[p]) fail(`unknown peer ${p} (known: ${PEER_ORDER.join(', ')})`)
  const peers = []
  const skipped = {}
  for (const p of PEER_ORDER.filter((x) => wanted.includes(x))) {
    const why = PEERS[p].check()
    if (why) {
      skipped[p] = why
      log(`skipping ${p}: ${why}`)
    } else peers.push(p)
  }
  if (!peers.length) fail('no peer available')
  if (!peers.includes('ws')) log('note: ws is not among the peers, so no ratios will be computed')

  const started = new Date()
  const date = stamp(started) + (opts.quick ? '-quick' : '')
  fs.mkdirSync(opts.out, { recursive: true })
  const files = {
    json: path.join(opts.out, `${date}.json`),
    md: path.join(opts.out, `${date}.md`),
    svg: path.join(opts.out, `${date}.svg`),
  }
  const report = {
    date: started.toISOString(),
    quick: opts.quick,
    command: `node bench/run.js ${process.argv.slice(2).join(' ')}`.trim(),
    machine: machineInfo(),
    pinning,
    peers,
    peer_versions: Object.fromEntries(peers.map((p) => [p, peerVersion(p)])),
    skipped,
    shape: opts.shape || 'both',
    workloads: wls.map(({ id, title, mode, args, kind, metric, unit, latency, latency2, conns, deflate, shape }) => ({ id, title, mode, args, kind, metric, unit, latency, latency2, conns, deflate, shape })),
    repeat: opts.repeat || 1,
    runs: [],
    aggregate: {},
    ratios: {},
    files,
  }

  log(`peers: ${peers.join(', ')}; workloads: ${wls.map((w) => w.id).join(', ')}; ${pinning}`)
  for (const wl of wls) {
    for (let rep = 0; rep < report.repeat; rep++) {
      for (const p of peers) {
        log(`${wl.id} × ${p}${report.repeat > 1 ? ` (run ${rep + 1}/${report.repeat})` : ''}`)
        const rec = await runOne(p, wl)
        rec.rep = rep
        if (rec.error) log(`  ERROR ${rec.error}`)
        report.runs.push(rec)
        await sleep(300)
      }
    }
    report.aggregate[wl.id] = aggregate(wl, report.runs.filter((r) => r.workload === wl.id), peers)
    report.ratios[wl.id] = ratios(wl, report.aggregate[wl.id])
    fs.writeFileSync(files.json + '.tmp', JSON.stringify(report, null, 2)) // partial results survive a crash
  }
  report.finished = new Date().toISOString()
  report.duration_s = Math.round((Date.now() - started.getTime()) / 1000)
  fs.writeFileSync(files.json, JSON.stringify(report, null, 2) + '\n')
  fs.rmSync(files.json + '.tmp', { force: true })
  const md = markdown(report)
  fs.writeFileSync(files.md, md)
  fs.writeFileSync(files.svg, svgChart(report))
  process.stdout.write(md)
  log(`wrote ${path.relative(process.cwd(), files.json)}, ${path.relative(process.cwd(), files.md)}, ${path.relative(process.cwd(), files.svg)} in ${report.duration_s} s`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
