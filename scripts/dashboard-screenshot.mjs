// Makes docs/dashboard.png, the README's picture of the dashboard: a chat-shaped load (clients in
// rooms of different sizes, each sending now and then, a slow wave in the rate, a few clients that
// send garbage) for about 40 seconds, then a full-page screenshot in headless Chromium.
// Usage: node scripts/dashboard-screenshot.mjs [out.png]   (needs Chromium: $CHROMIUM_PATH or /usr/bin/chromium)
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { chromium } from 'playwright-core'
import { createServer } from '../index.js'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const OUT = process.argv[2] ?? path.join(ROOT, 'docs', 'dashboard.png')
const SECONDS = 40
const ROOMS = [['general', 40], ['random', 25], ['support', 12], ['release-planning', 8], ['design', 6], ['ops', 4], ['standup', 3]]

const server = createServer({ host: '127.0.0.1', port: 0, path: '/ws' })
server.onConnection((conn) => {
  const room = conn.query.room
  if (room) conn.join(room)
  conn.setUserId(conn.query.user)
  conn.onMessage('chat:send', (data) => server.publishToRoom(room, 'chat:message', { from: conn.userId, text: data.text, at: Date.now() }))
})
await server.listen()
const dashboard = server.dashboardHandler({ authorize: () => true })
const web = http.createServer((req, res) => dashboard(req, res))
await new Promise((resolve) => web.listen(0, '127.0.0.1', resolve))

const open = (query) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws?${query}`)
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
const members = []
let n = 0
for (const [room, size] of ROOMS) {
  for (let i = 0; i < size; i++) members.push(await open(`room=${room}&user=user-${++n}`))
}

const start = Date.now()
const talk = setInterval(() => {
  const wave = 0.5 + 0.5 * Math.sin((Date.now() - start) / 6000)
  for (const ws of members) if (Math.random() < 0.05 + 0.25 * wave) ws.send(JSON.stringify({ event: 'chat:send', data: { text: 'hello '.repeat(1 + Math.floor(Math.random() * 20)) } }))
}, 100)
const rude = setInterval(async () => {
  const ws = await open('user=mallory')
  ws.send('{"event": not json')
}, 7000)

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: ['--no-sandbox'] })
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
await page.goto(`http://127.0.0.1:${web.address().port}/`)
await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
await page.fill('#lookup input[name=q]', 'user-3')
await page.click('#lookup button')
await page.locator('#lookup-results tbody tr').first().waitFor()
await page.screenshot({ path: OUT, fullPage: true })
console.log(`wrote ${OUT}`)
clearInterval(talk)
clearInterval(rude)
await browser.close()
web.close()
await server.shutdown()
process.exit(0)
