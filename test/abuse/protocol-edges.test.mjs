// Abuse case 5: smaller protocol findings, one test each.
//  (a) a reply frame with neither `data` nor `error` is invalid (1007); `{"id":1,"data":null}` is a
//      valid reply (to no pending request: counted in stats.unknownReplies, connection stays open);
//  (b) an upgrade with two Sec-WebSocket-Key headers is refused 400;
//  (c) an upgrade without Host is refused 400 (RFC 7230 §5.4, RFC 6455 §4.1);
//  (d) a message split into more fragments than the server allows (max(1024, maxPayload / 64)
//      = 1024 with the default maxPayload) closes 1009; 1000 fragments still arrive intact.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  startAbuseServer,
  connect,
  nextMessage,
  waitClose,
  rawConnect,
  RawHttpPeer,
  upgradeHead,
  websocketKey,
  fragmentedText,
  awaitServerClose,
  HOST,
} from './helpers.mjs'

// ---- thresholds -----------------------------------------------------------------------------------
const CLOSE_WAIT_MS = 3000 // a close the server owes us arrives within this
const REPLY_WAIT_MS = 3000
const MAX_FRAGMENTS = 1024 // max(1024, 65536 / 64) with the default maxPayload
const TOO_MANY_FRAGMENTS = 2000
const FRAGMENTS_OK = 1000
const CASE_TIMEOUT_MS = 60_000

test('(a) a reply frame {"id":1} (no data, no error) closes 1007', { timeout: CASE_TIMEOUT_MS }, async (t) => {
  const fx = await startAbuseServer(t)
  const ws = await connect(fx.url, {}, { name: 'bad replier' })
  t.after(() => ws.terminate())
  // Positive control: the connection works.
  ws.send(JSON.stringify({ event: 'echo', data: 1 }))
  assert.deepEqual(await nextMessage(ws), { event: 'echo', data: 1 })

  ws.send('{"id":1}')
  ws.send(JSON.stringify({ event: 'echo', data: 2 })) // answered only if the bad frame was accepted
  const closed = await waitClose(ws, CLOSE_WAIT_MS).catch((e) => ({ error: e.message }))
  const stats = await fx.request('stats')
  t.diagnostic(`after {"id":1}: close ${JSON.stringify(closed)}; server.stats ${JSON.stringify(stats.stats)}`)
  assert.equal(closed.code, 1007, `expected close 1007 for {"id":1}, got ${JSON.stringify(closed)}`)
  assert.equal(closed.reason, 'Invalid message payload')
})

test('(a) a reply frame {"id":1,"data":null} is valid: counted in stats.unknownReplies, connection stays open', { timeout: CASE_TIMEOUT_MS }, async (t) => {
  const fx = await startAbuseServer(t)
  const ws = await connect(fx.url, {}, { name: 'null replier' })
  t.after(() => ws.terminate())
  const before = (await fx.request('stats')).stats.unknownReplies
  ws.send('{"id":1,"data":null}')
  // The echo after it comes back only if the connection survived the reply (frames are in order).
  ws.send(JSON.stringify({ event: 'echo', data: 'after' }))
  assert.deepEqual(await nextMessage(ws, REPLY_WAIT_MS), { event: 'echo', data: 'after' })
  const after = (await fx.request('stats')).stats.unknownReplies
  t.diagnostic(`unknownReplies ${before} → ${after}`)
  assert.equal(after, before + 1)
})

/** One raw upgrade attempt on a fresh TCP connection: the response status. */
async function rawUpgrade(t, port, head) {
  const peer = await RawHttpPeer.connect(port)
  t.after(() => peer.destroy())
  const res = await peer.request(head, REPLY_WAIT_MS)
  peer.destroy()
  return res
}

test('(b) an upgrade request with two Sec-WebSocket-Key headers is answered 400', { timeout: CASE_TIMEOUT_MS }, async (t) => {
  const fx = await startAbuseServer(t)
  // Positive control: the same raw request with one key is accepted.
  assert.equal((await rawUpgrade(t, fx.port, upgradeHead('/ws'))).status, 101, 'control: a well-formed raw upgrade gets 101')
  const head = upgradeHead('/ws', { headers: { 'Sec-WebSocket-Key': websocketKey() } })
  assert.equal((head.match(/Sec-WebSocket-Key:/g) ?? []).length, 2, 'precondition: the head carries two keys')
  const res = await rawUpgrade(t, fx.port, head)
  t.diagnostic(`two keys: HTTP ${res.status} ${res.statusText}`)
  assert.equal(res.status, 400)
})

test('(c) an upgrade request without a Host header is answered 400', { timeout: CASE_TIMEOUT_MS }, async (t) => {
  const fx = await startAbuseServer(t)
  const withHost = upgradeHead('/ws', { host: `${HOST}:${fx.port}` })
  assert.equal((await rawUpgrade(t, fx.port, withHost)).status, 101, 'control: the same request with Host gets 101')
  const noHost = withHost.replace(/^Host: .*\r\n/m, '')
  assert.ok(!/^host:/im.test(noHost), 'precondition: no Host header')
  const res = await rawUpgrade(t, fx.port, noHost)
  t.diagnostic(`no Host: HTTP ${res.status} ${res.statusText}`)
  assert.equal(res.status, 400)
})

/** `{"event":"echo","data":"ppp…"}` exactly `bytes` long. */
function echoMessageOfLength(bytes) {
  const empty = JSON.stringify({ event: 'echo', data: '' })
  return JSON.stringify({ event: 'echo', data: 'p'.repeat(bytes - empty.length) })
}

test(`(d) a message in ${TOO_MANY_FRAGMENTS} one-byte fragments (cap ${MAX_FRAGMENTS}) closes 1009`, { timeout: CASE_TIMEOUT_MS }, async (t) => {
  const fx = await startAbuseServer(t)
  const peer = await rawConnect(fx.port)
  t.after(() => peer.destroy())
  const text = echoMessageOfLength(TOO_MANY_FRAGMENTS) // one byte per fragment
  peer.socket.write(fragmentedText(text, TOO_MANY_FRAGMENTS))
  const r = await awaitServerClose(peer, CLOSE_WAIT_MS)
  t.diagnostic(`${TOO_MANY_FRAGMENTS} fragments: ${JSON.stringify(r)}`)
  assert.equal(r.dataFrames, 0, `the ${TOO_MANY_FRAGMENTS}-fragment message was delivered (echoed) instead of refused`)
  assert.equal(r.kind, 'close', `expected a close frame, got ${JSON.stringify(r)}`)
  assert.equal(r.code, 1009)
})

test(`(d) control: a message in ${FRAGMENTS_OK} fragments is delivered intact`, { timeout: CASE_TIMEOUT_MS }, async (t) => {
  const fx = await startAbuseServer(t)
  const peer = await rawConnect(fx.port)
  t.after(() => peer.destroy())
  const text = echoMessageOfLength(FRAGMENTS_OK)
  peer.socket.write(fragmentedText(text, FRAGMENTS_OK))
  const f = await peer.nextData(REPLY_WAIT_MS)
  assert.equal(f.opcode, 1, `expected the echo, got opcode ${f.opcode} ${f.code ?? ''} ${f.reason ?? ''}`)
  assert.equal(f.payload.toString('utf8'), text)
})
