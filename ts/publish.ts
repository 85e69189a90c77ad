// Publishing: validate and serialise once in JS, whatever the audience; Rust fans the one
// encoded frame out. Also the conversions of an audience's members for the native call.

import { validateOutbound, type NormalisedContract } from './protocol/contract'
import { encodeEvent, type EnvelopeMeta } from './protocol/envelope'
import type { Audience, BusAudience } from './types'

/** Validates and serialises one outbound envelope: once per publish, whatever the audience. */
export function serialise(contract: NormalisedContract | null, event: unknown, data: unknown, meta?: EnvelopeMeta): string {
  if (typeof event !== 'string' || event === '') throw new TypeError('event must be a non-empty string')
  return encodeEvent(event, validateOutbound(contract, event, data), meta)
}

/** Room or user names of an audience. */
export function strings(names: Iterable<unknown> | undefined): string[] {
  return Array.from(names ?? [], String)
}

/**
 * Native ids of the connection ids of an audience that belong to this node (`localId` answers
 * undefined for the others: ids of other nodes match nothing here; a cluster bus will carry them
 * to their node).
 */
export function localIds(ids: Iterable<unknown> | undefined, localId: (id: unknown) => number | undefined): number[] {
  return Array.from(ids ?? [], localId).filter((n): n is number => n !== undefined)
}

/** The connection ids of an audience that belong to other nodes (not starting with `ownPrefix`). */
export function remoteIds(ids: Iterable<unknown> | undefined, ownPrefix: string): string[] {
  return Array.from(ids ?? [], String).filter((id) => !id.startsWith(ownPrefix))
}

/** An application's audience in the form that crosses nodes: arrays of names and global ids. */
export function globalAudience(audience: Audience): BusAudience {
  return {
    rooms: strings(audience.rooms),
    users: strings(audience.users),
    connections: strings(audience.connections),
    except: strings(audience.except),
  }
}
