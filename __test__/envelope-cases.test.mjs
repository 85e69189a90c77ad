// The table of inbound envelope cases shared with the Rust splitter's unit test
// (src/envelope.rs reads the same file): each frame, sent by a real client to a real server,
// does what the table says — an event reaches its handler with that data, a request is answered
// with its id echoed byte for byte, a reply is matched against pending requests (and counted when
// nothing is pending), anything else closes 1007.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { startServer, waitClose, assertEcho, withTimeout } from './helpers.mjs'

const { cases } = JSON.parse(fs.readFileSync(new URL('../test/fixtures/envelope-cases.json', import.meta.url), 'utf8'))

/** A server without a contract whose handlers report what they received. */
async function tableServer(t) {
  const received = []
  let notify = () => {}
  const h = await startServer({}, { onConnection() {} })
  t.after(() => h.close())
  for (const event of new Set(cases.filter((c) => c.kind === 'event').map((c) => c.event))) {
    h.server.onMessage(event, (data) => {
      received.push({ event, data })
      notify()
    })
  }
  for (const event of new Set(cases.filter((c) => c.kind === 'request').map((c) => c.event))) {
    h.server.onRequest(event, (input) => ({ echo: input }))
  }
  h.server.onMessage('echo', (data, { conn }) => conn.publish('echo', data))
  const nextReceived = () =>
    withTimeout(
      new Promise((resolve) => {
        const check = () => (received.length ? resolve(received.shift()) : (notify = check))
        check()
      }),
      2000,
      'a handler call',
    )
  return { h, nextReceived }
}

/** The next frame a client gets, as text (the reply's exact bytes matter for ids). */
function nextRaw(ws, label) {
  return withTimeout(new Promise((resolve) => ws.once('message', (m) => resolve(String(m)))), 2000, label)
}

test('shared envelope cases: events, requests, replies and invalid frames behave as the table says', async (t) => {
  const { h, nextReceived } = await tableServer(t)
  assert.ok(cases.length >= 30)
  for (const c of cases) {
    const [ws] = await h.client({ name: c.wire })
    if (c.kind === 'event') {
      ws.send(c.wire)
      assert.deepEqual(await nextReceived(), { event: c.event, data: c.data }, c.wire)
    } else if (c.kind === 'request') {
      const reply = nextRaw(ws, `the reply to ${c.wire}`)
      ws.send(c.wire)
      const text = await reply
      assert.ok(text.startsWith(`{"id":${c.rawId},`), `${c.wire}: the id is echoed verbatim, got ${text}`)
      assert.deepEqual(JSON.parse(text).data, { echo: c.data }, c.wire)
    } else if (c.kind === 'reply') {
      const before = h.server.stats.unknownReplies
      ws.send(c.wire)
      await assertEcho(ws)
      assert.equal(h.server.stats.unknownReplies, before + 1, `${c.wire}: a reply nobody waits for is counted`)
    } else {
      ws.send(c.wire)
      assert.deepEqual(await waitClose(ws), { code: 1007, reason: 'Invalid message payload' }, `${c.wire} (${c.why})`)
    }
    ws.terminate()
  }
})
