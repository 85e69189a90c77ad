// permessage-deflate (RFC 7692), written against the agreed spec (the `compression` server option):
//  1. negotiation: which Sec-WebSocket-Extensions offers are accepted, and the exact response
//     header; a declined offer is never a failed upgrade;
//  2. framing: `ws` clients with and without deflate in one room get the same messages in order; on
//     the wire (a raw client that negotiated deflate) messages >= threshold carry RSV1 and inflate
//     to the JSON, smaller ones and control frames are plain, every recipient gets the same bytes;
//     compressed client messages (whole and fragmented, text and binary) arrive intact;
//  3. abuse: a zip bomb closes 1009 with the server's RSS bounded (server in a child process),
//     invalid deflate data closes 1007, misplaced reserved bits close 1002;
//  4. conn.compression;
//  5. Chromium negotiates deflate with examples/chat and a long message crosses between two tabs.
// Raw clients compress with node:zlib (Z_SYNC_FLUSH, trailing 00 00 ff ff stripped) and inflate what
// the server sends after appending those four bytes back (RFC 7692 §7.2).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import { fileURLToPath } from 'node:url'
import {
  startServer,
  connect,
  collect,
  nextMessage,
  send,
  echo,
  deferred,
  withTimeout,
  encodeFrame,
  RawHttpPeer,
  upgradeHead,
  startPrintingUrl,
  MiB,
  HOST,
} from './helpers.mjs'
import { startAbuseServer, awaitServerClose, readRss } from '../test/abuse/helpers.mjs'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')

// ---- spec constants -------------------------------------------------------------------------------
const ACCEPTED = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'
const DEFAULT_THRESHOLD = 256
const DEFAULT_MAX_PAYLOAD = 65536
const RSV1 = 4 // frame.rsv / encodeFrame's rsv: RSV1 = 4, RSV2 = 2, RSV3 = 1
const RSV2 = 2
const RSV3 = 1
const SYNC_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff])

// ---- thresholds -----------------------------------------------------------------------------------
const REPLY_WAIT_MS = 3000
const CLOSE_WAIT_MS = 5000
const BOMB_INFLATED_BYTES = 60 * MiB // compresses to ~61 KB: below the default maxPayload
const BOMBERS = 4 // concurrent zip bombs (several I/O threads, several connections at once)
const BOMB_RSS_BOUND = 32 * MiB // the server's peak RSS may grow by less than this

// ---- deflate as a peer does it ----------------------------------------------------------------------

/** One message's payload compressed for the wire: sync-flushed, the trailing 00 00 ff ff removed. */
function deflateMessage(data, level = zlib.constants.Z_DEFAULT_COMPRESSION) {
  const out = zlib.deflateRawSync(Buffer.from(data), { level, finishFlush: zlib.constants.Z_SYNC_FLUSH })
  assert.ok(out.subarray(-4).equals(SYNC_TAIL), 'precondition: a sync-flushed deflate stream ends with 00 00 ff ff')
  return out.subarray(0, -4)
}

/** A compressed message payload as received, inflated (the 00 00 ff ff tail appended back). */
function inflateMessage(payload) {
  return zlib.inflateRawSync(Buffer.concat([payload, SYNC_TAIL]), { finishFlush: zlib.constants.Z_SYNC_FLUSH })
}

/** `{"event":"echo","data":"ppp…"}` exactly `bytes` long (`event` defaults to echo). */
function envelopeOfLength(bytes, event = 'echo') {
  const empty = JSON.stringify({ event, data: '' })
  const text = JSON.stringify({ event, data: 'p'.repeat(bytes - empty.length) })
  assert.equal(text.length, bytes)
  return text
}

// ---- raw upgrades and a raw deflate peer -----------------------------------------------------------

/**
 * One raw upgrade on a fresh TCP connection with the given Sec-WebSocket-Extensions (a string: one
 * header line; an array: one line each; undefined: none). Resolves `{ peer, res }`; the peer is a
 * RawHttpPeer, upgraded when res.status is 101, destroyed after the test.
 */
async function rawUpgrade(t, port, extensions) {
  const peer = await RawHttpPeer.connect(port)
  t.after(() => peer.destroy())
  const headers = {}
  // upgradeHead writes one line per key: vary the case of the name to repeat the header.
  const lines = extensions === undefined ? [] : Array.isArray(extensions) ? extensions : [extensions]
  lines.forEach((value, i) => {
    headers[i % 2 ? 'sec-websocket-extensions' : 'Sec-WebSocket-Extensions'] = value
  })
  assert.equal(Object.keys(headers).length, lines.length, 'precondition: at most two extension header lines')
  const res = await peer.request(upgradeHead('/ws', { host: `${HOST}:${port}`, headers }), REPLY_WAIT_MS)
  return { peer, res }
}

