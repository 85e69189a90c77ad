// Type tests: a contract's event names and payloads flow into onMessage / publish / broadcast /
// publishToRoom / publishToUser / publishToAudience. Every `@ts-expect-error` line MUST be an error
// (tsc fails on an unused one); every other line MUST compile.
import { z } from 'zod'
import {
  createServer,
  defineContract,
  CloseCode,
  type Connection,
  type Contract,
  type Server,
  type InData,
  type OutData,
  type StandardSchemaV1,
} from '../../index.js'
import { type Equal, assertType } from './assert.js'

const chat = defineContract({
  in: {
    'chat:send': z.object({ room: z.string(), text: z.string().max(2000) }),
    'chat:typing': z.boolean(),
    // Output differs from input: handlers see the output (number), clients send the input (string).
    'chat:count': z.string().transform((s) => s.length),
  },
  out: {
    'chat:message': z.object({ room: z.string(), from: z.string(), text: z.string() }),
    'chat:count': z.string().transform((s) => s.length),
  },
})


const server = createServer({ host: '127.0.0.1', port: 0, contract: chat })

server.onConnection((conn) => {
  // ---- positive cases ---------------------------------------------------------------------
  conn.onMessage('chat:send', async (data, ctx) => {
    const room: string = data.room
    const text: string = data.text
    const event: string = ctx.event
    const trace: string | undefined = ctx.meta?.traceparent
    conn.join(room)
    server.publishToRoom(room, 'chat:message', { room, from: conn.id, text })
    void [event, trace]
  })
  conn.onMessage('chat:typing', (typing) => {
    const b: boolean = typing
    void b
  })
  conn.onMessage('chat:count', (n) => {
    assertType<Equal<typeof n, number>>()
  })
  conn.publish('chat:message', { room: 'lobby', from: 'server', text: 'hi' })
  conn.publish('chat:count', 'input is a string')
  server.broadcast('chat:message', { room: 'r', from: 'f', text: 't' })
  server.publishToUser('u1', 'chat:message', { room: 'r', from: 'f', text: 't' })
  server.publishToAudience({ rooms: ['a'], users: new Set(['u']), except: [conn.id] }, 'chat:message', {
    room: 'r',
    from: 'f',
    text: 't',
  })

  // ---- wrong event names --------------------------------------------------------------------
  // @ts-expect-error 'chat:delete' is not an inbound event
  conn.onMessage('chat:delete', () => {})
  // @ts-expect-error 'chat:message' is outbound only
  conn.onMessage('chat:message', () => {})
  // @ts-expect-error 'chat:send' is inbound only
  conn.publish('chat:send', { room: 'r', text: 't' })
  // @ts-expect-error unknown outbound event
  conn.publish('nope', {})
  // @ts-expect-error unknown outbound event
  server.broadcast('nope', {})
  // @ts-expect-error unknown outbound event
  server.publishToRoom('r', 'nope', {})
  // @ts-expect-error unknown outbound event
  server.publishToUser('u', 'nope', {})
  // @ts-expect-error unknown outbound event
  server.publishToAudience({ rooms: ['r'] }, 'nope', {})

  // ---- wrong payload types ------------------------------------------------------------------
  // @ts-expect-error text must be a string
  conn.publish('chat:message', { room: 'r', from: 'f', text: 42 })
  // @ts-expect-error missing `from`
  conn.publish('chat:message', { room: 'r', text: 't' })
  // @ts-expect-error the count event takes its input type (string), not its output (number)
  conn.publish('chat:count', 3)
  // @ts-expect-error wrong payload
  server.broadcast('chat:message', { room: 1 })
  // @ts-expect-error wrong payload
  server.publishToRoom('r', 'chat:message', { room: 'r', from: 'f', text: false })
  // @ts-expect-error wrong payload
  server.publishToUser('u', 'chat:message', 'a string')
  // @ts-expect-error wrong payload
  server.publishToAudience({ users: ['u'] }, 'chat:message', { room: 'r' })

  // ---- handler data is typed ----------------------------------------------------------------
  conn.onMessage('chat:send', (data) => {
    // @ts-expect-error no such field in the schema
    void data.nope
    // @ts-expect-error room is a string, not a number
    const n: number = data.room
    void n
  })
  // @ts-expect-error the handler's parameter type must accept the schema output
  conn.onMessage('chat:typing', (data: string) => void data)
})

// ---- the types the aliases produce ----------------------------------------------------------
type Chat = typeof chat
assertType<Equal<InData<Chat, 'chat:send'>, { room: string; text: string }>>()
assertType<Equal<InData<Chat, 'chat:count'>, number>>()
assertType<Equal<OutData<Chat, 'chat:count'>, string>>()
assertType<Equal<OutData<Chat, 'chat:message'>, { room: string; from: string; text: string }>>()
const typed: Server<Chat> = server
void typed
const g: 1001 = CloseCode.GOING_AWAY
void g

