// The operators' dashboard (`server.dashboardHandler`): its JSON API against known traffic, its
// protection (authorize, read-only, the action header), mounting in Node http, Express and
// Fastify, and the page itself in headless Chromium (skipped without a browser, like the chat test).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import fs from 'node:fs'
import express from 'express'
import Fastify from 'fastify'
import { HOST, startServer, connect, collect, waitClose, send, upgradeStatus, withTimeout } from './helpers.mjs'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const hasBrowser = fs.existsSync(CHROMIUM)

/** A Node http server on 127.0.0.1 answering `/dash…` with the dashboard, 404 elsewhere. */
async function mount(t, handler) {
  const web = http.createServer((req, res) => {
    if (req.url.startsWith('/dash')) return handler(req, res)
    res.statusCode = 404
    res.end()
  })
  await new Promise((resolve) => web.listen(0, HOST, resolve))
  // closeAllConnections: an open page polls every second over a keep-alive connection, which
  // would otherwise keep close() waiting until the browser (closed by a later hook) goes away.
  t.after(() => new Promise((resolve) => {
    web.close(resolve)
    web.closeAllConnections()
  }))
  return `http://${HOST}:${web.address().port}`
}

/** A server whose connections join the rooms and take the user named in their URL query, and echo `say`. */
async function start(t, options = {}) {
  const h = await startServer(options, {
    onConnection(conn, ns) {
      const { rooms, user } = conn.query
      for (const room of rooms ? rooms.split(',') : []) conn.join(room)
      if (user) conn.setUserId(user)
      if (ns === '/') conn.onMessage('say', (data) => conn.publish('said', data))
    },
  })
  t.after(() => h.close())
  return h
}

async function getJson(url, init) {
  const res = await fetch(url, init)
  return { status: res.status, headers: res.headers, body: await res.json() }
}

