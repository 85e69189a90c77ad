// Installable into any Node app: `npm run pack`, then a fresh app outside the repository installs
// the tarballs with npm's defaults and uses ferrosocket from CommonJS and from strict ESM
// TypeScript, the typed client (native transport) and the AsyncAPI command; without its platform package, requiring it fails with an error that says why.
// Needs the npm registry (the app installs ws, zod, typescript and @types/node from it).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const VERSION = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version
const LIFECYCLE = ['preinstall', 'install', 'postinstall', 'prepare', 'prepack', 'postpack']
const apps = []
let main
let platform

const npm = (args, cwd) => {
  const started = Date.now()
  const r = spawnSync('npm', args, { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false' } })
  assert.equal(r.status, 0, `npm ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`)
  return { ...r, ms: Date.now() - started }
}

function newApp(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ferrosocket-${name}-`))
  apps.push(dir)
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }, null, 2))
  return dir
}

before(() => {
  const started = Date.now()
  const out = execFileSync('npm', ['run', '--silent', 'pack'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  const tarballs = out.trim().split('\n').filter((l) => l.endsWith('.tgz'))
  main = tarballs.find((t) => path.basename(t) === `ferrosocket-${VERSION}.tgz`)
  platform = tarballs.find((t) => t !== main)
  assert.ok(main && platform, `npm run pack printed ${out}`)
  console.log(`# npm run pack: ${Date.now() - started} ms → ${tarballs.map((t) => path.basename(t)).join(', ')}`)
})

after(() => {
  for (const dir of apps) fs.rmSync(dir, { recursive: true, force: true })
})

test('the tarballs: main package without a binary but with the Rust sources, platform package with one, versions matched', () => {
  const list = (tgz) => execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).trim().split('\n')
  const mainFiles = list(main)
  assert.ok(!mainFiles.some((f) => f.endsWith('.node')), 'no .node in the main package')
  for (const f of ['package/index.js', 'package/index.mjs', 'package/index.d.ts', 'package/binding.js', 'package/lib/native.js', 'package/scripts/build-native.js', 'package/Cargo.toml', 'package/src/lib.rs']) {
    assert.ok(mainFiles.includes(f), `${f} in the main package`)
  }
  const mainPkg = JSON.parse(execFileSync('tar', ['-xzOf', main, 'package/package.json'], { encoding: 'utf8' }))
  const platformPkg = JSON.parse(execFileSync('tar', ['-xzOf', platform, 'package/package.json'], { encoding: 'utf8' }))
  assert.equal(mainPkg.optionalDependencies[platformPkg.name], VERSION)
  assert.equal(platformPkg.version, VERSION)
  assert.ok(list(platform).some((f) => f.endsWith('.node')), 'the platform package carries the binary')
  for (const pkg of [mainPkg, platformPkg]) {
    for (const script of LIFECYCLE) assert.equal(pkg.scripts?.[script], undefined, `${pkg.name} must not need a ${script} script`)
  }
})

const CONTRACT = `
const chat = defineContract({
  in: { 'chat:send': z.object({ text: z.string() }) },
  out: { 'chat:message': z.object({ text: z.string(), from: z.string() }) },
  requests: { add: { input: z.object({ a: z.number(), b: z.number() }), output: z.number() } },
})`

const ROUND_TRIP = `
const server = createServer({ host: '127.0.0.1', port: 0, contract: chat })
server.onMessage('chat:send', (data, { conn }) => conn.publish('chat:message', { text: data.text, from: conn.id }))
server.onRequest('add', ({ a, b }) => a + b)
await server.listen()
const ws = new WebSocket(\`ws://127.0.0.1:\${server.port}/ws\`)
const inbox: unknown[] = []
let wake = () => {}
ws.on('message', (m) => { inbox.push(JSON.parse(String(m))); wake() })
const next = () => new Promise<any>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('no message within 5 s')), 5000)
  const check = () => { if (inbox.length) { clearTimeout(timer); resolve(inbox.shift()) } else wake = check }
  check()
})
await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
ws.send(JSON.stringify({ event: 'chat:send', data: { text: 'hi' } }))
const message = await next()
ws.send(JSON.stringify({ event: 'add', data: { a: 2, b: 3 }, id: 1 }))
const reply = await next()
ws.close()
await server.shutdown()
console.log(JSON.stringify({ message, reply }))
`