/** A raw peer that offered `offer` and must have negotiated permessage-deflate. */
async function deflatePeer(t, port, offer = 'permessage-deflate') {
  const { peer, res } = await rawUpgrade(t, port, offer)
  assert.equal(res.status, 101, `upgrade offering ${offer}: HTTP ${res.status}`)
  assert.equal(res.headers['sec-websocket-extensions'], ACCEPTED, `upgrade offering ${JSON.stringify(offer)} did not negotiate permessage-deflate`)
  return peer
}

/** A raw peer that offered nothing (no extension). */
async function plainPeer(t, port) {
  const { peer, res } = await rawUpgrade(t, port, undefined)
  assert.equal(res.status, 101)
  assert.equal(res.headers['sec-websocket-extensions'], undefined)
  return peer
}

/** A masked compressed text (or binary) message in one frame, RSV1 set. */
function compressedFrame(data, { opcode = 1 } = {}) {
  return encodeFrame(opcode, deflateMessage(data), { rsv: RSV1 })
}

/**
 * The next data message from the server on a raw peer (pings/pongs skipped, fragments joined):
 * `{ opcode, rsv, continuationRsv, wire, payload }`: `rsv` of its first frame, those of its
 * continuation frames, the bytes on the wire (joined) and the payload (inflated when RSV1 was set).
 * Throws on a close frame.
 */
async function nextWireMessage(peer, ms = REPLY_WAIT_MS) {
  const first = await peer.nextData(ms)
  if (first.opcode !== 1 && first.opcode !== 2) {
    throw new Error(`expected a data frame, got opcode ${first.opcode} ${first.code ?? ''} ${first.reason ?? ''}`)
  }
  const parts = [first.payload]
  const continuationRsv = []
  for (let last = first; !last.fin; ) {
    last = await peer.nextData(ms)
    assert.equal(last.opcode, 0, `expected a continuation frame, got opcode ${last.opcode}`)
    continuationRsv.push(last.rsv)
    parts.push(last.payload)
  }
  const wire = Buffer.concat(parts)
  return { opcode: first.opcode, rsv: first.rsv, continuationRsv, wire, payload: first.rsv & RSV1 ? inflateMessage(wire) : wire }
}

const parse = (m) => JSON.parse(m.payload.toString('utf8'))

/** A raw peer's echo round trip with a compressed message: the echo must come back intact. */
async function compressedEcho(peer, data) {
  peer.write(compressedFrame(JSON.stringify({ event: 'echo', data })))
  assert.deepEqual(parse(await nextWireMessage(peer)), { event: 'echo', data }, 'a compressed echo round trip')
}

/** A raw peer's echo round trip with a plain message. */
async function plainEcho(peer, data) {
  peer.sendJson('echo', data)
  assert.deepEqual(parse(await nextWireMessage(peer)), { event: 'echo', data }, 'a plain echo round trip')
}

// ------------------------------------------------------------------------------------------------
// 1. Negotiation
// ------------------------------------------------------------------------------------------------

/** Each offer (header value, or array of header lines) → the exact response header, undefined: none. */
async function negotiationCases(t, options, cases) {
  const h = await startServer(options)
  t.after(() => h.close())
  for (const [offer, expected, why] of cases) {
    await t.test(`${JSON.stringify(offer)} → ${expected === undefined ? 'no extension' : JSON.stringify(expected)}${why ? ` (${why})` : ''}`, async (t) => {
      const { res } = await rawUpgrade(t, h.port, offer)
      assert.equal(res.status, 101, `the upgrade must succeed whatever is offered, got HTTP ${res.status} ${res.statusText}`)
      assert.equal(res.headers['sec-websocket-extensions'], expected)
    })
  }
}

const smwb = (n) => `${ACCEPTED}; server_max_window_bits=${n}`

