// Type tests for requests: `requests` type `onRequest` (input = the input schema's output, return =
// the output schema's input), `clientRequests` type `conn.request` (data = input schema's input,
// result = output schema's output). Every `@ts-expect-error` line MUST be an error.
import { z } from 'zod'
import {
  createServer,
  defineContract,
  RequestError,
  RequestErrorCode,
  type ClientRequestResult,
  type Connection,
  type Contract,
  type RequestContext,
  type RequestInput,
  type RequestOutput,
  type ClientRequestInput,
} from '../../index.js'
import { type Equal, assertType } from './assert.js'


const rooms = defineContract({
  in: { 'chat:send': z.object({ text: z.string() }) },
  out: { 'chat:message': z.object({ text: z.string() }) },
  requests: {
    'room:join': {
      input: z.object({ room: z.string() }),
      output: z.object({ members: z.array(z.string()) }),
    },
    // Input and output schemas that transform: the handler sees outputs, returns inputs.
    'text:length': { input: z.string().transform((s) => s.length), output: z.number().transform(String) },
  },
  clientRequests: {
    confirm: { input: z.object({ question: z.string() }), output: z.boolean() },
    'ask:count': { input: z.number().transform(String), output: z.string().transform((s) => s.length) },
  },
})
type Rooms = typeof rooms

assertType<Equal<RequestInput<Rooms, 'room:join'>, { room: string }>>()
assertType<Equal<RequestOutput<Rooms, 'room:join'>, { members: string[] }>>()
assertType<Equal<RequestInput<Rooms, 'text:length'>, number>>()
assertType<Equal<RequestOutput<Rooms, 'text:length'>, number>>()
assertType<Equal<ClientRequestInput<Rooms, 'ask:count'>, number>>()
assertType<Equal<ClientRequestResult<Rooms, 'ask:count'>, number>>()
assertType<Equal<ClientRequestResult<Rooms, 'confirm'>, boolean>>()

const server = createServer({ contract: rooms, requestTimeoutMs: 5000, exposeErrors: false })
const unknownReplies: number = server.stats.unknownReplies
void unknownReplies

server.onConnection((conn) => {
  // ---- positive cases ---------------------------------------------------------------------
  conn.onRequest('room:join', async (input, ctx) => {
    assertType<Equal<typeof input, { room: string }>>()
    assertType<Equal<typeof ctx, RequestContext>>()
    const id: string | number = ctx.id
    const signal: AbortSignal = ctx.signal
    void [id, signal, ctx.event, ctx.meta?.traceparent]
    conn.join(input.room)
    return { members: [conn.id] }
  })
  conn.onRequest('room:join', (input) => ({ members: [input.room] })) // synchronous handlers too
  conn.onRequest('text:length', (n) => {
    assertType<Equal<typeof n, number>>()
    return n * 2
  })
  conn.onRequest('room:join', () => {
    throw new RequestError('room_full', 'The room is full')
  })

  conn.onMessage('chat:send', async () => {
    const ok = await conn.request('confirm', { question: 'sure?' })
    assertType<Equal<typeof ok, boolean>>()
    const n = await conn.request('ask:count', 3, { timeoutMs: 1000 })
    assertType<Equal<typeof n, number>>()
    try {
      await conn.request('confirm', { question: 'again?' })
    } catch (e) {
      if (e instanceof RequestError) {
        const code: string = e.code
        const builtIn: boolean = e.code === RequestErrorCode.TIMEOUT || e.code === 'connection_closed'
        void [code, builtIn]
      }
    }
  })

  // ---- wrong names ----------------------------------------------------------------------------
  // @ts-expect-error 'room:leave' is not a request
  conn.onRequest('room:leave', () => ({ members: [] }))
  // @ts-expect-error 'chat:send' is an inbound event, not a request
  conn.onRequest('chat:send', () => ({ members: [] }))
  // @ts-expect-error 'confirm' is something the server asks, not something it answers
  conn.onRequest('confirm', () => true)
  // @ts-expect-error 'room:join' is answered by the server, never asked of the client
  void conn.request('room:join', { room: 'a' })
  // @ts-expect-error unknown client request
  void conn.request('nope', {})
  // @ts-expect-error requests are not outbound events
  conn.publish('confirm', { question: 'q' })

  // ---- wrong types ----------------------------------------------------------------------------
  // @ts-expect-error the handler must return { members: string[] }
  conn.onRequest('room:join', () => ({ members: 'everyone' }))
  // @ts-expect-error an async handler must resolve to the output type too
  conn.onRequest('room:join', async () => 42)
  // @ts-expect-error the output schema's input is a number
  conn.onRequest('text:length', () => 'long')
  conn.onRequest('room:join', (input) => {
    // @ts-expect-error room is a string
    const n: number = input.room
    return { members: [String(n)] }
  })
  // @ts-expect-error question must be a string
  void conn.request('confirm', { question: 1 })
  // @ts-expect-error missing question
  void conn.request('confirm', {})
  // @ts-expect-error ask:count takes its input schema's input (number), not its output
  void conn.request('ask:count', 'three')
  // @ts-expect-error timeoutMs is a number
  void conn.request('confirm', { question: 'q' }, { timeoutMs: '1s' })
  void (async () => {
    // @ts-expect-error confirm resolves with a boolean
    const s: string = await conn.request('confirm', { question: 'q' })
    void s
  })()
})

// ---- a contract without requests has none; an untyped server takes any -----------------------
const plain = defineContract({ in: { ping: z.null() } })
createServer({ contract: plain }).onConnection((conn) => {
  // @ts-expect-error no requests in this contract
  conn.onRequest('ping', () => null)
  // @ts-expect-error no client requests in this contract
  void conn.request('ping', null)
})
createServer().onConnection((conn) => {
  conn.onRequest('anything', (input, ctx) => ({ echoed: input, id: ctx.id }))
  void conn.request('whatever', { any: 'thing' }).then((r) => r.anything)
})

// Contracts with requests are still Contracts; a typed connection can be passed around.
const anyContract: Contract = rooms
void anyContract
function useConn(conn: Connection<Rooms>): Promise<boolean> {
  return conn.request('confirm', { question: 'x' })
}
void useConn

// ---- RequestError ---------------------------------------------------------------------------------
const e1 = new RequestError('custom_code', 'message')
const e2 = new RequestError('invalid_input', 'bad', { issues: [{ message: 'x' }], cause: new Error('c') })
const e3 = new RequestError('timeout')
const asError: Error = e1
void [e2, e3, asError]
// @ts-expect-error a code is required
void new RequestError()