function assertRoundTrip(stdout) {
  const { message, reply } = JSON.parse(stdout.trim().split('\n').pop())
  assert.equal(message.event, 'chat:message')
  assert.equal(message.data.text, 'hi')
  assert.deepEqual(reply, { id: 1, data: 5 })
}

test('a fresh app installs both tarballs with plain npm install and uses them from CJS and from strict ESM TypeScript', () => {
  const dir = newApp('app')
  const deps = npm(['install', '--no-audit', '--no-fund', 'ws@8', 'zod@4', 'typescript@5.9', '@types/node@20', '@types/ws@8'], dir)
  const install = npm(['install', '--no-audit', '--no-fund', main, platform], dir)
  console.log(`# app: npm install of the two tarballs ${install.ms} ms (dependencies from the registry first: ${deps.ms} ms)`)
  assert.doesNotMatch(install.stderr, /install-scripts|EBADENGINE/, install.stderr)
  for (const name of ['ferrosocket', path.basename(platform).replace(`-${VERSION}.tgz`, '')]) {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', name, 'package.json'), 'utf8'))
    assert.equal(pkg.version, VERSION)
  }

  // (1) CommonJS, plain JavaScript.
  const cjs = ROUND_TRIP.replace(/: unknown\[\]/, '').replace(/<any>/, '')
  fs.writeFileSync(
    path.join(dir, 'app.cjs'),
    `const { createServer, defineContract } = require('ferrosocket')\nconst { z } = require('zod')\nconst WebSocket = require('ws')\n${CONTRACT}\n;(async () => {${cjs}})().catch((e) => { console.error(e); process.exit(1) })\n`,
  )
  const runCjs = spawnSync(process.execPath, ['app.cjs'], { cwd: dir, encoding: 'utf8', timeout: 20_000 })
  assert.equal(runCjs.status, 0, runCjs.stderr)
  assertRoundTrip(runCjs.stdout)

  // (2) ESM TypeScript under --strict, module nodenext: named imports, typed handlers.
  fs.writeFileSync(
    path.join(dir, 'app.mts'),
    `import { createServer, defineContract, RequestError } from 'ferrosocket'\nimport { z } from 'zod'\nimport WebSocket from 'ws'\n${CONTRACT}\n` +
      `// @ts-expect-error: not an event of the contract\nconst wrong = () => createServer({ contract: chat }).onMessage('chat:nope', () => {})\nvoid wrong\nvoid RequestError\n${ROUND_TRIP}`,
  )
  fs.writeFileSync(
    path.join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', types: ['node'], outDir: 'out', skipLibCheck: false }, files: ['app.mts', 'client.mts'] }),
  )
  // (3) The typed client (ferrosocket/client, its native transport) from the same contract.
  fs.writeFileSync(
    path.join(dir, 'client.mts'),
    `import { createServer, defineContract } from 'ferrosocket'\nimport { createClient } from 'ferrosocket/client'\nimport { z } from 'zod'\n${CONTRACT}\n` +
      `const server = createServer({ host: '127.0.0.1', port: 0, contract: chat })\n` +
      `server.onMessage('chat:send', (data, { conn }) => conn.publish('chat:message', { text: data.text, from: conn.id }))\n` +
      `server.onRequest('add', ({ a, b }) => a + b)\nawait server.listen()\n` +
      `const client = createClient(chat, \`ws://127.0.0.1:\${server.port}/ws\`)\n` +
      `// @ts-expect-error: not an event of the contract's "in"\nconst wrong = () => client.emit('chat:nope', {})\nvoid wrong\n` +
      `const message = new Promise<{ text: string; from: string }>((resolve) => client.on('chat:message', (data) => resolve(data)))\n` +
      `await client.opened()\nclient.emit('chat:send', { text: 'hi' })\nconst sum: number = await client.request('add', { a: 2, b: 3 })\n` +
      `console.log(JSON.stringify({ message: await message, sum }))\nawait client.close()\nawait server.shutdown()\n`,
  )
  const tsc = spawnSync(process.execPath, [path.join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' })
  assert.equal(tsc.status, 0, `tsc --strict:\n${tsc.stdout}${tsc.stderr}`)
  const runEsm = spawnSync(process.execPath, ['out/app.mjs'], { cwd: dir, encoding: 'utf8', timeout: 20_000 })
  assert.equal(runEsm.status, 0, runEsm.stderr)
  assertRoundTrip(runEsm.stdout)
  const runClient = spawnSync(process.execPath, ['out/client.mjs'], { cwd: dir, encoding: 'utf8', timeout: 20_000 })
  assert.equal(runClient.status, 0, runClient.stderr)
  const { message, sum } = JSON.parse(runClient.stdout.trim().split('\n').pop())
  assert.equal(message.text, 'hi')
  assert.equal(sum, 5)

  // (4) The contract exported as AsyncAPI by the package's command.
  fs.writeFileSync(path.join(dir, 'contract.mjs'), `import { defineContract } from 'ferrosocket'\nimport { z } from 'zod'\n${CONTRACT}\nexport default chat\n`)
  const asyncapi = spawnSync('npx', ['--no-install', 'ferrosocket', 'asyncapi', './contract.mjs', '--title', 'Chat', '--version', '1.0.0'], { cwd: dir, encoding: 'utf8', timeout: 30_000 })
  assert.equal(asyncapi.status, 0, asyncapi.stderr)
  const doc = JSON.parse(asyncapi.stdout)
  assert.equal(doc.asyncapi, '3.0.0')
  const names = Object.values(doc.components.messages).map((m) => m.name)
  assert.ok(names.includes('chat:send') && names.includes('chat:message'), names.join(', '))
})

test('without its platform package, require("ferrosocket") says which platform it looked for and how to build one', () => {
  const dir = newApp('no-binary')
  npm(['install', '--no-audit', '--no-fund', main], dir)
  const r = spawnSync(process.execPath, ['-e', "require('ferrosocket')"], { cwd: dir, encoding: 'utf8' })
  assert.notEqual(r.status, 0)
  const key = path.basename(platform).replace(/^ferrosocket-/, '').replace(`-${VERSION}.tgz`, '')
  assert.match(r.stderr, new RegExp(`no native binary could be loaded for this platform: ${key}`))
  assert.match(r.stderr, new RegExp(`the platform package ferrosocket-${key}: not installed`))
  assert.match(r.stderr, /ferrosocket\.[\w-]+\.node \(absent\)/)
  assert.match(r.stderr, /node \S+scripts\/build-native\.js/)
  assert.doesNotMatch(r.stderr, /npm has a bug/)
  const esm = spawnSync(process.execPath, ['--input-type=module', '-e', "import { createServer } from 'ferrosocket'"], { cwd: dir, encoding: 'utf8' })
  assert.notEqual(esm.status, 0)
  assert.match(esm.stderr, /FERROSOCKET_NO_NATIVE_BINARY|no native binary could be loaded/)

  // The command the error names builds the addon from the sources in the installed package.
  const started = Date.now()
  const build = spawnSync(process.execPath, [path.join(dir, 'node_modules', 'ferrosocket', 'scripts', 'build-native.js')], { cwd: dir, encoding: 'utf8' })
  assert.equal(build.status, 0, build.stderr)
  console.log(`# build from source in the installed package: ${Date.now() - started} ms`)
  const loaded = spawnSync(process.execPath, ['-e', "const { createServer } = require('ferrosocket'); createServer({ port: 0 }).shutdown().then(() => console.log('loaded'))"], { cwd: dir, encoding: 'utf8' })
  assert.equal(loaded.status, 0, loaded.stderr)
  assert.equal(loaded.stdout.trim(), 'loaded')
})
