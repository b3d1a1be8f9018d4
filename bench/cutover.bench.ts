/**
 * `npm run bench:cutover`: how long a planned cut-over of one key range takes end to end (issue 7,
 * item 9): a control plane with its orchestrator, 100 real agents on loopback, a shared-database
 * topology (`none` probes: catch-up has nothing to wait for), and cut-overs of `2000~2999` alternating
 * between the two units. AppActive's own script for the same step sleeps 3 s blind and then polls
 * files for up to 3 s, verifying nothing; the target here is `cutover_total_ms` <= 1000.
 *
 * What runs where. The control plane (fastify API, agent channel, SQLite store in a temp dir with its
 * production settings: WAL, `synchronous = FULL`) runs alone in this process. The agents are real
 * `RoutingAgent` + `ControlChannel` pairs, as every gateway and application embeds them, hosted in
 * APPACTIVE_BENCH_WORKERS (default 2) child processes forked with tsx (bench/lib/agent-workers.ts, the
 * host of bench:propagation). In production the control plane and each agent are separate processes;
 * putting the agents in this process would make every ack wait behind 100 agents compiling rule sets
 * on the control plane's own event loop, and the figure would measure the harness. On a 2-core machine
 * the children and the control plane still share the cores.
 *
 * Per cut-over: `POST /v1/cutovers` (timed: the plan), then `POST /v1/operations/{id}/start` and the
 * wait for the operation's terminal event on the control plane's event bus. Phase durations are the
 * orchestrator's own (`phases[].detail.ms`, monotonic); the total is the stored `startedAt` ->
 * `endedAt` (whole ms). Every cut-over must succeed with all agents acked in every phase (none lapsed:
 * a lapse would mean the bench measured a lease wait), and afterwards every agent must hold the final
 * version and answer 9 check ids as it does, or the bench fails.
 *
 * Baseline, same run: one non-moving publish through `POST /v1/rules` (a new description) until all
 * agents acked. A cut-over publishes three versions and waits for three rounds of acks, so about three
 * of these plus the drain, the catch-up and the stored phase records is what to expect.
 *
 * Environment: APPACTIVE_BENCH_AGENTS (100), APPACTIVE_BENCH_CUTOVERS (measured, 10; one more warms
 * up), APPACTIVE_BENCH_WORKERS (2), APPACTIVE_BENCH_LEASE_MS (2000).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import {
  createControlPlane,
  createOrchestrator,
  type Operation,
  openStore,
  type RuleSetRecord,
} from '../src/control/index.js'
import { benchRules } from './lib/agent-host.js'
import { AgentWorkers } from './lib/agent-workers.js'
import { machineInfo } from './lib/machine.js'
import { envInt, median } from './lib/numbers.js'
import { printReport, printTable, type Row, round } from './lib/report.js'

const machine = machineInfo()

const AGENTS = envInt('APPACTIVE_BENCH_AGENTS', 100)
const CUTOVERS = envInt('APPACTIVE_BENCH_CUTOVERS', 10)
const WORKERS = envInt('APPACTIVE_BENCH_WORKERS', 2)
const LEASE_MS = envInt('APPACTIVE_BENCH_LEASE_MS', 2000)
const WARMUP = 1
const WAIT_MS = 30_000
const PHASES = ['fence', 'drain', 'catch-up', 'switch', 'unfence'] as const

const ADMIN = 'bench-admin-token-0123456789'
const OPERATOR = 'bench-operator-token-0123456789'
const AGENT = 'bench-agent-token-0123456789'
const TOPOLOGY = {
  units: [{ name: 'center', center: true }, { name: 'unit' }],
  apps: [{ name: 'shop', services: [{ name: 'orders', type: 'unit' }] }],
  dbScopes: [{ name: 'orders', app: 'shop', engine: 'postgres' }],
  probes: [
    { source: 'center', target: 'unit', kind: 'none' },
    { source: 'unit', target: 'center', kind: 'none' },
  ],
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function api<T>(
  url: string,
  method: 'GET' | 'POST' | 'PUT',
  path: string,
  token: string,
  body?: unknown,
) {
  const res = await request(`${url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  const text = await res.body.text()
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: HTTP ${res.statusCode}: ${text}`)
  return JSON.parse(text) as T
}

/** The rule set without its version (the control plane takes the next one). */
function unversioned(unitUpTo: number, description?: string) {
  const { version: _v, ...doc } = benchRules(0, unitUpTo)
  return description === undefined ? doc : { ...doc, description }
}

