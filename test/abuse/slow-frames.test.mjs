// Abuse case 6: many connections each stuck mid-frame ("slow frames").
//
// A peer may stop in the middle of a frame header, in the middle of a frame's payload, or between
// the fragments of a message, and stay there (nothing times a partial frame out). Whatever the
// server keeps for such a connection must be about what the peer actually sent, not what its
// header announced: RSS growth per connection is measured for each shape.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startAbuseServer, rawConnect, encodeFrame, shutdownAndExit, nextTurn, mb } from './helpers.mjs'

// ---- load and thresholds --------------------------------------------------------------------------
const CONNECTIONS_PER_SHAPE = 1000
const CONNECT_BATCH = 100 // concurrent handshakes while opening
const FRAGMENT_BYTES = 4096 // payload of the first fragment of the half-finished message
const BODY_SENT_BYTES = 1000 // bytes of payload sent of a frame that announces ANNOUNCED_BYTES
const ANNOUNCED_BYTES = 60_000
// Allowed RSS growth per connection: what it sent (×2 for allocator rounding) plus a fixed
// overhead. A server that reserved what a header announces would need ANNOUNCED_BYTES.
const FIXED_OVERHEAD_LIMIT = 2048
const SEEN_DEADLINE_MS = 10_000 // every connection's bytes reached the server
const CASE_TIMEOUT_MS = 60_000

/** The bytes one connection sends for each shape, and how much of it the server must hold. */
function shapes() {
  const header3 = Buffer.from([0x81, 0xfe, 0x00]) // text frame, masked, 16-bit length: 1 of 2 length bytes
  const start = '{"event":"echo","data":"'
  const first = encodeFrame(1, Buffer.from(start + 'p'.repeat(FRAGMENT_BYTES - start.length)), { fin: false })
  const body = encodeFrame(1, Buffer.alloc(ANNOUNCED_BYTES, 0x20)).subarray(0, 8 + BODY_SENT_BYTES) // 4-byte header + mask + part
  return [
    { name: 'partial frame header (3 bytes)', bytes: header3, held: header3.length },
    { name: `half-finished fragmented message (${FRAGMENT_BYTES} B first fragment + 3 header bytes of the next)`, bytes: Buffer.concat([first, Buffer.from([0x80, 0xfe, 0x00])]), held: FRAGMENT_BYTES + 3 },
    { name: `partial frame body (${BODY_SENT_BYTES} of ${ANNOUNCED_BYTES} announced bytes)`, bytes: body, held: body.length },
  ]
}

async function openMany(t, port, n) {
  const peers = []
  t.after(() => peers.forEach((p) => p.destroy()))
  for (let i = 0; i < n; i += CONNECT_BATCH) {
    const batch = await Promise.all(Array.from({ length: Math.min(CONNECT_BATCH, n - i) }, () => rawConnect(port, '/ws', 10_000)))
    peers.push(...batch)
  }
  return peers
}

test(
  `slow frames: ${CONNECTIONS_PER_SHAPE} connections per shape stuck mid-frame; RSS growth per connection ≤ 2 × bytes sent + ${FIXED_OVERHEAD_LIMIT} B`,
  { timeout: CASE_TIMEOUT_MS },
  async (t) => {
    const fx = await startAbuseServer(t, { quiet: true })
    const groups = []
    for (const shape of shapes()) groups.push({ shape, peers: await openMany(t, fx.port, CONNECTIONS_PER_SHAPE) })
    const total = groups.length * CONNECTIONS_PER_SHAPE
    const opened = await fx.request('lastSeen') // also makes every conn.lastSeenAt's bookkeeping exist before the baseline
    assert.equal(opened.count, total, `precondition: ${total} connections open on the server`)

    const results = []
    for (const { shape, peers } of groups) {
      // `since` must be later than every lastSeenAt so far (ms clock), so ">= since" means "got our bytes".
      const { max } = await fx.request('lastSeen')
      while (Date.now() <= max) await nextTurn()
      const before = await fx.request('rss')
      const since = Date.now()
      for (const p of peers) p.socket.write(shape.bytes)
      const deadline = Date.now() + SEEN_DEADLINE_MS
      let seen
      for (;;) {
        seen = (await fx.request('lastSeen', { since })).atOrAfter
        if (seen >= CONNECTIONS_PER_SHAPE || Date.now() >= deadline) break
        await nextTurn()
      }
      assert.ok(seen >= CONNECTIONS_PER_SHAPE, `precondition: the server read the bytes of ${seen}/${CONNECTIONS_PER_SHAPE} connections within ${SEEN_DEADLINE_MS} ms`)
      const after = await fx.request('rss')
      const perConn = (after.rss - before.rss) / CONNECTIONS_PER_SHAPE
      const limit = 2 * shape.held + FIXED_OVERHEAD_LIMIT
      results.push({ shape, perConn, limit, growth: after.rss - before.rss })
      t.diagnostic(`${shape.name}: RSS ${mb(before.rss)} → ${mb(after.rss)} (${mb(after.rss - before.rss)}), ${Math.round(perConn)} B per connection (limit ${limit} B)`)
    }

    // Reported, not asserted: nothing times out a partial frame today; a future read timeout may.
    const stats = await fx.request('stats')
    t.diagnostic(`still open at the end: ${stats.connectionCount}/${total}`)
    const exit = await shutdownAndExit(fx, 15_000)
    t.diagnostic(`shutdown + process exit: ${exit.ok ? 'ok' : 'FAILED'} in ${exit.ms} ms`)

    for (const r of results) assert.ok(r.perConn <= r.limit, `${r.shape.name}: ${Math.round(r.perConn)} B per connection (limit ${r.limit} B)`)
    assert.ok(exit.ok, `the server did not shut down and exit cleanly: ${JSON.stringify(exit)}`)
  },
)
