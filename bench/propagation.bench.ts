/**
 * `npm run bench:propagation`: how long a published rule-set version takes to reach, and be acknowledged
 * by, every agent (issue 3, item 8): one rule server, N = 100 and N = 1,000 agents, 50 versions each,
 * latency from `publish()` until `waitForAcks()` resolves with every agent acknowledged.
 *
 * Where the agents run. In production each agent is its own process (a gateway, an application) and
 * the control plane is another. So the rule server runs ALONE in this process, and the agents run in
 * child processes (APPACTIVE_BENCH_WORKERS, default 2, forked with tsx), N/k agents each, on the other
 * core. Running them all in this process would make the server and 1,000 agents share one event loop:
 * every ack would wait behind agents compiling rule sets, which measures the test harness, not the
 * protocol. That variant is still reported as a secondary table (fewer versions: it is slow).
 * What a 2-core machine still cannot reproduce: 1,000 agents applying in parallel on 1,000 processors.
 * Here they queue on one or two cores, so the full-agent figure includes N x (one agent's apply and
 * ack) / cores. Two baselines measured in the same run separate the parts:
 *
 * - fan-out: bare SSE clients (undici, as the channel uses) that only timestamp each frame's arrival;
 *   latency = publish until the LAST agent has received the frame. Clocks of the processes are
 *   compared through offsets measured by IPC ping (minimum round trip of 20).
 * - ack-only: the same clients POST `/ack` the moment a frame arrives (no parse, validation or compile);
 *   latency = publish until `waitForAcks` resolves: what the server and the wire cost.
 * - agents: real RoutingAgent + ControlChannel per agent (default Pool of 2 connections, no cache,
 *   silent logger): the issue's metric.
 *
 * Each phase: a fresh server (default lease 10 s, heartbeats every 2.5 s, as in production), N agents
 * started at once and waited for until every rule stream is open (`connect_ms`), 5 warm-up versions,
 * then 50 measured ones, 10 ms apart. Versions alternate between two mappings (`unit` owns 0~1999, then
 * 0~2999) and every 5th carries a fence on 2000~2999. Every version must be acknowledged by all N (none
 * lapsed), and after the last one every agent must hold it and answer as the published rule set does,
 * or the bench fails. Percentiles are nearest-rank over the 50 versions (so p99 is the 50th: the max).
 *
 * Environment: APPACTIVE_BENCH_VERSIONS (50), APPACTIVE_BENCH_WORKERS (2), APPACTIVE_BENCH_INPROCESS_VERSIONS
 * (10; 0 skips the in-process table).
 */