interface CutoverResult {
  readonly to: string
  readonly planMs: number
  readonly totalMs: number
  readonly clientMs: number
  readonly phases: Readonly<Record<(typeof PHASES)[number], number>>
}

// ---------------------------------------------------------------------------------------------- setup

const home = await mkdtemp(join(tmpdir(), 'appactive-bench-cutover-'))
const store = await openStore(`sqlite:${join(home, 'control.db')}`)
const cp = await createControlPlane({
  store,
  tokens: {
    tokens: [
      { name: 'admin', role: 'admin', token: ADMIN },
      { name: 'operator', role: 'operator', token: OPERATOR },
    ],
    agentTokens: [AGENT],
  },
  listen: { port: 0 },
  leaseMs: LEASE_MS,
  orchestrator: createOrchestrator(),
})
const cpStarted = performance.now()
const { url } = await cp.listen()
const workers = new AgentWorkers(WORKERS)

try {
  await api(url, 'PUT', '/v1/topology', ADMIN, { topology: TOPOLOGY, reason: 'bench' })
  await api(url, 'POST', '/v1/rules', OPERATOR, { ruleSet: unversioned(1999), reason: 'bench v1' })
  const connectStarted = performance.now()
  await workers.start(url, AGENT, AGENTS)
  const ready = performance.now() + WAIT_MS
  for (;;) {
    const nodes = cp.rules.nodes()
    const on = nodes.filter((n) => n.connected && n.appliedVersion === 1).length
    if (on === AGENTS) break
    if (performance.now() > ready)
      throw new Error(`only ${on} of ${AGENTS} agents connected and on version 1`)
    await sleep(10)
  }
  const connectMs = performance.now() - connectStarted
  // The orchestrator waits one lease after its start for agents of a previous control plane: not here.
  await sleep(Math.max(0, cpStarted + LEASE_MS + 100 - performance.now()))

  // -------------------------------------------------------------------------------------------- runs

  let unitUpTo = 1999
  const publishes: number[] = []
  async function publishBaseline(i: number): Promise<void> {
    const t0 = performance.now()
    const record = await api<RuleSetRecord>(url, 'POST', '/v1/rules', OPERATOR, {
      ruleSet: unversioned(unitUpTo, `baseline ${i}`),
      reason: 'bench baseline',
    })
    const r = await cp.rules.waitForAcks(record.version, { timeoutMs: WAIT_MS })
    const ms = performance.now() - t0
    if (!r.ok || r.satisfied.length !== AGENTS || r.lapsed.length > 0)
      throw new Error(`baseline v${record.version}: ${r.satisfied.length} acked, ${r.lapsed.length} lapsed`)
    publishes.push(ms)
  }

  async function cutover(to: 'unit' | 'center'): Promise<CutoverResult> {
    const t0 = performance.now()
    const planned = await api<Operation>(url, 'POST', '/v1/cutovers', OPERATOR, {
      moves: [{ ranges: ['2000~2999'], to }],
      reason: `bench: 2000~2999 to ${to}`,
    })
    const planMs = performance.now() - t0
    const ended = new Promise<Operation>((resolve) => {
      const off = cp.events.subscribe(planned.id, (e) => {
        if (e.type !== 'operation' || e.operation.state === 'planned' || e.operation.state === 'running')
          return
        off()
        resolve(e.operation)
      })
    })
    const t1 = performance.now()
    await api(url, 'POST', `/v1/operations/${planned.id}/start`, OPERATOR)
    const op = await Promise.race([
      ended,
      sleep(WAIT_MS).then(() => {
        throw new Error(`cut-over ${planned.id} did not end within ${WAIT_MS} ms`)
      }),
    ])
    const clientMs = performance.now() - t1
    if (op.state !== 'succeeded')
      throw new Error(`cut-over ${op.id} ${op.state}: ${JSON.stringify(op.error)}`)
    const phases = {} as Record<(typeof PHASES)[number], number>
    for (const name of PHASES) {
      const p = op.phases.find((x) => x.name === name)
      const d = (p?.detail ?? {}) as { ms?: number; acked?: number; lapsed?: unknown[] }
      if (p?.outcome !== 'ok' || typeof d.ms !== 'number')
        throw new Error(`phase ${name}: ${JSON.stringify(p)}`)
      if ((d.lapsed?.length ?? 0) > 0)
        throw new Error(`phase ${name}: agents lapsed: ${JSON.stringify(d.lapsed)}`)
      if (d.acked !== undefined && d.acked !== AGENTS)
        throw new Error(`phase ${name}: ${d.acked} of ${AGENTS} acked`)
      phases[name] = d.ms
    }
    const latest = (await store.latestRuleSet())!
    const wrong = await workers.check(latest.ruleSet)
    if (wrong.length > 0)
      throw new Error(`${wrong.length} agents disagree after ${op.id}: ${wrong.slice(0, 5)}`)
    unitUpTo = to === 'unit' ? 2999 : 1999
    return {
      to,
      planMs,
      totalMs: Date.parse(op.endedAt!) - Date.parse(op.startedAt!),
      clientMs,
      phases,
    }
  }

  const runs: CutoverResult[] = []
  for (let i = 0; i < WARMUP + CUTOVERS; i++) {
    await publishBaseline(i)
    await sleep(50)
    const r = await cutover(i % 2 === 0 ? 'unit' : 'center')
    runs.push(r)
    process.stderr.write(`cut-over ${i + 1 - WARMUP}${i < WARMUP ? ' (warm-up)' : ''}: ${r.totalMs} ms\n`)
    await sleep(100)
  }
  const agentsRssMb = await workers.stop()
  const measured = runs.slice(WARMUP)
  const baseline = publishes.slice(WARMUP)

  // ------------------------------------------------------------------------------------------ report

  const stat = (label: string, xs: readonly number[]): Row => ({
    measured: label,
    'median ms': median(xs),
    'max ms': Math.max(...xs),
    'min ms': Math.min(...xs),
  })
  printTable(
    [
      stat(
        'plan (POST /v1/cutovers)',
        measured.map((r) => r.planMs),
      ),
      ...PHASES.map((p) =>
        stat(
          `phase ${p}`,
          measured.map((r) => r.phases[p]),
        ),
      ),
      stat(
        'TOTAL: startedAt -> endedAt (stored)',
        measured.map((r) => r.totalMs),
      ),
      stat(
        'start POST -> terminal event (client)',
        measured.map((r) => r.clientMs),
      ),
      stat('baseline: 1 publish until all acked', baseline),
    ],
    `cut-over of 2000~2999 (1000 keys), ${AGENTS} agents in ${WORKERS} child processes, shared DB (none probes), ` +
      `lease ${LEASE_MS} ms, ${CUTOVERS} cut-overs after ${WARMUP} warm-up (connect ${Math.round(connectMs)} ms)`,
  )
  printTable(
    runs.map((r, i) => ({
      run: i < WARMUP ? 'warm-up' : String(i + 1 - WARMUP),
      'to unit': r.to,
      ...Object.fromEntries(PHASES.map((p) => [`${p} ms`, r.phases[p]])),
      'total ms': r.totalMs,
      'baseline publish ms': publishes[i]!,
    })),
    'each cut-over (phase times are the orchestrator detail.ms)',
  )

  const metrics: Record<string, number> = {
    cutover_total_ms: round(median(measured.map((r) => r.totalMs))),
    cutover_total_max_ms: round(Math.max(...measured.map((r) => r.totalMs))),
  }
  for (const p of PHASES)
    metrics[`cutover_${p.replace('-', '_')}_ms`] = round(median(measured.map((r) => r.phases[p])))
  for (const p of PHASES)
    metrics[`cutover_${p.replace('-', '_')}_max_ms`] = round(Math.max(...measured.map((r) => r.phases[p])))
  metrics.cutover_plan_ms = round(median(measured.map((r) => r.planMs)))
  metrics.cutover_client_ms = round(median(measured.map((r) => r.clientMs)))
  metrics.publish_ack_ms = round(median(baseline))
  metrics.cutover_vs_publish_ratio = round(metrics.cutover_total_ms! / metrics.publish_ack_ms, 3)
  metrics.cutover_warmup_total_ms = round(runs[0]!.totalMs)
  metrics.connect_ms = round(connectMs)
  metrics.server_rss_mb = round(process.memoryUsage().rss / 2 ** 20, 1)
  metrics.agents_rss_mb = round(agentsRssMb, 1)
  await workers.exit()
  await cp.close()
  await store.close()
  await rm(home, { recursive: true, force: true })
  printReport({ bench: 'cutover', machine, metrics })
} catch (err) {
  await workers.exit().catch(() => {})
  await cp.close().catch(() => {})
  await store.close().catch(() => {})
  await rm(home, { recursive: true, force: true }).catch(() => {})
  throw err
}
