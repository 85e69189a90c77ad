// The benchmark's Rust-only reference (`__referenceHandlers`, src/reference.rs): the bench
// protocol answered inside Rust must behave exactly like the JS peer, and never reach JS handlers.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { startServer, nextMessage, send, expectNoMessage, condition } from './helpers.mjs'

test('reference handlers answer echo, sub and bcast in Rust without reaching JS', async (t) => {
  const seenByJs = []
  const sawOther = condition(() => seenByJs.length > 0, 2000, 'the non-bench event to reach JS')
  const h = await startServer({ __referenceHandlers: true }, {
    onConnection(conn) {
      for (const event of ['echo', 'sub', 'bcast', 'other']) {
        conn.onMessage(event, (d) => {
          seenByJs.push([event, d])
          sawOther.signal()
        })
      }
    },
  })
  t.after(() => h.close())
  const [a] = await h.client({ name: 'A' })
  const [b] = await h.client({ name: 'B' })
  const [c] = await h.client({ name: 'C' })

  send(a, 'echo', { n: 1 })
  assert.deepEqual(await nextMessage(a), { event: 'echo', data: { n: 1 } })

  send(a, 'sub', { room: 'r' })
  assert.deepEqual(await nextMessage(a), { event: 'subscribed', data: { room: 'r' } })
  send(b, 'sub', { room: 'r' })
  assert.deepEqual(await nextMessage(b), { event: 'subscribed', data: { room: 'r' } })

  send(c, 'bcast', { room: 'r', seq: 7 })
  assert.deepEqual(await nextMessage(a), { event: 'bcast', data: { room: 'r', seq: 7 } })
  assert.deepEqual(await nextMessage(b), { event: 'bcast', data: { room: 'r', seq: 7 } })
  await expectNoMessage(c, 200) // C is not in the room

  // Events outside the bench protocol still go to JS, in order, after everything above.
  send(a, 'other', 'x')
  await sawOther.done
  assert.deepEqual(seenByJs, [['other', 'x']], 'echo, sub and bcast never reached JS')
})
