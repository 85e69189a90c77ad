// Which native binary this process needs, named the way napi-rs names them: the platform package
// `ferrosocket-<key>` and the file `ferrosocket.<key>.node`. Used by the loader (native.ts) and by
// scripts/pack.js and scripts/build-native.js (through lib/platform.js).

export const PACKAGE = 'ferrosocket'

/** The part of a diagnostic report this reads (Node types `getReport()` as a plain object). */
interface ReportHeader {
  header?: { glibcVersionRuntime?: string }
}

/** napi-rs platform key of this process: `linux-x64-gnu`, `linux-arm64-musl`, `darwin-arm64`, … */
export function platformKey(): string {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`
  const report = process.report?.getReport?.() as ReportHeader | undefined
  const glibc = report?.header?.glibcVersionRuntime
  return `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`
}

const NODE_ARCH: Readonly<Record<string, string>> = { x86_64: 'x64', aarch64: 'arm64' }

/** Key of a Rust target triple (`x86_64-unknown-linux-gnu` → `linux-x64-gnu`), null if unknown. */
export function keyOfTriple(triple: string): string | null {
  const [arch = '', , os, abi] = triple.split('-')
  const nodeArch = NODE_ARCH[arch]
  if (!nodeArch) return null
  if (os === 'darwin') return `darwin-${nodeArch}`
  if (os === 'linux' && abi) return `linux-${nodeArch}-${abi}`
  return null
}

/** Keys this version has prebuilt packages for (package.json `napi.targets`). */
export function supportedKeys(): string[] {
  try {
    // A runtime require: package.json is read from the package root (lib/../package.json).
    const pkg: { napi?: { targets?: string[] } } = require('../package.json')
    return (pkg.napi?.targets ?? []).map(keyOfTriple).filter((key): key is string => Boolean(key))
  } catch {
    return []
  }
}
