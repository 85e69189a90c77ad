'use strict'
// Peer: `ws` (+ bufferutil) speaking the benchmark protocol.
//   echo  -> JSON.parse, then JSON.stringify of {event:'echo', data} back to the sender
//   sub   -> join data.room (a JS Set of sockets), reply `subscribed`
//   bcast -> serialise {event:'bcast', data} once, send the same bytes to every room member
// Compression (the `*-deflate` workloads of run.js), WS_DEFLATE:
//   1        perMessageDeflate: { threshold: 256, zlibDeflateOptions: { level: 1 } } — ws's defaults
//            (window 15, memLevel 8, concurrencyLimit 10, server/client context takeover as the
//            client offers: the bench's client asks for none) except the two values ferrosocket's
//            `compression: true` uses, so both compress the same messages at the same zlib level.
//            ws compresses per recipient (one zlib stream per socket, on libuv's threadpool): a
//            broadcast to N members is N compressions.
//   default  perMessageDeflate: true (ws's defaults as they come: threshold 1024, zlib level 6)
//   unset/0  perMessageDeflate: false (as before)
const { WebSocketServer } = require('ws')
const { port, host, listening, onExit } = require('./common')

// ws loads bufferutil from next to itself when present; say so if it is not (results would be unfair to ws).
try {
  require(require.resolve('bufferutil', { paths: [require('path').dirname(require.resolve('ws'))] }))
} catch {
  console.error('ws peer: WARNING bufferutil is not installed (npm install --prefix bench)')
}

const rooms = new Map() // room -> Set<WebSocket>

function perMessageDeflate() {
  const v = process.env.WS_DEFLATE
  if (!v || v === '0' || v === 'false') return false
  if (v === 'default') return true
  if (v === '1' || v === 'true') return { threshold: 256, zlibDeflateOptions: { level: 1 } }
  throw new Error(`WS_DEFLATE must be 1, default or 0, not ${v}`)
}

const wss = new WebSocketServer({
  host: host(),
  port: port(),
  path: '/ws',
  perMessageDeflate: perMessageDeflate(),
  clientTracking: false,
  backlog: 4096,
})

wss.on('connection', (ws) => {
  let joined = null
  ws.on('message', (raw, isBinary) => {
    let msg
    try {
      msg = JSON.parse(raw.toString())
    } catch {
      ws.close(1007, 'Invalid message payload')
      return
    }
    const { event, data } = msg
    if (event === 'echo') {
      ws.send(JSON.stringify({ event: 'echo', data }))
    } else if (event === 'sub') {
      let set = rooms.get(data.room)
      if (!set) rooms.set(data.room, (set = new Set()))
      set.add(ws)
      ;(joined ??= new Set()).add(data.room)
      ws.send(JSON.stringify({ event: 'subscribed', data }))
    } else if (event === 'bcast') {
      const set = rooms.get(data.room)
      if (!set) return
      // serialised once; a Buffer so ws does not re-encode the string per recipient
      const bytes = Buffer.from(JSON.stringify({ event: 'bcast', data }))
      for (const peer of set) peer.send(bytes, { binary: false })
    }
  })
  ws.on('close', () => {
    if (!joined) return
    for (const r of joined) {
      const set = rooms.get(r)
      if (set) {
        set.delete(ws)
        if (set.size === 0) rooms.delete(r)
      }
    }
  })
  ws.on('error', () => {})
})

wss.on('listening', () => listening(wss.address().port))
onExit(() => new Promise((resolve) => wss.close(() => resolve())))
