#!/usr/bin/env node
'use strict'
// Client benchmark: `npm run bench:clients` (10,000 connections) or `-- --quick` (2,000, 3 s).
// How cheap is a connection on the client side? For each kind (ferrosocket/client's native
// transport, the `ws` package): a fresh ferrosocket echo server (bench/peers/ferrosocket.js,
// pinned to CPU 1) and one client process holding every connection (bench/client-load.mjs,
// pinned to CPU 0) that reports the connect rate, idle memory per connection, and an echo run's
// messages/s and messages per client CPU-second. Writes bench/results/clients-<date>.json and .md.

const { spawn } = require('child_process')
const fs = require('fs')
const path = require('path')
const { BENCH, ROOT, reporter, ensureNodeDeps, machineInfo, medianOf, stamp, fmtInt, fmtX, fmtPct } = require('./lib/harness')
const { log, fail } = reporter('bench:clients')

const USAGE = `usage: node bench/clients.js [--quick] [--connections N] [--duration S] [--repeat N] [--kinds native,ws] [--out DIR] [--no-pin]`

function parseArgs(argv) {
  const o = { connections: 10_000, duration: 10, repeat: 1, kinds: ['native', 'ws'], out: path.join(BENCH, 'results'), pin: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const val = () => (i + 1 < argv.length ? argv[++i] : fail(`${a} needs a value`))
    if (a === '--quick') Object.assign(o, { connections: 2000, duration: 3 })
    else if (a === '--connections') o.connections = Number(val())
    else if (a === '--duration') o.duration = Number(val())
    else if (a === '--repeat') o.repeat = Number(val())
    else if (a === '--kinds') o.kinds = val().split(',')
    else if (a === '--out') o.out = path.resolve(val())
    else if (a === '--no-pin') o.pin = false
    else if (a === '--help' || a === '-h') {
      console.log(USAGE)
      process.exit(0)
    } else fail(`unknown option ${a}\n${USAGE}`)
  }
  if (!(o.connections > 0 && o.connections <= 18_000)) fail('--connections must be 1..18000 (the client process holds one descriptor per connection; 20,000 per process here)')
  return o
}

const pin = (opts, cpu) => (opts.pin ? ['taskset', '-c', String(cpu)] : [])

/** Starts the echo server; resolves `{ port, stop }` once it prints LISTENING. */
function startServer(opts) {
  const cmd = [...pin(opts, 1), process.execPath, path.join(BENCH, 'peers', 'ferrosocket.js')]
  const child = spawn(cmd[0], cmd.slice(1), { env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error('server did not start within 10 s')), 10_000)
    child.stdout.on('data', (d) => {
      out += d
      const m = /LISTENING (\d+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        const stop = () =>
          new Promise((done) => {
            child.once('exit', done)
            child.kill('SIGTERM')
          })
        resolve({ port: Number(m[1]), stop })
      }
    })
    child.once('exit', (code) => reject(new Error(`server exited (${code})`)))
  })
}

function runClients(opts, kind, port) {
  const cmd = [...pin(opts, 0), process.execPath, '--expose-gc', path.join(BENCH, 'client-load.mjs'), kind, `ws://127.0.0.1:${port}/ws`, String(opts.connections), String(opts.duration)]
  return new Promise((resolve) => {
    const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), (opts.duration + 120) * 1000)
    child.on('close', (code) => {
      clearTimeout(timer)
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()))
      } catch {
        log(`${kind}: client process failed (exit ${code})`)
        resolve(null)
      }
    })
  })
}

function report(opts, rows, machine, started) {
  const native = rows.find((r) => r.kind === 'native')
  const ws = rows.find((r) => r.kind === 'ws')
  const vs = (key, lowerIsBetter = false) => (r) => (ws && r[key] && ws[key] ? (lowerIsBetter ? ws[key] / r[key] : r[key] / ws[key]) : null)
  const lines = [
    `# Client benchmark — ${started.toISOString()}`,
    '',
    `- Command: \`node bench/clients.js ${process.argv.slice(2).join(' ')}\``.trimEnd(),
    `- ${opts.connections.toLocaleString('en-US')} connections in one client process; echo run ${opts.duration} s, one message in flight per connection (48-byte text in a JSON envelope)`,
    `- Machine: ${machine.cpu_model}, ${machine.cpus} CPUs; Node ${machine.node}; ${opts.pin ? 'server pinned to CPU 1, clients to CPU 0' : 'not pinned'}; medians of ${opts.repeat} run(s)`,
    '',
    '| client | connects/s | idle memory per connection | echo msg/s | client CPU | msg per client CPU-s | vs ws per CPU-s |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.kind === 'native' ? 'ferrosocket/client (native)' : 'ws'} | ${fmtInt(r.connects_per_s)} | ${fmtInt(r.idle_bytes_per_conn)} B | ${fmtInt(r.echo_msgs_per_s)} | ${fmtPct(r.echo_client_cpu)} | ${fmtInt(r.echo_msgs_per_client_cpu_s)} | ${fmtX(vs('echo_msgs_per_client_cpu_s')(r))} |`,
    ),
    '',
  ]
  if (native && ws) lines.push(`Idle memory: ws uses ${fmtX(ws.idle_bytes_per_conn / native.idle_bytes_per_conn)} the native client's per connection.`, '')
  return lines.join('\n')
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  ensureNodeDeps(['ws'], log)
  if (!fs.existsSync(path.join(ROOT, 'lib', 'client', 'node.js'))) fail('build first: npm run build')
  const machine = machineInfo()
  const started = new Date()
  const runs = Object.fromEntries(opts.kinds.map((k) => [k, []]))
  for (let i = 0; i < opts.repeat; i++) {
    for (const kind of opts.kinds) {
      log(`${kind} × ${opts.connections} connections (run ${i + 1}/${opts.repeat})`)
      const server = await startServer(opts)
      const result = await runClients(opts, kind, server.port)
      await server.stop()
      if (result) {
        log(`  ${JSON.stringify(result)}`)
        runs[kind].push(result)
      }
    }
  }
  const rows = opts.kinds.filter((k) => runs[k].length).map((k) => ({ ...medianOf(runs[k]), kind: k }))
  fs.mkdirSync(opts.out, { recursive: true })
  const base = path.join(opts.out, `clients-${stamp(started)}`)
  fs.writeFileSync(`${base}.json`, JSON.stringify({ machine, options: opts, runs, medians: rows }, null, 2))
  const md = report(opts, rows, machine, started)
  fs.writeFileSync(`${base}.md`, md)
  console.log(md)
  log(`wrote ${base}.json and .md`)
}

main().catch((error) => fail(error.stack))
