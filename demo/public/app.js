// The shop page: plain browser JavaScript, no build step. It talks to the frontend through the gateway it
// was loaded from, lights the cards of the hops that served each answer, and follows rule-set changes
// live through server-sent events (/api/events).
const $ = (sel) => document.querySelector(sel)

const params = new URLSearchParams(location.search)
let rId = params.get('r_id') ?? readCookie('r_id') ?? ''
let lastAction = null // repeated when the rules change, so the new chain shows
let shownVersion = null

function readCookie(name) {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=')
    if (k === name) return decodeURIComponent(v.join('='))
  }
  return null
}

function setUser(id) {
  rId = id.trim()
  // biome-ignore lint/suspicious/noDocumentCookie: the rule set reads r_id from a cookie as well; the Cookie Store API is not in every browser
  document.cookie = `r_id=${encodeURIComponent(rId)}; path=/; SameSite=Lax`
  const url = new URL(location.href)
  if (rId === '') url.searchParams.delete('r_id')
  else url.searchParams.set('r_id', rId)
  history.replaceState(null, '', url)
  $('#r_id').value = rId
  $('#orders-user').textContent = rId === '' ? 'nobody' : `r_id ${rId}`
  lastAction = null
  refresh()
}

async function api(path, query = {}, method = 'GET') {
  const q = new URLSearchParams(query)
  if (rId !== '') q.set('r_id', rId)
  const res = await fetch(`${path}?${q}`, { method, headers: { accept: 'application/json' } })
  let body
  try {
    body = await res.json()
  } catch {
    body = { error: { code: `HTTP_${res.status}`, message: `answer ${res.status} without JSON` } }
  }
  return { status: res.status, body }
}

function showChain(body) {
  for (const card of document.querySelectorAll('.card')) {
    card.classList.remove('lit')
    for (const badge of card.querySelectorAll('.badge')) badge.remove()
  }
  const list = $('#chain')
  list.replaceChildren()
  const chain = Array.isArray(body.chain) ? body.chain : []
  chain.forEach((hop, i) => {
    const card = document.getElementById(`hop-${hop.unit}-${hop.app}`)
    if (card) {
      card.classList.add('lit')
      const badge = document.createElement('span')
      badge.className = 'badge'
      badge.textContent = `hop ${i + 1}`
      card.append(badge)
    }
    const li = document.createElement('li')
    li.dataset.app = hop.app
    li.dataset.unit = hop.unit
    li.textContent = `${hop.app} (${hop.unit})`
    list.append(li)
  })
  const r = body.route
  $('#route').textContent = r
    ? r.id === null
      ? `no r_id: the rule set's fallback sent it to unit ${r.unit} (${r.reason})`
      : `r_id ${r.id} → key ${r.key ?? '-'} → unit ${r.unit} (${r.reason}${r.fenced ? ', fenced' : ''}), rule set v${body.ruleVersion}`
    : ''
}

function showResult(text, ok) {
  const p = $('#result')
  p.textContent = text
  p.className = ok ? 'ok' : 'error'
}

const describeError = ({ status, body }) =>
  `${body.error?.code ?? status}: ${body.error?.message ?? 'failed'}`

async function loadProducts() {
  const answer = await api('/api/list')
  const box = $('#products')
  box.replaceChildren()
  if (answer.status !== 200) return showResult(describeError(answer), false)
  for (const p of answer.body.products) {
    const card = document.createElement('div')
    card.className = 'product'
    card.dataset.pid = p.id
    card.innerHTML = `<h3></h3><p class="muted"></p>
      <p>price <b>${p.price}</b> · stock <b class="stock">${p.stock}</b></p>
      <label>number <input type="number" min="1" value="1" class="number" /></label>
      <button type="button" class="detail">detail</button>
      <button type="button" class="buy">buy</button>`
    card.querySelector('h3').textContent = p.name
    card.querySelector('p').textContent = p.description
    card.querySelector('.detail').addEventListener('click', () => run({ kind: 'detail', pId: p.id }))
    card
      .querySelector('.buy')
      .addEventListener('click', () =>
        run({ kind: 'buy', pId: p.id, number: card.querySelector('.number').value }),
      )
    box.append(card)
  }
  return answer
}

