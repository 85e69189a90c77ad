// The wire frames (README "Wire protocol"), written and read in one place. Browser-safe: a client
// uses the same encoders and the decoder below.
//
//   event     {"event": string, "data": any, "meta"?: {"traceparent"?, "tracestate"?}}
//   request   an event frame plus "id": string or number
//   reply     {"id": same id, "data": any}  or  {"id": same id, "error": {"code", "message", "issues"?}}
//
// The encoders build the JSON text directly: `data` is serialised once with JSON.stringify
// (`undefined` becomes `null`), and an id received from the peer is echoed as the JSON text it came
// in (`idJson`), byte for byte. Each throws only what JSON.stringify throws (a BigInt, a cycle).

import type { ErrorBody } from './request-error.js'

/** `meta` of an envelope: trace context. */
export interface EnvelopeMeta {
  traceparent?: string
  tracestate?: string
}

/** The id of a request: what the asking side chose (the server uses numbers). */
export type RequestId = string | number

const json = (value: unknown): string => JSON.stringify(value) ?? 'null'

/** `{"event":…,"data":…}` */
export function encodeEvent(event: string, data: unknown, meta?: EnvelopeMeta): string {
  if (meta === undefined) return `{"event":${JSON.stringify(event)},"data":${json(data)}}`
  return `{"event":${JSON.stringify(event)},"data":${json(data)},"meta":${JSON.stringify(meta)}}`
}

/** `{"event":…,"data":…,"id":…}` */
export function encodeRequest(event: string, data: unknown, id: RequestId): string {
  return `{"event":${JSON.stringify(event)},"data":${json(data)},"id":${JSON.stringify(id)}}`
}

/** `{"id":…,"data":…}`; `idJson` is the request's id as JSON text, as it arrived. */
export function encodeDataReply(idJson: string, data: unknown): string {
  return `{"id":${idJson},"data":${json(data)}}`
}

/** `{"id":…,"error":{…}}`; `idJson` is the request's id as JSON text, as it arrived. */
export function encodeErrorReply(idJson: string, error: ErrorBody): string {
  return `{"id":${idJson},"error":${JSON.stringify(error)}}`
}

/** A decoded frame; `invalid` frames are the ones the server closes 1007 `Invalid message payload` for. */
export type DecodedFrame =
  | { readonly kind: 'event'; readonly event: string; readonly data: unknown; readonly meta: EnvelopeMeta | undefined }
  | { readonly kind: 'request'; readonly event: string; readonly data: unknown; readonly meta: EnvelopeMeta | undefined; readonly id: RequestId }
  | { readonly kind: 'reply'; readonly id: RequestId; readonly data: unknown }
  | { readonly kind: 'error-reply'; readonly id: RequestId; readonly error: Readonly<Record<string, unknown>> }
  | { readonly kind: 'invalid'; readonly reason: string }

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value)

/**
 * Decodes one frame with the rules the server applies to what it receives (src/envelope.rs): a
 * frame with `event` is an event, a request when it also has an `id` (an `error` key is then
 * ignored like any unknown field); a frame without `event` must be a reply, an `id` plus `data`
 * (`null` allowed) or an `error` object, not both. `null` counts as absent everywhere but in a
 * reply's `data`; `data` absent or `null` decodes as `null`. (One difference: the server refuses
 * duplicate keys, JSON.parse keeps the last.)
 */
export function decodeFrame(text: string): DecodedFrame {
  if (!text.trimStart().startsWith('{')) return invalid('not a JSON object')
  let frame: unknown
  try {
    frame = JSON.parse(text)
  } catch {
    return invalid('not JSON')
  }
  if (!isObject(frame)) return invalid('not a JSON object')
  const { event, id, meta, error } = frame
  if (id != null && typeof id !== 'string' && typeof id !== 'number') return invalid('id is not a string or number')
  if (event == null) {
    if (id == null) return invalid('missing event')
    if (error != null) {
      if (!isObject(error)) return invalid('reply error is not an object')
      if (frame.data != null) return invalid('reply has both data and error')
      return { kind: 'error-reply', id, error }
    }
    if (!('data' in frame)) return invalid('reply has neither data nor error')
    return { kind: 'reply', id, data: frame.data }
  }
  if (typeof event !== 'string') return invalid('event is not a string')
  if (event === '') return invalid('empty event name')
  if (meta != null && !isObject(meta)) return invalid('meta is not an object')
  const data = frame.data ?? null
  const m = (meta ?? undefined) as EnvelopeMeta | undefined
  return id == null ? { kind: 'event', event, data, meta: m } : { kind: 'request', event, data, meta: m, id }
}

const invalid = (reason: string): DecodedFrame => ({ kind: 'invalid', reason })
