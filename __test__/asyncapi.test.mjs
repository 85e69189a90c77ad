// Contract export as AsyncAPI 3.0.0 (README "Contract export (AsyncAPI)"): exportAsyncAPI on a
// contract and on a server with namespaces, schemas that cannot be converted, and the
// `ferrosocket asyncapi` CLI. Every document is checked with the AsyncAPI parser
// (@asyncapi/parser, a devDependency): no diagnostic of error severity.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { Parser, DiagnosticSeverity } from '@asyncapi/parser'
import { createServer, defineContract, exportAsyncAPI } from '../index.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const BIN = path.join(HERE, '..', 'bin', 'ferrosocket.js')
const FIXTURE = path.join(HERE, 'fixtures', 'asyncapi-contract.mjs')

const parser = new Parser()

/** Parses `doc` (a copy: the parser resolves references in place); fails on any error diagnostic. */
async function parseValid(doc) {
  const { document, diagnostics } = await parser.parse(structuredClone(doc))
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error)
  assert.deepEqual(errors.map((d) => `${d.code} at ${d.path.join('/')}: ${d.message}`), [], 'AsyncAPI errors')
  assert.ok(document, 'the parser produced a document')
  return document
}

/** Follows a local `$ref` (`#/a/b`) in `doc`. */
function deref(doc, ref) {
  assert.match(ref, /^#\//)
  return ref.slice(2).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')).reduce((node, key) => {
    assert.ok(node && key in node, `${ref} resolves`)
    return node[key]
  }, doc)
}

/** The component message named `name` in channel `channelId`, followed through its $ref. */
function channelMessage(doc, channelId, name) {
  const found = Object.values(doc.channels[channelId].messages).map((m) => deref(doc, m.$ref)).filter((m) => m.name === name)
  assert.equal(found.length, 1, `one message named ${name} in channel ${channelId}`)
  return found[0]
}

const chat = defineContract({
  in: { 'chat:send': z.object({ room: z.string(), text: z.string().max(2000) }) },
  out: { 'chat:message': z.object({ room: z.string(), from: z.string(), text: z.string(), at: z.number().int().default(0) }) },
  requests: { 'room:join': { input: z.object({ room: z.string().min(1) }), output: z.object({ members: z.array(z.string()) }) } },
  clientRequests: { confirm: { input: z.object({ question: z.string() }), output: z.boolean() } },
})

