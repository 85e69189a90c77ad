#!/usr/bin/env node
'use strict'
// The ferrosocket command line (README "Contract export (AsyncAPI)"):
//
//   ferrosocket asyncapi <module> [--title T] [--version V] [--description D] [--address /path]
//                                 [--server name=wss://host/path]… [--export name] [-o out.json]
//
// Loads <module> (CommonJS or ESM), takes the contract or server it exports (the default export,
// the one named by --export, or the only named export that is one) and prints its AsyncAPI 3.0.0
// document. Exit codes: 0 done, 1 the module or its export is missing or failed, 2 bad usage.

const fs = require('node:fs')
const path = require('node:path')
const { pathToFileURL } = require('node:url')
// lib/asyncapi.js needs no native addon: a module that exports only a contract works without one.
const { exportAsyncAPI } = require('../lib/asyncapi.js')

const USAGE = `Usage: ferrosocket asyncapi <module> [options]

Prints the AsyncAPI 3.0.0 document of the contract or server that <module> exports.

Options:
  --title T             info.title (default: the module's file name)
  --version V           info.version (default: 1.0.0)
  --description D       info.description
  --address /path       channel address of a bare contract (default: /)
  --server name=URL     a server, e.g. prod=wss://example.com/ws (repeatable)
  --export NAME         the export to use (default: the default export, or the only
                        named export that is a contract or a server)
  -o, --output FILE     write the document to FILE instead of stdout
  -h, --help            show this help`

class UsageError extends Error {}

function fail(message, code) {
  process.stderr.write(`ferrosocket: ${message}\n`)
  process.exit(code)
}

function parseArgs(argv) {
  const args = { servers: {} }
  const positional = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1
    const flag = eq > 0 ? arg.slice(0, eq) : arg
    const value = () => {
      if (eq > 0) return arg.slice(eq + 1)
      if (i + 1 >= argv.length) throw new UsageError(`${flag} needs a value`)
      return argv[++i]
    }
    switch (flag) {
      case '-h':
      case '--help':
        args.help = true
        break
      case '--title':
        args.title = value()
        break
      case '--version':
        args.version = value()
        break
      case '--description':
        args.description = value()
        break
      case '--address':
        args.address = value()
        break
      case '--export':
        args.export = value()
        break
      case '-o':
      case '--output':
        args.output = value()
        break
      case '--server': {
        const spec = value()
        const at = spec.indexOf('=')
        if (at <= 0) throw new UsageError(`--server expects name=URL, got "${spec}"`)
        args.servers[spec.slice(0, at)] = spec.slice(at + 1)
        break
      }
      default:
        if (arg.startsWith('-') && arg !== '-') throw new UsageError(`unknown option ${arg}`)
        positional.push(arg)
    }
  }
  return { args, positional }
}

const isObject = (value) => value !== null && typeof value === 'object'
const isServer = (value) => isObject(value) && Array.isArray(value._namespaces)
const isSchemaMap = (map) => isObject(map) && Object.values(map).every((s) => isObject(s) && isObject(s['~standard']))
const isRequestMap = (map) => isObject(map) && Object.values(map).every((r) => isObject(r) && isObject(r.input?.['~standard']) && isObject(r.output?.['~standard']))
/** A contract: at least one of its maps, and every map it has of the right shape. */
function isContract(value) {
  if (!isObject(value) || isServer(value)) return false
  const maps = [['in', isSchemaMap], ['out', isSchemaMap], ['requests', isRequestMap], ['clientRequests', isRequestMap]]
  const present = maps.filter(([key]) => value[key] !== undefined)
  return present.length > 0 && present.every(([key, check]) => check(value[key]))
}
const usable = (value) => isServer(value) || isContract(value)

/** The contract or server `ns` (a module namespace) exports. */
function pick(ns, name, file) {
  // A CommonJS module's exports are `default` (module.exports) and, when Node detects them, named exports.
  const cjs = isObject(ns.default) && !usable(ns.default) ? ns.default : {}
  if (name !== undefined) {
    const value = Object.prototype.hasOwnProperty.call(ns, name) ? ns[name] : cjs[name]
    if (value === undefined) throw new Error(`${file} has no export named "${name}"`)
    if (!usable(value)) throw new Error(`export "${name}" of ${file} is not a contract (defineContract) or a server (createServer)`)
    return value
  }
  if (usable(ns.default)) return ns.default
  const candidates = new Map()
  for (const source of [ns, cjs]) {
    for (const [key, value] of Object.entries(source)) if (key !== 'default' && usable(value)) candidates.set(key, value)
  }
  if (candidates.size === 1) return [...candidates.values()][0]
  if (candidates.size > 1) throw new Error(`${file} exports several contracts or servers (${[...candidates.keys()].join(', ')}): choose one with --export`)
  throw new Error(`no contract or server found in ${file}: export one (default export, or a named export chosen with --export)`)
}

async function asyncapi(argv) {
  const { args, positional } = parseArgs(argv)
  if (args.help) {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  if (positional.length !== 1) throw new UsageError('expected one module path')
  const file = path.resolve(positional[0])
  if (!fs.existsSync(file)) throw new Error(`cannot find module file ${positional[0]} (resolved to ${file})`)
  let ns
  try {
    ns = await import(pathToFileURL(file).href)
  } catch (error) {
    throw new Error(`loading ${positional[0]} failed: ${error?.stack ?? error}`)
  }
  const source = pick(ns, args.export, positional[0])
  const doc = exportAsyncAPI(source, {
    title: args.title ?? path.basename(file).replace(/\.[cm]?[jt]s$/, ''),
    version: args.version ?? '1.0.0',
    ...(args.description !== undefined ? { description: args.description } : {}),
    ...(args.address !== undefined ? { address: args.address } : {}),
    ...(Object.keys(args.servers).length > 0 ? { servers: args.servers } : {}),
  })
  const text = `${JSON.stringify(doc, null, 2)}\n`
  if (args.output !== undefined) {
    fs.writeFileSync(args.output, text)
    process.exit(0)
  }
  // Exit once written: the module may have left something running (a listening server).
  process.stdout.write(text, () => process.exit(0))
}

async function main(argv) {
  const [command, ...rest] = argv
  if (command === undefined) throw new UsageError('no command')
  if (command === '-h' || command === '--help') {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  if (command !== 'asyncapi') throw new UsageError(`unknown command "${command}" (commands: asyncapi)`)
  await asyncapi(rest)
}

main(process.argv.slice(2)).catch((error) => {
  if (error instanceof UsageError) fail(`${error.message}\n\n${USAGE}`, 2)
  fail(error instanceof Error ? error.message : String(error), 1)
})
