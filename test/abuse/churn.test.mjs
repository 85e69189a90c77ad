// Abuse case 1: connection churn against a slow async handler.
//
// Ten raw-socket loops each connect, push 100 × 64 KB messages at a handler that awaits a 100 ms
// timer, say goodbye with a close frame and reconnect, for ~12 s. A client that leaves must not
// leave its unhandled messages behind in the server: the JS heap (and RSS) has to stay bounded, the
// process must survive and shut down, and a healthy client on the same server keeps its round
// trips short and its connection open.
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
  closeFrame,
  awaitServerClose,
  withTimeout,
  mb,
  MiB,
} from './helpers.mjs'

// ---- thresholds and load (named so the lead can tune them in one place) -------------------------
const LOOPS = 10 // concurrent churning connections (never more open at once)
const CHURN_MS = 12_000 // how long the loops keep reconnecting
const MESSAGES_PER_CONNECTION = 100
const PAD_BYTES = 65_000 // 'x' × 65,000 in data.p: each message ≈ 65 KB, under maxPayload (65,536)
const SERVER_CLOSE_WAIT_MS = 10_000 // a loop waits this long for the server's close frame, then destroys
const HANDSHAKE_MS = 5000
const MAX_RSS_GROWTH = 256 * MiB // server peak RSS over its baseline
const HEALTHY_RTT_MS = 2000 // healthy client's worst round trip
const HEALTHY_INTERVAL_MS = 100
const RSS_SAMPLE_MS = 50 // the test samples the server's RSS from /proc this often (watchdog, peak)
const TIMER_PUSH_MS = 100 // the fixture's own timer reports every this often (event-loop liveness)
// Watchdog: past this growth the flood stops at once (the verdict is already "fail"), so the test
// does not push a shared machine into swap / the OOM killer. The observed peak is still reported.
// Set near V8's default heap limit (~4 GiB here), so a V8 abort can still show up as such.
const RSS_ABORT_GROWTH = 3072 * MiB
const SHUTDOWN_EXIT_MS = 10_000 // after the flood: shutdown() plus a natural process exit
const CASE_TIMEOUT_MS = 60_000

