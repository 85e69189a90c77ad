// The dashboard's HTTP side: `server.dashboardHandler({ authorize })` returns a Node request
// listener (`(req, res)`, also an Express middleware and, through `reply.raw`, a Fastify route).
// It serves the page and its two static files from the package (no CDN) and a small JSON API the
// page polls. Routes are matched on the end of the path, so the handler works wherever the app
// mounts it; the page uses relative URLs, and a request for the mount point without its trailing
// slash is redirected to it.
//
//   GET  <mount>/                 the page (index.html)
//   GET  <mount>/app.js, app.css  its script and style
//   GET  <mount>/api/state?since=T&events=S&rooms=N   counters, samples after time T, events after number S, largest rooms
//   GET  <mount>/api/connections?q=ID        one connection by id, or a user's connections
//   POST <mount>/api/close?id=ID             close one connection (only with `allowActions`)
//
// Every request goes through the app's `authorize(req)` first. Read-only unless `allowActions`;
// the one action needs a custom header, which a cross-site form or image cannot send.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { CloseCode } from '../protocol/close-codes'
import type { DashboardHandler, DashboardOptions, DashboardRequest, DashboardResponse } from '../types'
import { DEFAULT_ROOMS_LISTED, MAX_ROOMS_LISTED, type Collector } from './collector'

/** The header the page sends with its one action (and that a cross-site request cannot). */
export const ACTION_HEADER = 'x-ferrosocket-dashboard'
/** Close code and reason of a connection closed from the dashboard. */
const OPERATOR_CLOSE_REASON = 'Closed by an operator'
/** Longest query value read (ids and user ids are short). */
const MAX_QUERY_CHARS = 512

const ASSETS: Record<string, string> = {
  '': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
}

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
}

/** What the handler needs of its server. */
export interface DashboardHost {
  closeConnection(id: string, code: number, reason: string): boolean
  reportError(error: unknown): void
}

const assetCache = new Map<string, string>()

/** The page's files ship in the package under assets/dashboard/ (lib/dashboard/ → ../../assets). */
function asset(name: string): string {
  let text = assetCache.get(name)
  if (text === undefined) {
    text = readFileSync(join(__dirname, '..', '..', 'assets', 'dashboard', name === '' ? 'index.html' : name), 'utf8')
    assetCache.set(name, text)
  }
  return text
}

function send(res: DashboardResponse, status: number, type: string, body: string, head: boolean, extra: Record<string, string> = {}): void {
  res.statusCode = status
  for (const [name, value] of Object.entries({ ...SECURITY_HEADERS, 'content-type': type, ...extra })) res.setHeader(name, value)
  res.setHeader('content-length', String(Buffer.byteLength(body)))
  res.end(head ? undefined : body)
}

const json = (res: DashboardResponse, status: number, value: unknown, head = false): void =>
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value), head)

function integer(value: string | null, fallback: number, max: number): number {
  const n = value === null ? NaN : Number(value)
  return Number.isFinite(n) && n >= 0 ? Math.min(Math.floor(n), max) : fallback
}

export function checkDashboardOptions(options: DashboardOptions): void {
  if (options === null || typeof options !== 'object' || typeof options.authorize !== 'function') {
    throw new TypeError('dashboardHandler needs { authorize(req) }: a function that decides who may see the dashboard')
  }
  if (options.allowActions !== undefined && typeof options.allowActions !== 'boolean') throw new TypeError('option allowActions must be a boolean')
  if (options.maxRooms !== undefined && !(Number.isInteger(options.maxRooms) && options.maxRooms >= 0 && options.maxRooms <= MAX_ROOMS_LISTED)) {
    throw new RangeError(`option maxRooms must be an integer from 0 to ${MAX_ROOMS_LISTED}`)
  }
}

/** The request listener; `options` were checked with `checkDashboardOptions` (before the collector was made). */
export function createDashboardHandler(collector: Collector, host: DashboardHost, options: DashboardOptions): DashboardHandler {
  const allowActions = options.allowActions === true
  const roomsListed = options.maxRooms ?? DEFAULT_ROOMS_LISTED

  async function handle(req: DashboardRequest, res: DashboardResponse): Promise<void> {
    if (!(await options.authorize(req))) return json(res, 403, { error: 'forbidden' })
    const method = (req.method ?? 'GET').toUpperCase()
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid')
    const path = url.pathname
    const param = (name: string): string | null => url.searchParams.get(name)?.slice(0, MAX_QUERY_CHARS) ?? null
    const head = method === 'HEAD'
    const readOnly = method === 'GET' || head

    if (path.endsWith('/api/close')) {
      if (!allowActions) return json(res, 403, { error: 'actions are disabled (allowActions: false)' })
      if (method !== 'POST') return send(res, 405, 'text/plain', 'Method Not Allowed', false, { allow: 'POST' })
      if (req.headers[ACTION_HEADER] !== '1') return json(res, 403, { error: `missing header ${ACTION_HEADER}: 1` })
      const id = param('id') ?? ''
      const closed = host.closeConnection(id, CloseCode.POLICY_VIOLATION, OPERATOR_CLOSE_REASON)
      return json(res, closed ? 200 : 404, { closed })
    }
    if (!readOnly) return send(res, 405, 'text/plain', 'Method Not Allowed', false, { allow: 'GET, HEAD' })
    if (path.endsWith('/api/state')) {
      return json(res, 200, { ...(await collector.state(integer(param('since'), 0, Number.MAX_SAFE_INTEGER), integer(param('events'), 0, Number.MAX_SAFE_INTEGER), integer(param('rooms'), roomsListed, MAX_ROOMS_LISTED))), allowActions }, head)
    }
    if (path.endsWith('/api/connections')) {
      const q = param('q')?.trim() ?? ''
      if (q === '') return json(res, 400, { error: 'give ?q= a connection id or a user id' }, head)
      return json(res, 200, await collector.lookup(q), head)
    }
    const file = path.slice(path.lastIndexOf('/') + 1)
    const type = ASSETS[file]
    const original = ((req as { originalUrl?: string }).originalUrl ?? req.url ?? '/').split('?')[0] ?? '/'
    if (type === undefined || (file === '' && !original.endsWith('/'))) {
      // The mount point without its trailing slash (`/dashboard`): the page's relative URLs need
      // it. Any other unknown name is a 404.
      if (file.includes('.')) return send(res, 404, 'text/plain; charset=utf-8', 'Not Found', head)
      return send(res, 308, 'text/plain; charset=utf-8', '', head, { location: `${original}/${url.search}` })
    }
    return send(res, 200, type, asset(file), head)
  }

  return (req, res) => {
    handle(req, res).catch((error: unknown) => {
      host.reportError(error)
      if (res.headersSent !== true) json(res, 500, { error: 'internal error' })
      else res.end()
    })
  }
}
