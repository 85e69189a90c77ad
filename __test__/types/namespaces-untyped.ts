// Type tests: namespaces carry their own contracts; a server without a contract accepts anything.
import { z } from 'zod'
import { createServer, defineContract, type Connection, type UntypedContract } from '../../index.js'

const lobby = defineContract({
  in: { 'lobby:join': z.object({ name: z.string() }) },
  out: { 'lobby:joined': z.object({ name: z.string() }) },
})
const game = defineContract({
  in: { 'game:move': z.object({ x: z.number(), y: z.number() }) },
  out: { 'game:state': z.object({ turn: z.number() }) },
})

const server = createServer({ contract: lobby, namespaces: { game } })

server.onConnection((conn) => {
  conn.onMessage('lobby:join', (d) => conn.publish('lobby:joined', { name: d.name }))
  // @ts-expect-error game events are not in the default namespace
  conn.onMessage('game:move', () => {})
})
server.onConnection('game', (conn) => {
  conn.onMessage('game:move', (d) => {
    const x: number = d.x
    void x
    conn.publish('game:state', { turn: 1 })
  })
  // @ts-expect-error lobby events are not in the game namespace
  conn.publish('lobby:joined', { name: 'x' })
})
// @ts-expect-error no such namespace
server.onConnection('chess', () => {})

server.broadcast('game:state', { turn: 2 }, 'game')
server.publishToRoom('table-1', 'game:state', { turn: 3 }, 'game')
server.publishToUser('u1', 'game:state', { turn: 4 }, 'game')
server.publishToAudience({ namespace: 'game', rooms: ['table-1'] }, 'game:state', { turn: 5 })
server.broadcast('lobby:joined', { name: 'n' })
// @ts-expect-error wrong payload for the game namespace
server.broadcast('game:state', { turn: 'two' }, 'game')
// @ts-expect-error a default-namespace event sent to the game namespace
server.publishToRoom('table-1', 'lobby:joined', { name: 'n' }, 'game')
// @ts-expect-error a game event without naming the namespace
server.broadcast('game:state', { turn: 2 })
// @ts-expect-error unknown namespace
server.broadcast('game:state', { turn: 2 }, 'chess')

// ---- untyped: any event, any data --------------------------------------------------------------
const untyped = createServer({ port: 0, path: '/ws', maxPayload: 1024, heartbeat: { intervalMs: 0 } })
untyped.onConnection((conn) => {
  conn.onMessage('anything', (data) => {
    void data
  })
  conn.onMessage('whatever:else', async (data: unknown) => {
    void data
  })
  conn.publish('made-up', { any: ['thing', 1] })
  conn.publish('another', 42)
  conn.join('r').leave('r').setUserId('u').clearUserId()
  conn.onClose((code: number, reason: string) => void [code, reason])
  const info: Promise<{ code: number; reason: string }> = conn.waitForClose()
  void info
  const id: string = conn.id
  const ns: string = conn.namespace
  const user: string | undefined = conn.userId
  const addr: string = conn.remoteAddress
  const rooms: ReadonlySet<string> = conn.rooms
  const open: boolean = conn.isOpen
  void [id, ns, user, addr, rooms, open]
  conn.close()
  conn.close(4000, 'bye')
})
untyped.broadcast('x', 1)
untyped.publishToRoom('r', 'y', 'z')
untyped.publishToUser('u', 'v', null)
untyped.publishToAudience({ connections: ['id'] }, 'w', [1, 2])
const c: Connection<UntypedContract> | undefined = untyped.getConnection('id')
void c

async function lifecycle() {
  await untyped.listen()
  const port: number = untyped.port
  const count: number = untyped.connectionCount
  void [port, count]
  await untyped.shutdown()
  await untyped.shutdown(1001, 'bye', { timeoutMs: 100 })
  // @ts-expect-error the code is a number
  await untyped.shutdown('1001')
}
void lifecycle

// ---- options are checked --------------------------------------------------------------------------
createServer({
  host: '0.0.0.0',
  port: 8080,
  backpressure: { maxQueuedMessages: 1000, maxBufferedBytes: 1 << 20 },
  maxConnections: 0,
  maxInflightMessages: 100,
  maxBufferedMessages: 100,
  maxPendingBytes: 64 << 20,
  closeTimeoutMs: 5000,
  onInvalidMessage: 'reply',
  workerThreads: 2,
  onError: (err: unknown, conn) => void [err, conn?.id],
})
// @ts-expect-error only 'close' | 'reply'
createServer({ onInvalidMessage: 'ignore' })
// @ts-expect-error port is a number
createServer({ port: '8080' })
