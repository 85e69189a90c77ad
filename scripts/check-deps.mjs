#!/usr/bin/env node
// The dependency rule: no two source files depend on each other, directly or through others.
// Reads the Rust sources (`crate::…`, `super::…`, `self::…` paths in src/**/*.rs) and the JS layer
// (`require('./…')` in index.js and lib/*.js), prints each file's dependencies, and exits 1 with
// the cycles when there are any. Run by .ci/run.
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

// ---- JS -------------------------------------------------------------------------------------

function jsDeps(file) {
  const deps = new Set()
  for (const m of fs.readFileSync(file, 'utf8').matchAll(/require\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)|from\s+['"](\.{1,2}\/[^'"]+)['"]/g)) {
    let target = path.resolve(path.dirname(file), m[1] ?? m[2])
    if (!fs.existsSync(target) || fs.statSync(target).isDirectory()) {
      target = ['.js', '.mjs', '.cjs', '.ts', '/index.js'].map((e) => target + e).find((p) => fs.existsSync(p)) ?? target
    }
    if (target.startsWith(ROOT) && fs.existsSync(target) && /\.(m?js|cjs|ts)$/.test(target)) deps.add(target)
  }
  return deps
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
const jsFiles = [path.join(ROOT, 'index.js'), path.join(ROOT, 'index.mjs'), ...files(path.join(ROOT, 'lib'), '.js'), ...files(path.join(ROOT, 'lib'), '.ts')].filter((f) => fs.existsSync(f))
const js = new Map(jsFiles.map((f) => [f, jsDeps(f)]))

const bad = check('Rust (src/)', rust) + check('JS (index, lib/)', js)
if (bad > 0) {
  console.error(`${bad} dependency cycle(s): no two source files may depend on each other, directly or through others`)
  process.exit(1)
}
console.log(`no dependency cycles among ${rust.size} Rust and ${js.size} JS source files`)
