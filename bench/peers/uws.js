'use strict'
// Peer (optional): uWebSockets.js, loaded from $UWS_DIR (see /work/shared/peers/get-uws.sh DIR, run
// with DIR/bin/node-uws). Same protocol; the room uses uWS's native pub/sub.
//   echo  -> JSON.parse, JSON.stringify back to the sender
//   sub   -> ws.subscribe(room); reply `subscribed`
//   bcast -> app.publish(room, JSON.stringify({event:'bcast', data}))  (one encode, native fan-out)
// Compression (the `*-deflate` workloads of run.js), UWS_COMPRESSION:
//   shared     compression: uWS.SHARED_COMPRESSOR (one deflate stream shared by all sockets, so
//              server_no_context_takeover), and send/publish with compress = true for messages of
//              256 characters or more (uWS has no threshold of its own; 256 is ferrosocket's
//              default). Level and window are uWS's own (not settable from JS).
//   unset/off  compression: uWS.DISABLED (as before)
const path = require('path')
const { port, host, listening, onExit } = require('./common')

function loadUws() {
  const dir = process.env.UWS_DIR
  if (!dir) throw new Error('UWS_DIR is not set')
  const candidates = [path.join(dir, 'node_modules', 'uWebSockets.js'), path.join(dir, 'uws'), dir]
  let last
  for (const c of candidates) {
    try {
      return require(c)
    } catch (e) {
      last = e
    }
  }
  throw last
}

const uWS = loadUws()
const decoder = new TextDecoder()

const COMPRESSION = (() => {
  const v = process.env.UWS_COMPRESSION
  if (!v || v === 'off' || v === '0') return uWS.DISABLED
  if (v === 'shared') return uWS.SHARED_COMPRESSOR
  throw new Error(`UWS_COMPRESSION must be shared or off, not ${v}`)
})()
const THRESHOLD = COMPRESSION === uWS.DISABLED ? Infinity : 256

const app = uWS.App().ws('/ws', {
  compression: COMPRESSION,
  maxPayloadLength: 64 * 1024,
  maxBackpressure: 1024 * 1024,
  idleTimeout: 0,
  sendPingsAutomatically: false,
  message: (ws, message, isBinary) => {
    let msg
    try {
      msg = JSON.parse(decoder.decode(message))
    } catch {
      ws.end(1007, 'Invalid message payload')
      return
    }
    const { event, data } = msg
    if (event === 'echo') {
      const out = JSON.stringify({ event: 'echo', data })
      ws.send(out, false, out.length >= THRESHOLD)
    } else if (event === 'sub') {
      ws.subscribe(data.room)
      const out = JSON.stringify({ event: 'subscribed', data })
      ws.send(out, false, out.length >= THRESHOLD)
    } else if (event === 'bcast') {
      const out = JSON.stringify({ event: 'bcast', data })
      app.publish(data.room, out, false, out.length >= THRESHOLD)
    }
  },
})

let token = null
app.listen(host(), port(), (t) => {
  if (!t) {
    console.error('uWS: listen failed')
    process.exit(1)
  }
  token = t
  listening(uWS.us_socket_local_port(t))
})
onExit(() => {
  if (token) uWS.us_listen_socket_close(token)
})
