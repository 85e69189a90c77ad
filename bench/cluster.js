#!/usr/bin/env node
'use strict'
// Cluster benchmark: `npm run bench:cluster` (full) or `npm run bench:cluster -- --quick`.
// For every workload × peer: a fresh redis-server on a free port, three server processes (nodes) of
// the peer on three ports, all using that Redis; subscribers spread evenly over the three nodes,
// publishers on node 1 only. The Rust load generator measures deliveries/s and delivery latency, and
// samples the CPU of the three nodes (summed) and of redis-server (apart) over the measured window.
// Writes bench/results/cluster-<date>.json and .md. See bench/README.md, "Cluster benchmark".

const { spawn, spawnSync } = require('child_process')
const fs = require('fs')
const net = require('net')
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
const { log, fail } = reporter('bench:cluster')
const runLoadgen = (args, timeoutMs) => runLoadgenWith(args, timeoutMs, { log })

const SOURCES = '127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4'
const NODES = 3
const BASELINE = 'socketio-redis'

// ---------------------------------------------------------------------------------------------
// options
// ---------------------------------------------------------------------------------------------

const USAGE = `usage: node bench/cluster.js [--quick] [--peers ferrosocket-cluster,socketio-redis,socketio-redis-sharded]
                            [--workloads fanout-1500,rooms-300x10] [--duration S] [--repeat N] [--out DIR]
  --quick         shorter runs (2 s measured after 1 s of warm-up); same workloads
  --peers         which servers (default: every available one; ${BASELINE} is the baseline of the ratios)
  --workloads     comma list of: fanout-1500, rooms-300x10
  --duration S    measured seconds per run (default 10, quick 2)
  --repeat N      run every workload × peer N times (peers interleaved) and report medians
  --out DIR       results directory (default bench/results)
  --redis-server  path of redis-server (default: redis-server from PATH; needs Redis >= 7 for the sharded peer)
  --quiet-wait S  before each run, wait up to S seconds (default 60; 0: don't) until other processes
                  use < 25% of a CPU, so a compile elsewhere does not land in the measurement
Every run starts its own redis-server (--save '' --appendonly no) on a free port and 3 nodes of the peer.`

