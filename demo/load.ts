/**
 * `npm run demo:load`: mixed reads and writes through both gateways of the running demo while a
 * cut-over moves users 2000~2999 to the unit that does not own them now (there and back on repeated
 * runs). A request the protection refuses for a moment (fenced, wrong unit during the switch) is retried
 * as a client would, after its Retry-After; it fails only when it never succeeds.
 *
 * Afterwards, the dual-write check reads every order written during the run and proves, against the
 * rule-set history, that each was accepted by the unit owning its user under the rule set that let it
 * through, never while fenced, and that no user was written by two units in overlapping time. The last
 * line is one JSON object: {"requests": N, "failures": N, "guardRejections": N, "violations": N}.
 *
 *   npm run demo:load [-- --seconds 20] [--workers 4]
 */
import type { Operation, RuleSetRecord } from 'appactive/control'
import { compileRouter, type Router } from 'appactive/rules'
import { request } from 'undici'
import { fail as failWith, parseFlags } from './lib/args.js'
import { controlApi } from './lib/control-api.js'
import { describePhase, latestRules, operationMs, runCutover } from './lib/cutover-run.js'
import { type OrderAudit, PRODUCTS, sqliteOrderAudit } from './lib/db.js'
import { dualWriteViolations } from './lib/dual-write.js'
import { bold, green, red } from './lib/logs.js'
import { readState, UNITS, type UnitName } from './lib/topology.js'

const USAGE = `usage: npm run demo:load [-- --seconds N] [--workers N]

  --seconds N   how long to drive traffic (default 20; 1 to 600)
  --workers N   concurrent clients (default 4; 1 to 32)
  -h, --help    this text`

const script = { name: 'demo:load', usage: USAGE }
function fail(message: string, code = 2): never {
  return failWith(script, message, code)
}
const values = parseFlags(script, { seconds: '20', workers: '4' })
const seconds = Number(values.seconds)
const workers = Number(values.workers)
if (!(Number.isInteger(seconds) && seconds >= 1 && seconds <= 600)) fail(`--seconds must be 1 to 600`)
if (!(Number.isInteger(workers) && workers >= 1 && workers <= 32)) fail(`--workers must be 1 to 32`)

let state: ReturnType<typeof readState>
try {
  state = readState()
} catch (err) {
  fail((err as Error).message, 1)
}

// ---- set-up: where 2000~2999 goes, enough stock, where the orders of this run start ---------------

const MOVED = '2000~2999'
const { router: before, record: beforeRecord } = await latestRules(state)
const from = before.route('2000').unit as UnitName
const to = UNITS.find((u) => u !== from)!
/** The orders written after `afterId`, in id order: from orders.db, or merged from every unit's MariaDB. */
async function ordersAfter(afterId: number): Promise<OrderAudit[]> {
  if (state.mariadb === undefined) return sqliteOrderAudit(state.files.orders, afterId)
  const { mariadbOrderAudit } = await import('./lib/db-mariadb.js')
  return mariadbOrderAudit(Object.values(state.mariadb.urls), afterId)
}
const firstRow = Math.max(0, ...(await ordersAfter(0)).map((r) => r.id))
// Enough stock for every buy this run can make (workers pace themselves at about 20 requests/s each).
for (const p of PRODUCTS) {
  const res = await request(`${state.storageUrl}/restock?pId=${p.id}&number=${seconds * workers * 20}`, {
    method: 'POST',
  })
  await res.body.dump()
  if (res.statusCode !== 200) fail(`could not restock product ${p.id}: HTTP ${res.statusCode}`, 1)
}

// ---- traffic -----------------------------------------------------------------------------------------

type Kind = 'buy' | 'detail' | 'orders'
const USERS = [
  ...Array.from({ length: 40 }, (_, i) => String(2000 + i * 25)), // moved by the cut-over
  ...Array.from({ length: 10 }, (_, i) => String(1000 + i)), // unit's, all along
  ...Array.from({ length: 10 }, (_, i) => String(5000 + i)), // center's, all along
]
const RETRYABLE = new Set([421, 503, 508])
const MAX_TRIES = 20

const stats = {
  requests: 0,
  ok: 0,
  failures: 0,
  guardRejections: 0,
  retries: 0,
  byKind: { buy: 0, detail: 0, orders: 0 } as Record<Kind, number>,
  refusals: new Map<string, number>(),
  failed: new Map<string, number>(),
  latencies: [] as number[],
}
/** Orders the shop confirmed: each must be in the database, written by the unit that answered. */
const confirmed: { id: number; rId: string; unit: string }[] = []

