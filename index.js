'use strict'
// ferrosocket public entry point: the TypeScript sources in ts/ compiled to lib/ (npm run build:ts,
// run by npm install, npm run build and npm test). The typed surface is index.d.ts, which re-exports
// lib/index.d.ts. A plain object, as always (no __esModule marker, no getters), in the shorthand
// form Node's ESM loader reads named exports from.

const { createServer, defineContract, CloseCode, RequestError, RequestErrorCode, METRICS_CONTENT_TYPE, exportAsyncAPI, __testing } = require('./lib/index')

module.exports = { createServer, defineContract, CloseCode, RequestError, RequestErrorCode, METRICS_CONTENT_TYPE, exportAsyncAPI, __testing }
