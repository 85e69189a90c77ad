#!/usr/bin/env node
'use strict'
// Builds the native addon from the Rust sources shipped in this package, for platforms with no
// prebuilt `ferrosocket-<platform>` package (or to build your own). Needs only a Rust toolchain
// (https://rustup.rs); cargo fetches the crates from crates.io. Nothing else is downloaded.
//
//   node node_modules/ferrosocket/scripts/build-native.js
//
// Writes `ferrosocket.<platform>.node` into the package directory, where the loader finds it
// before any platform package. (In a repository checkout, `npm run build` does the same through
// the napi-rs CLI and also regenerates binding.js/binding.d.ts.)

const { spawnSync } = require('child_process')
const fs = require('fs')
const path = require('path')
const { PACKAGE, platformKey } = require('../lib/platform')

const root = path.join(__dirname, '..')
const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target')
const cargo = process.env.CARGO || 'cargo'

const built = spawnSync(cargo, ['build', '--release', '--lib', '--features', 'napi-addon', '--manifest-path', path.join(root, 'Cargo.toml')], {
  stdio: 'inherit',
  env: { ...process.env, CARGO_TARGET_DIR: targetDir },
})
if (built.error) {
  console.error(`ferrosocket: cannot run ${cargo} (${built.error.message}). Install Rust from https://rustup.rs and try again.`)
  process.exit(1)
}
if (built.status !== 0) process.exit(built.status ?? 1)

const library = { darwin: 'libferrosocket.dylib', linux: 'libferrosocket.so' }[process.platform]
if (!library) {
  console.error(`ferrosocket: ${process.platform} is not supported (the connection drivers need epoll or kqueue).`)
  process.exit(1)
}
const from = path.join(targetDir, 'release', library)
const to = path.join(root, `${PACKAGE}.${platformKey()}.node`)
fs.copyFileSync(from, to)
console.log(`ferrosocket: built ${to}`)