import { type ChildProcess, fork } from 'node:child_process'
import { EventEmitter, once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { createRuleServer, type RuleServer } from '../src/channels/control/server.js'
import type { RuleSet } from '../src/rules/index.js'
import { AgentHost, benchRules, clock, type HostMode } from './lib/agent-host.js'
import { machineInfo } from './lib/machine.js'
import { envInt } from './lib/numbers.js'
import type { FromWorker, ToWorker } from './lib/propagation-worker.js'
import { printReport, printTable, type Row, round } from './lib/report.js'

const machine = machineInfo()

const TOKEN = 'bench-agent-token-0123456789'
const SIZES = [100, 1000] as const
const WARMUP = 5
const GAP_MS = 10
const WAIT_MS = 30_000
const VERSIONS = envInt('APPACTIVE_BENCH_VERSIONS', 50)
const WORKERS = envInt('APPACTIVE_BENCH_WORKERS', 2)
const INPROCESS_VERSIONS = envInt('APPACTIVE_BENCH_INPROCESS_VERSIONS', 10, 0)

/** The rule set published as `version`: two mappings alternating, a fence on every 5th. */
function ruleSetAt(version: number): RuleSet {
  return benchRules(version, version % 2 === 0 ? 2999 : 1999, version % 5 === 0 ? ['2000~2999'] : [])
}

// ---------------------------------------------------------------------------------------------- hosts

/** Where a phase's agents live: child processes, or this process. */
interface Hosts {
  readonly where: string
  start(url: string, mode: HostMode, n: number): Promise<void>
  /** Resolves with the (bench clock) time the last agent received `version`; call before publishing. */
  received(version: number): Promise<number>
  check(ruleSet: RuleSet): Promise<string[]>
  /** Closes every agent; the hosts' RSS (MB) just before. */
  stop(): Promise<number>
}

/** n agents over k hosts: [first, count] per host. */
function shares(n: number, k: number): Array<[number, number]> {
  return Array.from({ length: k }, (_, i) => {
    const first = Math.floor((n * i) / k)
    return [first, Math.floor((n * (i + 1)) / k) - first]
  })
}

/** One forked worker (bench/lib/propagation-worker.ts) and its clock offset. */
class Worker extends EventEmitter<{ message: [FromWorker] }> {
  readonly #child: ChildProcess
  /** worker clock - bench clock, ms. */
  offset = 0
  #exiting = false

  constructor() {
    super()
    const path = fileURLToPath(new URL('./lib/propagation-worker.ts', import.meta.url))
    this.#child = fork(path, [], {
      execArgv: [
        '--import',
        'tsx',
        ...(process.env.APPACTIVE_BENCH_CPU_PROF
          ? ['--cpu-prof', `--cpu-prof-dir=${process.env.APPACTIVE_BENCH_CPU_PROF}`]
          : []),
      ],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    })
    this.#child.on('message', (m: FromWorker) => {
      if (m.type === 'failed') throw new Error(`worker failed: ${m.message}`)
      this.emit('message', m)
    })
    this.#child.on('exit', (code) => {
      if (!this.#exiting) throw new Error(`a bench worker exited (${code}) before the bench ended`)
    })
  }

  send(m: ToWorker): void {
    this.#child.send(m)
  }

  /** Sends `m` and resolves with the next message of type `type`. */
  async ask<T extends FromWorker['type']>(m: ToWorker, type: T): Promise<Extract<FromWorker, { type: T }>> {
    const answer = new Promise<Extract<FromWorker, { type: T }>>((resolve) => {
      const on = (r: FromWorker) => {
        if (r.type !== type) return
        this.off('message', on)
        resolve(r as Extract<FromWorker, { type: T }>)
      }
      this.on('message', on)
    })
    this.send(m)
    return answer
  }

  /** Measures the clock offset: the ping with the shortest round trip of 20, its reply at the midpoint. */
  async sync(): Promise<{ offset: number; rtt: number }> {
    let best = { offset: 0, rtt: Number.POSITIVE_INFINITY }
    for (let id = 0; id < 20; id++) {
      const sent = clock()
      const { at } = await this.ask({ type: 'ping', id }, 'pong')
      const back = clock()
      if (back - sent < best.rtt) best = { offset: at - (sent + back) / 2, rtt: back - sent }
    }
    this.offset = best.offset
    return best
  }

  async exit(): Promise<void> {
    this.#exiting = true
    const exited = once(this.#child, 'exit')
    this.#child.disconnect()
    await exited
  }
}

class WorkerHosts implements Hosts {
  readonly where: string
  readonly #workers: Worker[]
  #active: Worker[] = []

  constructor(workers: Worker[]) {
    this.#workers = workers
    this.where = `${workers.length} child processes`
  }