test('negotiation, compression: true: accepted offers and the exact response; declined offers upgrade without the extension', async (t) => {
  await negotiationCases(t, { compression: true }, [
    ['permessage-deflate', ACCEPTED, 'a bare offer'],
    ['permessage-deflate; server_no_context_takeover', ACCEPTED],
    ['permessage-deflate; client_no_context_takeover', ACCEPTED],
    ['permessage-deflate; server_no_context_takeover; client_no_context_takeover', ACCEPTED],
    ['permessage-deflate; client_max_window_bits', ACCEPTED, 'what ws and Chromium offer'],
    ['permessage-deflate; client_max_window_bits=10', ACCEPTED],
    ['permessage-deflate; client_max_window_bits=8', ACCEPTED],
    ['permessage-deflate; client_max_window_bits=15', ACCEPTED],
    ['permessage-deflate; server_max_window_bits=10', smwb(10), 'echoed'],
    ['permessage-deflate; server_max_window_bits=15', smwb(15), 'named, so echoed'],
    ['permessage-deflate; server_max_window_bits=9; client_max_window_bits', smwb(9)],
    ['permessage-deflate;server_max_window_bits=10', smwb(10), 'no whitespace'],
    ['permessage-deflate; server_max_window_bits=8', undefined, 'zlib cannot make 256-byte windows'],
    ['permessage-deflate; server_max_window_bits=16', undefined, 'out of range'],
    ['permessage-deflate; server_max_window_bits=7', undefined, 'out of range'],
    ['permessage-deflate; server_max_window_bits=abc', undefined, 'not a number'],
    ['permessage-deflate; server_max_window_bits', undefined, 'needs a value'],
    ['permessage-deflate; client_max_window_bits=16', undefined, 'out of range'],
    ['permessage-deflate; client_max_window_bits=7', undefined, 'out of range'],
    ['permessage-deflate; client_max_window_bits=abc', undefined, 'not a number'],
    ['permessage-deflate; foo', undefined, 'unknown parameter'],
    ['permessage-deflate; foo=1', undefined, 'unknown parameter'],
    ['permessage-deflate; server_no_context_takeover; server_no_context_takeover', undefined, 'duplicate parameter'],
    ['permessage-deflate; client_max_window_bits; client_max_window_bits=10', undefined, 'duplicate parameter'],
    ['permessage-deflate; server_no_context_takeover=1', undefined, 'value on server_no_context_takeover'],
    ['permessage-deflate; client_no_context_takeover=true', undefined, 'value on client_no_context_takeover'],
    ['permessage-deflate; foo, permessage-deflate; server_max_window_bits=12', smwb(12), 'first offer invalid, second accepted'],
    ['permessage-deflate; server_max_window_bits=8, permessage-deflate', ACCEPTED, 'first offer declined, second accepted'],
    ['permessage-deflate; server_max_window_bits=10, permessage-deflate', smwb(10), 'the first acceptable offer wins'],
    ['x-webkit-deflate-frame', undefined, 'another extension only'],
    ['x-webkit-deflate-frame, permessage-deflate', ACCEPTED, 'another extension first'],
    [['x-webkit-deflate-frame', 'permessage-deflate; server_max_window_bits=11'], smwb(11), 'offers on two header lines (RFC 6455 §9.1)'],
  ])
})

test('negotiation, compression: { serverMaxWindowBits: 11 }: the window is named, min(offer, option)', async (t) => {
  await negotiationCases(t, { compression: { serverMaxWindowBits: 11 } }, [
    ['permessage-deflate', smwb(11), 'option below 15'],
    ['permessage-deflate; client_max_window_bits', smwb(11)],
    ['permessage-deflate; server_max_window_bits=10', smwb(10), 'the offer asks for less'],
    ['permessage-deflate; server_max_window_bits=12', smwb(11), 'the option is less'],
    ['permessage-deflate; server_max_window_bits=8', undefined, 'still declined'],
  ])
})

for (const [label, options] of [
  ['without the compression option', {}],
  ['with compression: false', { compression: false }],
]) {
  test(`negotiation ${label}: never an extension, whatever is offered`, async (t) => {
    await negotiationCases(t, options, [
      ['permessage-deflate', undefined],
      ['permessage-deflate; client_max_window_bits', undefined],
      ['permessage-deflate; server_max_window_bits=10', undefined],
      ['x-webkit-deflate-frame', undefined],
    ])
    // And a ws client offering deflate opens without it.
    const h = await startServer(options)
    t.after(() => h.close())
    const [ws] = await h.client({ name: 'ws offering deflate', options: { perMessageDeflate: true } })
    assert.equal(ws.extensions, '')
  })
}

// ------------------------------------------------------------------------------------------------
// 2. Framing
// ------------------------------------------------------------------------------------------------

/** `n` records of JSON, compressible (repetitive keys and values). */
function records(n) {
  return Array.from({ length: n }, (_, i) => ({ id: i, name: `user-${i}`, tags: ['alpha', 'beta', 'gamma'], active: i % 2 === 0 }))
}

/** Every connection joins room 'r' and echoes; 'upload' messages go to `onUpload`. */
function roomServer(onUpload = () => {}) {
  return (conn) => {
    conn.join('r')
    echo(conn)
    conn.onMessage('upload', (data) => onUpload(data))
  }
}

