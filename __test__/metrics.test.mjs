// Metrics: `server.metrics()` is valid Prometheus text (checked line by line by a strict parser of
// the exposition format below) whose counters match known traffic exactly; `server.stats` holds
// the same numbers; `conn.stats` one connection's; handler durations only when asked for.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { z } from 'zod'
import { startServer, nextMessage, collect, send, waitClose, upgradeStatus } from './helpers.mjs'
import { defineContract, METRICS_CONTENT_TYPE } from '../index.js'

/** Polls `predicate` until it holds; fails after `ms` with `label`. */
async function waitUntil(predicate, ms, label) {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${label}`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/

/** Parses one label set `{a="x",b="y\"z"}` strictly; returns [labels, rest of the line]. */
function parseLabels(text) {
  const labels = {}
  let i = 1
  while (text[i] !== '}') {
    const eq = text.indexOf('=', i)
    assert.ok(eq > i, `label name expected in ${text}`)
    const name = text.slice(i, eq)
    assert.match(name, LABEL_NAME, `label name ${name}`)
    assert.equal(text[eq + 1], '"', `quoted value expected in ${text}`)
    let value = ''
    let j = eq + 2
    for (; text[j] !== '"'; j++) {
      assert.ok(j < text.length, `unterminated label value in ${text}`)
      if (text[j] === '\\') {
        const next = text[++j]
        assert.ok(next === '\\' || next === '"' || next === 'n', `bad escape \\${next} in ${text}`)
        value += next === 'n' ? '\n' : next
      } else {
        assert.notEqual(text[j], '\n')
        value += text[j]
      }
    }
    assert.ok(!(name in labels), `duplicate label ${name}`)
    labels[name] = value
    i = j + 1
    if (text[i] === ',') i++
  }
  return [labels, text.slice(i + 1)]
}

/**
 * A strict reader of the text exposition format 0.0.4: every line is a HELP, a TYPE or a sample;
 * one HELP and one TYPE per family, before its samples; samples belong to the family last typed
 * (histograms: _bucket/_sum/_count); counters end in _total; values are floats; no series twice;
 * histogram buckets are cumulative and end with +Inf equal to _count. Returns
 * `{ families: Map(name → { type, help }), value(name, labels) }`.
 */
function parseExposition(text) {
  assert.ok(text.endsWith('\n'), 'the text ends with a newline')
  const families = new Map()
  const series = new Map()
  let current = null
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) {
      const [, kind, name, ...rest] = line.split(' ')
      assert.match(name, METRIC_NAME)
      const family = families.get(name) ?? { type: null, help: null, samples: 0 }
      if (kind === 'HELP') {
        assert.equal(family.help, null, `one HELP for ${name}`)
        family.help = rest.join(' ')
        assert.ok(family.help.length > 0, `HELP of ${name} says something`)
      } else {
        assert.equal(family.type, null, `one TYPE for ${name}`)
        assert.equal(family.samples, 0, `TYPE of ${name} before its samples`)
        family.type = rest.join(' ')
        assert.ok(['counter', 'gauge', 'histogram'].includes(family.type), `type of ${name}: ${family.type}`)
        if (family.type === 'counter') assert.ok(name.endsWith('_total'), `counter ${name} ends in _total`)
        current = name
      }
      families.set(name, family)
      continue
    }
    assert.ok(!line.startsWith('#') && line.trim() !== '', `unexpected line: ${JSON.stringify(line)}`)
    const brace = line.indexOf('{')
    const space = line.indexOf(' ')
    const name = line.slice(0, brace !== -1 && brace < space ? brace : space)
    assert.match(name, METRIC_NAME)
    let labels = {}
    let rest = line.slice(name.length)
    if (rest.startsWith('{')) [labels, rest] = parseLabels(rest)
    assert.ok(rest.startsWith(' '), `a space before the value: ${line}`)
    const valueText = rest.slice(1)
    assert.match(valueText, /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)$/, `value of ${line}`)
    const family = families.get(current)
    assert.ok(family, `sample ${line} after a TYPE`)
    const base = family.type === 'histogram' ? name.replace(/_(bucket|sum|count)$/, '') : name
    assert.equal(base, current, `sample ${name} belongs to the family last typed (${current})`)
    family.samples++
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`
    assert.ok(!series.has(key), `series ${key} appears once`)
    series.set(key, Number(valueText.replace('Inf', 'Infinity')))
  }
  for (const [name, family] of families) {
    assert.ok(family.help !== null && family.type !== null, `${name} has HELP and TYPE`)
    if (family.type !== 'histogram') continue
    const byEvent = new Map()
    for (const [key, value] of series) {
      if (!key.startsWith(`${name}_bucket[`)) continue
      const labels = Object.fromEntries(JSON.parse(key.slice(`${name}_bucket`.length)))
      const { le, ...others } = labels
      const id = JSON.stringify(others)
      if (!byEvent.has(id)) byEvent.set(id, [])
      byEvent.get(id).push([le === '+Inf' ? Infinity : Number(le), value, others])
    }
    for (const [, buckets] of byEvent) {
      buckets.sort((a, b) => a[0] - b[0])
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i][1] >= buckets[i - 1][1], `${name} buckets are cumulative`)
      const [le, total, others] = buckets.at(-1)
      assert.equal(le, Infinity, `${name} ends with le="+Inf"`)
      assert.equal(series.get(`${name}_count${JSON.stringify(Object.entries(others).sort())}`), total, `${name}_count equals the +Inf bucket`)
    }
  }
  return {
    families,
    value(name, labels = {}) {
      return series.get(`${name}${JSON.stringify(Object.entries(labels).sort())}`)
    },
  }
}