  async start(url: string, mode: HostMode, n: number): Promise<void> {
    const parts = shares(n, this.#workers.length)
    this.#active = this.#workers.filter((_, i) => parts[i]![1] > 0)
    await Promise.all(
      this.#active.map((w, i) => {
        const [first, count] = parts[i]!
        return w.ask({ type: 'start', spec: { url, token: TOKEN, mode, first, count } }, 'started')
      }),
    )
  }

  received(version: number): Promise<number> {
    return Promise.all(
      this.#active.map(
        (w) =>
          new Promise<number>((resolve) => {
            const on = (m: FromWorker) => {
              if (m.type !== 'received' || m.version !== version) return
              w.off('message', on)
              resolve(m.at - w.offset)
            }
            w.on('message', on)
          }),
      ),
    ).then((ats) => Math.max(...ats))
  }

  async check(ruleSet: RuleSet): Promise<string[]> {
    const answers = await Promise.all(this.#active.map((w) => w.ask({ type: 'check', ruleSet }, 'checked')))
    return answers.flatMap((a) => a.wrong)
  }

  async stop(): Promise<number> {
    const answers = await Promise.all(this.#active.map((w) => w.ask({ type: 'stop' }, 'stopped')))
    return answers.reduce((sum, a) => sum + a.rssMb, 0)
  }
}

/** Every agent in this process, next to the server (the secondary table). */
class LocalHosts implements Hosts {
  readonly where = 'this process (with the server)'
  #host: AgentHost | undefined

  async start(url: string, mode: HostMode, n: number): Promise<void> {
    this.#host = new AgentHost({ url, token: TOKEN, mode, first: 0, count: n })
    await this.#host.start()
  }

  received(version: number): Promise<number> {
    return new Promise((resolve) => {
      const on = (v: number, at: number) => {
        if (v !== version) return
        this.#host!.off('received', on)
        resolve(at)
      }
      this.#host!.on('received', on)
    })
  }

  async check(ruleSet: RuleSet): Promise<string[]> {
    return this.#host!.check(ruleSet)
  }

  async stop(): Promise<number> {
    await this.#host?.close()
    this.#host = undefined
    return 0
  }
}

// ---------------------------------------------------------------------------------------------- phases

interface Stats {
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly mean: number
}

interface PhaseResult extends Stats {
  readonly n: number
  readonly mode: HostMode
  readonly where: string
  readonly versions: number
  readonly connectMs: number
  /** CPU time (user + system) of this process per measured version: the server's cost when alone. */
  readonly serverCpuMs: number
  readonly serverRssMb: number
  readonly hostRssMb: number
}

/** Nearest-rank percentiles, max and mean. */
function stats(samples: readonly number[]): Stats {
  const s = [...samples].sort((a, b) => a - b)
  const rank = (p: number) => s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]!
  return { p50: rank(50), p99: rank(99), max: s.at(-1)!, mean: s.reduce((a, b) => a + b, 0) / s.length }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function deadline<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`)), WAIT_MS)
  })
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer))
}

/** Resolves when `n` nodes hold their rule stream open. */
async function allConnected(server: RuleServer, n: number): Promise<void> {
  const end = performance.now() + WAIT_MS
  while (server.nodes().reduce((c, node) => c + (node.connected ? 1 : 0), 0) < n) {
    if (performance.now() > end) throw new Error(`only some of ${n} agents opened their rule stream`)
    await sleep(5)
  }
}

async function phase(hosts: Hosts, mode: HostMode, n: number, versions: number): Promise<PhaseResult> {
  const server = createRuleServer({ tokens: [TOKEN] })
  const { port } = await server.listen(0)
  const started = performance.now()
  await hosts.start(`http://127.0.0.1:${port}`, mode, n)
  await allConnected(server, n)
  const connectMs = performance.now() - started

  const samples: number[] = []
  let cpu = 0
  let last: RuleSet | undefined
  for (let i = 0; i < WARMUP + versions; i++) {
    const ruleSet = ruleSetAt(i + 1)
    const cpuBefore = process.cpuUsage()
    let ms: number
    if (mode === 'receive') {
      const received = hosts.received(ruleSet.version)
      const publishedAt = clock()
      server.publish(ruleSet)
      ms = (await deadline(received, `v${ruleSet.version} to reach every agent`)) - publishedAt
    } else {
      const t0 = performance.now()
      const v = server.publish(ruleSet)
      const r = await server.waitForAcks(v, { timeoutMs: WAIT_MS })
      ms = performance.now() - t0
      if (!r.ok || r.satisfied.length !== n) {
        throw new Error(
          `${mode} N=${n} v${v}: ${r.satisfied.length} acked, ${r.lapsed.length} lapsed, ${r.pending.length} pending`,
        )
      }
    }
    if (i >= WARMUP) {
      const used = process.cpuUsage(cpuBefore)
      cpu += (used.user + used.system) / 1000
      samples.push(ms)
    }
    last = ruleSet
    await sleep(GAP_MS)
  }

  const wrong = await hosts.check(last!)
  if (wrong.length > 0)
    throw new Error(`${mode} N=${n}: ${wrong.length} agents disagree: ${wrong.slice(0, 5)}`)
  const serverRssMb = process.memoryUsage().rss / 2 ** 20
  const hostRssMb = await hosts.stop()
  await server.close()
  const result = {
    n,
    mode,
    where: hosts.where,
    versions,
    connectMs,
    serverCpuMs: cpu / versions,
    serverRssMb,
    hostRssMb,
    ...stats(samples),
  }
  process.stderr.write(
    `${mode} N=${n} (${hosts.where}): p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms\n`,
  )
  return result
}

