'use strict'
// Peer (optional): uWebSockets.js, loaded from $UWS_DIR (see /work/shared/peers/get-uws.sh DIR, run
// with DIR/bin/node-uws). Same protocol; the room uses uWS's native pub/sub.
//   echo  -> JSON.parse, JSON.stringify back to the sender
//   sub   -> ws.subscribe(room); reply `subscribed`
//   bcast -> app.publish(room, JSON.stringify({event:'bcast', data}))  (one encode, native fan-out)
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

const app = uWS.App().ws('/ws', {
  compression: uWS.DISABLED,
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
      ws.send(JSON.stringify({ event: 'echo', data }), false)
    } else if (event === 'sub') {
      ws.subscribe(data.room)
      ws.send(JSON.stringify({ event: 'subscribed', data }), false)
    } else if (event === 'bcast') {
      app.publish(data.room, JSON.stringify({ event: 'bcast', data }), false)
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