/** Polls the state API until `predicate(state)` holds (each poll a real request); rejects after `ms`. */
async function stateWhere(base, predicate, label, ms = 5000) {
  let last
  const attempt = async () => {
    for (;;) {
      last = (await getJson(`${base}/dash/api/state`)).body
      if (predicate(last)) return last
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  return withTimeout(attempt(), ms, `${label} (last state: ${JSON.stringify(last?.stats ?? null)})`)
}

test('the state API reports connections, namespaces, largest rooms and traffic counted exactly', async (t) => {
  const h = await start(t, { namespaces: { game: { path: '/ws/game' } } })
  const base = await mount(t, h.server.dashboardHandler({ authorize: () => true, maxRooms: 2 }))
  const clients = []
  for (const [i, rooms] of ['lobby,big', 'big', 'big,mid', 'mid,small'].entries()) {
    clients.push(await connect(`${h.url()}?rooms=${rooms}&user=u${i}`))
    await h.nextConnection()
  }
  const gamer = await connect(`${h.nsUrl('game')}?rooms=arena`)
  await h.nextConnection('game')

  let bytesOut = 0
  for (const ws of clients) {
    for (let i = 0; i < 5; i++) send(ws, 'say', { i })
  }
  for (const ws of clients) {
    const replies = await collect(ws, 5)
    bytesOut += replies.reduce((n, m) => n + JSON.stringify(m).length + 2, 0) // 2-byte frame header
  }

  const { status, headers, body } = await getJson(`${base}/dash/api/state`)
  assert.equal(status, 200)
  assert.match(headers.get('cache-control'), /no-store/)
  assert.equal(body.nodeId, h.server.nodeId)
  assert.equal(body.stats.connections, 5)
  assert.equal(body.stats.messagesReceived, 20)
  assert.equal(body.stats.messagesSent, 20)
  assert.equal(body.stats.bytesSent, bytesOut)
  const byName = Object.fromEntries(body.namespaces.map((ns) => [ns.name, ns]))
  assert.deepEqual(Object.keys(byName).sort(), ['/', 'game'])
  assert.equal(byName['/'].connections, 4)
  assert.equal(byName['/'].rooms, 4, 'lobby, big, mid, small')
  assert.deepEqual(byName['/'].largestRooms, [{ name: 'big', members: 3 }, { name: 'mid', members: 2 }], 'the 2 largest (maxRooms), largest first')
  assert.deepEqual(byName.game.largestRooms, [{ name: 'arena', members: 1 }])
  assert.equal(byName.game.messagesReceived, 0)
  assert.ok(body.history.length >= 1 && body.history.every((s) => typeof s.rates.messagesReceived === 'number'))
  assert.equal(body.cluster, null)
  assert.equal(body.allowActions, false)

  // ?rooms= overrides the listing size, bounded; ?since= returns only newer samples.
  const more = (await getJson(`${base}/dash/api/state?rooms=10&since=${Date.now() + 60_000}`)).body
  assert.equal(more.namespaces.find((ns) => ns.name === '/').largestRooms.length, 4)
  assert.deepEqual(more.history, [])
  gamer.close()
})

test('warn and error events reach the dashboard without any telemetry option, including refusals made in Rust', async (t) => {
  const h = await start(t)
  const base = await mount(t, h.server.dashboardHandler({ authorize: () => true }))
  const bystander = await connect(`${h.url()}?rooms=calm`)
  const calm = await h.nextConnection()
  const offender = await connect(h.url())
  const conn = await h.nextConnection()
  offender.send('this is not json')
  assert.equal((await waitClose(offender)).code, 1007)
  // A refused upgrade (wrong path) is reported too.
  assert.equal(await upgradeStatus(h.url('/nowhere')), 404)

  const state = await stateWhere(
    base,
    (s) => s.events.some((e) => e.name === 'ws.message.rejected') && s.events.some((e) => e.name === 'ws.handshake.rejected') && s.events.some((e) => e.name === 'ws.connection.closed'),
    'the rejection, refused upgrade and abnormal close events',
  )
  const rejected = state.events.find((e) => e.name === 'ws.message.rejected')
  assert.equal(rejected.level, 'warn')
  assert.equal(rejected.connectionId, conn.id)
  assert.match(rejected.detail, /1007/)
  const closed = state.events.find((e) => e.name === 'ws.connection.closed')
  assert.equal(closed.connectionId, conn.id)
  assert.equal(JSON.parse(closed.detail).code, 1007)
  assert.match(state.events.find((e) => e.name === 'ws.handshake.rejected').detail, /404/)
  assert.ok(state.events.every((e) => e.level === 'warn' || e.level === 'error'), 'no info or debug events')
  assert.ok(state.events.every((e) => e.connectionId !== calm.id), 'nothing about the well-behaved client')
  // The cursor: asking after the last event number returns nothing new.
  const last = Math.max(...state.events.map((e) => e.seq))
  assert.deepEqual((await getJson(`${base}/dash/api/state?events=${last}`)).body.events, [])
  bystander.close()
})

test('the recent events are bounded: past 200 the oldest go, the newest stay', async (t) => {
  const h = await start(t)
  const base = await mount(t, h.server.dashboardHandler({ authorize: () => true }))
  const REFUSED = 230
  for (let i = 0; i < REFUSED; i++) assert.equal(await upgradeStatus(h.url(`/nowhere-${i}`)), 404)
  const state = await stateWhere(base, (s) => s.events.some((e) => e.detail.includes(`/nowhere-${REFUSED - 1}`) || e.seq === REFUSED), 'the last refusal')
  assert.equal(state.events.length, 200, 'MAX_RECENT_EVENTS')
  const seqs = state.events.map((e) => e.seq)
  assert.equal(Math.max(...seqs), REFUSED)
  assert.equal(Math.min(...seqs), REFUSED - 199, 'the oldest 30 were dropped')
})

test('connection lookup by id and by user id; unknown ids find nothing', async (t) => {
  const h = await start(t)
  const base = await mount(t, h.server.dashboardHandler({ authorize: () => true }))
  const phone = await connect(`${h.url()}?rooms=a,b&user=ada`)
  const phoneConn = await h.nextConnection()
  const laptop = await connect(`${h.url()}?user=ada`)
  await h.nextConnection()
  send(phone, 'say', 'hello')
  await collect(phone, 1)

  const one = (await getJson(`${base}/dash/api/connections?q=${encodeURIComponent(phoneConn.id)}`)).body
  assert.equal(one.connections.length, 1)
  const c = one.connections[0]
  assert.equal(c.connectionId, phoneConn.id)
  assert.equal(c.userId, 'ada')
  assert.deepEqual(c.rooms.sort(), ['a', 'b'])
  assert.equal(c.local, true)
  assert.equal(c.remoteAddress, '127.0.0.1')
  assert.equal(c.stats.messagesReceived, 1)
  assert.equal(c.stats.messagesSent, 1)

  const user = (await getJson(`${base}/dash/api/connections?q=ada`)).body
  assert.equal(user.connections.length, 2)
  assert.equal(user.truncated, false)
  assert.deepEqual((await getJson(`${base}/dash/api/connections?q=nobody`)).body.connections, [])
  assert.equal((await getJson(`${base}/dash/api/connections?q=`)).status, 400)
  phone.close()
  laptop.close()
})

test('authorize guards every route; the page is self-contained; read-only unless allowActions', async (t) => {
  const h = await start(t)
  const errors = []
  let allow = false
  const base = await mount(
    t,
    h.server.dashboardHandler({
      authorize: async (req) => {
        if (req.headers['x-boom']) throw new Error('authorize failed')
        return allow && req.headers.authorization === 'Bearer ops'
      },
    }),
  )
  h.server._onError = (error) => errors.push(error) // test hook: see what the handler reports
  const auth = { authorization: 'Bearer ops' }
  for (const path of ['/dash/', '/dash/app.js', '/dash/api/state', '/dash/api/connections?q=x']) {
    assert.equal((await fetch(base + path, { headers: auth })).status, 403, `${path} before authorize allows`)
  }
  allow = true
  assert.equal((await fetch(`${base}/dash/`)).status, 403, 'without the header')
  const page = await fetch(`${base}/dash/`, { headers: auth })
  assert.equal(page.status, 200)
  assert.match(page.headers.get('content-type'), /text\/html/)
  assert.match(page.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'/)
  const html = await page.text()
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'no external scripts or styles')
  for (const [file, type] of [['app.js', /javascript/], ['app.css', /text\/css/]]) {
    const res = await fetch(`${base}/dash/${file}`, { headers: auth })
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type'), type)
    assert.doesNotMatch(await res.text(), /https?:\/\//, `${file} loads nothing from elsewhere`)
  }
  const redirect = await fetch(`${base}/dash?x=1`, { headers: auth, redirect: 'manual' })
  assert.equal(redirect.status, 308)
  assert.equal(redirect.headers.get('location'), '/dash/?x=1')
  assert.equal((await fetch(`${base}/dash/missing.js`, { headers: auth })).status, 404)
  assert.equal((await fetch(`${base}/dash/api/state`, { method: 'POST', headers: auth })).status, 405)
  assert.equal((await fetch(`${base}/dash/api/close?id=x`, { method: 'POST', headers: { ...auth, 'x-ferrosocket-dashboard': '1' } })).status, 403)
  const head = await fetch(`${base}/dash/api/state`, { method: 'HEAD', headers: auth })
  assert.equal(head.status, 200)

  const failed = await fetch(`${base}/dash/`, { headers: { ...auth, 'x-boom': '1' } })
  assert.equal(failed.status, 500)
  assert.deepEqual(await failed.json(), { error: 'internal error' }, 'no detail leaks')
  assert.equal(errors.length, 1)
  assert.match(errors[0].message, /authorize failed/)

  assert.throws(() => h.server.dashboardHandler({}), /authorize/)
  assert.throws(() => h.server.dashboardHandler({ authorize: () => true, maxRooms: 5000 }), /maxRooms/)
})

test('with allowActions an operator closes one connection (1008); the request needs the action header', async (t) => {
  const h = await start(t)
  const base = await mount(t, h.server.dashboardHandler({ authorize: () => true, allowActions: true }))
  const target = await connect(h.url())
  const conn = await h.nextConnection()
  const other = await connect(h.url())
  await h.nextConnection()
  const url = `${base}/dash/api/close?id=${encodeURIComponent(conn.id)}`
  assert.equal((await fetch(url, { method: 'POST' })).status, 403, 'no action header: what a cross-site form would send')
  assert.equal((await fetch(url)).status, 405, 'GET does not act')
  const res = await getJson(url, { method: 'POST', headers: { 'x-ferrosocket-dashboard': '1' } })
  assert.deepEqual([res.status, res.body], [200, { closed: true }])
  assert.deepEqual(await waitClose(target), { code: 1008, reason: 'Closed by an operator' })
  assert.equal((await fetch(url, { method: 'POST', headers: { 'x-ferrosocket-dashboard': '1' } })).status, 404, 'already closed')
  send(other, 'say', 'still here')
  assert.deepEqual(await collect(other, 1), [{ event: 'said', data: 'still here' }])
  other.close()
})

test('mounts under Express (app.use) and Fastify (reply.raw)', async (t) => {
  const h = await start(t)
  const handler = h.server.dashboardHandler({ authorize: () => true })
  const app = express()
  app.use('/ops/dashboard', handler)
  const web = app.listen(0, HOST)
  await new Promise((resolve) => web.once('listening', resolve))
  t.after(() => new Promise((resolve) => {
    web.close(resolve)
    web.closeAllConnections()
  }))
  const ex = `http://${HOST}:${web.address().port}`
  const redirect = await fetch(`${ex}/ops/dashboard`, { redirect: 'manual' })
  assert.equal(redirect.status, 308)
  assert.equal(redirect.headers.get('location'), '/ops/dashboard/')
  assert.match(await (await fetch(`${ex}/ops/dashboard/`)).text(), /<title>ferrosocket dashboard<\/title>/)
  assert.equal((await getJson(`${ex}/ops/dashboard/api/state`)).body.nodeId, h.server.nodeId)

  const fastify = Fastify()
  fastify.get('/dashboard/*', (request, reply) => {
    reply.hijack()
    handler(request.raw, reply.raw)
  })
  await fastify.listen({ port: 0, host: HOST })
  t.after(() => fastify.close())
  const fa = `http://${HOST}:${fastify.server.address().port}`
  assert.match(await (await fetch(`${fa}/dashboard/app.js`)).text(), /api\/state/)
  assert.equal((await getJson(`${fa}/dashboard/api/state`)).body.stats.connections, 0)
})

test('the page in headless Chromium shows live counts, rooms, events, a chart, and looks a connection up', { skip: !hasBrowser && `no Chromium at ${CHROMIUM}` }, async (t) => {
  const { chromium } = await import('playwright-core')
  const h = await start(t)
  const base = await mount(t, h.server.dashboardHandler({ authorize: (req) => /(^|; )ops=letmein(;|$)/.test(req.headers.cookie ?? ''), allowActions: true }))
  const alice = await connect(`${h.url()}?rooms=kitchen,hall&user=alice`)
  const aliceConn = await h.nextConnection()
  const bob = await connect(`${h.url()}?rooms=kitchen&user=bob`)
  await h.nextConnection()
  const rude = await connect(h.url())
  await h.nextConnection()
  rude.send('{broken')
  await waitClose(rude)

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  t.after(() => browser.close())
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } })
  const problems = []
  page.on('pageerror', (e) => problems.push(e.message))
  page.on('console', (m) => m.type() === 'error' && problems.push(m.text()))
  // Refused without the app's cookie: the browser gets a 403 and no dashboard.
  const refused = await page.goto(`${base}/dash/`)
  assert.equal(refused.status(), 403)
  assert.equal(await page.locator('#live').count(), 0)
  await page.context().addCookies([{ name: 'ops', value: 'letmein', url: base }])
  problems.length = 0 // the 403 was logged as a failed resource load
  await page.goto(`${base}/dash/`)
  await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 10_000 })
  await page.locator('#c-connections', { hasText: /^2$/ }).waitFor({ timeout: 10_000 })
  const cell = (n, text) => page.locator(`td:nth-child(${n})`, { hasText: text })
  await page.locator('#rooms tbody tr').filter({ has: cell(2, /^kitchen$/) }).filter({ has: cell(3, /^2$/) }).waitFor({ timeout: 10_000 })
  await page.locator('#events tbody tr', { hasText: 'ws.message.rejected' }).waitFor({ timeout: 10_000 })

  // Traffic shows up as a rate and in the messages chart.
  for (let i = 0; i < 20; i++) send(alice, 'say', i)
  await collect(alice, 20)
  await page.locator('#c-in-rate').filter({ hasNotText: /^(0|–)$/ }).waitFor({ timeout: 10_000 })
  // The namespace row shows the server's own counters once a poll after the traffic lands.
  const { messagesReceived, messagesSent } = h.server.stats
  assert.equal(messagesReceived, 21, "20 from alice and the rejected one")
  const nsRow = page.locator('#namespaces tbody tr').filter({ has: cell(1, /^\/$/) })
  await nsRow.filter({ has: cell(4, new RegExp(`^${messagesReceived}$`)) }).filter({ has: cell(5, new RegExp(`^${messagesSent}$`)) }).waitFor({ timeout: 10_000 })
  assert.equal(await page.locator('#c-connections').textContent(), String(h.server.connectionCount))
  const inked = await page.evaluate(() => {
    const canvas = document.getElementById('chart-messages')
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data
    let blue = 0
    for (let i = 0; i < data.length; i += 4) if (data[i + 2] > 200 && data[i] < 100 && data[i + 3] > 0) blue++
    return blue
  })
  assert.ok(inked > 20, `the "in" line is drawn (${inked} blue pixels)`)

  await page.fill('#lookup input[name=q]', 'alice')
  await page.click('#lookup button')
  const row = page.locator('#lookup-results tbody tr', { hasText: aliceConn.id })
  await row.waitFor({ timeout: 10_000 })
  assert.match(await row.textContent(), /hall, kitchen|kitchen, hall/)
  if (process.env.DASHBOARD_SCREENSHOT) await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT, fullPage: true })

  // The one action: close from the page (after the confirm dialog).
  page.once('dialog', (d) => d.accept())
  await row.locator('button', { hasText: 'Close' }).click()
  assert.deepEqual(await waitClose(alice), { code: 1008, reason: 'Closed by an operator' })
  await page.locator('#c-connections', { hasText: /^1$/ }).waitFor({ timeout: 10_000 })
  assert.deepEqual(problems, [])
  bob.close()
})