test('framing: a ws client with perMessageDeflate and one without, in one room, receive identical messages in the same order', async (t) => {
  const h = await startServer({ compression: true }, { onConnection: roomServer() })
  t.after(() => h.close())
  const [deflate, dconn] = await h.client({ name: 'deflate client', options: { perMessageDeflate: true } })
  const [plain, pconn] = await h.client({ name: 'plain client', options: { perMessageDeflate: false } })
  assert.equal(deflate.extensions, 'permessage-deflate', 'the deflate client negotiated the extension')
  assert.equal(plain.extensions, '')
  assert.equal(dconn.compression, true)
  assert.equal(pconn.compression, false)

  const kb1 = records(14)
  const kb100 = records(1320)
  const small = { text: 'hi' }
  assert.ok(JSON.stringify({ event: 'm', data: small }).length < DEFAULT_THRESHOLD, 'precondition: the small message is below the threshold')
  const kb1Len = JSON.stringify({ event: 'm', data: kb1 }).length
  const kb100Len = JSON.stringify({ event: 'm', data: kb100 }).length
  assert.ok(kb1Len > 900 && kb1Len < 1400, `precondition: ~1 KB message, got ${kb1Len}`)
  assert.ok(kb100Len > 80_000 && kb100Len < 120_000, `precondition: ~100 KB message, got ${kb100Len}`)

  const sent = [
    ['room', small],
    ['room', kb1],
    ['room', kb100],
    ['broadcast', { everyone: true, list: records(20) }],
    ['room', { text: 'bye' }],
    ['room', kb1],
  ]
  for (const [how, data] of sent) {
    const reached = how === 'room' ? h.server.publishToRoom('r', 'm', data) : h.server.broadcast('m', data)
    assert.equal(reached, 2)
  }
  const expected = sent.map(([, data]) => ({ event: 'm', data }))
  assert.deepEqual(await collect(deflate, sent.length), expected)
  assert.deepEqual(await collect(plain, sent.length), expected)
})

test('framing: the ws client sends a compressed 50 KB text; the handler receives it intact, and both directions keep working', async (t) => {
  const uploads = []
  const got = deferred()
  const h = await startServer({ compression: true }, {
    onConnection: roomServer((data) => {
      uploads.push(data)
      got.resolve()
    }),
  })
  t.after(() => h.close())
  const [ws, conn] = await h.client({ name: 'deflate client', options: { perMessageDeflate: true } })
  assert.equal(ws.extensions, 'permessage-deflate')
  assert.equal(conn.compression, true)
  const lines = Array.from({ length: 1000 }, (_, i) => `line ${i}: the quick brown fox jumps over the lazy dog`).join('\n')
  const text = lines.slice(0, 50_000)
  assert.equal(text.length, 50_000)
  send(ws, 'upload', text) // ws compresses it: above its 1 KB threshold, extension negotiated
  await withTimeout(got.promise, REPLY_WAIT_MS, 'the upload handler')
  assert.equal(uploads.length, 1)
  assert.equal(uploads[0], text)
  // The same text back (compressed outbound) and a small one (plain), in order.
  send(ws, 'echo', text)
  send(ws, 'echo', 'short')
  assert.deepEqual(await collect(ws, 2), [{ event: 'echo', data: text }, { event: 'echo', data: 'short' }])
})

test('wire: messages >= threshold carry RSV1 and inflate to the JSON, smaller ones are plain; every recipient gets the same bytes; pongs are plain', async (t) => {
  const h = await startServer({ compression: true }, { onConnection: roomServer() })
  t.after(() => h.close())
  const a = await deflatePeer(t, h.port, 'permessage-deflate; client_max_window_bits')
  const b = await deflatePeer(t, h.port)
  const p = await plainPeer(t, h.port)
  const conns = [await h.nextConnection(), await h.nextConnection(), await h.nextConnection()]
  // (Connections may reach JS in another order than their upgrades completed.)
  assert.deepEqual(conns.map((c) => c.compression).sort(), [false, true, true])

  const compressedBefore = h.server.stats.compressedMessages
  assert.equal(typeof compressedBefore, 'number', 'server.stats.compressedMessages is a counter')
  const cases = [
    ['small', { text: 'hi' }, false],
    ['~1 KB', records(14), true],
    ['~100 KB', records(1320), true],
    ['just below the threshold', 'q'.repeat(DEFAULT_THRESHOLD - 1 - JSON.stringify({ event: 'm', data: '' }).length), false],
    ['at the threshold', 'q'.repeat(DEFAULT_THRESHOLD - JSON.stringify({ event: 'm', data: '' }).length), true],
  ]
  for (const [label, data, compressed] of cases) {
    const json = JSON.stringify({ event: 'm', data })
    assert.equal(h.server.publishToRoom('r', 'm', data), 3)
    const [ma, mb, mp] = [await nextWireMessage(a), await nextWireMessage(b), await nextWireMessage(p)]
    for (const [who, m] of [['deflate peer a', ma], ['deflate peer b', mb]]) {
      assert.equal(m.opcode, 1, `${label} to ${who}: a text message`)
      assert.equal(m.rsv, compressed ? RSV1 : 0, `${label} (${json.length} bytes) to ${who}: RSV1 ${compressed ? 'set' : 'clear'}, no other reserved bit`)
      assert.ok(m.continuationRsv.every((r) => r === 0), `${label} to ${who}: continuation frames carry no reserved bit`)
      assert.equal(m.payload.toString('utf8'), json, `${label} to ${who}: the payload ${compressed ? 'inflates to' : 'is'} the JSON`)
      if (compressed && json.length >= 1000) assert.ok(m.wire.length < json.length / 2, `${label}: compressed ${json.length} → ${m.wire.length} bytes`)
    }
    assert.ok(ma.wire.equals(mb.wire), `${label}: both deflate peers receive the same bytes (compressed once per publish)`)
    assert.equal(mp.rsv, 0, `${label} to the plain peer: never compressed`)
    assert.equal(mp.payload.toString('utf8'), json)
  }
  // Three publishes went out compressed, each to two peers: the spec's "messages sent compressed"
  // may count publishes (3) or frames sent (6).
  const compressedDelta = h.server.stats.compressedMessages - compressedBefore
  assert.ok(compressedDelta === 3 || compressedDelta === 6, `stats.compressedMessages grew by ${compressedDelta}, expected 3 (publishes) or 6 (sends)`)

  // Control frames are never compressed: a ping is answered by a plain pong with the same payload.
  a.write(encodeFrame(9, Buffer.from('ping-payload')))
  for (;;) {
    const f = await a.frames.next(REPLY_WAIT_MS)
    if (f.opcode !== 10) continue
    assert.equal(f.rsv, 0, 'a pong carries no reserved bit')
    assert.equal(f.payload.toString('utf8'), 'ping-payload')
    break
  }
})

