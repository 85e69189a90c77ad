// Type tests for the handshake surface (issue 3): authenticate's request and result, conn.data
// typed from what authenticate returns, identity fields, handshake options, attach mode. Every
// `@ts-expect-error` line MUST be an error (tsc fails on an unused one); every other line MUST compile.
import { z } from 'zod'
import {
  createServer,
  defineContract,
  type AuthResult,
  type Connection,
  type Server,
  type ServerOptions,
  type UpgradeRequest,
  type UntypedContract,
} from '../../index.js'
import { type Equal, assertType } from './assert.js'


// ---- authenticate's request ---------------------------------------------------------------------
createServer({
  authenticate: (req) => {
    assertType<Equal<typeof req, UpgradeRequest>>()
    const url: string = req.url
    const path: string = req.path
    const token: string | undefined = req.query.token
    const auth: string | undefined = req.headers['authorization']
    const ip: string = req.remoteAddress
    const ns: string = req.namespace
    void [url, path, token, auth, ip, ns]
    // @ts-expect-error header values are strings
    const n: number = req.headers.host
    void n
    return true
  },
})

// ---- conn.data is typed from authenticate's data ---------------------------------------------------
const admin = createServer({
  host: '127.0.0.1',
  authenticate: async (req) => {
    if (!req.query.token) return false
    if (req.query.token === 'banned') return { status: 403, message: 'banned' }
    return { userId: req.query.token, data: { role: 'admin', since: 2024 } }
  },
})
admin.onConnection((conn) => {
  assertType<Equal<typeof conn.data, { role: string; since: number }>>()
  const role: string = conn.data.role
  const since: number = conn.data.since
  void [role, since]
  // @ts-expect-error not a property of the data authenticate returns
  conn.data.permissions
  // @ts-expect-error role is a string
  const wrong: number = conn.data.role
  void wrong
})
const adminConn = admin.getConnection('1')
if (adminConn) {
  const r: string = adminConn.data.role
  void r
}
assertType<Equal<typeof admin, Server<UntypedContract, {}, { role: string; since: number }>>>()

// Synchronous authenticate and a contract: both generics inferred together.
const chat = defineContract({
  in: { 'chat:send': z.object({ text: z.string() }) },
  out: { 'chat:message': z.object({ text: z.string() }) },
})
const typed = createServer({
  contract: chat,
  namespaces: { admin: null },
  authenticate: () => ({ data: { tenant: 't1' } }),
})
typed.onConnection((conn) => {
  const tenant: string = conn.data.tenant
  void tenant
  conn.onMessage('chat:send', (d) => conn.publish('chat:message', { text: d.text }))
  // @ts-expect-error the contract still applies
  conn.publish('chat:message', { text: 1 })
})
typed.onConnection('admin', (conn) => {
  const tenant: string = conn.data.tenant
  void tenant
})

// Without authenticate, conn.data is undefined.
createServer().onConnection((conn) => {
  assertType<Equal<typeof conn.data, undefined>>()
  // @ts-expect-error there is no data without authenticate
  conn.data.role
})

// An explicit data type is enforced on what authenticate returns.
createServer<any, {}, { role: 'admin' | 'user' }>({
  authenticate: () => ({ data: { role: 'admin' } }),
})
createServer<any, {}, { role: 'admin' | 'user' }>({
  // @ts-expect-error 'root' is not a role
  authenticate: () => ({ data: { role: 'root' } }),
})

// ---- authenticate returning a wrong shape is an error ---------------------------------------------
createServer({
  // @ts-expect-error userId must be a string
  authenticate: () => ({ userId: 42 }),
})
createServer({
  // @ts-expect-error a string is not a verdict
  authenticate: async () => 'yes',
})
createServer({
  // @ts-expect-error status must be a number
  authenticate: () => ({ status: '403' }),
})
createServer({
  // @ts-expect-error message must be a string
  authenticate: () => ({ status: 403, message: 403 }),
})
createServer({
  // @ts-expect-error authenticate must be a function
  authenticate: true,
})

// Every documented verdict is accepted.
const verdicts: AuthResult<{ a: number }>[] = [true, false, null, undefined, {}, { userId: 'u' }, { data: { a: 1 } }, { status: 401 }, { status: 403, message: 'm' }]
void verdicts
createServer({ authenticate: () => undefined })
createServer({ authenticate: async () => null })
createServer({
  authenticate: () => {
    throw Object.assign(new Error('nope'), { status: 403, expose: true })
  },
})

// ---- handshake options ----------------------------------------------------------------------------
const options: ServerOptions = {
  allowedOrigins: ['https://app.example', '*.example.com'],
  trustProxy: true,
  protocols: ['v1.app'],
  requireProtocol: true,
  handshakeTimeoutMs: 1000,
  noListen: true,
}
void options
createServer({ trustProxy: 1 })
createServer({ trustProxy: ['10.0.0.0/8', '127.0.0.1'] })
createServer({ trustProxy: 'loopback' })
// @ts-expect-error allowedOrigins is a list
createServer({ allowedOrigins: 'https://app.example' })
// @ts-expect-error protocols is a list of strings
createServer({ protocols: [1] })
// @ts-expect-error requireProtocol is a boolean
createServer({ requireProtocol: 'yes' })
// @ts-expect-error trustProxy is not an object
createServer({ trustProxy: { hops: 1 } })

// ---- identity fields -------------------------------------------------------------------------------
function identity(conn: Connection) {
  const headers: Readonly<Record<string, string>> = conn.headers
  const custom: string | undefined = conn.headers['x-custom']
  const url: string = conn.url
  const token: string | undefined = conn.query.token
  const protocol: string | undefined = conn.protocol
  const openedAt: number = conn.openedAt
  const lastSeenAt: number = conn.lastSeenAt
  const rtt: number | undefined = conn.rtt
  const addr: string = conn.remoteAddress
  void [headers, custom, url, token, protocol, openedAt, lastSeenAt, rtt, addr]
  // @ts-expect-error rtt may be undefined
  const r: number = conn.rtt
  // @ts-expect-error identity fields are read-only
  conn.url = '/other'
  // @ts-expect-error headers are read-only
  conn.headers['x-custom'] = 'v'
  // @ts-expect-error protocol may be undefined
  const p: string = conn.protocol
  void [r, p]
}
void identity

// ---- attach mode --------------------------------------------------------------------------------
declare const incoming: { method: string; url: string; httpVersion: string; rawHeaders: string[]; headers: Record<string, string> }
declare const socket: { write(b: Uint8Array): boolean; destroy(): void }
declare const head: Uint8Array
const attached = createServer({ noListen: true })
attached.handleUpgrade(incoming, socket, head)
// @ts-expect-error head is bytes
attached.handleUpgrade(incoming, socket, 'head')
// @ts-expect-error the request needs rawHeaders and httpVersion
attached.handleUpgrade({ url: '/ws' }, socket, head)
const returned: void = attached.handleUpgrade(incoming, socket, head)
void returned
