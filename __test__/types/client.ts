// Type tests for ferrosocket/client: the client sees the contract from the other side. `emit` takes
// `in` events with their schemas' *input*, `on` gets `out` events' *output*, `request` sends
// `requests` (input's input → output's output), `onRequest` answers `clientRequests` (input's
// output → output's input). Every `@ts-expect-error` line MUST be an error.
import { z } from 'zod'
import {
  createClient,
  defineContract,
  RequestError,
  type Client,
  type ClientState,
  type StateInfo,
  type Transport,
} from 'ferrosocket/client'
import { defineContract as serverDefineContract, createServer } from '../../index.js'
import { type Equal, assertType } from './assert.js'

const chat = defineContract({
  in: {
    'chat:send': z.object({ room: z.string(), text: z.string() }),
    // Input differs from output: the client sends a string, the server's handler sees a number.
    'chat:count': z.string().transform((s) => s.length),
  },
  out: {
    'chat:message': z.object({ room: z.string(), text: z.string() }),
    'chat:stamp': z.number().transform((n) => new Date(n)),
  },
  requests: {
    'room:join': { input: z.object({ room: z.string() }), output: z.object({ members: z.array(z.string()) }) },
    'text:length': { input: z.string().transform((s) => s.length), output: z.number().transform(String) },
  },
  clientRequests: {
    confirm: { input: z.object({ question: z.string() }), output: z.boolean() },
    'ask:count': { input: z.number().transform(String), output: z.string().transform((s) => s.length) },
  },
})

declare const transport: Transport
const client = createClient(chat, 'wss://app.example/ws', {
  transport,
  reconnect: { minDelayMs: 250, maxDelayMs: 10_000, factor: 2, jitter: 0.5, maxAttempts: Infinity },
  url: async (base, { attempt }) => `${base}?token=t&attempt=${attempt}`,
  requestTimeoutMs: 15_000,
  maxQueued: 1000,
  maxPendingRequests: 100,
  validate: false,
  headers: { authorization: 'Bearer x' },
  protocols: ['chat.v1'],
})
assertType<Equal<typeof client, Client<typeof chat>>>()

// ---- positive cases -------------------------------------------------------------------------
client.on('chat:message', (data, ctx) => {
  assertType<Equal<typeof data, { room: string; text: string }>>()
  assertType<Equal<typeof ctx.event, 'chat:message'>>()
  void ctx.meta?.traceparent
})
client.on('chat:stamp', (when) => assertType<Equal<typeof when, Date>>())
const off: () => void = client.on('chat:message', () => {})
off()
const sent: boolean = client.emit('chat:send', { room: 'a', text: 'hi' })
client.emit('chat:count', 'four') // the schema's input
void sent
void (async () => {
  const joined = await client.request('room:join', { room: 'a' })
  assertType<Equal<typeof joined, { members: string[] }>>()
  const len = await client.request('text:length', 'abc', { timeoutMs: 1000 })
  assertType<Equal<typeof len, string>>()
  try {
    await client.request('room:join', { room: 'b' })
  } catch (e) {
    if (e instanceof RequestError) {
      const code: string = e.code
      void code
    }
  }
  await client.opened()
  await client.close()
  await client.close(4000, 'bye')
})()
client.onRequest('confirm', async (input, ctx) => {
  assertType<Equal<typeof input, { question: string }>>()
  const signal: AbortSignal = ctx.signal
  const id: string | number = ctx.id
  void [signal, id]
  return input.question.length > 0
})
client.onRequest('ask:count', (s) => {
  assertType<Equal<typeof s, string>>()
  return s // the output schema's input is a string
})
const state: ClientState = client.state
client.onState((s, info) => {
  assertType<Equal<typeof s, 'connecting' | 'open' | 'reconnecting' | 'closed'>>()
  assertType<Equal<typeof info, StateInfo>>()
  const n: number = info.attempt
  void [n, info.code, info.reason, info.status, info.delayMs, info.byClient]
})
void state
client.connect()
const dropped: number = client.stats.dropped
void dropped

// ---- wrong names ------------------------------------------------------------------------------
// @ts-expect-error 'chat:message' is something the client receives, not emits
client.emit('chat:message', { room: 'a', text: 'x' })
// @ts-expect-error 'chat:send' is something the client emits, not receives
client.on('chat:send', () => {})
// @ts-expect-error unknown event
client.emit('chat:nope', {})
// @ts-expect-error 'confirm' is asked by the server, not by the client
void client.request('confirm', { question: 'q' })
// @ts-expect-error 'room:join' is answered by the server, not by the client
client.onRequest('room:join', () => ({ members: [] }))
// @ts-expect-error events are not requests
void client.request('chat:send', { room: 'a', text: 'x' })

// ---- wrong types --------------------------------------------------------------------------------
// @ts-expect-error text is missing
client.emit('chat:send', { room: 'a' })
// @ts-expect-error chat:count takes the schema's input (string), not its output
client.emit('chat:count', 4)
client.on('chat:message', (data) => {
  // @ts-expect-error text is a string
  const n: number = data.text
  void n
})
// @ts-expect-error room must be a string
void client.request('room:join', { room: 1 })
// @ts-expect-error text:length takes its input schema's input (string)
void client.request('text:length', 3)
void (async () => {
  // @ts-expect-error room:join resolves with { members: string[] }
  const s: string = await client.request('room:join', { room: 'a' })
  void s
})()
// @ts-expect-error confirm must answer a boolean
client.onRequest('confirm', () => 'yes')
// @ts-expect-error an async handler must resolve to the output type too
client.onRequest('confirm', async () => 42)
// @ts-expect-error ask:count answers its output schema's input (string)
client.onRequest('ask:count', () => 3)
// @ts-expect-error not a state
const bad: ClientState = 'disconnected'
void bad
// @ts-expect-error reconnect options are numbers
createClient(chat, 'ws://x', { transport, reconnect: { minDelayMs: '1s' } })
// @ts-expect-error the url option is a function
createClient(chat, 'ws://x', { transport, url: 'ws://y' })

// ---- the server's contract object is the client's; an untyped client takes anything --------------
const shared = serverDefineContract({ in: { ping: z.null() }, out: { pong: z.number() } })
createServer({ contract: shared })
const typed = createClient(shared, 'ws://x', { transport })
typed.emit('ping', null)
typed.on('pong', (n) => assertType<Equal<typeof n, number>>())
// @ts-expect-error ping takes null
typed.emit('ping', 1)
const untyped = createClient(null, 'ws://x', { transport })
untyped.emit('anything', { any: 1 })
untyped.on('whatever', (data) => void data)
void untyped.request('what', 1).then((r) => r.anything)
untyped.onRequest('q', (input) => input)