test('a zod contract exports a valid AsyncAPI 3.0.0 document with channel, messages, operations and reply linkage', async () => {
  const doc = exportAsyncAPI(chat, {
    title: 'Chat',
    version: '2.1.0',
    description: 'The chat API.',
    address: '/chat',
    servers: { prod: 'wss://chat.example.com:8443/rt', dev: { host: 'localhost:8080', protocol: 'ws' } },
  })
  assert.equal(doc.asyncapi, '3.0.0')
  assert.deepEqual([doc.info.title, doc.info.version], ['Chat', '2.1.0'])
  assert.match(doc.info.description, /^The chat API\./)
  assert.deepEqual(doc.servers, {
    prod: { host: 'chat.example.com:8443', protocol: 'wss', pathname: '/rt' },
    dev: { host: 'localhost:8080', protocol: 'ws' },
  })
  assert.deepEqual(Object.keys(doc.channels), ['default'])
  assert.equal(doc.channels.default.address, '/chat')

  // Messages are named after the events; requests have a reply message each.
  const names = Object.values(doc.channels.default.messages).map((m) => deref(doc, m.$ref).name).sort()
  assert.deepEqual(names, ['chat:message', 'chat:send', 'confirm', 'confirm.reply', 'room:join', 'room:join.reply'])

  // The envelope of an `in` event, its data converted from zod (the input schema: what the server accepts).
  const send = channelMessage(doc, 'default', 'chat:send')
  assert.deepEqual(send.payload.properties.event, { const: 'chat:send' })
  const sendData = deref(doc, send.payload.properties.data.$ref)
  assert.equal(sendData.type, 'object')
  assert.deepEqual(sendData.required, ['room', 'text'])
  assert.equal(sendData.properties.text.maxLength, 2000)
  assert.equal(sendData.properties.text.type, 'string')
  assert.equal(sendData.$schema, undefined, 'no $schema inside the document')

  // An `out` event uses the output schema: a defaulted field is always there.
  const message = channelMessage(doc, 'default', 'chat:message')
  assert.deepEqual(message.payload.required, ['event', 'data'])
  assert.deepEqual(deref(doc, message.payload.properties.data.$ref).required, ['room', 'from', 'text', 'at'])

  // Requests: the envelope has an id; the reply is {id, data} or {id, error}.
  const join = channelMessage(doc, 'default', 'room:join')
  assert.ok(join.payload.required.includes('id'))
  assert.equal(deref(doc, join.payload.properties.data.$ref).properties.room.minLength, 1)
  const joinReply = channelMessage(doc, 'default', 'room:join.reply')
  assert.equal(joinReply.payload.oneOf.length, 2)
  assert.deepEqual(deref(doc, joinReply.payload.oneOf[0].properties.data.$ref).properties.members, { type: 'array', items: { type: 'string' } })
  assert.deepEqual(deref(doc, joinReply.payload.oneOf[1].properties.error.$ref).required, ['code', 'message'])
  assert.deepEqual(deref(doc, channelMessage(doc, 'default', 'confirm.reply').payload.oneOf[0].properties.data.$ref), { type: 'boolean' })

  // Close codes ride along.
  assert.ok(doc['x-ferrosocket-close-codes'].some((c) => c.code === 1008 && c.reason === 'Unknown event'))

  // The parser agrees, and sees the operations from the server's side with their replies.
  const parsed = await parseValid(doc)
  const ops = Object.fromEntries(parsed.operations().all().map((op) => [op.messages().all()[0].name(), op]))
  assert.deepEqual(Object.keys(ops).sort(), ['chat:message', 'chat:send', 'confirm', 'room:join'])
  assert.equal(ops['chat:send'].action(), 'receive')
  assert.equal(ops['chat:message'].action(), 'send')
  assert.equal(ops['room:join'].action(), 'receive')
  assert.equal(ops['confirm'].action(), 'send')
  assert.deepEqual(ops['room:join'].reply().messages().all().map((m) => m.name()), ['room:join.reply'])
  assert.deepEqual(ops['confirm'].reply().messages().all().map((m) => m.name()), ['confirm.reply'])
  assert.equal(ops['chat:send'].reply(), undefined)
  assert.equal(ops['room:join'].channels().all()[0].address(), '/chat')
  assert.deepEqual(parsed.servers().all().map((s) => [s.id(), s.protocol(), s.host()]).sort(), [['dev', 'ws', 'localhost:8080'], ['prod', 'wss', 'chat.example.com:8443']])
})

test('a server with two namespaces exports one channel per namespace path', async () => {
  const admin = defineContract({ in: { kick: z.object({ user: z.string() }) }, out: { kicked: z.object({ user: z.string() }) } })
  const server = createServer({ port: 0, path: '/rt', contract: chat, namespaces: { admin } })
  const doc = exportAsyncAPI(server, { title: 'Two', version: '1.0.0' })
  assert.deepEqual(Object.fromEntries(Object.entries(doc.channels).map(([id, c]) => [id, c.address])), { default: '/rt', admin: '/rt/admin' })
  const parsed = await parseValid(doc)
  assert.deepEqual(parsed.channels().all().map((c) => c.address()).sort(), ['/rt', '/rt/admin'])
  const kick = channelMessage(doc, 'admin', 'kick')
  assert.deepEqual(deref(doc, kick.payload.properties.data.$ref).required, ['user'])
  const adminOps = parsed.operations().all().filter((op) => op.channels().all()[0].address() === '/rt/admin')
  assert.deepEqual(adminOps.map((op) => [op.action(), op.messages().all()[0].name()]).sort(), [['receive', 'kick'], ['send', 'kicked']])
  assert.equal(Object.values(doc.channels.default.messages).length, 6)
})

