'use strict'
// Part of `npm run build:ts`: marks lib/client-esm/ (the browser build of ferrosocket/client, see
// tsconfig.client.json) as ES modules for Node, whose nearest package.json would say CommonJS.
const fs = require('node:fs')
const path = require('node:path')

const dir = path.join(__dirname, '..', 'lib', 'client-esm')
fs.mkdirSync(dir, { recursive: true })
fs.writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n')
