'use strict'
// Which native binary this process needs, named the way napi-rs names them: the platform package
// `ferrosocket-<key>` and the file `ferrosocket.<key>.node`. Used by the loader (lib/native.js)
// and by scripts/pack.js and scripts/build-native.js.

const PACKAGE = 'ferrosocket'

/** napi-rs platform key of this process: `linux-x64-gnu`, `linux-arm64-musl`, `darwin-arm64`, … */
function platformKey() {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`
  const glibc = process.report?.getReport?.()?.header?.glibcVersionRuntime
  return `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`
}

/** Key of a Rust target triple (`x86_64-unknown-linux-gnu` → `linux-x64-gnu`), null if unknown. */
function keyOfTriple(triple) {
  const [arch, , os, abi] = triple.split('-')
  const nodeArch = { x86_64: 'x64', aarch64: 'arm64' }[arch]
  if (!nodeArch) return null
  if (os === 'darwin') return `darwin-${nodeArch}`
  if (os === 'linux' && abi) return `linux-${nodeArch}-${abi}`
  return null
}

/** Keys this version has prebuilt packages for (package.json `napi.targets`). */
function supportedKeys() {
  try {
    return (require('../package.json').napi?.targets ?? []).map(keyOfTriple).filter(Boolean)
  } catch {
    return []
  }
}

module.exports = { PACKAGE, platformKey, keyOfTriple, supportedKeys }
