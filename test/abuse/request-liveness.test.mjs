// Abuse case 4: request liveness behind a handler that never settles.
//
// A request whose handler never settles is answered `timeout` after requestTimeoutMs. That must
// not stall the connection for good: its signal aborts, and the requests and messages the client
// sent after it are still handled (the fast request gets its real answer, not a timeout).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startAbuseServer, connect, nextMessage, shutdownAndExit } from './helpers.mjs'

// ---- thresholds -----------------------------------------------------------------------------------
const REQUEST_TIMEOUT_MS = 500 // the server's requestTimeoutMs
const TIMEOUT_EARLY_SLACK_MS = 50 // timer/clock granularity: the timeout reply may not come sooner
const TIMEOUT_LATE_SLACK_MS = 1000 // nor later than requestTimeoutMs + this
const FAST_AFTER_TIMEOUT_MS = 1000 // the fast request's reply after the hang's timeout reply
const NOTE_AFTER_TIMEOUT_MS = 1000 // the note handler runs within this after the timeout reply
const ABORT_AFTER_TIMEOUT_MS = 1000 // the hang handler's ctx.signal aborts within this
const CASE_TIMEOUT_MS = 60_000

test(
  `requests: 'hang' (never settles) is answered timeout after ~${REQUEST_TIMEOUT_MS} ms with its signal aborted; ` +
    `the 'fast' request behind it gets its data within ${FAST_AFTER_TIMEOUT_MS} ms after that, and the 'note' message runs`,
  { timeout: CASE_TIMEOUT_MS },
  async (t) => {
    const fx = await startAbuseServer(t, { options: { requestTimeoutMs: REQUEST_TIMEOUT_MS } })
    const ws = await connect(fx.url, {}, { name: 'requester' })
    t.after(() => ws.terminate())
    const conn = await fx.waitEvent('connection')

    // Positive control: a fast request on its own is answered with its data.
    ws.send(JSON.stringify({ event: 'fast', data: { control: true }, id: 'c' }))
    assert.deepEqual(await nextMessage(ws, 2000), { id: 'c', data: { control: true } })

    const sentAt = Date.now()
    ws.send(JSON.stringify({ event: 'hang', data: null, id: 1 }))
    ws.send(JSON.stringify({ event: 'fast', data: { v: 2 }, id: 2 }))
    ws.send(JSON.stringify({ event: 'note', data: { n: 3 } }))
    await fx.waitEvent((e) => e.type === 'hang-started' && e.id === conn.id, 2000, 'the hang handler to start')

    const replies = new Map()
    const deadline = sentAt + REQUEST_TIMEOUT_MS + TIMEOUT_LATE_SLACK_MS + FAST_AFTER_TIMEOUT_MS
    while (replies.size < 2 && Date.now() < deadline) {
      const msg = await nextMessage(ws, Math.max(1, deadline - Date.now())).catch(() => null)
      if (msg === null) break
      if (msg.id === 1 || msg.id === 2) replies.set(msg.id, { msg, at: Date.now() })
    }
    const hang = replies.get(1)
    const fast = replies.get(2)
    const timeoutAt = hang?.at ?? Date.now()
    const note = await fx.waitEvent((e) => e.type === 'note' && e.id === conn.id, Math.max(1, timeoutAt + NOTE_AFTER_TIMEOUT_MS - Date.now())).catch(() => null)
    const aborted = await fx.waitEvent((e) => e.type === 'hang-aborted' && e.id === conn.id, Math.max(1, timeoutAt + ABORT_AFTER_TIMEOUT_MS - Date.now())).catch(() => null)

    t.diagnostic(`reply to 1 (hang): ${hang ? `${JSON.stringify(hang.msg)} after ${hang.at - sentAt} ms` : 'none'}`)
    t.diagnostic(`reply to 2 (fast): ${fast ? `${JSON.stringify(fast.msg)} after ${fast.at - sentAt} ms (${fast.at - timeoutAt} ms after the timeout reply)` : 'none'}`)
    t.diagnostic(`note handler: ${note ? `ran ${note.at - sentAt} ms after sending` : 'did not run'}; hang signal: ${aborted ? `aborted (${JSON.stringify(aborted.reason)}) ${aborted.at - sentAt} ms after sending` : 'not aborted'}`)

    assert.ok(hang, 'no reply to the hanging request (id 1)')
    assert.equal(hang.msg.error?.code, 'timeout', `reply to id 1: ${JSON.stringify(hang.msg)}`)
    const hangMs = hang.at - sentAt
    assert.ok(
      hangMs >= REQUEST_TIMEOUT_MS - TIMEOUT_EARLY_SLACK_MS && hangMs <= REQUEST_TIMEOUT_MS + TIMEOUT_LATE_SLACK_MS,
      `timeout reply after ${hangMs} ms (want ≈ ${REQUEST_TIMEOUT_MS})`,
    )
    assert.ok(aborted, "the hang handler's ctx.signal was not aborted")
    assert.ok(fast, 'no reply to the fast request (id 2)')
    assert.equal(fast.msg.error, undefined, `the fast request (id 2) was answered with an error: ${JSON.stringify(fast.msg)}`)
    assert.deepEqual(fast.msg, { id: 2, data: { v: 2 } })
    assert.ok(fast.at - timeoutAt <= FAST_AFTER_TIMEOUT_MS, `fast reply ${fast.at - timeoutAt} ms after the timeout reply`)
    assert.ok(note, `the 'note' message sent after the requests was not handled within ${NOTE_AFTER_TIMEOUT_MS} ms of the timeout reply`)
    assert.deepEqual(note.data, { n: 3 })

    const exit = await shutdownAndExit(fx, 10_000)
    t.diagnostic(`shutdown + process exit: ${exit.ok ? 'ok' : 'FAILED'} in ${exit.ms} ms`)
    assert.ok(exit.ok, `the server did not shut down and exit cleanly: ${JSON.stringify(exit)}`)
  },
)