async function loadOrders() {
  const body = $('#orders tbody')
  body.replaceChildren()
  $('#points').textContent = ''
  if (rId === '') return
  const answer = await api('/api/orders')
  if (answer.status !== 200) return
  const pts = answer.body.points
  if (pts) {
    $('#points').textContent =
      `points: ${pts.points} (${pts.credits} order${pts.credits === 1 ? '' : 's'} credited by order.placed` +
      `${pts.unit ? `, last in unit ${pts.unit}` : ''})`
    $('#points').dataset.points = String(pts.points)
  }
  for (const o of answer.body.orders) {
    const tr = document.createElement('tr')
    for (const v of [
      o.id,
      o.product,
      o.number,
      o.amount,
      o.unit,
      `v${o.ruleVersion}`,
      new Date(o.at).toLocaleTimeString(),
    ]) {
      const td = document.createElement('td')
      td.textContent = String(v)
      tr.append(td)
    }
    tr.dataset.unit = o.unit
    body.append(tr)
  }
}

/** Runs a user action (detail or buy), shows its chain and result. */
async function run(action) {
  lastAction = action
  if (action.kind === 'detail') {
    const answer = await api('/api/detail', { pId: action.pId })
    showChain(answer.body)
    if (answer.status === 200) {
      const p = answer.body.product
      showResult(`detail of ${p.name}: price ${p.price}, stock ${p.stock}`, true)
    } else showResult(describeError(answer), false)
  } else {
    const answer = await api('/api/buy', { pId: action.pId, number: action.number }, 'POST')
    showChain(answer.body)
    if (answer.status === 200) {
      const { order, product } = answer.body
      showResult(
        `success: bought ${order.number} ${product.name}; order #${order.id} written in unit ${order.unit}`,
        true,
      )
    } else showResult(describeError(answer), false)
    lastAction = null // buying again on a rule change would buy twice
    await Promise.all([loadProducts(), loadOrders()])
    setTimeout(loadOrders, 500) // the points follow the order: order.placed is consumed a moment later
  }
}

async function refresh() {
  const list = await loadProducts()
  if (list?.status === 200 && lastAction === null) showChain(list.body)
  await loadOrders()
  if (lastAction !== null) await run(lastAction)
}

function showRules(rules) {
  $('#version').textContent = `v${rules.version}`
  $('#mapping').textContent = (rules.mapping ?? [])
    .map((m) => `${m.unit}: ${[...m.ranges, ...m.labels].join(', ') || '-'}`)
    .join(' · ')
  const fence = [...(rules.fence?.ranges ?? []), ...(rules.fence?.labels ?? [])]
  $('#fence').textContent = fence.length > 0 ? `fenced: ${fence.join(', ')} (writes wait)` : ''
  if (shownVersion !== null && rules.version !== shownVersion) {
    const banner = $('#banner')
    banner.textContent = `rule set v${rules.version} applied: ${$('#mapping').textContent}${fence.length ? ` · fence ${fence.join(', ')}` : ''}`
    banner.hidden = false
    clearTimeout(showRules.timer)
    showRules.timer = setTimeout(() => {
      banner.hidden = true
    }, 6000)
    if (fence.length === 0) refresh()
  }
  shownVersion = rules.version
}

$('#user').addEventListener('submit', (e) => {
  e.preventDefault()
  setUser($('#r_id').value)
})
for (const b of document.querySelectorAll('[data-user]'))
  b.addEventListener('click', () => setUser(b.dataset.user))

const events = new EventSource('/api/events')
events.addEventListener('rules', (e) => showRules(JSON.parse(e.data)))

setUser(rId)