test(
  `churn: ${LOOPS} loops × (connect, ${MESSAGES_PER_CONNECTION} × 65 KB at a 100 ms handler, close 1000) for ${CHURN_MS / 1000} s: ` +
    `server survives, RSS growth < ${mb(MAX_RSS_GROWTH)}, healthy RTT < ${HEALTHY_RTT_MS} ms, healthy never disconnected`,
  { timeout: CASE_TIMEOUT_MS },
  async (t) => {
    const fx = await startAbuseServer(t, { quiet: true, rssPushMs: TIMER_PUSH_MS })
    const healthy = await startHealthyClient(fx.url, { intervalMs: HEALTHY_INTERVAL_MS })
    t.after(() => healthy.close())
    // A first round trip before measuring: the healthy path works at all (positive control).
    await healthy.roundTrip(3000)
    const base = await fx.request('resetPeak')

    // RSS is sampled from outside (/proc), so it is seen even while the server's JS thread is too
    // busy to run its own timers; the fixture's timer pushes are counted as a liveness signal.
    let abortedAt = null
    let loopsDone = false
    const rssWatch = watchRss(fx, RSS_SAMPLE_MS, (rss) => {
      if (!loopsDone && abortedAt === null && rss - base.rss > RSS_ABORT_GROWTH) abortedAt = Date.now()
    })
    let timerPushes = 0
    let maxPushGapMs = 0
    let lastPushAt = Date.now()
    fx.onRss(() => {
      const now = Date.now()
      if (!loopsDone) {
        timerPushes++
        maxPushGapMs = Math.max(maxPushGapMs, now - lastPushAt)
      }
      lastPushAt = now
    })

    const payload = Buffer.from(JSON.stringify({ event: 'work', data: { p: 'x'.repeat(PAD_BYTES) } }))
    // One masked frame, written MESSAGES_PER_CONNECTION times (the server cannot tell the mask key
    // was reused; building it once keeps the test process's CPU for the sockets).
    const workFrame = encodeFrame(1, payload)
    const bye = closeFrame(1000)

    const started = Date.now()
    const stopAt = started + CHURN_MS
    const counts = { connections: 0, handshakeFailures: 0, serverClose: 0, serverEnd: 0, closeTimeouts: 0, closeCodes: {}, maxCloseWaitMs: 0 }
    const stopped = () => Date.now() >= stopAt || abortedAt !== null || fx.exitInfo !== null

    async function loop() {
      while (!stopped()) {
        let peer
        try {
          peer = await rawConnect(fx.port, '/ws', HANDSHAKE_MS)
        } catch {
          counts.handshakeFailures++
          if (fx.exitInfo) return
          continue
        }
        counts.connections++
        for (let i = 0; i < MESSAGES_PER_CONNECTION; i++) peer.socket.write(workFrame)
        peer.socket.write(bye)
        const goodbyeSentAt = Date.now()
        const r = await awaitServerClose(peer, SERVER_CLOSE_WAIT_MS)
        counts.maxCloseWaitMs = Math.max(counts.maxCloseWaitMs, Date.now() - goodbyeSentAt)
        if (r.kind === 'close') {
          counts.serverClose++
          counts.closeCodes[r.code] = (counts.closeCodes[r.code] ?? 0) + 1
        } else if (r.kind === 'end') counts.serverEnd++
        else counts.closeTimeouts++
        peer.destroy()
      }
    }
    const loops = Array.from({ length: LOOPS }, loop)
    // Every loop ends by itself: the last iteration is bounded by the handshake and close deadlines.
    await withTimeout(Promise.all(loops), CHURN_MS + HANDSHAKE_MS + SERVER_CLOSE_WAIT_MS + 5000, 'the churn loops to finish')
    loopsDone = true
    const churnMs = Date.now() - started
    if (fx.exitInfo === null) maxPushGapMs = Math.max(maxPushGapMs, Date.now() - lastPushAt)
    const h = await healthy.stop()
    const crashed = fx.exitInfo

    let after = null
    let afterError = null
    if (!crashed) {
      after = await fx.request('rss', {}, 10_000).catch((e) => {
        afterError = e.message
        return null
      })
    }
    rssWatch.stop()
    const peak = Math.max(rssWatch.peak(), after?.peak ?? 0)
    const growth = peak - base.rss

    t.diagnostic(
      `churn ${churnMs} ms: ${counts.connections} connections, ${counts.handshakeFailures} failed handshakes; ` +
        `server answered close ${counts.serverClose}× (codes ${JSON.stringify(counts.closeCodes)}), ended TCP ${counts.serverEnd}×, ` +
        `no answer within ${SERVER_CLOSE_WAIT_MS} ms ${counts.closeTimeouts}×; slowest goodbye ${counts.maxCloseWaitMs} ms`,
    )
    t.diagnostic(
      `server RSS ${mb(base.rss)} → peak ${mb(peak)} (growth ${mb(growth)}, limit ${mb(MAX_RSS_GROWTH)})` +
        (after ? `, heapUsed at the end ${mb(after.heapUsed)}` : '') +
        (abortedAt ? `; WATCHDOG stopped the flood after ${abortedAt - started} ms (growth > ${mb(RSS_ABORT_GROWTH)})` : '') +
        (afterError ? `; final RSS request failed: ${afterError}` : ''),
    )
    t.diagnostic(
      `server event loop: ${timerPushes} of its ${TIMER_PUSH_MS} ms timer reports arrived during the churn ` +
        `(~${Math.floor(churnMs / TIMER_PUSH_MS)} expected), longest gap ${maxPushGapMs} ms`,
    )
    t.diagnostic(
      `healthy client: ${h.answered}/${h.sent} pongs, p50 ${h.p50RttMs} ms, max RTT ${h.maxRttMs} ms, ` +
        `oldest unanswered ${h.maxOutstandingMs} ms, disconnected ${JSON.stringify(h.disconnected)}`,
    )
    if (crashed) t.diagnostic(`server process DIED during the churn (${describeExit(crashed)}) at +${crashed.at - started} ms: ${crashReport(fx)}`)

    // Shutdown: only meaningful if it is still alive.
    const exit = crashed ? null : await shutdownAndExit(fx, SHUTDOWN_EXIT_MS)
    if (exit) t.diagnostic(`shutdown + process exit: ${exit.ok ? 'ok' : 'FAILED'} in ${exit.ms} ms (code ${exit.code}, signal ${exit.signal})${exit.error ? ` – ${exit.error}` : ''}`)

    assert.equal(crashed, null, `the server process died during the churn (${crashed && describeExit(crashed)})`)
    assert.ok(counts.connections >= LOOPS, `precondition: the loops connected (${counts.connections} connections)`)
    assert.ok(growth < MAX_RSS_GROWTH, `server RSS grew by ${mb(growth)} (limit ${mb(MAX_RSS_GROWTH)})${abortedAt ? ', flood stopped by the watchdog' : ''}`)
    assert.equal(h.disconnected, null, `the healthy client was disconnected: ${JSON.stringify(h.disconnected)}`)
    assert.ok(h.answered > 0, 'the healthy client got pongs during the churn')
    const worst = Math.max(h.maxRttMs ?? 0, h.maxOutstandingMs)
    assert.ok(worst < HEALTHY_RTT_MS, `healthy client's worst round trip ${worst} ms (limit ${HEALTHY_RTT_MS} ms)`)
    assert.equal(counts.closeTimeouts, 0, `the server did not answer ${counts.closeTimeouts} close frames within ${SERVER_CLOSE_WAIT_MS} ms`)
    assert.ok(exit.ok, `the server did not shut down and exit cleanly within ${SHUTDOWN_EXIT_MS} ms: ${JSON.stringify(exit)}`)
  },
)
