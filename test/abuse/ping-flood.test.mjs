// Abuse case 2: a ping flood from a peer that never reads.
//
// Every ping obliges the server to answer with a pong. A peer that floods pings and never reads
// makes those pongs pile up on the server once the kernel buffers are full: they must count
// against the connection's outbound bound (close 1013 `WebSocket backpressure overflow`) instead of
// growing without limit, and a healthy client on the same server must not notice.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  startAbuseServer,
  startHealthyClient,
  shutdownAndExit,
  describeExit,
  watchRss,
  crashReport,
  rawConnect,
  encodeFrame,
  drainOrClose,
  withTimeout,
  mb,
  MiB,
} from './helpers.mjs'

// ---- thresholds and load --------------------------------------------------------------------------
const FLOOD_MS = 15_000 // the flooder writes for at most this long (or until the server closes it)
const PING_PAYLOAD_BYTES = 125 // the largest control frame payload
const PINGS_PER_WRITE = 512 // pings concatenated into one write (~67 KB)
const DRAIN_STALL_MS = 20_000 // a write the server never drains ends the flood (cannot happen before FLOOD_MS)
const MAX_RSS_GROWTH = 64 * MiB // server peak RSS over its baseline, during and after the flood
const HEALTHY_RTT_MS = 2000
const HEALTHY_INTERVAL_MS = 100
const SERVER_CLOSE_DEADLINE_MS = FLOOD_MS + 5000 + 2000 // flood + default closeTimeoutMs + slack
// Close codes accepted for "the server ended the flooding connection": 1013 is the documented code
// for an outbound queue overflow (what we expect); 1008 (policy) would be an acceptable choice.
const ACCEPTED_CLOSE_CODES = [1013, 1008]
const RSS_SAMPLE_MS = 50 // the test samples the server's RSS from /proc this often
const RSS_ABORT_GROWTH = 1024 * MiB // watchdog: stop the flood (already a failure) beyond this
const AFTER_SETTLE_MS = 3000 // after the flooder is gone, how long RSS is watched for staying bounded
const CASE_TIMEOUT_MS = 60_000

