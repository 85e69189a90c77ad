'use strict'
// ferrosocket public entry point. The typed surface is declared in index.d.ts.

const { Server } = require('./lib/server')
const { defineContract } = require('./lib/contract')
const { CloseCode } = require('./lib/close-codes')
const { RequestError, RequestErrorCode } = require('./lib/requests')
const binding = require('./lib/native')

function createServer(options) {
  return new Server(options)
}

/** Test hooks; not part of the supported API. */
const __testing = Object.freeze({ panic: () => binding.testPanic() })

module.exports = { createServer, defineContract, CloseCode, RequestError, RequestErrorCode, __testing }
