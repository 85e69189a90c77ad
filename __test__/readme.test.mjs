// Every code block in README.md compiles: ```ts blocks are type-checked by tsc (strict, nodenext,
// importing 'ferrosocket' through the package's own `exports`), ```js blocks are parsed by node.
//
// Conventions the README follows:
// - A block whose first line is `// … continuing the example above` is appended to the block
//   before it (same language) and checked together with it.
// - Names an example leaves to the application (a session store, a NestJS app) are declared in
//   PRELUDE below; everything else a block uses it must import or define itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
// Inside the package directory, so `import … from 'ferrosocket'` resolves to this package.
const OUT = path.join(ROOT, 'target', 'readme-blocks')

const PRELUDE = `// Stand-ins for what README examples leave to the application.
declare const chat: import('ferrosocket').UntypedContract
declare const contract: import('ferrosocket').UntypedContract
declare const sessions: {
  verify(token: string | undefined): Promise<{ userId: string; role: 'admin' | 'member'; banned: boolean } | null>
}
declare const app: { getHttpServer(): { on(event: 'upgrade', listener: (req: any, socket: any, head: any) => void): void }; listen(port: number): Promise<void> }
declare const broker: { publish(channel: string, text: string): Promise<void>; subscribe(channel: string, on: (text: string) => void): () => void }
declare const Fastify: any
declare const express: any
declare const http: any
`

/** The fenced blocks of `markdown` in `langs`, continuations merged: `[{ lang, code, line }]`. */
export function readmeBlocks(markdown, langs) {
  const blocks = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)\s*$/.exec(lines[i])
    if (!open) continue
    const start = i + 1
    let end = start
    while (end < lines.length && lines[end] !== '```') end++
    const code = lines.slice(start, end).join('\n')
    i = end
    if (!langs.includes(open[1])) continue
    const previous = blocks.at(-1)
    if (/^\/\/ … continuing/.test(code) && previous?.lang === open[1]) previous.code += `\n${code}`
    else blocks.push({ lang: open[1], code, line: start + 1 })
  }
  return blocks
}

const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')

test('README: every ts block type-checks under strict nodenext', () => {
  const blocks = readmeBlocks(readme, ['ts'])
  assert.ok(blocks.length >= 5, `expected the README's TypeScript examples, found ${blocks.length}`)
  fs.rmSync(OUT, { recursive: true, force: true })
  fs.mkdirSync(OUT, { recursive: true })
  fs.writeFileSync(path.join(OUT, 'prelude.d.ts'), PRELUDE)
  for (const [i, block] of blocks.entries()) {
    // `export {}` makes each block a module of its own (top-level await, no shared names).
    fs.writeFileSync(path.join(OUT, `block-${i}-line-${block.line}.mts`), `${block.code}\nexport {}\n`)
  }
  fs.writeFileSync(
    path.join(OUT, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom'], types: [], skipLibCheck: false },
      include: ['./*.mts', './prelude.d.ts'],
    }),
  )
  const tsc = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', OUT], { encoding: 'utf8' })
  assert.equal(tsc.status, 0, `tsc found errors in README blocks (files in ${OUT}):\n${tsc.stdout}${tsc.stderr}`)
})

test('README: every js block parses', () => {
  const blocks = readmeBlocks(readme, ['js'])
  assert.ok(blocks.length >= 3, `expected the README's JavaScript examples, found ${blocks.length}`)
  fs.mkdirSync(OUT, { recursive: true })
  for (const [i, block] of blocks.entries()) {
    const file = path.join(OUT, `block-${i}-line-${block.line}.${/\brequire\(/.test(block.code) ? 'cjs' : 'mjs'}`)
    fs.writeFileSync(file, block.code)
    const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' })
    assert.equal(check.status, 0, `README line ${block.line}: ${check.stderr}`)
  }
})

test('README block extraction merges continuations and skips other languages', () => {
  const md = ['```ts', 'const a = 1', '```', 'text', '```sh', 'npm test', '```', '```ts', '// … continuing the example above', 'a + 1', '```'].join('\n')
  assert.deepEqual(readmeBlocks(md, ['ts']), [{ lang: 'ts', code: 'const a = 1\n// … continuing the example above\na + 1', line: 2 }])
})