test(
  `ping flood: a peer that never reads and floods ${PING_PAYLOAD_BYTES}-byte pings is closed by the server ` +
    `(${ACCEPTED_CLOSE_CODES.join('/')}), server RSS growth < ${mb(MAX_RSS_GROWTH)}, healthy RTT < ${HEALTHY_RTT_MS} ms`,
  { timeout: CASE_TIMEOUT_MS },
  async (t) => {
    const fx = await startAbuseServer(t)
    const healthy = await startHealthyClient(fx.url, { intervalMs: HEALTHY_INTERVAL_MS })
    t.after(() => healthy.close())
    await healthy.roundTrip(3000)
    const healthyConn = await fx.waitEvent('connection')

    const peer = await rawConnect(fx.port)
    t.after(() => peer.destroy())
    const flooderConn = await fx.waitEvent((e) => e.type === 'connection' && e.id !== healthyConn.id, 5000, 'the flooder’s connection')
    peer.socket.pause() // never read again: the server's pongs fill our receive buffer, then its queue
    const serverClosed = fx.waitEvent((e) => e.type === 'closed' && e.id === flooderConn.id, SERVER_CLOSE_DEADLINE_MS + 5000, 'the server’s onClose of the flooder')
    serverClosed.catch(() => {})
    let serverClosedAt = null
    serverClosed.then((e) => (serverClosedAt = e.at), () => {})
    let socketClosedAt = null
    peer.socket.once('close', () => (socketClosedAt = Date.now()))

    const base = await fx.request('resetPeak')
    // RSS sampled from outside (/proc) as well as by the fixture itself (its 10 ms sampler).
    let watchdogAt = null
    let flooding = true
    let phasePeak = base.rss // the peak of the current phase: flood, then after the flooder left
    let onSample = () => {}
    const rssWatch = watchRss(fx, RSS_SAMPLE_MS, (rss) => {
      phasePeak = Math.max(phasePeak, rss)
      if (flooding && watchdogAt === null && rss - base.rss > RSS_ABORT_GROWTH) watchdogAt = Date.now()
      onSample(rss)
    })

    const ping = encodeFrame(9, Buffer.alloc(PING_PAYLOAD_BYTES, 0x70))
    const chunk = Buffer.concat(Array.from({ length: PINGS_PER_WRITE }, () => ping))
    const started = Date.now()
    let pingsWritten = 0
    let endReason = 'flood time over'
    while (Date.now() - started < FLOOD_MS) {
      if (watchdogAt !== null) {
        endReason = `watchdog (server RSS growth > ${mb(RSS_ABORT_GROWTH)})`
        break
      }
      if (serverClosedAt !== null || socketClosedAt !== null || peer.socket.destroyed) {
        endReason = 'the server closed the connection'
        break
      }
      if (fx.exitInfo) {
        endReason = 'the server process died'
        break
      }
      const more = peer.socket.write(chunk)
      pingsWritten += PINGS_PER_WRITE
      if (!more) {
        try {
          await drainOrClose(peer.socket, DRAIN_STALL_MS, 'the flooder’s socket to drain')
        } catch {
          endReason = 'the server stopped reading (no drain)'
          break
        }
      }
    }
    flooding = false
    const floodMs = Date.now() - started

    // Did the server end it? Wait (bounded) for its onClose, unless the flood was cut short by us.
    let closeEvent = null
    if (endReason === 'the server closed the connection' || endReason === 'flood time over' || endReason === 'the server stopped reading (no drain)') {
      closeEvent = await withTimeout(serverClosed, Math.max(1, SERVER_CLOSE_DEADLINE_MS - floodMs), 'the server to close the flooder').catch(() => null)
    }
    const during = fx.exitInfo ? null : await fx.request('rss', {}, 10_000).catch(() => null)
    const peakDuring = Math.max(phasePeak, during?.peak ?? 0)
    const h = await healthy.stop()

    // The flooder leaves; RSS must come back to (and stay) bounded.
    const socketClosedByServerAt = socketClosedAt
    peer.destroy()
    let afterPeak = null
    let closeAfterLeaving = null
    if (!fx.exitInfo) {
      closeAfterLeaving = await withTimeout(serverClosed, 10_000, 'the flooder’s onClose after it left').catch(() => null)
      // Observation window (a measurement, not a synchronisation): the peak of the RSS samples taken
      // over AFTER_SETTLE_MS once the flooder is gone; it ends with the first sample past the window.
      await fx.request('resetPeak').catch(() => null)
      phasePeak = 0
      const settleFrom = Date.now()
      await withTimeout(
        new Promise((resolve) => {
          onSample = () => Date.now() - settleFrom >= AFTER_SETTLE_MS && resolve()
          fx.exited.then(resolve)
        }),
        AFTER_SETTLE_MS + 5000,
        'RSS samples after the flooder left',
      ).catch(() => {})
      const r = await fx.request('rss').catch(() => null)
      afterPeak = Math.max(phasePeak, r?.peak ?? 0) || null
    }
    rssWatch.stop()

    t.diagnostic(
      `flood ${floodMs} ms, ${pingsWritten} pings (${mb(pingsWritten * ping.length)}) written; ended by: ${endReason}; ` +
        `server onClose of the flooder: ${closeEvent ? `${closeEvent.code} ${JSON.stringify(closeEvent.reason)} at +${closeEvent.at - started} ms` : 'none'}; ` +
        `flooder's socket closed by the server: ${socketClosedByServerAt ? `+${socketClosedByServerAt - started} ms` : 'no'}`,
    )
    t.diagnostic(
      `server RSS ${mb(base.rss)} → peak ${mb(peakDuring)} during the flood (growth ${mb(peakDuring - base.rss)}, limit ${mb(MAX_RSS_GROWTH)})` +
        (afterPeak !== null ? `; after the flooder left: ${mb(afterPeak)} (growth ${mb(afterPeak - base.rss)}) over ${AFTER_SETTLE_MS} ms` : '') +
        `; onClose once the flooder had left: ${closeAfterLeaving ? `${closeAfterLeaving.code} ${JSON.stringify(closeAfterLeaving.reason)}` : 'none'}`,
    )
    t.diagnostic(
      `healthy client: ${h.answered}/${h.sent} pongs, p50 ${h.p50RttMs} ms, max RTT ${h.maxRttMs} ms, ` +
        `oldest unanswered ${h.maxOutstandingMs} ms, disconnected ${JSON.stringify(h.disconnected)}`,
    )
    const crashed = fx.exitInfo
    if (crashed) t.diagnostic(`server process DIED (${describeExit(crashed)}): ${crashReport(fx)}`)
    const exit = crashed ? null : await shutdownAndExit(fx, 10_000)
    if (exit) t.diagnostic(`shutdown + process exit: ${exit.ok ? 'ok' : 'FAILED'} in ${exit.ms} ms`)

    assert.equal(crashed, null, `the server process died (${crashed && describeExit(crashed)})`)
    assert.ok(pingsWritten > 0, 'precondition: pings were written')
    assert.ok(peakDuring - base.rss < MAX_RSS_GROWTH, `server RSS grew by ${mb(peakDuring - base.rss)} during the flood (limit ${mb(MAX_RSS_GROWTH)})${watchdogAt ? ', flood stopped by the watchdog' : ''}`)
    assert.ok(closeEvent !== null, `the server did not close the flooding connection within ${SERVER_CLOSE_DEADLINE_MS} ms (flood ended by: ${endReason})`)
    assert.ok(ACCEPTED_CLOSE_CODES.includes(closeEvent.code), `flooder closed with ${closeEvent.code} ${JSON.stringify(closeEvent.reason)} (expected one of ${ACCEPTED_CLOSE_CODES})`)
    assert.equal(h.disconnected, null, `the healthy client was disconnected: ${JSON.stringify(h.disconnected)}`)
    const worst = Math.max(h.maxRttMs ?? 0, h.maxOutstandingMs)
    assert.ok(worst < HEALTHY_RTT_MS, `healthy client's worst round trip ${worst} ms (limit ${HEALTHY_RTT_MS} ms)`)
    assert.ok(afterPeak !== null && afterPeak - base.rss < MAX_RSS_GROWTH, `after the flooder left, server RSS is ${afterPeak === null ? 'unknown' : mb(afterPeak - base.rss)} over its baseline (limit ${mb(MAX_RSS_GROWTH)})`)
    assert.ok(exit.ok, `the server did not shut down and exit cleanly: ${JSON.stringify(exit)}`)
  },
)