function parseArgs(argv) {
  const o = { quick: false, out: path.join(BENCH, 'results'), redisServer: 'redis-server', quietWait: 60 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => {
      if (a.includes('=')) return a.slice(a.indexOf('=') + 1)
      if (i + 1 >= argv.length) fail(`${a} needs a value`)
      return argv[++i]
    }
    const key = a.split('=')[0]
    if (key === '--quick') o.quick = true
    else if (key === '--peers') o.peers = val().split(',').map((s) => s.trim()).filter(Boolean)
    else if (key === '--workloads') o.workloads = val().split(',').map((s) => s.trim()).filter(Boolean)
    else if (key === '--duration') o.duration = Number(val())
    else if (key === '--repeat') o.repeat = Math.max(1, Number(val()) | 0)
    else if (key === '--out') o.out = path.resolve(val())
    else if (key === '--redis-server') o.redisServer = val()
    else if (key === '--quiet-wait') o.quietWait = Math.max(0, Number(val()) || 0)
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
  const warm = opts.quick ? '1' : '2'
  // --settle: pause between "every subscriber got `subscribed`" and the first publish, for the
  // adapters whose Redis subscriptions are made asynchronously after the join (Socket.IO's sharded
  // adapter SSUBSCRIBEs per room). --loss-timeout: a broadcast some member still lacks after 5 s
  // is counted lost (and frees its window slot) instead of stalling the run.
  const common = ['--size', '100', '--duration', d, '--warmup', warm, '--settle', '1', '--loss-timeout', '5', '--sources', SOURCES]
  return [
    {
      id: 'fanout-1500',
      title: 'fan-out: one room, 1,500 subscribers (500 per node), publisher on node 1, 100 B, 8 broadcasts in flight',
      mode: 'fanout',
      args: ['--subs', '1500', '--window', '8', ...common],
      subs: 1500,
    },
    {
      id: 'rooms-300x10',
      title: 'many rooms: 300 rooms × 10 members (each room on all 3 nodes: 4+3+3), 4 publishers on node 1 × 16 in flight to random rooms, 100 B',
      mode: 'rooms',
      args: ['--rooms', '300', '--members', '10', '--publishers', '4', '--window', '16', ...common],
      subs: 3000,
    },
  ]
}

// ---------------------------------------------------------------------------------------------
// peers
// ---------------------------------------------------------------------------------------------

const PEERS = {
  'ferrosocket-cluster': {
    script: 'ferrosocket-cluster.js',
    proto: 'plain',
    path: '/ws',
    env: (redisUrl, i, run) => ({ REDIS_URL: redisUrl, PREFIX: `bench-${run}`, NODE_ID: `node-${i + 1}` }),
    // cluster.redis must be implemented, not only the addon built
    check: () =>
      canRun(
        process.execPath,
        `const { createServer } = require(${JSON.stringify(path.join(ROOT, 'index.js'))})
         const s = createServer({ port: 0, path: '/ws', cluster: { redis: 'redis://127.0.0.1:1/0' } })
         Promise.resolve(s.shutdown(1001, 'probe', { timeoutMs: 100 })).finally(() => process.exit(0))`,
        ROOT,
      ),
  },
  'socketio-redis': {
    script: 'socketio-cluster.js',
    proto: 'socketio',
    path: '/socket.io/?EIO=4&transport=websocket',
    env: (redisUrl) => ({ REDIS_URL: redisUrl, ADAPTER: 'redis' }),
    check: () => canRun(process.execPath, "require('socket.io'); require('redis'); require('@socket.io/redis-adapter').createAdapter", BENCH),
  },
  'socketio-redis-sharded': {
    script: 'socketio-cluster.js',
    proto: 'socketio',
    path: '/socket.io/?EIO=4&transport=websocket',
    env: (redisUrl) => ({ REDIS_URL: redisUrl, ADAPTER: 'sharded' }),
    check: (ctx) => {
      const why = canRun(process.execPath, "require('socket.io'); require('redis'); if (!require('@socket.io/redis-adapter').createShardedAdapter) throw new Error('no createShardedAdapter')", BENCH)
      if (why) return why
      if (!(ctx.redisMajor >= 7)) return `sharded Pub/Sub needs Redis >= 7 (redis-server is ${ctx.redisVersion || 'unknown'})`
      return null
    },
  },
}
const PEER_ORDER = ['ferrosocket-cluster', 'socketio-redis', 'socketio-redis-sharded']

function readVersion(p) {
  try {
    return JSON.parse(fs.readFileSync(p, 'utf8')).version
  } catch {
    return undefined
  }
}

function peerVersion(name, ctx) {
  const nm = (p) => readVersion(path.join(BENCH, 'node_modules', p, 'package.json'))
  const redis = `redis-server ${ctx.redisVersion}`
  if (name === 'ferrosocket-cluster') return `ferrosocket ${readVersion(path.join(ROOT, 'package.json'))} (cluster.redis), ${redis}`
  const sio = `socket.io ${nm('socket.io')} + @socket.io/redis-adapter ${nm('@socket.io/redis-adapter')} + redis ${nm('redis')}`
  if (name === 'socketio-redis') return `${sio} (createAdapter), ${redis}`
  if (name === 'socketio-redis-sharded') return `${sio} (createShardedAdapter), ${redis}`
}

// ---------------------------------------------------------------------------------------------
// processes
// ---------------------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Send one inline Redis command; resolves the raw reply (a bulk string's body for INFO). */
function redisCommand(port, cmd, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' })
    let buf = ''
    const t = setTimeout(() => {
      sock.destroy()
      reject(new Error(`redis ${cmd}: timeout`))
    }, timeoutMs)
    sock.on('error', (e) => {
      clearTimeout(t)
      reject(e)
    })
    sock.on('connect', () => sock.write(`${cmd}\r\n`))
    sock.on('data', (d) => {
      buf += d
      let reply = null
      if (buf[0] === '$') {
        const nl = buf.indexOf('\r\n')
        const len = Number(buf.slice(1, nl))
        if (buf.length >= nl + 2 + len) reply = buf.slice(nl + 2, nl + 2 + len)
      } else if (buf.includes('\r\n')) reply = buf.slice(0, buf.indexOf('\r\n'))
      if (reply !== null) {
        clearTimeout(t)
        sock.end()
        resolve(reply)
      }
    })
  })
}