const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function once(kind: Kind, rId: string, entry: string): Promise<void> {
  const pId = PRODUCTS[Math.floor(Math.random() * PRODUCTS.length)]!.id
  const path =
    kind === 'buy'
      ? `/api/buy?r_id=${rId}&pId=${pId}&number=1`
      : kind === 'detail'
        ? `/api/detail?r_id=${rId}&pId=${pId}`
        : `/api/orders?r_id=${rId}`
  const t0 = performance.now()
  let why = ''
  for (let attempt = 1; attempt <= MAX_TRIES; attempt++) {
    try {
      const res = await request(entry + path, {
        method: kind === 'buy' ? 'POST' : 'GET',
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      })
      const body = (await res.body.json()) as {
        error?: { code?: string }
        order?: { id: number; unit: string }
      }
      if (res.statusCode === 200) {
        stats.ok++
        stats.latencies.push(performance.now() - t0)
        if (kind === 'buy' && body.order) confirmed.push({ id: body.order.id, rId, unit: body.order.unit })
        return
      }
      const code = body.error?.code ?? `HTTP_${res.statusCode}`
      why = `${res.statusCode} ${code}`
      if (!RETRYABLE.has(res.statusCode)) break
      if (code.startsWith('APPACTIVE_')) stats.guardRejections++
      bump(stats.refusals, code)
      const after = Number(res.headers['retry-after'] ?? 1)
      await sleep(Math.min(after * 1000, 50 * attempt))
    } catch (err) {
      why = (err as { code?: string }).code ?? (err as Error).message
      await sleep(50 * attempt)
    }
    stats.retries++
  }
  stats.failures++
  bump(stats.failed, `${kind}: ${why}`)
}

const started = performance.now()
const deadline = started + seconds * 1000
async function worker(n: number): Promise<void> {
  for (let i = 0; performance.now() < deadline; i++) {
    const entry = state.gateways[UNITS[(n + i) % UNITS.length]!]
    const rId = USERS[Math.floor(Math.random() * USERS.length)]!
    const r = Math.random()
    const kind: Kind = r < 0.4 ? 'buy' : r < 0.7 ? 'detail' : 'orders'
    stats.requests++
    stats.byKind[kind]++
    const t = performance.now()
    await once(kind, rId, entry)
    await sleep(Math.max(0, 50 - (performance.now() - t))) // about 20 requests per second per worker
  }
}

console.log(
  bold(
    `demo:load: ${seconds} s through both gateways, ${workers} workers; cut-over of ${MOVED} ${from} -> ${to} at ${(seconds / 4).toFixed(1)} s`,
  ),
)
const cutover: Promise<Operation | Error> = (async () => {
  await sleep((seconds * 1000) / 4)
  return runCutover(state, { ranges: [MOVED], to }, `demo:load cut-over ${MOVED} -> ${to}`, {
    phase: (p) => console.log(`  cut-over  ${describePhase(p)}`),
  }).catch((err: Error) => err)
})()
await Promise.all(Array.from({ length: workers }, (_, n) => worker(n)))
const op = await cutover
const elapsed = (performance.now() - started) / 1000

// ---- the dual-write check --------------------------------------------------------------------------

const rows = await ordersAfter(firstRow)
const viewer = controlApi(state.controlUrl, state.tokens.viewer)
const routers = new Map<number, Router>()
for (const v of new Set(rows.map((r) => r.rule_version))) {
  const record = await viewer.call<RuleSetRecord>('GET', `/v1/rules/${v}`).catch(() => undefined)
  if (record !== undefined) routers.set(v, compileRouter(record.ruleSet))
}
const violations = dualWriteViolations(rows, routers, confirmed)
const movedWriters = new Set(
  rows.filter((r) => Number(r.r_id) >= 2000 && Number(r.r_id) <= 2999).map((r) => r.unit),
)

// ---- report ------------------------------------------------------------------------------------------

const sorted = [...stats.latencies].sort((a, b) => a - b)
const pct = (p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!.toFixed(0) : '-'
const list = (m: Map<string, number>) => [...m].map(([k, v]) => `${k} ${v}`).join(', ')
const line = (label: string, value: string | number, note = '') =>
  console.log(
    `  ${label.padEnd(18)}${typeof value === 'number' ? String(value).padStart(7) : value}${note ? `   ${note}` : ''}`,
  )

console.log('')
line(
  'requests',
  stats.requests,
  `buy ${stats.byKind.buy}, detail ${stats.byKind.detail}, orders ${stats.byKind.orders}; ${(stats.requests / elapsed).toFixed(0)}/s`,
)
line('ok', stats.ok, `latency p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms`)
line('failures', stats.failures, stats.failures ? red(list(stats.failed)) : '')
line(
  'guard rejections',
  stats.guardRejections,
  stats.refusals.size ? `${list(stats.refusals)}; each retried` : '',
)
line('retries', stats.retries)
if (op instanceof Error) {
  line('cut-over', 'failed', red(op.message))
} else {
  line(
    'cut-over',
    op.state,
    `${operationMs(op)} ms, rule set v${beforeRecord.version} -> v${op.toVersion}${op.error ? red(` ${op.error.code}: ${op.error.message}`) : ''}`,
  )
}
line(
  'dual-write check',
  violations.length,
  `violation(s) in ${rows.length} orders written during the run (moved users written by ${[...movedWriters].sort().join(' and ') || 'nobody'})`,
)
for (const v of violations.slice(0, 20)) console.log(red(`    ${v}`))
const ok =
  stats.failures === 0 && violations.length === 0 && !(op instanceof Error) && op.state === 'succeeded'
console.log(ok ? green('  every request served, no dual write') : red('  NOT CLEAN: see above'))
const result = {
  requests: stats.requests,
  failures: stats.failures,
  guardRejections: stats.guardRejections,
  violations: violations.length,
}
console.log(JSON.stringify(result).replaceAll('":', '": ').replaceAll(',"', ', "'))
process.exit(ok ? 0 : 1)