test('wire: compression.threshold and compression.level are honoured', async (t) => {
  await t.test('threshold: 1000 → 999 bytes plain, 1000 bytes compressed', async (t) => {
    const h = await startServer({ compression: { threshold: 1000 } }, { onConnection: roomServer() })
    t.after(() => h.close())
    const peer = await deflatePeer(t, h.port)
    await h.nextConnection()
    const below = envelopeOfLength(999, 'm')
    const at = envelopeOfLength(1000, 'm')
    h.server.publishToRoom('r', 'm', JSON.parse(below).data)
    h.server.publishToRoom('r', 'm', JSON.parse(at).data)
    const m1 = await nextWireMessage(peer)
    const m2 = await nextWireMessage(peer)
    assert.equal(m1.rsv, 0, '999 bytes: below the threshold, plain')
    assert.equal(m1.payload.toString('utf8'), below)
    assert.equal(m2.rsv, RSV1, '1000 bytes: at the threshold, compressed')
    assert.equal(m2.payload.toString('utf8'), at)
    assert.ok(m2.wire.length < 200, `1000 repetitive bytes at level 1 compress well, got ${m2.wire.length}`)
  })
  await t.test('level: 0 → stored blocks: RSV1 set, no smaller than the message, inflates to it', async (t) => {
    const h = await startServer({ compression: { level: 0 } }, { onConnection: roomServer() })
    t.after(() => h.close())
    const peer = await deflatePeer(t, h.port)
    await h.nextConnection()
    const json = envelopeOfLength(10_000, 'm')
    h.server.publishToRoom('r', 'm', JSON.parse(json).data)
    const m = await nextWireMessage(peer)
    assert.equal(m.rsv, RSV1)
    assert.ok(m.wire.length >= json.length, `level 0 stores (${json.length} → ${m.wire.length} bytes)`)
    assert.equal(m.payload.toString('utf8'), json)
  })
})

test('wire: a compressed message fragmented by the client (RSV1 on the first frame only) is handled intact', async (t) => {
  const h = await startServer({ compression: true })
  t.after(() => h.close())
  const peer = await deflatePeer(t, h.port)
  const data = records(60) // ~5 KB of JSON
  const json = JSON.stringify({ event: 'echo', data })
  const z = deflateMessage(json)
  assert.ok(z.length > 30, 'precondition: enough compressed bytes for three fragments')
  const cut1 = Math.floor(z.length / 3)
  const cut2 = Math.floor((2 * z.length) / 3)
  peer.write(
    Buffer.concat([
      encodeFrame(1, z.subarray(0, cut1), { fin: false, rsv: RSV1 }),
      encodeFrame(0, z.subarray(cut1, cut2), { fin: false }),
      encodeFrame(0, z.subarray(cut2), { fin: true }),
    ]),
  )
  const m = await nextWireMessage(peer)
  assert.deepEqual(parse(m), { event: 'echo', data })
  assert.equal(m.rsv, RSV1, 'the echo (~5 KB) comes back compressed')
  // A plain (uncompressed) fragmented message on the same connection still works.
  const plain = JSON.stringify({ event: 'echo', data: 'plain fragments' })
  peer.write(Buffer.concat([encodeFrame(1, plain.slice(0, 10), { fin: false }), encodeFrame(0, plain.slice(10))]))
  assert.deepEqual(parse(await nextWireMessage(peer)), { event: 'echo', data: 'plain fragments' })
})

