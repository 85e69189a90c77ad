// Handler stores: where a connection keeps its `onMessage`/`onRawMessage`/`onClose` handlers (and,
// in a second store, its `onRequest` handlers). A store maps a key to a handler: null while empty,
// then a flat `[key, handler, key, handler, …]` array for up to 8 keys (exactly sized: 48 + 16
// bytes per key, a third to a half of a Map; a linear scan of a few keys is at least as fast as
// Map#get), then a Map. Idle connections are the common case, so a connection with one or two
// handlers must cost little memory. Also the types of the handlers kept.

import type { Connection as PublicConnection, MessageContext, RequestContext, UntypedContract } from './types'

/** The connection as handlers see it: the untyped instantiation of the public interface. */
export type Conn = PublicConnection<UntypedContract, unknown>

/** `onMessage` handlers (the connection's or the namespace's). */
export type MessageFn = (data: unknown, ctx: MessageContext<Conn>) => unknown
/** `onRawMessage` handlers (raw-mode namespaces). */
export type RawFn = (data: string | Uint8Array, conn: Conn) => unknown
/** What handles an inbound message: a message handler, or a raw one in raw-mode namespaces. */
export type InboundHandler = MessageFn | RawFn
/** `onRequest` handlers. */
export type RequestFn = (input: unknown, ctx: RequestContext<Conn>) => unknown
/** What runs a queued message or request. */
export type Handler = InboundHandler | RequestFn
/** `onClose` handlers: one function, or an array once there are more (a non-function goes in an array too). */
export type CloseFn = (code: number, reason: string) => unknown
export type CloseSlot = CloseFn | CloseFn[]

/** Handler key for raw-mode namespaces (no envelope). */
export const RAW: unique symbol = Symbol('raw')
/** Handler-store key of the `onClose` handlers: one function, or an array of them. */
export const CLOSE: unique symbol = Symbol('close')

export type HandlerKey = string | typeof RAW | typeof CLOSE

/** A store: empty, flat pairs, or a Map once it has more than 8 keys. */
export type HandlerStore<V> = null | Array<HandlerKey | V> | Map<HandlerKey, V>

/** Array length (2 per key) up to which a store stays flat. */
const FLAT_MAX = 16

export function storeGet<V>(store: HandlerStore<V> | undefined, key: HandlerKey): V | undefined {
  if (!store) return undefined
  if (!Array.isArray(store)) return store.get(key)
  for (let i = 0; i < store.length; i += 2) if (store[i] === key) return store[i + 1] as V
  return undefined
}

/** Sets `key` to `value`; returns the store to keep (a new one when it had to grow). */
export function storeSet<V>(store: HandlerStore<V> | undefined, key: HandlerKey, value: V): HandlerStore<V> {
  if (!store) return [key, value]
  if (!Array.isArray(store)) return store.set(key, value)
  const n = store.length
  for (let i = 0; i < n; i += 2) {
    if (store[i] === key) {
      store[i + 1] = value
      return store
    }
  }
  if (n < FLAT_MAX) return store.concat([key, value]) // push would over-allocate (n + n/2 + 16 slots)
  const map = new Map<HandlerKey, V>()
  for (let i = 0; i < n; i += 2) map.set(store[i] as HandlerKey, store[i + 1] as V)
  return map.set(key, value)
}