test("with onInvalidMessage: 'reply' every channel has the server's error event", async () => {
  const server = createServer({ port: 0, contract: chat, namespaces: { other: defineContract({ in: { ping: z.null() } }) }, onInvalidMessage: 'reply' })
  const doc = exportAsyncAPI(server, { title: 'Errors', version: '1.0.0' })
  for (const channel of ['default', 'other']) {
    const error = channelMessage(doc, channel, 'error')
    assert.deepEqual(error.payload.properties.event, { const: 'error' })
    assert.deepEqual(deref(doc, error.payload.properties.data.$ref).properties.code.enum, ['invalid_payload', 'unknown_event', 'invalid_data'])
  }
  const parsed = await parseValid(doc)
  assert.equal(parsed.operations().all().filter((op) => op.action() === 'send' && op.messages().all()[0].name() === 'error').length, 2)
  // Without the option there is none.
  const plain = exportAsyncAPI(createServer({ port: 0, contract: chat }), { title: 'Errors', version: '1.0.0' })
  assert.ok(!Object.values(plain.components.messages).some((m) => m.name === 'error'))
})

test('namespaces sharing a contract share its messages; untyped namespaces get a channel without messages', async () => {
  const server = createServer({ port: 0, contract: chat, namespaces: { copy: chat, free: null } })
  const doc = exportAsyncAPI(server, { title: 'Shared', version: '1.0.0' })
  assert.deepEqual(Object.values(doc.channels).map((c) => c.address), ['/ws', '/ws/copy', '/ws/free'])
  assert.deepEqual(doc.channels.copy.messages, doc.channels.default.messages)
  assert.equal(Object.keys(doc.components.messages).length, 6)
  assert.equal(doc.channels.free.messages, undefined)
  assert.match(doc.channels.free.description, /without a contract/)
  await parseValid(doc)
})

test('a schema that cannot be converted becomes {} with a description, and the document stays valid', async () => {
  // A hand-made Standard Schema: validates, but offers no JSON Schema.
  const opaque = { '~standard': { version: 1, vendor: 'handmade', validate: (value) => ({ value }) } }
  const contract = defineContract({ in: { opaque }, requests: { ask: { input: opaque, output: z.string() } } })
  const doc = exportAsyncAPI(contract, { title: 'Opaque', version: '1.0.0' })
  const data = deref(doc, channelMessage(doc, 'default', 'opaque').payload.properties.data.$ref)
  assert.deepEqual(Object.keys(data), ['description'])
  assert.match(data.description, /Could not convert the input of this handmade schema/)
  assert.deepEqual(deref(doc, channelMessage(doc, 'default', 'ask.reply').payload.oneOf[0].properties.data.$ref), { type: 'string' })
  await parseValid(doc)

  // The jsonSchema option converts what the library cannot, and is told where the schema sits.
  const seen = []
  const withOption = exportAsyncAPI(contract, {
    title: 'Opaque',
    version: '1.0.0',
    jsonSchema: (schema, context) => {
      seen.push([schema === opaque, context.event, context.direction, context.io, context.part])
      return { type: 'integer' }
    },
  })
  assert.deepEqual(deref(withOption, channelMessage(withOption, 'default', 'opaque').payload.properties.data.$ref), { type: 'integer' })
  // `opaque` converts once (the same schema object, the same io), then the `ask` input reuses it.
  assert.deepEqual(seen, [[true, 'opaque', 'receive', 'input', 'event']])
  await parseValid(withOption)
})

test('without ~standard.jsonSchema, a toJSONSchema method (older zod 4 releases) is used, asked for input or output', async () => {
  const calls = []
  const schema = {
    '~standard': { version: 1, vendor: 'zod', validate: (value) => ({ value }) },
    toJSONSchema(params) {
      calls.push(params)
      return { $schema: 'http://json-schema.org/draft-07/schema#', type: 'string', description: params.io }
    },
  }
  const contract = defineContract({ in: { up: schema }, out: { down: schema } })
  const doc = exportAsyncAPI(contract, { title: 'Method', version: '1.0.0' })
  assert.deepEqual(calls, [{ target: 'draft-07', io: 'input' }, { target: 'draft-07', io: 'output' }])
  assert.deepEqual(deref(doc, channelMessage(doc, 'default', 'up').payload.properties.data.$ref), { type: 'string', description: 'input' })
  assert.deepEqual(deref(doc, channelMessage(doc, 'default', 'down').payload.properties.data.$ref), { type: 'string', description: 'output' })
  await parseValid(doc)
})

test('zod parts JSON Schema cannot express become {} inside an otherwise converted schema', async () => {
  const contract = defineContract({ out: { stamped: z.object({ at: z.date(), note: z.string() }) } })
  const doc = exportAsyncAPI(contract, { title: 'Dates', version: '1.0.0' })
  const data = deref(doc, channelMessage(doc, 'default', 'stamped').payload.properties.data.$ref)
  assert.deepEqual(data.properties, { at: {}, note: { type: 'string' } })
  assert.match(data.description, /cannot express/)
  await parseValid(doc)
})

