'use strict'
// What both benchmark runners share (run.js: one server per peer; cluster.js: three nodes and a
// Redis per peer): paths, the load generator (build and run), the bench's npm dependencies, the
// machine description, medians and the number formats of the reports.

const { spawn, spawnSync } = require('child_process')
const fs = require('fs')
const os = require('os')
const path = require('path')

const BENCH = path.dirname(__dirname)
const ROOT = path.dirname(BENCH)
const LOADGEN_DIR = path.join(BENCH, 'loadgen')
const LOADGEN = path.join(LOADGEN_DIR, 'target', 'release', 'loadgen')

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

/** A runner's log (stderr, tagged) and its fatal exit. */
function reporter(tag) {
  const log = (...a) => console.error(`[${tag}]`, ...a)
  const fail = (msg) => {
    console.error(`${tag}: ${msg}`)
    process.exit(2)
  }
  return { log, fail }
}

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
  return Number(r.stdout) || 100
})()

/** Runs `code` with `node` in `cwd`: null when it works, else the first error line (why a peer is skipped). */
function canRun(node, code, cwd) {
  const r = spawnSync(node, ['-e', code], { cwd, encoding: 'utf8', timeout: 20000 })
  if (r.status === 0) return null
  const lines = (r.stderr || r.error?.message || '').trim().split('\n')
  const err = lines.find((l) => /^\s*(\w*Error|Error)\b.*:/.test(l)) || lines.find((l) => /error/i.test(l)) || `exit ${r.status ?? r.signal}`
  return err.trim().slice(0, 300)
}

/** Runs the load generator (behind `wrapper`, e.g. taskset); resolves with its JSON summary line. */
function runLoadgen(args, timeoutMs, { log, wrapper = [] }) {
  return new Promise((resolve) => {
    const [command, ...prefix] = wrapper.length ? [...wrapper, LOADGEN] : [LOADGEN]
    const child = spawn(command, [...prefix, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    let partial = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => {
      err += d
      const lines = (partial + d).split('\n')
      partial = lines.pop()
      for (const line of lines) if (line.trim()) log('  ' + line.trim())
    })
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('close', (code, sig) => {
      clearTimeout(t)
      if (partial.trim()) log('  ' + partial.trim())
      let json = null
      try {
        json = JSON.parse(out.trim().split('\n').pop())
      } catch {}
      resolve({ code, sig, json, stderr: err.slice(-2000) })
    })
  })
}

/** Installs the bench's npm dependencies (bench/package.json) when one of `packages` is missing. */
function ensureNodeDeps(packages, log) {
  const need = packages.filter((p) => !fs.existsSync(path.join(BENCH, 'node_modules', p, 'package.json')))
  if (!need.length) return
  log(`installing bench dependencies (${need.join(', ')}): npm install --prefix bench`)
  const r = spawnSync('npm', ['install', '--prefix', BENCH, '--no-audit', '--no-fund'], { stdio: 'inherit' })
  if (r.status !== 0) log('npm install failed; peers that need it will be skipped')
}

/** Builds the load generator when its sources are newer than its binary. */
function ensureLoadgen({ log, fail }) {
  const newest = (dir) => {
    let t = 0
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      t = Math.max(t, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs)
    }
    return t
  }
  const srcTime = Math.max(
    newest(path.join(LOADGEN_DIR, 'src')),
    fs.statSync(path.join(LOADGEN_DIR, 'Cargo.toml')).mtimeMs,
    fs.existsSync(path.join(LOADGEN_DIR, 'Cargo.lock')) ? fs.statSync(path.join(LOADGEN_DIR, 'Cargo.lock')).mtimeMs : 0,
  )
  if (fs.existsSync(LOADGEN) && fs.statSync(LOADGEN).mtimeMs >= srcTime) return
  log('building the load generator: cargo build --release (bench/loadgen)')
  const r = spawnSync('cargo', ['build', '--release', '--manifest-path', path.join(LOADGEN_DIR, 'Cargo.toml')], { stdio: 'inherit' })
  if (r.status !== 0) fail('loadgen build failed')
}

function machineInfo() {
  const cpuinfo = (() => {
    try {
      return fs.readFileSync('/proc/cpuinfo', 'utf8')
    } catch {
      return ''
    }
  })()
  const model = (cpuinfo.match(/^model name\s*:\s*(.*)$/m) || [])[1] || os.cpus()[0]?.model || 'unknown CPU'
  const nofile = spawnSync('bash', ['-c', 'echo "$(ulimit -Sn)/$(ulimit -Hn)"'], { encoding: 'utf8' }).stdout.trim()
  const rustc = spawnSync('rustc', ['-V'], { encoding: 'utf8' }).stdout?.trim()
  const git = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' })
  return {
    cpu_model: model.trim(),
    cpus: os.cpus().length,
    mem_gib: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    rustc,
    nofile,
    git_commit: git.status === 0 ? git.stdout.trim() : null,
    loadavg_at_start: os.loadavg().map((x) => Number(x.toFixed(2))),
  }
}

/** Median of numbers; for booleans, all true; arrays and objects element by element. */
function medianOf(values) {
  const v = values.filter((x) => x !== undefined && x !== null)
  if (!v.length) return null
  if (typeof v[0] === 'number') {
    const s = [...v].sort((a, b) => a - b)
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
  }
  if (typeof v[0] === 'boolean') return v.every(Boolean)
  if (Array.isArray(v[0])) return v[0].map((_, i) => medianOf(v.map((a) => a[i])))
  if (typeof v[0] === 'object') {
    const keys = [...new Set(v.flatMap((o) => Object.keys(o)))]
    return Object.fromEntries(keys.map((k) => [k, medianOf(v.map((o) => o[k]))]))
  }
  return v[0]
}

/** A file-name timestamp: 2026-11-30T123621. */
function stamp(d) {
  const p = (n) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`
}

const fmtInt = (n) => (n == null || Number.isNaN(n) ? '–' : Math.round(n).toLocaleString('en-US'))
const fmtX = (x) => (x == null || !Number.isFinite(x) ? '–' : `${x >= 10 ? x.toFixed(1) : x.toFixed(2)}×`)
const fmtPct = (x) => (x == null ? '–' : `${Math.round(x * 100)}%`)
const fmtMs = (us) => (us == null ? '–' : us >= 100000 ? (us / 1000).toFixed(0) : us >= 10000 ? (us / 1000).toFixed(1) : (us / 1000).toFixed(2))

module.exports = {
  BENCH,
  ROOT,
  LOADGEN_DIR,
  LOADGEN,
  CLK_TCK,
  sleep,
  reporter,
  canRun,
  runLoadgen,
  ensureNodeDeps,
  ensureLoadgen,
  machineInfo,
  medianOf,
  stamp,
  fmtInt,
  fmtX,
  fmtPct,
  fmtMs,
}