async function startRedis(bin) {
  const port = await freePort()
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  const keep = (d) => (out = (out + d).slice(-4000))
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  let exited = null
  child.on('exit', (code, sig) => (exited = code ?? sig))
  const end = Date.now() + 10000
  for (;;) {
    if (exited !== null) throw new Error(`redis-server exited (${exited}): ${out.trim().slice(-500)}`)
    try {
      if ((await redisCommand(port, 'PING', 500)) === '+PONG') break
    } catch {}
    if (Date.now() > end) {
      child.kill('SIGKILL')
      throw new Error(`redis-server did not answer PING on port ${port} within 10 s: ${out.trim().slice(-500)}`)
    }
    await sleep(50)
  }
  return { child, pid: child.pid, port, url: `redis://127.0.0.1:${port}/0`, output: () => out }
}

/** Start node `i` of a peer; resolves { child, pid, port, stdout(), stderr() } once it prints LISTENING <port>. */
function startNode(name, i, redisUrl, run) {
  const peer = PEERS[name]
  const script = path.join(BENCH, 'peers', peer.script)
  // Raise the fd soft limit to the hard one, then exec node (the PID stays the node's).
  const child = spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"', 'bench-node', process.execPath, script], {
    cwd: BENCH,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ...peer.env(redisUrl, i, run) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let err = ''
  let out = ''
  child.stderr.on('data', (d) => (err = (err + d).slice(-4000)))
  child.stdout.on('data', (d) => (out = (out + d).slice(-20000)))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${name} node ${i + 1}: no LISTENING line within 20 s; stderr: ${err.trim().slice(-500)}`))
    }, 20000)
    const onData = () => {
      const m = out.match(/LISTENING (\d+)/)
      if (m) {
        clearTimeout(timer)
        child.stdout.off('data', onData)
        resolve({ child, pid: child.pid, port: Number(m[1]), stdout: () => out, stderr: () => err })
      }
    }
    child.stdout.on('data', onData)
    child.on('exit', (code, sig) => {
      clearTimeout(timer)
      reject(new Error(`${name} node ${i + 1}: exited (${code ?? sig}) before listening; stderr: ${err.trim().slice(-800)}`))
    })
  })
}

async function stopChild(child, graceMs = 4000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(t)
}

function runTimeoutMs(wl) {
  const num = (k, def) => {
    const i = wl.args.indexOf(k)
    return i >= 0 ? Number(wl.args[i + 1]) : def
  }
  return (num('--duration', 0) + num('--warmup', 1) + num('--settle', 0) + 60 + wl.subs / 200) * 1000
}

/** Redis command statistics: { cmd: calls } for the pub/sub commands. */
async function redisPubsubCalls(port) {
  try {
    const info = await redisCommand(port, 'INFO commandstats', 2000)
    const calls = {}
    for (const m of info.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
      if (/publish|subscribe/.test(m[1])) calls[m[1]] = Number(m[2])
    }
    return calls
  } catch (e) {
    return { error: e.message }
  }
}

/** Busy CPU seconds of the whole machine (first line of /proc/stat), or null. */
function machineBusyS() {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] || 0)) / CLK_TCK
  } catch {
    return null
  }
}

/** Wait (up to maxS) until the machine's busy CPU over 1 s is below 0.25 of a CPU; returns what was seen. */
async function waitQuiet(maxS) {
  const t0 = Date.now()
  let said = false
  for (;;) {
    const a = machineBusyS()
    await sleep(1000)
    const b = machineBusyS()
    if (a == null || b == null) return null
    const busy = Math.round((b - a) * 100) / 100
    const waited = Math.round((Date.now() - t0) / 1000)
    if (busy < 0.25) return { busy_cpus: busy, waited_s: waited }
    if (waited >= maxS) {
      log(`  the machine is still busy (${busy} CPUs used by other processes after ${waited} s): running anyway`)
      return { busy_cpus: busy, waited_s: waited, gave_up: true }
    }
    if (!said) log(`  waiting for a quiet machine (other processes use ${busy} CPUs; up to ${maxS} s)`)
    said = true
  }
}

let RUN_SEQ = 0

async function runOne(name, wl, ctx) {
  const rec = { workload: wl.id, peer: name }
  const run = ++RUN_SEQ
  let redis = null
  const nodes = []
  try {
    if (ctx.quietWait > 0) rec.quiet_before = await waitQuiet(ctx.quietWait)
    redis = await startRedis(ctx.redisServer)
    rec.redis = { port: redis.port, pid: redis.pid }
    const started = await Promise.allSettled(Array.from({ length: NODES }, (_, i) => startNode(name, i, redis.url, run)))
    for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value)
    const bad = started.find((s) => s.status === 'rejected')
    if (bad) throw bad.reason
    rec.nodes = nodes.map((n, i) => ({ node: i + 1, pid: n.pid, port: n.port }))
    await sleep(1000) // let the nodes settle (JIT, Redis connections and subscriptions)
    const urls = nodes.map((n) => `ws://127.0.0.1:${n.port}${PEERS[name].path}`)
    const args = [
      wl.mode,
      ...urls.flatMap((u) => ['--url', u]),
      '--proto',
      PEERS[name].proto,
      ...nodes.flatMap((n) => ['--server-pid', String(n.pid)]),
      '--aux-pid',
      String(redis.pid),
      ...wl.args,
    ]
    rec.command = `loadgen ${args.map((a) => (/[?&]/.test(a) ? `'${a}'` : a)).join(' ')}`
    const r = await runLoadgen(args, runTimeoutMs(wl))
    rec.redis.pubsub_calls = await redisPubsubCalls(redis.port)
    const dead = nodes.map((n, i) => (n.child.exitCode === null && n.child.signalCode === null ? null : i + 1)).filter(Boolean)
    if (!r.json) rec.error = `loadgen failed (exit ${r.code ?? r.sig}): ${r.stderr.trim().slice(-500)}`
    else rec.loadgen = r.json
    if (dead.length) rec.error = (rec.error ? rec.error + '; ' : '') + `node ${dead.join(', ')} died: ${nodes[dead[0] - 1].stderr().trim().slice(-500)}`
    if (redis.child.exitCode !== null || redis.child.signalCode !== null) rec.error = (rec.error ? rec.error + '; ' : '') + `redis-server died: ${redis.output().trim().slice(-300)}`
  } catch (e) {
    rec.error = e.message
  } finally {
    await Promise.all(nodes.map((n) => stopChild(n.child)))
    if (nodes.length) {
      rec.node_stats = nodes.map((n) => {
        const m = n.stdout().match(/^STATS (.*)$/m)
        try {
          return m ? JSON.parse(m[1]) : null
        } catch {
          return null
        }
      })
      if (rec.node_stats.every((s) => s === null)) delete rec.node_stats
      const errs = nodes.map((n, i) => [i + 1, n.stderr().trim()]).filter(([, e]) => e)
      if (errs.length) rec.node_stderr = Object.fromEntries(errs.map(([i, e]) => [`node-${i}`, e.slice(-1000)]))
    }
    if (redis) await stopChild(redis.child)
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
  const w = j.window || {}
  const srv = w.server || {}
  const redisCpu = w.aux?.[0]?.cpu_s
  const cpuAll = srv.cpu_s != null && redisCpu != null ? srv.cpu_s + redisCpu : null
  const sum = {
    rate: j.deliveries_per_s,
    broadcasts_per_s: j.broadcasts_per_s,
    per_cpu_s: srv.per_cpu_s,
    per_cpu_s_with_redis: cpuAll > 0 ? Math.round(j.deliveries / cpuAll) : null,
    nodes_cpu_util: srv.cpu_util,
    node_cpu_util: (srv.per_pid || []).map((p) => p.cpu_util),
    redis_cpu_util: w.aux?.[0]?.cpu_util,
    loadgen_cpu_util: w.loadgen?.cpu_util,
    // busy CPU of the whole machine in the window minus nodes, Redis and load generator: other
    // processes competing with the run (a compile, another benchmark); ~0 on a quiet machine
    other_cpu_util:
      w.machine?.busy_util != null && srv.cpu_util != null
        ? Math.max(0, Math.round((w.machine.busy_util - srv.cpu_util - (w.aux?.[0]?.cpu_util || 0) - (w.loadgen?.cpu_util || 0)) * 1000) / 1000)
        : null,
    rss_mb_end: srv.rss_kb_end != null ? Math.round(srv.rss_kb_end / 1024) : null,
    delivery_us: { p50: j.delivery_us?.p50, p99: j.delivery_us?.p99 },
    completion_us: { p50: j.completion_us?.p50, p99: j.completion_us?.p99 },
    subscribed: j.subscribed,
    subscribed_per_url: j.subscribed_per_url,
    lost_broadcasts: j.lost_broadcasts,
    unknown_seq: j.unknown_seq,
  }
  sum.ok =
    j.subscribed === wl.subs &&
    !j.publisher_error &&
    j.conns.closed_early === 0 &&
    j.lost_broadcasts === 0 &&
    j.unknown_seq === 0 &&
    j.deliveries > 0 &&
    j.ms_since_last_completion < 2000 &&
    !rec.error
  return sum
}