test('wire: raw mode: a compressed binary message arrives as the same bytes; the binary echo comes back compressed', async (t) => {
  const got = []
  const h = await startServer({ compression: true, messageFormat: 'raw' }, {
    onConnection: (conn) =>
      conn.onRawMessage((data, c) => {
        got.push(data)
        c.sendRaw(data)
      }),
  })
  t.after(() => h.close())
  const peer = await deflatePeer(t, h.port)
  const bytes = Buffer.alloc(4096)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) % 13
  peer.write(compressedFrame(bytes, { opcode: 2 }))
  const m = await nextWireMessage(peer)
  assert.equal(m.opcode, 2)
  assert.equal(m.rsv, RSV1)
  assert.ok(m.payload.equals(bytes), 'the echoed binary inflates to the bytes sent')
  assert.equal(got.length, 1)
  assert.ok(Buffer.isBuffer(got[0]) && got[0].equals(bytes), 'the handler received the inflated bytes')
})

// ------------------------------------------------------------------------------------------------
// 3. Abuse
// ------------------------------------------------------------------------------------------------

/** VmRSS and VmHWM (peak RSS) of `pid` in bytes, from /proc. */
function procMemory(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') }
}

/** Resets VmHWM of `pid` to its current RSS (Linux ≥ 4.0); false when not permitted. */
function resetPeakRss(pid) {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

const mb = (bytes) => (bytes / MiB).toFixed(1) + ' MiB'

test(`abuse: zip bombs (${mb(BOMB_INFLATED_BYTES)} each, compressed below maxPayload) close 1009; other connections keep working; server RSS grows < ${mb(BOMB_RSS_BOUND)}`, { timeout: 90_000, skip: process.platform !== 'linux' && 'reads /proc' }, async (t) => {
  const fx = await startAbuseServer(t, { options: { compression: true } }) // default maxPayload
  const pid = fx.child.pid

  // The bomb: one text message of BOMB_INFLATED_BYTES, a valid envelope once inflated.
  const head = '{"event":"echo","data":"'
  const inflated = Buffer.alloc(BOMB_INFLATED_BYTES, '0')
  inflated.write(head, 0)
  inflated.write('"}', BOMB_INFLATED_BYTES - 2)
  const bomb = deflateMessage(inflated, 9)
  t.diagnostic(`bomb: ${mb(inflated.length)} → ${bomb.length} bytes compressed`)
  assert.ok(bomb.length < DEFAULT_MAX_PAYLOAD, `precondition: the compressed bomb (${bomb.length} bytes) is below maxPayload`)
  const bombFrame = encodeFrame(1, bomb, { rsv: RSV1 })

  // A healthy deflate client, and the bombers, each with a working compressed round trip first
  // (which also warms up whatever inflate state the server keeps).
  const control = await connect(fx.url, { perMessageDeflate: true }, { name: 'control' })
  t.after(() => control.terminate())
  assert.equal(control.extensions, 'permessage-deflate', 'precondition: the control client negotiated deflate')
  send(control, 'echo', 'x'.repeat(5000))
  assert.deepEqual(await nextMessage(control, REPLY_WAIT_MS), { event: 'echo', data: 'x'.repeat(5000) })
  const bombers = []
  for (let i = 0; i < BOMBERS; i++) {
    const peer = await deflatePeer(t, fx.port)
    await compressedEcho(peer, `warm-up ${i} ${'y'.repeat(1000)}`)
    bombers.push(peer)
  }

  const resetOk = resetPeakRss(pid)
  await fx.request('resetPeak')
  const before = procMemory(pid)
  for (const peer of bombers) peer.write(bombFrame)
  const closes = await Promise.all(bombers.map((peer) => awaitServerClose(peer, CLOSE_WAIT_MS)))
  const after = procMemory(pid)
  const sampled = (await fx.request('rss')).peak // the fixture's own 10 ms sampler, since resetPeak
  const peak = Math.max(resetOk ? after.hwm : 0, sampled, after.rss)
  const growth = peak - before.rss
  t.diagnostic(
    `closes ${JSON.stringify(closes.map((c) => [c.kind, c.code, c.reason]))}; RSS before ${mb(before.rss)}, after ${mb(after.rss)}, ` +
      `VmHWM after ${mb(after.hwm)}${resetOk ? '' : ' (not reset: clear_refs refused)'}, sampled peak ${mb(sampled)} → growth ${mb(growth)}`,
  )
  for (const [i, c] of closes.entries()) {
    assert.equal(c.dataFrames, 0, `bomber ${i}: the bomb was answered instead of refused`)
    assert.equal(c.kind, 'close', `bomber ${i}: expected a close frame, got ${JSON.stringify(c)}`)
    assert.equal(c.code, 1009, `bomber ${i}: close code`)
    assert.match(c.reason, /^Message too (big|large)$/, `bomber ${i}: close reason`)
  }
  // The other connection is unaffected.
  send(control, 'echo', 'after the bombs')
  assert.deepEqual(await nextMessage(control, REPLY_WAIT_MS), { event: 'echo', data: 'after the bombs' })
  assert.ok(growth < BOMB_RSS_BOUND, `server RSS grew by ${mb(growth)} while inflating ${BOMBERS} bombs (bound ${mb(BOMB_RSS_BOUND)})`)
  assert.ok(readRss(pid) !== null, 'the server process is alive')
})

test('abuse: invalid deflate data closes 1007 "Invalid compressed data"; other connections keep working', async (t) => {
  const h = await startServer({ compression: true })
  t.after(() => h.close())
  const [other] = await h.client({ name: 'other', options: { perMessageDeflate: true } })
  const peer = await deflatePeer(t, h.port)
  await compressedEcho(peer, 'valid first') // positive control on the same connection
  // 0xff: BFINAL = 1, BTYPE = 11 (reserved): not a valid deflate block.
  peer.write(encodeFrame(1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), { rsv: RSV1 }))
  peer.write(compressedFrame(JSON.stringify({ event: 'echo', data: 'answered only if the bad frame was accepted' })))
  const r = await awaitServerClose(peer, CLOSE_WAIT_MS)
  assert.equal(r.dataFrames, 0, `no echo after invalid compressed data: ${JSON.stringify(r)}`)
  assert.equal(r.kind, 'close', `expected a close frame, got ${JSON.stringify(r)}`)
  assert.equal(r.code, 1007)
  assert.equal(r.reason, 'Invalid compressed data')
  send(other, 'echo', 'still here')
  assert.deepEqual(await nextMessage(other), { event: 'echo', data: 'still here' })
})

