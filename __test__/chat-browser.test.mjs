// `npm start` (examples/chat) in a real browser: two headless Chromium tabs open the page, join the
// same room and chat; a third tab in another room sees none of it. Chromium is found at
// $CHROMIUM_PATH or /usr/bin/chromium (.ci/run installs Debian's package); where there is none the
// test is skipped with a message, so `npm test` still passes on a machine without a browser.
// The page uses ferrosocket/client (ES modules, no bundler): in the middle the server process is
// restarted on the same WebSocket port, and the pages reconnect, re-join their rooms and chat on.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { startPrintingUrl, waitExit } from './helpers.mjs'

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..')
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const hasBrowser = fs.existsSync(CHROMIUM)

async function openTab(browser, url, name, room) {
  const page = await browser.newPage()
  await page.goto(url)
  await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: 10_000 })
  await page.fill('#join input[name=name]', name)
  await page.fill('#join input[name=room]', room)
  await page.click('#join button')
  // Our own join shows up as presence once the server has put us in the room.
  await page.locator('#log p.presence', { hasText: `${name} joined ${room}` }).waitFor({ timeout: 10_000 })
  return page
}

test('two browser tabs chat in a room through examples/chat; a tab in another room sees nothing; the pages survive a server restart', { skip: !hasBrowser && `no Chromium at ${CHROMIUM}` }, async (t) => {
  const { chromium } = await import('playwright-core')
  const example = path.join(ROOT, 'examples/chat/server.js')
  const { url, line, child } = await startPrintingUrl(t, example)
  const wsPort = /WebSocket on port (\d+)/.exec(line)?.[1]
  assert.ok(wsPort, `no WebSocket port in ${JSON.stringify(line)}`)
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.after(() => browser.close())

  const alice = await openTab(browser, url, 'alice', 'lobby')
  const bob = await openTab(browser, url, 'bob', 'lobby')
  const carol = await openTab(browser, url, 'carol', 'elsewhere')
  await alice.locator('#log p.presence', { hasText: 'bob joined lobby (2 online)' }).waitFor({ timeout: 10_000 })

  await alice.fill('#send input[name=text]', 'hello from alice')
  await alice.click('#send button')
  await bob.locator('#log p', { hasText: 'alice: hello from alice' }).waitFor({ timeout: 10_000 })
  await bob.fill('#send input[name=text]', 'hi alice')
  await bob.click('#send button')
  await alice.locator('#log p', { hasText: 'bob: hi alice' }).waitFor({ timeout: 10_000 })

  // (playwright launches with a fresh temporary profile of its own.)
  // Positive control for carol: her own room works …
  await carol.fill('#send input[name=text]', 'anyone?')
  await carol.click('#send button')
  await carol.locator('#log p', { hasText: 'carol: anyone?' }).waitFor({ timeout: 10_000 })
  // … and by then nothing from the lobby has reached her page, nor hers theirs.
  const carolLog = await carol.locator('#log').innerText()
  assert.doesNotMatch(carolLog, /alice|bob/)
  assert.doesNotMatch(await alice.locator('#log').innerText(), /anyone\?/)

  // A server restart: the first process shuts down (close 1001), the pages show `reconnecting`, a
  // new process listens on the same WebSocket port, and the pages reconnect and re-join by themselves.
  const joinedBoth = (page, n) =>
    page.waitForFunction((count) => [...document.querySelectorAll('#log p.presence')].filter((p) => p.textContent.includes('joined lobby (2 online)')).length >= count, n, { timeout: 15_000 })
  child.kill('SIGTERM')
  await waitExit(child, 10_000)
  for (const page of [alice, bob]) await page.locator('#status', { hasText: 'reconnecting' }).waitFor({ timeout: 10_000 })
  await startPrintingUrl(t, example, [], 10_000, { WS_PORT: wsPort })
  for (const page of [alice, bob, carol]) await page.locator('#status', { hasText: 'connected' }).waitFor({ timeout: 15_000 })
  // Once the second of them re-joined, both see "… joined lobby (2 online)" a second time.
  await joinedBoth(alice, 2)
  await joinedBoth(bob, 2)
  await alice.fill('#send input[name=text]', 'after the restart')
  await alice.click('#send button')
  await bob.locator('#log p', { hasText: 'alice: after the restart' }).waitFor({ timeout: 10_000 })
  await bob.fill('#send input[name=text]', 'still here')
  await bob.click('#send button')
  await alice.locator('#log p', { hasText: 'bob: still here' }).waitFor({ timeout: 10_000 })
  assert.doesNotMatch(await carol.locator('#log').innerText(), /after the restart|still here/)

  // Closing a tab is seen by the others as presence.
  await bob.close()
  await alice.locator('#log p.presence', { hasText: 'bob left lobby (1 online)' }).waitFor({ timeout: 10_000 })
})