function describeProblem(rec) {
  const j = rec.loadgen
  if (!j) return rec.error || 'no result'
  const parts = [`subscribed ${j.subscribed}/${j.params.subs}${j.subscribed_per_url ? ` (${j.subscribed_per_url.join('/')} per node)` : ''}`]
  if (j.conns.closed_early) parts.push(`closed early ${j.conns.closed_early}`)
  if (j.conns.failed) parts.push(`failed ${j.conns.failed}${j.conns.first_error ? ` (first error: ${j.conns.first_error})` : ''}`)
  if (j.lost_broadcasts) parts.push(`${j.lost_broadcasts} broadcasts lost (${j.missing_deliveries} deliveries missing after ${j.params.loss_timeout_s} s)`)
  if (j.unknown_seq) parts.push(`${j.unknown_seq} deliveries of unknown/finished broadcasts (late or duplicate)`)
  if (j.ms_since_last_completion >= 2000) parts.push(`last completion ${j.ms_since_last_completion} ms before the end`)
  if (j.publisher_error) parts.push(j.publisher_error)
  if (rec.error) parts.push(rec.error)
  return parts.join(', ')
}

function aggregate(wl, runs, peers) {
  return peers.map((peer) => {
    const mine = runs.filter((r) => r.peer === peer)
    const good = mine.filter((r) => r.summary)
    const rec = { workload: wl.id, peer, runs: mine.length, ok_runs: good.filter((r) => r.summary.ok).length }
    if (!good.length) {
      rec.error = mine.find((r) => r.error)?.error || 'no result'
      return rec
    }
    rec.summary = medianOf(good.map((r) => r.summary))
    rec.summary.ok = mine.every((r) => r.summary?.ok)
    if (good.length > 1) {
      const xs = good.map((r) => r.summary.per_cpu_s).filter((x) => x != null)
      rec.spread = { key: 'per_cpu_s', min: Math.min(...xs), max: Math.max(...xs) }
    }
    return rec
  })
}

