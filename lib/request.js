'use strict'
// The HTTP upgrade request as JS sees it. Rust hands over the raw request head; it is parsed here
// only when someone asks (authenticate, conn.headers …), so connections that never look at their
// headers cost no parsing and hold one string.

/** Parses `GET /ws?x=1 HTTP/1.1\r\nName: value\r\n…` into url, path, query and headers. */
function parseHead(head) {
  const lines = head.split('\r\n')
  const [, target = '/'] = lines[0].split(' ')
  const headers = {}
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

/** Rebuilds the request head Node's HTTP parser consumed, for a socket handed over to Rust. */
function headFromIncomingMessage(req) {
  let head = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`
  const raw = req.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`
  return head + '\r\n'
}

module.exports = { parseHead, headFromIncomingMessage }
