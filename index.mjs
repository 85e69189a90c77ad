// ESM entry point: the same module instance as `require('ferrosocket')` (index.js), re-exported
// by name so `import { createServer } from 'ferrosocket'` works without relying on Node's
// detection of CommonJS exports.
import ferrosocket from './index.js'

export const { createServer, defineContract, CloseCode, RequestError, RequestErrorCode, METRICS_CONTENT_TYPE, exportAsyncAPI } = ferrosocket
export default ferrosocket