// Each case: how the peer connects (negotiated deflate or not), then the offending frame(s).
const json = (data) => Buffer.from(JSON.stringify({ event: 'echo', data }))
const protocolErrorCases = [
  ['RSV1 on a ping', 'deflate', () => encodeFrame(9, Buffer.from('p'), { rsv: RSV1 })],
  ['RSV1 on a pong', 'deflate', () => encodeFrame(10, Buffer.from('p'), { rsv: RSV1 })],
  ['RSV1 on a close frame', 'deflate', () => encodeFrame(8, Buffer.from([0x03, 0xe8]), { rsv: RSV1 })],
  ['RSV1 on a continuation frame', 'deflate', () => {
    const z = deflateMessage(json('fragmented'))
    return Buffer.concat([encodeFrame(1, z.subarray(0, 4), { fin: false, rsv: RSV1 }), encodeFrame(0, z.subarray(4), { rsv: RSV1 })])
  }],
  ['RSV1 on a continuation frame of a plain message', 'deflate', () => {
    const raw = json('fragmented')
    return Buffer.concat([encodeFrame(1, raw.subarray(0, 4), { fin: false }), encodeFrame(0, raw.subarray(4), { rsv: RSV1 })])
  }],
  ['RSV2 on a text frame', 'deflate', () => encodeFrame(1, json('rsv2'), { rsv: RSV2 })],
  ['RSV3 on a text frame', 'deflate', () => encodeFrame(1, json('rsv3'), { rsv: RSV3 })],
  ['RSV1 | RSV2 on a compressed text frame', 'deflate', () => encodeFrame(1, deflateMessage(json('rsv1+2')), { rsv: RSV1 | RSV2 })],
  ['RSV1 without the extension (nothing offered)', 'plain', () => encodeFrame(1, deflateMessage(json('no ext')), { rsv: RSV1 })],
  ['RSV1 without the extension (offer declined)', 'declined', () => encodeFrame(1, deflateMessage(json('declined')), { rsv: RSV1 })],
  ['RSV1 without the extension (server without compression)', 'no-option', () => encodeFrame(1, deflateMessage(json('no option')), { rsv: RSV1 })],
  ['RSV2 without the extension', 'plain', () => encodeFrame(1, json('rsv2 plain'), { rsv: RSV2 })],
]

for (const [label, mode, frames] of protocolErrorCases) {
  test(`abuse: ${label} closes 1002`, async (t) => {
    const h = await startServer(mode === 'no-option' ? {} : { compression: true })
    t.after(() => h.close())
    let peer
    if (mode === 'deflate') {
      peer = await deflatePeer(t, h.port)
      await compressedEcho(peer, 'control') // positive control: compressed messages work here
    } else {
      const offer = mode === 'declined' ? 'permessage-deflate; server_max_window_bits=8' : mode === 'no-option' ? 'permessage-deflate' : undefined
      const { peer: p, res } = await rawUpgrade(t, h.port, offer)
      assert.equal(res.status, 101)
      assert.equal(res.headers['sec-websocket-extensions'], undefined, 'precondition: no extension negotiated')
      peer = p
      await plainEcho(peer, 'control')
    }
    peer.write(frames())
    peer.write(encodeFrame(1, json('answered only if the bad frame was accepted')))
    const r = await awaitServerClose(peer, CLOSE_WAIT_MS)
    assert.equal(r.dataFrames, 0, `no echo after the bad frame: ${JSON.stringify(r)}`)
    assert.equal(r.kind, 'close', `expected a close frame, got ${JSON.stringify(r)}`)
    assert.equal(r.code, 1002)
    assert.equal(r.reason, 'Protocol error')
  })
}