test('recursive schemas and zod ids become components with rewritten $refs', async () => {
  const UserId = z.string().meta({ id: 'UserId' })
  const Tree = z.object({ name: z.string(), get children() { return z.array(Tree) } })
  const contract = defineContract({ in: { tree: Tree, a: z.object({ user: UserId }) }, out: { b: z.object({ users: z.array(UserId) }) } })
  const doc = exportAsyncAPI(contract, { title: 'Refs', version: '1.0.0' })
  const treeRef = channelMessage(doc, 'default', 'tree').payload.properties.data.$ref
  assert.equal(deref(doc, treeRef).properties.children.items.$ref, treeRef)
  assert.deepEqual(doc.components.schemas.UserId, { type: 'string' })
  assert.equal(deref(doc, channelMessage(doc, 'default', 'a').payload.properties.data.$ref).properties.user.$ref, '#/components/schemas/UserId')
  await parseValid(doc)
})

test('bad options throw; a contract needs no server', () => {
  assert.throws(() => exportAsyncAPI(chat, { version: '1' }), /title and options.version/)
  assert.throws(() => exportAsyncAPI(chat, { title: 't', version: '1', servers: { prod: 'https://x' } }), /ws: or wss:/)
  assert.throws(() => exportAsyncAPI(chat, { title: 't', version: '1', servers: { 'a b': 'ws://x' } }), /server name/)
  assert.throws(() => exportAsyncAPI(chat, { title: 't', version: '1', address: 'ws' }), /address must start with '\/'/)
})

test('CLI: ferrosocket asyncapi prints a valid document for a contract module', async () => {
  const run = spawnSync(process.execPath, [BIN, 'asyncapi', FIXTURE, '--title', 'Chat', '--version', '3.0.1', '--server', 'prod=wss://example.com/rt'], { encoding: 'utf8' })
  assert.equal(run.status, 0, run.stderr)
  assert.match(run.stdout, /^\{\n {2}"asyncapi": "3\.0\.0",/, '2-space JSON')
  const doc = JSON.parse(run.stdout)
  assert.deepEqual([doc.info.title, doc.info.version], ['Chat', '3.0.1'])
  assert.deepEqual(doc.servers.prod, { host: 'example.com', protocol: 'wss', pathname: '/rt' })
  assert.equal(channelMessage(doc, 'default', 'chat:send').name, 'chat:send')
  await parseValid(doc)

  // -o writes the file instead.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrosocket-asyncapi-'))
  try {
    const out = path.join(dir, 'doc.json')
    const written = spawnSync(process.execPath, [BIN, 'asyncapi', FIXTURE, '-o', out], { encoding: 'utf8' })
    assert.equal(written.status, 0, written.stderr)
    assert.equal(written.stdout, '')
    assert.equal(JSON.parse(fs.readFileSync(out, 'utf8')).info.title, 'asyncapi-contract')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})

test('CLI: a missing file, an export that is no contract and bad usage exit non-zero with a message', () => {
  const missing = spawnSync(process.execPath, [BIN, 'asyncapi', path.join(HERE, 'fixtures', 'no-such-contract.mjs')], { encoding: 'utf8' })
  assert.equal(missing.status, 1)
  assert.match(missing.stderr, /cannot find module file .*no-such-contract\.mjs/)
  assert.equal(missing.stdout, '')

  const wrong = spawnSync(process.execPath, [BIN, 'asyncapi', FIXTURE, '--export', 'notAContract'], { encoding: 'utf8' })
  assert.equal(wrong.status, 1)
  assert.match(wrong.stderr, /"notAContract" .* is not a contract/)

  const none = spawnSync(process.execPath, [BIN, 'asyncapi', path.join(HERE, 'helpers.mjs')], { encoding: 'utf8' })
  assert.equal(none.status, 1)
  assert.match(none.stderr, /no contract or server found/)

  const usage = spawnSync(process.execPath, [BIN, 'asyncapi', FIXTURE, '--bogus'], { encoding: 'utf8' })
  assert.equal(usage.status, 2)
  assert.match(usage.stderr, /unknown option --bogus/)
})