// ---------------------------------------------------------------------------------------------- run

const workers = Array.from({ length: WORKERS }, () => new Worker())
const syncs = await Promise.all(workers.map((w) => w.sync()))
const inWorkers = new WorkerHosts(workers)

const results: PhaseResult[] = []
for (const n of SIZES)
  for (const mode of ['receive', 'ack', 'agent'] as const) {
    results.push(await phase(inWorkers, mode, n, VERSIONS))
  }
await Promise.all(workers.map((w) => w.exit()))

const local: PhaseResult[] = []
if (INPROCESS_VERSIONS > 0) {
  for (const n of SIZES) local.push(await phase(new LocalHosts(), 'agent', n, INPROCESS_VERSIONS))
}

// ---------------------------------------------------------------------------------------------- report

const KIND: Record<HostMode, string> = {
  receive: 'fan-out: frame received (bare SSE clients)',
  ack: 'ack-only: acked on arrival (bare clients)',
  agent: 'agents: applied and acked (RoutingAgent)',
}
const row = (r: PhaseResult): Row => ({
  N: r.n,
  measured: KIND[r.mode],
  versions: String(r.versions),
  'p50 ms': r.p50,
  'p99 ms': r.p99,
  'max ms': r.max,
  'mean ms': r.mean,
  'connect ms': r.connectMs,
  'server CPU ms/version': r.serverCpuMs,
  'server RSS MB': r.serverRssMb,
  ...(r.hostRssMb > 0 ? { 'agents RSS MB': r.hostRssMb } : {}),
})
printTable(
  results.map(row),
  `propagation: publish() until every agent has it; server alone in this process, agents in ${WORKERS} ` +
    `child processes (clock offsets ${syncs.map((s) => `${s.offset.toFixed(3)} ms ±${(s.rtt / 2).toFixed(3)}`).join(', ')})`,
)
if (local.length > 0) {
  printTable(local.map(row), 'secondary: every agent in the server process (one event loop for all)')
}

const pick = (mode: HostMode, n: number): PhaseResult => results.find((r) => r.mode === mode && r.n === n)!
const metrics: Record<string, number> = {}
for (const n of SIZES) {
  const a = pick('agent', n)
  metrics[`propagation_p50_ms_${n}`] = round(a.p50)
  metrics[`propagation_p99_ms_${n}`] = round(a.p99)
  metrics[`propagation_max_ms_${n}`] = round(a.max)
  metrics[`propagation_mean_ms_${n}`] = round(a.mean)
  metrics[`connect_ms_${n}`] = round(a.connectMs)
  metrics[`server_cpu_per_version_ms_${n}`] = round(a.serverCpuMs)
  metrics[`ack_only_server_cpu_per_version_ms_${n}`] = round(pick('ack', n).serverCpuMs)
  metrics[`fanout_p50_ms_${n}`] = round(pick('receive', n).p50)
  metrics[`fanout_p99_ms_${n}`] = round(pick('receive', n).p99)
  metrics[`ack_only_p50_ms_${n}`] = round(pick('ack', n).p50)
  metrics[`ack_only_p99_ms_${n}`] = round(pick('ack', n).p99)
}
metrics.propagation_vs_fanout_p50_ratio_1000 = round(pick('agent', 1000).p50 / pick('receive', 1000).p50, 3)
for (const r of local) {
  metrics[`inprocess_p50_ms_${r.n}`] = round(r.p50)
  metrics[`inprocess_p99_ms_${r.n}`] = round(r.p99)
}
metrics.rss_mb = round(pick('agent', 1000).serverRssMb, 1)
metrics.agents_rss_mb_1000 = round(pick('agent', 1000).hostRssMb, 1)
printReport({ bench: 'propagation', machine, metrics })