// ------------------------------------------------------------------------------------------------
// 4. conn.compression
// ------------------------------------------------------------------------------------------------

test('conn.compression: true when the connection negotiated permessage-deflate, false otherwise', async (t) => {
  const h = await startServer({ compression: true })
  t.after(() => h.close())
  const [, withDeflate] = await h.client({ name: 'deflate', options: { perMessageDeflate: true } })
  const [, without] = await h.client({ name: 'plain', options: { perMessageDeflate: false } })
  await rawUpgrade(t, h.port, 'permessage-deflate; server_max_window_bits=8') // declined offer
  const declined = await h.nextConnection()
  await rawUpgrade(t, h.port, 'permessage-deflate; server_max_window_bits=10')
  const raw = await h.nextConnection()
  assert.equal(withDeflate.compression, true)
  assert.equal(without.compression, false)
  assert.equal(declined.compression, false)
  assert.equal(raw.compression, true)

  const off = await startServer({})
  t.after(() => off.close())
  const [, offered] = await off.client({ name: 'deflate to a server without compression', options: { perMessageDeflate: true } })
  assert.equal(offered.compression, false)
})

// ------------------------------------------------------------------------------------------------
// 5. Browser
// ------------------------------------------------------------------------------------------------

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const hasBrowser = fs.existsSync(CHROMIUM)

/** A tab on the chat page whose WebSocket handshake response headers are captured over CDP. */
async function openChatTab(browser, url, name, room) {
  const page = await browser.newPage()
  const cdp = await page.context().newCDPSession(page)
  await cdp.send('Network.enable')
  const handshake = deferred()
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => handshake.resolve(e.response))
  await page.goto(url)
  await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: 10_000 })
  const response = await withTimeout(handshake.promise, 10_000, `${name}: the WebSocket handshake response over CDP`)
  await page.fill('#join input[name=name]', name)
  await page.fill('#join input[name=room]', room)
  await page.click('#join button')
  await page.locator('#log p.presence', { hasText: `${name} joined ${room}` }).waitFor({ timeout: 10_000 })
  return { page, response }
}

/** A header of a CDP response, by case-insensitive name. */
function header(response, name) {
  const key = Object.keys(response.headers ?? {}).find((k) => k.toLowerCase() === name)
  return key === undefined ? undefined : response.headers[key]
}

test('browser: Chromium negotiates permessage-deflate with examples/chat; a 1,500-character message crosses between two tabs intact', { skip: !hasBrowser && `no Chromium at ${CHROMIUM}` }, async (t) => {
  const { chromium } = await import('playwright-core')
  const { url } = await startPrintingUrl(t, path.join(ROOT, 'examples/chat/server.js'))
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.after(() => browser.close())

  const alice = await openChatTab(browser, url, 'alice', 'lobby')
  const bob = await openChatTab(browser, url, 'bob', 'lobby')
  for (const [who, tab] of [['alice', alice], ['bob', bob]]) {
    assert.equal(tab.response.status, 101, `${who}: handshake status`)
    const ext = header(tab.response, 'sec-websocket-extensions')
    t.diagnostic(`${who}: Sec-WebSocket-Extensions ${JSON.stringify(ext)}`)
    assert.match(ext ?? '', /^permessage-deflate\b/, `${who}: Chromium negotiated permessage-deflate`)
  }
  await alice.page.locator('#log p.presence', { hasText: 'bob joined lobby (2 online)' }).waitFor({ timeout: 10_000 })

  // Above the 256-byte threshold both ways (Chromium compresses what it sends, the server what it
  // publishes); varied enough that a corrupted inflate would show.
  const long = Array.from({ length: 215 }, (_, i) => `w${String(i).padStart(3, '0')}-${'abcdefghij'[i % 10]}.`).join('').slice(0, 1500)
  assert.equal(long.length, 1500)
  const arrived = (page, line) =>
    page.waitForFunction((text) => [...document.querySelectorAll('#log p')].some((p) => p.textContent === text), line, { timeout: 10_000 })
  await alice.page.fill('#send input[name=text]', long)
  await alice.page.click('#send button')
  await arrived(bob.page, `alice: ${long}`)
  await arrived(alice.page, `alice: ${long}`)
  // And the other way, after it.
  const reply = long.split('').reverse().join('')
  await bob.page.fill('#send input[name=text]', reply)
  await bob.page.click('#send button')
  await arrived(alice.page, `bob: ${reply}`)
})
