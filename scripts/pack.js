#!/usr/bin/env node
'use strict'
// `npm run pack`: installable tarballs for this machine's platform, in the napi-rs release layout.
//
//   dist/ferrosocket-<version>.tgz                 JS, typings, Rust sources (for build-from-source),
//                                                  no binary; lists every platform package of
//                                                  npm/<key> as an optionalDependency, same version
//   dist/ferrosocket-<key>-<version>.tgz           the release `.node` for this platform
//
// Install both into an app (`npm install ./ferrosocket-*.tgz`); no install script runs or is needed.
// The repository's own package.json does not list the platform packages (they are not on the
// registry, and the checkout loads its locally built binary); they are added here, as
// `napi prepublish` does for a registry release.

const { execFileSync } = require('child_process')
const fs = require('fs')
const path = require('path')

const root = path.join(__dirname, '..')
const dist = path.join(root, 'dist')
const stage = path.join(dist, 'stage')
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'))

const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' })

// 1. The release binary for this platform (a no-op when it is up to date) and the JS layer
//    (lib/, compiled from ts/): both are build outputs the main package ships.
execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' })
const { PACKAGE, platformKey, keyOfTriple } = require('../lib/platform')
const key = platformKey()
const binary = `${PACKAGE}.${key}.node`
if (!fs.existsSync(path.join(root, binary))) throw new Error(`the build did not produce ${binary}`)

fs.rmSync(stage, { recursive: true, force: true })
fs.mkdirSync(stage, { recursive: true })

// 2. The platform package: npm/<key>/package.json (version checked) + the binary.
const platformDir = path.join(root, 'npm', key)
if (!fs.existsSync(platformDir)) throw new Error(`no npm/${key}: this platform is not among package.json napi.targets`)
const platformPkg = JSON.parse(fs.readFileSync(path.join(platformDir, 'package.json'), 'utf8'))
if (platformPkg.version !== pkg.version) throw new Error(`npm/${key}/package.json is at ${platformPkg.version}, ferrosocket at ${pkg.version}`)
const platformStage = path.join(stage, key)
fs.mkdirSync(platformStage)
for (const file of ['package.json', 'README.md']) fs.copyFileSync(path.join(platformDir, file), path.join(platformStage, file))
fs.copyFileSync(path.join(root, binary), path.join(platformStage, binary))

// 3. The main package: what `files` names, with the platform packages as optionalDependencies.
const mainStage = path.join(stage, 'main')
fs.mkdirSync(mainStage)
for (const entry of [...pkg.files, 'README.md', 'LICENSE']) {
  const from = path.join(root, entry)
  if (fs.existsSync(from)) fs.cpSync(from, path.join(mainStage, entry), { recursive: true })
}
const optionalDependencies = {}
for (const triple of pkg.napi.targets) {
  const k = keyOfTriple(triple)
  if (!fs.existsSync(path.join(root, 'npm', k))) throw new Error(`napi.targets names ${triple} but npm/${k} does not exist`)
  optionalDependencies[`${PACKAGE}-${k}`] = pkg.version
}
// The repository's `engines` is what its dev tools need (@napi-rs/cli: Node 20.17); the package
// itself runs on any Node 20.
const published = { ...pkg, engines: { node: '>= 20' }, optionalDependencies, scripts: { 'build:native': 'node scripts/build-native.js' } }
delete published.devDependencies
fs.writeFileSync(path.join(mainStage, 'package.json'), JSON.stringify(published, null, 2) + '\n')
for (const file of fs.readdirSync(mainStage)) {
  if (file.endsWith('.node')) throw new Error(`the main package must not carry a binary (${file})`)
}

// 4. Tarballs.
const tarballs = [mainStage, platformStage].map((dir) => path.join(dist, run('npm', ['pack', '--silent', '--pack-destination', dist], dir).trim().split('\n').pop()))
fs.rmSync(stage, { recursive: true, force: true })
for (const t of tarballs) console.log(t)
