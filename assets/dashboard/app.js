// The ferrosocket dashboard page: polls ./api/state once a second and draws what it gets. No
// framework and nothing from a CDN. Everything a peer can influence (room names, user ids, event
// details) is written with textContent, never as HTML.
'use strict'

;(() => {
  const POLL_MS = 1000
  const $ = (id) => document.getElementById(id)
  const state = { since: 0, eventSeq: 0, history: [], events: [], maxHistory: 300, maxEvents: 200, paused: false, allowActions: false, rooms: [] }

  const number = new Intl.NumberFormat('en', { maximumFractionDigits: 1 })
  const fmt = (n) => (n === undefined || n === null ? '–' : number.format(n))
  const bytes = (n) => {
    if (n === undefined || n === null) return '–'
    const units = ['B', 'KB', 'MB', 'GB', 'TB']
    let i = 0
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024
      i++
    }
    return `${number.format(n)} ${units[i]}`
  }
  const time = (ms) => new Date(ms).toLocaleTimeString()
  const duration = (ms) => {
    const s = Math.floor(ms / 1000)
    const d = Math.floor(s / 86400)
    const h = Math.floor((s % 86400) / 3600)
    const m = Math.floor((s % 3600) / 60)
    return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : `${m}m ${s % 60}s`
  }

  /** Replaces a table body's rows; each row is a list of cell texts (or {text, className}). */
  function fill(tbody, rows, rowClass) {
    const fragment = document.createDocumentFragment()
    for (const [i, cells] of rows.entries()) {
      const tr = document.createElement('tr')
      if (rowClass) tr.className = rowClass(i)
      for (const cell of cells) {
        const td = document.createElement('td')
        if (cell instanceof Node) td.append(cell)
        else if (cell !== null && typeof cell === 'object') {
          td.textContent = cell.text
          td.className = cell.className
        } else td.textContent = cell
        tr.append(td)
      }
      fragment.append(tr)
    }
    tbody.replaceChildren(fragment)
  }

  function setLive(kind, text) {
    const badge = $('live')
    badge.dataset.state = kind
    badge.textContent = text
  }

  // Charts: a line per series over the history window, on a canvas scaled for the screen.
  function chart(canvas, series) {
    const ratio = window.devicePixelRatio || 1
    const width = canvas.clientWidth || canvas.width
    const height = canvas.clientHeight || canvas.height
    if (canvas.width !== Math.round(width * ratio)) {
      canvas.width = Math.round(width * ratio)
      canvas.height = Math.round(height * ratio)
    }
    const ctx = canvas.getContext('2d')
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0)
    ctx.clearRect(0, 0, width, height)
    const points = state.history
    const max = Math.max(1, ...series.flatMap((s) => points.map(s.value)))
    const left = 48
    const top = 8
    const plotW = width - left - 8
    const plotH = height - top - 18
    ctx.font = '11px system-ui, sans-serif'
    ctx.fillStyle = '#6b7280'
    ctx.strokeStyle = '#e5e7eb'
    for (let i = 0; i <= 2; i++) {
      const y = top + (plotH * i) / 2
      ctx.beginPath()
      ctx.moveTo(left, y)
      ctx.lineTo(left + plotW, y)
      ctx.stroke()
      ctx.fillText(series[0].label((max * (2 - i)) / 2), 2, y + 4)
    }
    if (points.length < 2) return
    const t0 = points[0].time
    const span = Math.max(1, points[points.length - 1].time - t0)
    ctx.fillText(time(t0), left, height - 4)
    for (const s of series) {
      ctx.strokeStyle = s.color
      ctx.lineWidth = 1.5
      ctx.beginPath()
      points.forEach((p, i) => {
        const x = left + ((p.time - t0) / span) * plotW
        const y = top + plotH - (s.value(p) / max) * plotH
        if (i === 0) ctx.moveTo(x, y)
        else ctx.lineTo(x, y)
      })
      ctx.stroke()
    }
  }

  const css = getComputedStyle(document.documentElement)
  const IN = css.getPropertyValue('--in').trim() || '#2563eb'
  const OUT = css.getPropertyValue('--out').trim() || '#d97706'

  function drawCharts() {
    chart($('chart-connections'), [{ value: (p) => p.connections, color: IN, label: (v) => fmt(Math.round(v)) }])
    chart($('chart-messages'), [
      { value: (p) => p.rates.messagesReceived, color: IN, label: fmt },
      { value: (p) => p.rates.messagesSent, color: OUT, label: fmt },
    ])
    chart($('chart-bytes'), [
      { value: (p) => p.rates.bytesReceived, color: IN, label: bytes },
      { value: (p) => p.rates.bytesSent, color: OUT, label: bytes },
    ])
  }

  function renderRooms() {
    const filter = $('room-filter').value.trim().toLowerCase()
    const rows = state.rooms.filter((r) => filter === '' || r.name.toLowerCase().includes(filter)).map((r) => [r.namespace, r.name, fmt(r.members)])
    fill($('rooms').tBodies[0], rows)
  }

  function render(snapshot) {
    const s = snapshot.stats
    const last = state.history[state.history.length - 1]
    $('node').textContent = `node ${snapshot.nodeId}`
    $('uptime').textContent = `up ${duration(snapshot.now - snapshot.startedAt)}`
    $('c-connections').textContent = fmt(s.connections)
    $('c-in-rate').textContent = fmt(last?.rates.messagesReceived)
    $('c-out-rate').textContent = fmt(last?.rates.messagesSent)
    $('c-bytes-in-rate').textContent = bytes(last?.rates.bytesReceived)
    $('c-bytes-out-rate').textContent = bytes(last?.rates.bytesSent)
    $('c-rejected').textContent = fmt(s.messagesRejected)
    $('c-queued').textContent = `${fmt(s.queuedMessages)} / ${bytes(s.queuedBytes)}`
    $('c-pending').textContent = bytes(s.inboundPendingBytes)

    fill(
      $('namespaces').tBodies[0],
      snapshot.namespaces.map((ns) => [ns.name, fmt(ns.connections), fmt(ns.rooms), fmt(ns.messagesReceived), fmt(ns.messagesSent)]),
    )
    state.rooms = snapshot.namespaces.flatMap((ns) => ns.largestRooms.map((r) => ({ namespace: ns.name, name: r.name, members: r.members })))
    state.rooms.sort((a, b) => b.members - a.members || a.name.localeCompare(b.name))
    const totalRooms = snapshot.namespaces.reduce((n, ns) => n + ns.rooms, 0)
    $('rooms-note').textContent = `(${fmt(totalRooms)} in all; the ${snapshot.limits.roomsListed} largest per namespace listed)`
    renderRooms()

    const closes = [
      ...Object.entries(s.connectionsClosed).map(([code, n]) => ['connection closed', code, fmt(n)]),
      ...Object.entries(s.handshakesRejected).map(([status, n]) => ['upgrade refused', status, fmt(n)]),
      ['backpressure close', '1013', fmt(s.backpressureCloses)],
      ['messages dropped unhandled', '', fmt(s.droppedMessages)],
    ]
    fill($('closes').tBodies[0], closes)

    const cluster = snapshot.cluster
    $('cluster').hidden = cluster === null
    if (cluster !== null) {
      const p = cluster.presence
      fill($('cluster-table').tBodies[0], [
        ['Redis connected', s.redisConnected ? 'yes' : 'no'],
        ['Redis reconnects', fmt(s.redisReconnects)],
        ['Nodes', p ? fmt(p.nodes) : cluster.error ?? '–'],
        ['Connections (cluster)', p ? fmt(p.connections) : '–'],
        ['Rooms (cluster)', p ? fmt(p.rooms) : '–'],
        ['Bus published / received / dropped', `${fmt(s.busPublished)} / ${fmt(s.busReceived)} / ${fmt(s.busDropped)}`],
        ['Subscriptions', fmt(s.busSubscriptions)],
      ])
    }

    fill(
      $('events').tBodies[0],
      state.events.map((e) => [time(e.time), e.level, e.name, e.connectionId ?? '', { text: e.detail, className: 'detail' }]),
      (i) => `level-${state.events[i].level}`,
    )
    $('events-empty').hidden = state.events.length > 0
    drawCharts()
  }

  async function poll() {
    if (state.paused) return
    try {
      const response = await fetch(`api/state?since=${state.since}&events=${state.eventSeq}`, { cache: 'no-store', credentials: 'same-origin' })
      if (!response.ok) throw new Error(`HTTP ${response.status}`)
      const snapshot = await response.json()
      state.maxHistory = snapshot.limits.historySamples
      state.maxEvents = snapshot.limits.recentEvents
      state.allowActions = snapshot.allowActions
      state.history.push(...snapshot.history)
      if (state.history.length > state.maxHistory) state.history.splice(0, state.history.length - state.maxHistory)
      state.events.unshift(...snapshot.events.reverse())
      if (state.events.length > state.maxEvents) state.events.length = state.maxEvents
      const newest = state.history[state.history.length - 1]
      if (newest) state.since = newest.time
      if (state.events[0]) state.eventSeq = state.events[0].seq
      render(snapshot)
      setLive('live', 'live')
    } catch (error) {
      setLive('error', `unreachable (${error.message})`)
    }
  }

  async function lookup(q) {
    const status = $('lookup-status')
    status.textContent = 'looking…'
    try {
      const response = await fetch(`api/connections?q=${encodeURIComponent(q)}`, { cache: 'no-store', credentials: 'same-origin' })
      const body = await response.json()
      if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`)
      const table = $('lookup-results')
      table.hidden = body.connections.length === 0
      status.textContent =
        body.connections.length === 0 ? `No connection or user "${q}".` : `${body.connections.length} connection(s)${body.truncated ? ' (first ones only)' : ''}.`
      fill(
        table.tBodies[0],
        body.connections.map((c) => {
          const st = c.stats
          const rooms = c.rooms.join(', ') + (c.roomsTotal > c.rooms.length ? ` … (${c.roomsTotal})` : '')
          let action = ''
          if (state.allowActions && c.local) {
            action = document.createElement('button')
            action.type = 'button'
            action.textContent = 'Close'
            action.addEventListener('click', () => closeConnection(c.connectionId, q))
          }
          return [
            c.connectionId,
            c.namespace,
            c.userId ?? '',
            rooms,
            c.local ? c.remoteAddress ?? '' : `on node ${c.nodeId}`,
            c.openedAt ? `${time(c.openedAt)} (${duration(Date.now() - c.openedAt)})` : '',
            c.rttMs !== undefined ? `${fmt(c.rttMs)} ms` : '',
            st ? `${fmt(st.messagesReceived)} / ${bytes(st.bytesReceived)}` : '',
            st ? `${fmt(st.messagesSent)} / ${bytes(st.bytesSent)}` : '',
            st ? `${fmt(st.queuedMessages)} / ${bytes(st.queuedBytes)}` : '',
            action,
          ]
        }),
      )
    } catch (error) {
      status.textContent = `Lookup failed: ${error.message}`
    }
  }

  async function closeConnection(id, q) {
    if (!confirm(`Close connection ${id}?`)) return
    const response = await fetch(`api/close?id=${encodeURIComponent(id)}`, { method: 'POST', headers: { 'x-ferrosocket-dashboard': '1' }, credentials: 'same-origin' })
    $('lookup-status').textContent = response.ok ? `Closed ${id}.` : `Could not close ${id} (HTTP ${response.status}).`
    if (response.ok) lookup(q)
  }

  $('lookup').addEventListener('submit', (event) => {
    event.preventDefault()
    lookup(new FormData(event.target).get('q').trim())
  })
  $('room-filter').addEventListener('input', renderRooms)
  $('pause').addEventListener('click', () => {
    state.paused = !state.paused
    $('pause').textContent = state.paused ? 'Resume' : 'Pause'
    if (state.paused) setLive('paused', 'paused')
    else poll()
  })
  window.addEventListener('resize', drawCharts)
  poll()
  setInterval(() => {
    if (!document.hidden) poll()
  }, POLL_MS)
})()