// ---- a hand-written Standard Schema (no zod) types the handler as well ------------------------
const positive: StandardSchemaV1<number, number> = {
  '~standard': {
    version: 1,
    vendor: 'handmade',
    validate: (v) => (typeof v === 'number' && v > 0 ? { value: v } : { issues: [{ message: 'not positive' }] }),
  },
}
const handmade = defineContract({ in: { n: positive }, out: { n: positive } })
const s2 = createServer({ contract: handmade })
s2.onConnection((conn: Connection<typeof handmade>) => {
  conn.onMessage('n', (n) => {
    assertType<Equal<typeof n, number>>()
  })
  conn.publish('n', 5)
  // @ts-expect-error string is not the schema's input
  conn.publish('n', 'five')
})

// A contract with only `in` has no outbound events.
const inOnly = defineContract({ in: { ping: z.null() } })
const s3 = createServer({ contract: inOnly })
s3.onConnection((conn) => {
  conn.onMessage('ping', (d) => assertType<Equal<typeof d, null>>())
  // @ts-expect-error no outbound events at all
  conn.publish('ping', null)
})
const anyContract: Contract = chat
void anyContract

// ---- namespace-level handlers (server.onMessage / onRequest / onRawMessage) ----------------------
{
  const game = defineContract({
    in: { move: z.object({ x: z.number() }) },
    out: { moved: z.number() },
    requests: { score: { input: z.string(), output: z.number() } },
  })
  const s = createServer({ contract: chat, namespaces: { game }, authenticate: () => ({ data: { plan: 'pro' as const } }) })
  s.onMessage('chat:send', (data, ctx) => {
    assertType<Equal<typeof data, { room: string; text: string }>>()
    assertType<Equal<typeof ctx.conn, Connection<typeof chat, { plan: 'pro' }>>>()
    ctx.conn.publish('chat:message', { room: data.room, from: ctx.conn.id, text: data.text })
    // @ts-expect-error the default namespace's connection cannot publish the game's events
    ctx.conn.publish('moved', 1)
  })
  s.onMessage('chat:count', (n) => assertType<Equal<typeof n, number>>())
  s.onMessage('game', 'move', (data, ctx) => {
    assertType<Equal<typeof data, { x: number }>>()
    ctx.conn.publish('moved', data.x)
  })
  s.onRequest('game', 'score', (input, ctx) => {
    assertType<Equal<typeof input, string>>()
    void ctx.conn.id
    return input.length
  })
  // @ts-expect-error not an inbound event of the default namespace
  s.onMessage('move', () => {})
  // @ts-expect-error not an inbound event of the game namespace
  s.onMessage('game', 'chat:send', () => {})
  // @ts-expect-error unknown namespace
  s.onMessage('lobby', 'move', () => {})
  // @ts-expect-error a request handler must return the output type
  s.onRequest('game', 'score', () => 'not a number')
  s.onRawMessage((data, conn) => void [data, conn.id])
}

// conn.onRawMessage passes the connection as well, typed like the connection itself.
{
  const s = createServer({ messageFormat: 'raw', contract: chat })
  s.onConnection((conn) => {
    conn.onRawMessage((data, self) => {
      assertType<Equal<typeof data, string | Uint8Array>>()
      assertType<Equal<typeof self, typeof conn>>()
      self.sendRaw(data)
    })
  })
}

// Ids and publish results: ids are strings, publish* say how many connections they reached.
{
  const s = createServer({ nodeId: 'api-1', contract: chat })
  assertType<Equal<typeof s.nodeId, string>>()
  const reached = s.broadcast('chat:message', { room: 'r', from: 'a', text: 't' })
  assertType<Equal<typeof reached, number>>()
  assertType<Equal<ReturnType<typeof s.publishToRoom<'chat:message'>>, number>>()
  s.onConnection((conn) => {
    const queued = conn.publish('chat:message', { room: 'r', from: conn.id, text: 't' })
    assertType<Equal<typeof queued, boolean>>()
  })
  // @ts-expect-error nodeId is a string
  createServer({ nodeId: 1 })
}

// Presence and closeConnections: namespaces are checked, entries are typed.
{
  const game = defineContract({ in: { move: z.object({ x: z.number() }) } })
  const s = createServer({ contract: chat, namespaces: { game } })
  void (async () => {
    const members = await s.presence.getRoomMembers('lobby', 'game')
    assertType<Equal<typeof members[number]['userId'], string | null>>()
    const stats = await s.presence.getStats()
    assertType<Equal<typeof stats.nodes, number>>()
    const closed: number = await s.closeConnections({ namespace: 'game', users: ['ada'] }, 4001, 'kicked')
    void closed
    // @ts-expect-error unknown namespace
    await s.presence.getConnectionCount('lobby')
    // @ts-expect-error unknown namespace
    await s.closeConnections({ namespace: 'lobby' })
  })()
}

// A cluster bus the application provides: typed messages.
{
  const bus: import('../../index.js').ClusterBus = {
    publish(message) {
      assertType<Equal<typeof message.payload, string>>()
      assertType<Equal<typeof message.audience.except, string[] | undefined>>()
    },
    subscribe: () => () => {},
  }
  createServer({ cluster: { bus } })
  // @ts-expect-error a bus needs subscribe
  createServer({ cluster: { bus: { publish() {} } } })
}
