#!/usr/bin/env node
// The dependency rule: no two source files depend on each other, directly or through others.
// Reads the Rust sources (`crate::…`, `super::…`, `self::…` paths in src/**/*.rs) and the
// TypeScript layer (relative imports in ts/**/*.ts, and the entry points index.js/index.mjs, whose
// `./lib/…` requires stand for the ts/ sources lib/ is compiled from), prints each file's
// dependencies, and exits 1 with the cycles when there are any. Also checks that the browser-safe
// part imports nothing else: ts/protocol/ and ts/types.ts only each other; ts/client/ (but for the
// Node-only node.ts and *.node.ts) only those and each other. No Node module, no package, no other
// ts/ file; and every relative import of a browser-safe file names the `.js` file, since browsers
// load them as ES modules without a bundler (lib/client-esm/). Run by .ci/run.
//
//   node scripts/check-deps.mjs [--quiet]

import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

// CHECK_DEPS_ROOT: check another checkout (e.g. to see the rule fail on an older commit).
const ROOT = process.env.CHECK_DEPS_ROOT ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const quiet = process.argv.includes('--quiet')

/** Files under `dir` (recursively) whose name ends with `ext`. */
function files(dir, ext) {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? files(p, ext) : e.name.endsWith(ext) ? [p] : []
  })
}

const rel = (p) => path.relative(ROOT, p)

// ---- Rust -----------------------------------------------------------------------------------

const SRC = path.join(ROOT, 'src')

/** Module path (segments) of a source file: src/protocol/frame.rs → ['protocol', 'frame']. */
function modulePath(file) {
  const parts = path.relative(SRC, file).replace(/\.rs$/, '').split(path.sep)
  if (parts.at(-1) === 'mod' || parts.at(-1) === 'lib') parts.pop()
  return parts
}

/** The file that defines the longest existing prefix of `segments`, or null. */
function resolveModule(segments) {
  for (let k = segments.length; k > 0; k--) {
    const base = path.join(SRC, ...segments.slice(0, k))
    for (const candidate of [`${base}.rs`, path.join(base, 'mod.rs')]) if (fs.existsSync(candidate)) return candidate
  }
  return null
}

function rustDeps(file) {
  const self = modulePath(file)
  const deps = new Set()
  let inTests = false
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    const line = raw.replace(/\/\/.*$/, '')
    if (/^\s*mod tests\s*\{/.test(line)) inTests = true // `super::` there is this very file
    // `crate::a::{b::X, c}` is `crate::a::b::X` and `crate::a::c` (one level of braces).
    const paths = line.replace(/\b(crate|super|self)((?:::\w+)*)::\{([^{}]*)\}/g, (_, head, mid, items) =>
      items.split(',').map((item) => `${head}${mid}::${item.trim()}`).join(' '),
    )
    for (const m of paths.matchAll(/\b(crate|super|self)((?:::\w+)+)/g)) {
      const rest = m[2].split('::').filter(Boolean)
      let base
      if (m[1] === 'crate') base = []
      else if (m[1] === 'self') base = self
      else if (inTests) continue
      else base = self.slice(0, -1)
      const target = resolveModule([...base, ...rest])
      if (target && target !== file) deps.add(target)
    }
  }
  return deps
}

// ---- TypeScript and the entry points -------------------------------------------------------

const TS = path.join(ROOT, 'ts')
const LIB = path.join(ROOT, 'lib')

