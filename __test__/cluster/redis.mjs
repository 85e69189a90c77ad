// A private redis-server for the cluster tests: `redis-server --port P --save '' --appendonly no`
// on a free port, so it persists nothing and comes back empty after a restart. Stopped by PID.
// Every server started here is also remembered in `live`, so `killAllRedis()` (and the process
// 'exit' hook below) can stop whatever a failing test left running.
import { spawn, spawnSync } from 'node:child_process'
import net from 'node:net'

const live = new Set()

/** True when `redis-server` can be run (CI installs it; the cluster tests skip without it). */
export function redisAvailable() {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  return r.status === 0 && /Redis server/.test(r.stdout)
}

/** A TCP port that was free a moment ago (the server binding it may still lose a race: start() retries). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/**
 * A redis-server process on `port`. `start()` resolves once it logs that it accepts connections;
 * `stop()` SIGKILLs it by PID and resolves once it has exited; `restart()` starts it again on the
 * same port (empty: nothing is saved).
 */
export class RedisServer {
  constructor(port) {
    this.port = port
    this.child = null
    this.log = []
  }

  get url() {
    return `redis://127.0.0.1:${this.port}/0`
  }

  get running() {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null
  }

  /** Start on `this.port`; rejects (with the log) if it exits or is not ready within `ms`. */
  start(ms = 5000) {
    if (this.running) return Promise.reject(new Error(`redis on ${this.port} is already running`))
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.child = child
    live.add(child)
    child.once('exit', () => live.delete(child))
    return new Promise((resolve, reject) => {
      let out = ''
      const onData = (chunk) => {
        out += chunk
        for (const line of chunk.split('\n')) if (line) this.log.push(line)
        if (this.log.length > 200) this.log.splice(0, this.log.length - 200)
        if (/Ready to accept connections/.test(out)) {
          cleanup()
          resolve(this)
        }
      }
      const onExit = (code, signal) => {
        cleanup()
        reject(new Error(`redis-server on port ${this.port} exited before it was ready (code ${code}, signal ${signal}):\n${this.log.slice(-10).join('\n')}`))
      }
      const timer = setTimeout(() => {
        cleanup()
        child.kill('SIGKILL')
        reject(new Error(`redis-server on port ${this.port} not ready after ${ms} ms:\n${this.log.slice(-10).join('\n')}`))
      }, ms)
      const cleanup = () => {
        clearTimeout(timer)
        child.off('exit', onExit)
      }
      child.stdout.setEncoding('utf8')
      child.stderr.setEncoding('utf8')
      child.stdout.on('data', onData)
      child.stderr.on('data', onData)
      child.once('exit', onExit)
    })
  }

  /** SIGKILL by PID; resolves once the process has exited (its clients see their connections reset). */
  async stop(ms = 5000) {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    process.kill(child.pid, 'SIGKILL')
    let timer
    await Promise.race([
      exited,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`redis-server ${child.pid} did not exit within ${ms} ms of SIGKILL`)), ms)
      }),
    ]).finally(() => clearTimeout(timer))
  }

  /** Start again on the same port (it comes back empty). */
  async restart() {
    await this.stop()
    return this.start()
  }
}

/** Start a redis-server on a free port (retrying if another process takes the port first). */
export async function startRedis() {
  let lastError
  for (let attempt = 0; attempt < 5; attempt++) {
    const server = new RedisServer(await freePort())
    try {
      return await server.start()
    } catch (e) {
      lastError = e
    }
  }
  throw lastError
}

/** Kill every redis-server started by this process that is still running. */
export async function killAllRedis() {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          child.once('exit', resolve)
          try {
            process.kill(child.pid, 'SIGKILL')
          } catch {
            resolve()
          }
        }),
    ),
  )
}

// Last resort if the test process exits without running its `after` hooks (uncaught error, ^C).
process.once('exit', () => {
  for (const child of live) {
    try {
      process.kill(child.pid, 'SIGKILL')
    } catch {}
  }
})
