// The HTTP upgrade request as JS sees it. Rust hands over the raw request head; it is parsed here
// only when someone asks (authenticate, conn.headers …), so connections that never look at their
// headers cost no parsing and hold one (packed) string.

/** A parsed request head: what `authenticate` gets (with the address and namespace) and `conn.headers`/`url`/`query` read. */
export interface ParsedRequest {
  url: string
  path: string
  query: Record<string, string>
  headers: Record<string, string>
}

/** Parses `GET /ws?x=1 HTTP/1.1\r\nName: value\r\n…` into url, path, query and headers. */
export function parseHead(head: string): ParsedRequest {
  const lines = head.split('\r\n')
  const [, target = '/'] = lines[0].split(' ')
  const headers: Record<string, string> = {}
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    if (headers[name] === undefined) headers[name] = value
    else headers[name] += (name === 'cookie' ? '; ' : ', ') + value
  }
  const q = target.indexOf('?')
  const path = q === -1 ? target : target.slice(0, q)
  const query = Object.fromEntries(new URLSearchParams(q === -1 ? '' : target.slice(q + 1)))
  return { url: target, path, query, headers }
}

// A connection keeps its request head (one string) until someone reads conn.headers/url/query,
// which most applications never do. Most of a WebSocket upgrade head is text every client sends
// the same way, so the head is kept packed: each of the strings below (a static table, as in
// HPACK) is stored as one control character. A typical 150-byte head packs to ~50 bytes, a
// browser's 500-byte head to ~130. Control characters cannot occur in a head the Rust parser
// accepted (RFC 9110 allows only HTAB); a head with any is not packed (packHead parses it).
const TABLE = [
  'GET /',
  ' HTTP/1.1',
  '\r\nHost: ',
  '\r\nUpgrade: websocket',
  '\r\nConnection: Upgrade',
  '\r\nConnection: keep-alive, Upgrade',
  '\r\nSec-WebSocket-Key: ',
  '\r\nSec-WebSocket-Version: 13',
  '\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits',
  '\r\nSec-WebSocket-Extensions: permessage-deflate',
  '\r\nSec-WebSocket-Protocol: ',
  '\r\nOrigin: ',
  'https://',
  '\r\nUser-Agent: Mozilla/5.0 (',
  ') AppleWebKit/537.36 (KHTML, like Gecko) Chrome/',
  ' Safari/537.36',
  '\r\nAccept: */*',
  '\r\nAccept-Encoding: gzip, deflate, br, zstd',
  '\r\nAccept-Encoding: gzip, deflate, br',
  '\r\nAccept-Language: ',
  '\r\nCache-Control: no-cache',
  '\r\nPragma: no-cache',
  '\r\nCookie: ',
  '\r\nX-Forwarded-',
  // Node's built-in WebSocket (undici) sends lower-case names.
  '\r\nhost: ',
  '\r\nupgrade: websocket',
  '\r\nconnection: upgrade',
  '\r\nsec-websocket-key: ',
  '\r\nsec-websocket-version: 13',
  '\r\n',
]
/** Every control character but HTAB, LF and CR: 30 codes. */
const CODES = [...Array(32).keys(), 0x7f].filter((c) => c !== 0x09 && c !== 0x0a && c !== 0x0d).map((c) => String.fromCharCode(c))
if (TABLE.length > CODES.length) throw new Error('upgrade-request.ts: the head table has more entries than codes')
const CODE_OF = new Map(TABLE.map((text, i) => [text, CODES[i]]))
const TEXT_OF = new Map(TABLE.map((text, i) => [CODES[i], text]))
const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
// Longest first, so that of two entries starting at the same place the longer one is used.
const PACK = new RegExp([...TABLE].sort((a, b) => b.length - a.length).map(escape).join('|'), 'g')
const UNPACK = new RegExp(`[${escape(CODES.slice(0, TABLE.length).join(''))}]`, 'g')
const UNPACKABLE = new RegExp(`[${escape(CODES.join(''))}]`)

/** What a connection keeps of its head: a packed head string, or the parsed request. */
export type KeptRequest = string | ParsedRequest

/** What a connection keeps of its head: the packed string, or the parsed request if it cannot be packed. */
export function packHead(head: string | null | undefined): KeptRequest | null | undefined {
  if (typeof head !== 'string') return head
  if (UNPACKABLE.test(head)) return parseHead(head)
  return head.replace(PACK, (text) => CODE_OF.get(text)!)
}

export function unpackHead(packed: string): string {
  return packed.replace(UNPACK, (code) => TEXT_OF.get(code)!)
}

/** The parts of Node's `http.IncomingMessage` that `handleUpgrade` reads. */
export interface IncomingHead {
  method?: string | undefined
  url?: string | undefined
  httpVersion: string
  rawHeaders: string[]
}

/** Rebuilds the request head Node's HTTP parser consumed, for a socket handed over to Rust. */
export function headFromIncomingMessage(req: IncomingHead): string {
  let head = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`
  const raw = req.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`
  return head + '\r\n'
}
