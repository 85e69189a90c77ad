// ferrosocket — the public typings. The types are hand-written in ts/types.ts, the values
// (createServer, defineContract, RequestError, RequestErrorCode, CloseCode) typed where they are
// implemented in ts/; both reach here through the compiled lib/index.d.ts, so the typings users
// compile against are the ones the implementation is checked against. The generated N-API
// surface lives in binding.d.ts.
export * from './lib/index.js'