const chat = defineContract({
  in: { say: z.object({ text: z.string() }) },
  out: { said: z.object({ text: z.string() }), room: z.object({ n: z.number() }) },
  requests: { add: { input: z.object({ a: z.number(), b: z.number() }), output: z.number() } },
})

/** Bytes on the wire of an unfragmented frame: header (+ mask key from clients) + payload. */
const frameBytes = (payloadBytes, masked) => (payloadBytes < 126 ? 2 : payloadBytes < 65536 ? 4 : 10) + (masked ? 4 : 0) + payloadBytes
const clientFrame = (payload) => frameBytes(Buffer.byteLength(payload), true)

test('metrics text is strict Prometheus exposition and its counters match known traffic exactly', async (t) => {
  const h = await startServer(
    { contract: chat, onInvalidMessage: 'reply', authenticate: (req) => req.query.deny !== '1' },
    {
      onConnection(conn) {
        conn.onMessage('say', (data) => conn.publish('said', data))
        conn.onRequest('add', ({ a, b }) => a + b)
      },
    },
  )
  t.after(() => h.close())
  const [a, connA] = await h.client()
  const [b, connB] = await h.client()
  const frames = { received: 0, sent: 0 }
  for (const ws of [a, b]) ws.on('message', (data) => (frames.sent += frameBytes(data.length, false)))
  connA.join('r')
  connB.join('r')
  assert.equal(await upgradeStatus(`${h.url()}?deny=1`), 401)
  assert.equal(await upgradeStatus(`ws://127.0.0.1:${h.port}/nowhere`), 404)

  const clientSends = (ws, text) => {
    ws.send(text)
    frames.received += clientFrame(text)
  }
  // a: 2 valid events (each answered by conn.publish), 1 with invalid data, 1 unknown event, 1 request.
  const say1 = JSON.stringify({ event: 'say', data: { text: 'one' } })
  const say2 = JSON.stringify({ event: 'say', data: { text: 'two' } })
  clientSends(a, say1)
  clientSends(a, say2)
  clientSends(a, JSON.stringify({ event: 'say', data: { text: 42 } }))
  clientSends(a, JSON.stringify({ event: 'nope', data: 1 }))
  clientSends(a, JSON.stringify({ event: 'add', data: { a: 1, b: 2 }, id: 7 }))
  const replies = await collect(a, 5)
  // Rust answers the unknown event itself, so it may overtake the others.
  assert.deepEqual(replies.map((m) => String(m.event ?? m.id)).sort(), ['7', 'error', 'error', 'said', 'said'])
  // Two room publishes reach both; one broadcast reaches both; one user publish reaches nobody.
  h.server.publishToRoom('r', 'room', { n: 1 })
  h.server.publishToRoom('r', 'room', { n: 2 })
  h.server.broadcast('room', { n: 3 })
  h.server.publishToUser('nobody', 'room', { n: 4 })
  for (const ws of [a, b]) await collect(ws, 3)

  const text = await h.server.metrics()
  const m = parseExposition(text)
  assert.equal(METRICS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8')
  assert.equal(m.value('ferrosocket_connections', { namespace: '/' }), 2)
  assert.equal(m.value('ferrosocket_connections_opened_total'), 2)
  assert.equal(m.value('ferrosocket_handshakes_rejected_total', { status: '401' }), 1)
  assert.equal(m.value('ferrosocket_handshakes_rejected_total', { status: '404' }), 1)
  assert.equal(m.value('ferrosocket_messages_received_total', { namespace: '/', outcome: 'accepted' }), 3)
  assert.equal(m.value('ferrosocket_messages_received_total', { namespace: '/', outcome: 'rejected' }), 2, 'schema-invalid data and an unknown event')
  assert.equal(m.value('ferrosocket_messages_sent_total', { namespace: '/' }), 5 + 6)
  assert.equal(m.value('ferrosocket_bytes_received_total'), frames.received)
  assert.equal(m.value('ferrosocket_bytes_sent_total'), frames.sent)
  assert.equal(m.value('ferrosocket_publishes_total', { target: 'connection' }), 2)
  assert.equal(m.value('ferrosocket_publishes_total', { target: 'room' }), 2)
  assert.equal(m.value('ferrosocket_publishes_total', { target: 'broadcast' }), 1)
  assert.equal(m.value('ferrosocket_publishes_total', { target: 'user' }), 1)
  assert.equal(m.value('ferrosocket_publishes_total', { target: 'audience' }), 0)
  assert.equal(m.value('ferrosocket_backpressure_closes_total'), 0)
  assert.equal(m.value('ferrosocket_inbound_pending_bytes'), 0)
  assert.equal(m.families.has('ferrosocket_handler_duration_seconds'), false, 'not timed unless asked')
  assert.equal(m.families.has('ferrosocket_cluster_connected'), false, 'no cluster metrics without a cluster')

  // conn.stats: a's own share.
  const sa = connA.stats
  assert.equal(sa.messagesReceived, 5)
  assert.equal(sa.bytesReceived, frames.received)
  assert.equal(sa.messagesSent, 5 + 3)
  assert.equal(sa.pendingMessages, 0)
  assert.equal(connB.stats.messagesSent, 3)

  // Closes by code, and what closed connections did stays in the totals.
  b.close(4001, 'bye')
  await waitClose(b)
  connA.close(1000)
  await waitClose(a)
  await waitUntil(() => h.server.stats.connections === 0, 3000, 'both connections gone')
  const after = parseExposition(await h.server.metrics())
  assert.equal(after.value('ferrosocket_connections_closed_total', { code: '4001' }), 1)
  assert.equal(after.value('ferrosocket_connections_closed_total', { code: '1000' }), 1)
  assert.equal(after.value('ferrosocket_messages_sent_total', { namespace: '/' }), 11, 'departed connections keep counting')
  // Plus the two close frames read: b's (4001 "bye") and a's answer to ours (1000, no reason).
  assert.equal(after.value('ferrosocket_bytes_received_total'), frames.received + frameBytes(5, true) + frameBytes(2, true))
  const stats = h.server.stats
  assert.equal(stats.messagesReceived, 5)
  assert.equal(stats.messagesRejected, 2)
  assert.equal(stats.messagesSent, 11)
  assert.equal(stats.bytesSent, frames.sent)
  assert.deepEqual(stats.connectionsClosed, { 1000: 1, 4001: 1 })
  assert.deepEqual(stats.handshakesRejected, { 401: 1, 404: 1 })
  assert.deepEqual(stats.publishes, { connection: 2, room: 2, user: 1, audience: 0, broadcast: 1 })
  assert.deepEqual(stats.namespaces['/'].messagesSent, 11)
})

test('handler durations are a histogram by event when metrics.handlerDuration is on', async (t) => {
  let release
  const h = await startServer(
    { contract: chat, metrics: { handlerDuration: true } },
    {
      onConnection(conn) {
        conn.onMessage('say', () => new Promise((resolve) => (release = resolve)))
        conn.onRequest('add', ({ a, b }) => a + b)
      },
    },
  )
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  send(ws, 'say', { text: 'slow' })
  await waitUntil(() => release !== undefined, 2000, 'the say handler to start')
  ws.send(JSON.stringify({ event: 'add', data: { a: 1, b: 1 }, id: 1 }))
  await waitUntil(() => conn.stats.pendingMessages === 1, 2000, 'the request to wait behind the running handler')
  const pendingBefore = parseExposition(await h.server.metrics())
  assert.equal(pendingBefore.value('ferrosocket_handler_duration_seconds_count', { event: 'say' }), undefined, 'still running: not observed yet')
  release()
  assert.deepEqual(await nextMessage(ws), { id: 1, data: 2 })
  const m = parseExposition(await h.server.metrics())
  assert.equal(m.families.get('ferrosocket_handler_duration_seconds').type, 'histogram')
  assert.equal(m.value('ferrosocket_handler_duration_seconds_count', { event: 'say' }), 1)
  assert.equal(m.value('ferrosocket_handler_duration_seconds_count', { event: 'add' }), 1)
  assert.ok(m.value('ferrosocket_handler_duration_seconds_sum', { event: 'say' }) > 0)
})

test('a reader whose queue overflows counts as a backpressure close', async (t) => {
  const h = await startServer({ backpressure: { maxQueuedMessages: 10, maxBufferedBytes: 1 << 20 } }, { onConnection() {} })
  t.after(() => h.close())
  const [ws, conn] = await h.client()
  ws._socket.pause()
  const big = 'x'.repeat(64 * 1024)
  for (let i = 0; i < 200 && conn.isOpen; i++) conn.publish('big', big)
  ws._socket.resume()
  assert.equal((await waitClose(ws)).code, 1013)
  await waitUntil(() => h.server.stats.connections === 0, 3000, 'the connection to be gone')
  const m = parseExposition(await h.server.metrics())
  assert.equal(m.value('ferrosocket_backpressure_closes_total'), 1)
  assert.equal(m.value('ferrosocket_connections_closed_total', { code: '1013' }), 1)
})

test('metrics options are checked', async () => {
  const { createServer } = await import('../index.js')
  assert.throws(() => createServer({ metrics: true }), /option metrics must be an object/)
  assert.throws(() => createServer({ metrics: { handlerDuration: 'yes' } }), /metrics.handlerDuration must be a boolean/)
})
