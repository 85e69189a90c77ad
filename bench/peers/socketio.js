'use strict'
// Peer: Socket.IO (websocket transport only, no HTTP long-polling) speaking the benchmark protocol
// in Socket.IO's own framing: the load generator's `--proto socketio` mode sends Engine.IO v4 /
// Socket.IO v5 packets (`40` connect, `42["echo","..."]` events) to /socket.io/?EIO=4&transport=websocket.
//   echo  -> socket.emit('echo', data)         (Socket.IO parses and re-serialises the packet)
//   sub   -> socket.join(room); emit 'subscribed'
//   bcast -> io.to(room).emit('bcast', data)    (encoded once by the adapter, sent to each member)
const http = require('http')
const { Server } = require('socket.io')
const { port, host, listening, onExit } = require('./common')

const httpServer = http.createServer()
const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 1e6,
})

io.on('connection', (socket) => {
  socket.on('echo', (data) => socket.emit('echo', data))
  socket.on('sub', (data) => {
    socket.join(data.room)
    socket.emit('subscribed', data)
  })
  socket.on('bcast', (data) => io.to(data.room).emit('bcast', data))
})

httpServer.listen({ port: port(), host: host(), backlog: 4096 }, () => listening(httpServer.address().port))
onExit(() => new Promise((resolve) => io.close(() => resolve())))
