'use strict'
// Shared helpers for the peer servers: port from env/argv, the LISTENING line, clean exit.

function port() {
  const v = process.env.PORT ?? process.argv[2] ?? '0'
  const p = Number(v)
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`bad PORT: ${v}`)
  return p
}

function host() {
  return process.env.HOST || '127.0.0.1'
}

function listening(p) {
  process.stdout.write(`LISTENING ${p}\n`)
}

/**
 * ferrosocket's `compression` option from FERROSOCKET_COMPRESSION (the `*-deflate` workloads of
 * run.js): unset/empty/0 → undefined (off), 1/true → true (all defaults), else JSON (e.g.
 * '{"level":6}').
 */
function ferrosocketCompression() {
  const v = process.env.FERROSOCKET_COMPRESSION
  if (!v || v === '0' || v === 'false') return undefined
  if (v === '1' || v === 'true') return true
  return JSON.parse(v)
}

function onExit(fn) {
  let done = false
  const stop = () => {
    if (done) return
    done = true
    Promise.resolve()
      .then(fn)
      .catch(() => {})
      .finally(() => process.exit(0))
    setTimeout(() => process.exit(0), 2000).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

module.exports = { port, host, listening, onExit, ferrosocketCompression }