function ratios(recs) {
  const base = recs.find((r) => r.peer === BASELINE)?.summary
  const out = {}
  if (!base) return out
  for (const r of recs) {
    const s = r.summary
    if (!s) continue
    const q = (a, b) => (a && b ? a / b : null)
    out[r.peer] = {
      raw_vs_base: q(s.rate, base.rate),
      per_cpu_vs_base: q(s.per_cpu_s, base.per_cpu_s),
      per_cpu_with_redis_vs_base: q(s.per_cpu_s_with_redis, base.per_cpu_s_with_redis),
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// markdown
// ---------------------------------------------------------------------------------------------

function markdown(report) {
  const L = []
  const m = report.machine
  L.push(`# ferrosocket cluster benchmark — ${report.date}${report.quick ? ' (quick)' : ''}`)
  L.push('')
  L.push(`- Command: \`${report.command}\``)
  if (report.repeat > 1) L.push(`- Every workload × server ran ${report.repeat} times, servers interleaved; tables show medians.`)
  L.push(`- Machine: ${m.cpu_model}, ${m.cpus} CPUs, ${m.mem_gib} GiB RAM, Linux ${m.kernel}; Node ${m.node}; git ${m.git_commit}; load average at start ${m.loadavg_at_start.join(' ')}`)
  L.push(`- Setup per run: one fresh \`redis-server\` (${report.redis_version}, \`--save '' --appendonly no\`), ${NODES} node processes of the peer, subscribers round-robin over the ${NODES} nodes, publishers on node 1. Nothing pinned: nodes, Redis and the load generator share the ${m.cpus} CPUs.`)
  L.push(`- Peers: ${report.peers.map((p) => `**${p}**: ${report.peer_versions[p]}`).join('; ')}`)
  if (Object.keys(report.skipped).length) L.push(`- Skipped: ${Object.entries(report.skipped).map(([p, why]) => `${p} (${why})`).join('; ')}`)
  L.push(
    '- *per node CPU-s* = deliveries in the measured window ÷ CPU seconds (utime+stime, all threads, from /proc) used by the 3 node processes in it; ' +
      '*incl. Redis* also counts redis-server\'s CPU. *nodes CPU* is the sum over the 3 nodes (200% = both cores), split per node in brackets. ' +
      'Delivery latency = receive time − send time in the broadcast (same clock: the load generator); completion = until every member of the room has it. ' +
      '*other CPU* = the whole machine\'s busy CPU in the window (/proc/stat) minus nodes, Redis and load generator: other processes competing with the run (should be near 0%).',
  )
  L.push('')
  const others = report.peers.filter((p) => p !== BASELINE)
  if (report.peers.includes(BASELINE) && others.length) {
    L.push(`## Ratios vs ${BASELINE}`)
    L.push('')
    L.push(`| workload | measure | ${others.join(' | ')} |`)
    L.push(`|---|---|${others.map(() => '---:').join('|')}|`)
    for (const wl of report.workloads) {
      const r = report.ratios[wl.id] || {}
      L.push(`| ${wl.id} | deliveries/s | ${others.map((p) => fmtX(r[p]?.raw_vs_base)).join(' | ')} |`)
      L.push(`| ${wl.id} | deliveries per node CPU-s | ${others.map((p) => fmtX(r[p]?.per_cpu_vs_base)).join(' | ')} |`)
      L.push(`| ${wl.id} | deliveries per CPU-s incl. Redis | ${others.map((p) => fmtX(r[p]?.per_cpu_with_redis_vs_base)).join(' | ')} |`)
    }
    L.push('')
  }
  for (const wl of report.workloads) {
    const recs = report.aggregate[wl.id] || []
    const raw = report.runs.filter((x) => x.workload === wl.id)
    L.push(`## ${wl.id}: ${wl.title}`)
    L.push('')
    L.push('| server | deliveries/s | per node CPU-s | per CPU-s incl. Redis | delivery p50 (ms) | delivery p99 (ms) | completion p50 (ms) | completion p99 (ms) | nodes CPU [n1/n2/n3] | Redis CPU | loadgen CPU | other CPU |')
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const rec of recs) {
      const s = rec.summary
      if (!s) {
        L.push(`| ${rec.peer} | error: ${String(rec.error).replace(/\|/g, '/').replace(/\n/g, ' ').slice(0, 300)} |||||||||||`)
        continue
      }
      const split = (s.node_cpu_util || []).map((x) => Math.round(x * 100)).join('/')
      L.push(
        `| ${rec.peer}${s.ok ? '' : ' ⚠'} | ${fmtInt(s.rate)} | ${fmtInt(s.per_cpu_s)} | ${fmtInt(s.per_cpu_s_with_redis)} | ${fmtMs(s.delivery_us?.p50)} | ${fmtMs(s.delivery_us?.p99)} | ${fmtMs(s.completion_us?.p50)} | ${fmtMs(s.completion_us?.p99)} | ${fmtPct(s.nodes_cpu_util)} [${split}] | ${fmtPct(s.redis_cpu_util)} | ${fmtPct(s.loadgen_cpu_util)} | ${fmtPct(s.other_cpu_util)} |`,
      )
    }
    if (report.repeat > 1) {
      const sp = recs.filter((x) => x.spread).map((x) => `${x.peer} ${fmtInt(x.spread.min)}–${fmtInt(x.spread.max)}`)
      L.push(`\nMedians of ${report.repeat} runs per server (peers interleaved). Range of deliveries per node CPU-s: ${sp.join('; ')}.`)
    }
    const calls = raw.filter((x) => x.redis?.pubsub_calls && !x.redis.pubsub_calls.error && x.rep === 0)
    if (calls.length) {
      L.push('')
      L.push(
        'Redis pub/sub commands over the whole run (set-up, warm-up and measurement): ' +
          calls.map((x) => `${x.peer}: ${Object.entries(x.redis.pubsub_calls).map(([k, v]) => `${k} ${fmtInt(v)}`).join(', ') || 'none'}`).join('; ') +
          '.',
      )
    }
    for (const x of raw.filter((r) => r.node_stats && r.rep === 0)) {
      const keys = [...new Set(x.node_stats.flatMap((s) => Object.keys(s || {})))].filter((k) => /^(bus|redis)/.test(k))
      if (!keys.length) continue
      const v = (s, k) => (s == null || s[k] == null ? '–' : typeof s[k] === 'number' ? fmtInt(s[k]) : String(s[k]))
      L.push('')
      L.push(`${x.peer} \`server.stats\` at shutdown, nodes 1/2/3: ${keys.map((k) => `${k} ${x.node_stats.map((s) => v(s, k)).join('/')}`).join(', ')}.`)
    }
    const notes = raw.filter((x) => x.error || (x.summary && !x.summary.ok))
    for (const n of notes) L.push(`\n⚠ ${n.peer}${report.repeat > 1 ? ` (run ${n.rep + 1})` : ''}: ${describeProblem(n)}`)
    L.push('')
  }
  L.push(`Raw data: [${path.basename(report.files.json)}](${path.basename(report.files.json)})`)
  L.push('')
  return L.join('\n')
}

// ---------------------------------------------------------------------------------------------
// setup
// ---------------------------------------------------------------------------------------------

function redisVersion(bin) {
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' })
  if (r.status !== 0) return null
  const m = r.stdout.match(/v=(\d+)\.(\d+)\.(\d+)/)
  return m ? { version: `${m[1]}.${m[2]}.${m[3]}`, major: Number(m[1]) } : { version: r.stdout.trim(), major: 0 }
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const rv = redisVersion(opts.redisServer)
  if (!rv) fail(`${opts.redisServer} not found (install Redis >= 7: apt-get install redis-server)`)
  ensureNodeDeps(['socket.io', 'redis', '@socket.io/redis-adapter'], log)
  ensureLoadgen({ log, fail })

  const all = workloads(opts)
  const wls = opts.workloads ? opts.workloads.map((id) => all.find((w) => w.id === id) || fail(`unknown workload ${id}`)) : all
  const wanted = opts.peers || PEER_ORDER
  for (const p of wanted) if (!PEERS[p]) fail(`unknown peer ${p} (known: ${PEER_ORDER.join(', ')})`)
  const ctx = { redisServer: opts.redisServer, redisVersion: rv.version, redisMajor: rv.major, quietWait: opts.quietWait }
  const peers = []
  const skipped = {}
  for (const p of PEER_ORDER.filter((x) => wanted.includes(x))) {
    const why = PEERS[p].check(ctx)
    if (why) {
      skipped[p] = why
      log(`skipping ${p}: ${why}`)
    } else peers.push(p)
  }
  if (!peers.length) fail('no peer available')

  const started = new Date()
  const date = 'cluster-' + stamp(started) + (opts.quick ? '-quick' : '')
  fs.mkdirSync(opts.out, { recursive: true })
  const files = { json: path.join(opts.out, `${date}.json`), md: path.join(opts.out, `${date}.md`) }
  const report = {
    date: started.toISOString(),
    quick: opts.quick,
    command: `node bench/cluster.js ${process.argv.slice(2).join(' ')}`.trim(),
    machine: machineInfo(),
    redis_version: rv.version,
    nodes: NODES,
    pinning: 'not pinned',
    peers,
    peer_versions: Object.fromEntries(peers.map((p) => [p, peerVersion(p, ctx)])),
    skipped,
    workloads: wls.map(({ id, title, mode, args, subs }) => ({ id, title, mode, args, subs })),
    repeat: opts.repeat || 1,
    baseline: BASELINE,
    runs: [],
    aggregate: {},
    ratios: {},
    files,
  }

  log(`peers: ${peers.join(', ')}; workloads: ${wls.map((w) => w.id).join(', ')}; ${NODES} nodes + redis-server ${rv.version} per run`)
  for (const wl of wls) {
    for (let rep = 0; rep < report.repeat; rep++) {
      for (const p of peers) {
        log(`${wl.id} × ${p}${report.repeat > 1 ? ` (run ${rep + 1}/${report.repeat})` : ''}`)
        const rec = await runOne(p, wl, ctx)
        rec.rep = rep
        if (rec.error) log(`  ERROR ${rec.error}`)
        else if (rec.summary && !rec.summary.ok) log(`  WARNING ${describeProblem(rec)}`)
        report.runs.push(rec)
        await sleep(500)
      }
    }
    report.aggregate[wl.id] = aggregate(wl, report.runs.filter((r) => r.workload === wl.id), peers)
    report.ratios[wl.id] = ratios(report.aggregate[wl.id])
    fs.writeFileSync(files.json + '.tmp', JSON.stringify(report, null, 2))
  }
  report.finished = new Date().toISOString()
  report.duration_s = Math.round((Date.now() - started.getTime()) / 1000)
  fs.writeFileSync(files.json, JSON.stringify(report, null, 2) + '\n')
  fs.rmSync(files.json + '.tmp', { force: true })
  const md = markdown(report)
  fs.writeFileSync(files.md, md)
  process.stdout.write(md)
  log(`wrote ${path.relative(process.cwd(), files.json)}, ${path.relative(process.cwd(), files.md)} in ${report.duration_s} s`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