/** Every module specifier a file names: `from '…'`, `import '…'`, `import('…')`, `require('…')`. */
function specifiers(file) {
  const text = fs.readFileSync(file, 'utf8').replace(/^\s*\/\/.*$/gm, '')
  const found = []
  for (const m of text.matchAll(/\bfrom\s+['"]([^'"]+)['"]|\bimport\s+['"]([^'"]+)['"]|\b(?:import|require)\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    found.push(m[1] ?? m[2] ?? m[3])
  }
  return found
}

/**
 * The source file a relative specifier of `file` names (`./x` → x.ts, x.js, x/index.ts …), or
 * null. The build output lib/ stands for its sources: `./lib/x` is ts/x.ts.
 */
function resolveSource(file, spec) {
  if (!spec.startsWith('./') && !spec.startsWith('../')) return null
  let target = path.resolve(path.dirname(file), spec)
  if (target === LIB || target.startsWith(LIB + path.sep)) target = path.join(TS, path.relative(LIB, target))
  const base = target.replace(/\.(js|cjs|mjs)$/, '')
  const candidates = [target, `${base}.ts`, `${base}.d.ts`, `${target}.js`, `${target}.mjs`, `${target}.cjs`, path.join(target, 'index.ts'), path.join(target, 'index.js')]
  return candidates.find((p) => fs.existsSync(p) && fs.statSync(p).isFile()) ?? null
}

function moduleDeps(file) {
  const deps = new Set()
  for (const spec of specifiers(file)) {
    const target = resolveSource(file, spec)
    if (target && target.startsWith(ROOT) && /\.(m?js|cjs|ts)$/.test(target)) deps.add(target)
  }
  return deps
}

/**
 * Browser-safe `files` may import only `allowed` files, each through a relative specifier ending
 * in `.js`: returns the offending imports.
 */
function browserSafetyViolations(files, allowed, rule) {
  const safe = new Set(allowed)
  const bad = []
  for (const file of files) {
    for (const spec of specifiers(file)) {
      const target = resolveSource(file, spec)
      if (!target || !safe.has(target)) bad.push(`${rel(file)} imports '${spec}' (${rule})`)
      else if (!spec.endsWith('.js')) bad.push(`${rel(file)} imports '${spec}': name the .js file ('${spec}.js'), browsers resolve no extensions`)
    }
  }
  return bad
}

// ---- cycles (Tarjan's strongly connected components) -----------------------------------------

function cycles(graph) {
  let index = 0
  const stack = []
  const state = new Map()
  const found = []
  const visit = (v) => {
    state.set(v, { index, low: index, onStack: true })
    index++
    stack.push(v)
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue
      if (!state.has(w)) {
        visit(w)
        state.get(v).low = Math.min(state.get(v).low, state.get(w).low)
      } else if (state.get(w).onStack) {
        state.get(v).low = Math.min(state.get(v).low, state.get(w).index)
      }
    }
    if (state.get(v).low === state.get(v).index) {
      const component = []
      let w
      do {
        w = stack.pop()
        state.get(w).onStack = false
        component.push(w)
      } while (w !== v)
      if (component.length > 1) found.push(component)
    }
  }
  for (const v of graph.keys()) if (!state.has(v)) visit(v)
  return found
}

function check(label, graph) {
  if (!quiet) {
    console.log(`${label}:`)
    for (const [file, deps] of [...graph].sort(([a], [b]) => a.localeCompare(b))) {
      console.log(`  ${rel(file)} → ${[...deps].map(rel).sort().join(', ') || '(nothing)'}`)
    }
  }
  const found = cycles(graph)
  for (const component of found) console.error(`${label}: cycle among ${component.map(rel).sort().join(', ')}`)
  return found.length
}

// lib.rs only declares modules; the others are the graph.
const rust = new Map(files(SRC, '.rs').filter((f) => rel(f) !== path.join('src', 'lib.rs')).map((f) => [f, rustDeps(f)]))
const tsFiles = [path.join(ROOT, 'index.js'), path.join(ROOT, 'index.mjs'), path.join(ROOT, 'client.mjs'), ...files(TS, '.ts')].filter((f) => fs.existsSync(f))
const ts = new Map(tsFiles.map((f) => [f, moduleDeps(f)]))

let bad = check('Rust (src/)', rust) + check('TypeScript (ts/) and the entry points', ts)
const protocolSafe = [...files(path.join(TS, 'protocol'), '.ts'), path.join(TS, 'types.ts')].filter((f) => fs.existsSync(f))
// The client's Node-only files: its Node entry and whatever is named *.node.ts (the default transport).
const nodeOnly = (f) => path.basename(f) === 'node.ts' || f.endsWith('.node.ts')
const clientSafe = files(path.join(TS, 'client'), '.ts').filter((f) => !nodeOnly(f))
const browserSafe = [...protocolSafe, ...clientSafe]
const unsafe = [
  ...browserSafetyViolations(protocolSafe, protocolSafe, 'ts/protocol/ and ts/types.ts may import only each other'),
  ...browserSafetyViolations(clientSafe, browserSafe, 'ts/client/ may import only ts/protocol/, ts/types.ts and its own browser-safe files'),
]
for (const line of unsafe) console.error(`browser-safe: ${line}`)
if (!quiet) console.log(`browser-safe (no Node module, no package, nothing else of ts/): ${browserSafe.map(rel).sort().join(', ')}`)
bad += unsafe.length
if (bad > 0) {
  console.error(`${bad} problem(s): no two source files may depend on each other, directly or through others; the browser-safe files may import only each other`)
  process.exit(1)
}
console.log(`no dependency cycles among ${rust.size} Rust and ${ts.size} TypeScript/JS source files; ${browserSafe.length} browser-safe files import only each other`)
