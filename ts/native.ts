// Loads the native addon through the generated loader (binding.js), which tries a locally built
// `ferrosocket.<platform>.node` next to it first, then the platform package
// `ferrosocket-<platform>` (an optionalDependency of the published package). When neither loads,
// the error says what was looked for and how to get a binary, instead of the generic hint.
//
// The binding's types are the generated binding.d.ts: every call into Rust is checked against it.

import { PACKAGE, platformKey, supportedKeys } from './platform'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'

/** The generated N-API surface (binding.d.ts). */
export type NativeBinding = typeof import('../binding')
export type { AudienceParts, NativeServer, ServerOptions as NativeServerOptions, NamespaceOptions as NativeNamespaceOptions } from '../binding'
export type { NativeClientPool, ClientConnectOptions as NativeClientConnectOptions, ClientPoolOptions as NativeClientPoolOptions } from '../binding'

const ROOT = join(__dirname, '..')

/** Whether this is a development checkout (Rust sources and the CLI that builds them are here). */
function isCheckout(): boolean {
  return existsSync(join(ROOT, '.git')) || existsSync(join(ROOT, 'node_modules', '@napi-rs', 'cli'))
}

function explain(cause: unknown): Error & { code: string } {
  const key = platformKey()
  const pkg = `${PACKAGE}-${key}`
  const local = join(ROOT, `${PACKAGE}.${key}.node`)
  let installed: string | null = null
  try {
    installed = dirname(require.resolve(`${pkg}/package.json`))
  } catch {}
  const supported = supportedKeys()
  const lines = [
    `ferrosocket: no native binary could be loaded for this platform: ${key} (${process.platform}, ${process.arch}${process.platform === 'linux' ? `, ${key.endsWith('gnu') ? 'glibc' : 'musl'}` : ''}, Node ${process.version}).`,
    'Looked for:',
    `  - the platform package ${pkg}: ${installed ? `installed at ${installed} but it failed to load (see the cause below)` : 'not installed'}`,
    `  - a binary built from source: ${local} (${existsSync(local) ? 'present but it failed to load, see the cause below' : 'absent'})`,
    supported.includes(key)
      ? `Prebuilt packages exist for ${supported.join(', ')}. Install ${pkg} at the same version as ferrosocket (npm installs it by itself unless optional dependencies are omitted, e.g. --omit=optional, or the lockfile was made on another platform).`
      : `No prebuilt package exists for ${key}; prebuilt: ${supported.join(', ') || 'none'}.`,
    isCheckout()
      ? 'In a checkout of the repository, build it with: npm run build'
      : `To build it from source (needs a Rust toolchain, https://rustup.rs; crates come from crates.io): node ${join(ROOT, 'scripts', 'build-native.js')}`,
  ]
  const error = new Error(lines.join('\n')) as Error & { code: string }
  error.code = 'FERROSOCKET_NO_NATIVE_BINARY'
  // The generated loader's own message blames an npm bug, which sends users the wrong way; keep
  // only the load errors it chained underneath (one per candidate it tried).
  error.cause = cause instanceof Error && /npm has a bug/.test(cause.message) && cause.cause ? cause.cause : cause
  return error
}

function load(): NativeBinding {
  try {
    // The one untyped value: what `require` returns is the module binding.d.ts describes.
    return require('../binding.js')
  } catch (cause) {
    throw explain(cause)
  }
}

export const binding: NativeBinding = load()
