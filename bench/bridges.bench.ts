/**
 * `npm run bench:bridges`: what the HTTP bridges cost a service (issue 5 item 7). Three pairs of targets,
 * each target in its own process (bench/lib/bridge-targets.ts), the same code with and without appactive:
 *   express   hello-world Express 5 vs the same app with appactiveMiddleware
 *   fastify   hello-world Fastify 5 vs the same app with appactivePlugin
 *   client    node:http sending every request on to a loopback backend (bench/lib/backend.ts, its own
 *             process) with an undici Agent, vs the same with `Agent.compose(routeInterceptor())` and the
 *             call inside runWithRoute (hop headers and baggage sent)
 * Every request is `GET /orders/7?uid=4000`: a `unit` service, and key 4000 is owned by the appactive
 * targets' unit, so the whole protection runs and the handler runs inside the route context. Before any
 * timing each target's answer is checked (the route id read in the handler; a key of another unit refused
 * with 421; the headers the backend saw), so the bench cannot time a refusal or a call without headers.
 *
 * Method: per target, `wrk -t1 -c64 -d2s` for the warm-up (discarded), then `-d5s --latency`. The two
 * targets of a pair run back to back, plain first in odd rounds and appactive first in even ones (so a
 * drift of the shared machine's load does not always hit the same side); every ratio is appactive / plain
 * within one round, and the median over the rounds is reported (also for rps, p99 and CPU). 5 rounds
 * of 5 s rather than bench:gateway's 3 of 8 s: more pairs for the median, each pair closer in time. Each
 * timed run also reads the CPU time (user + system, /proc/PID/stat) the target's process used per
 * request: steadier than rps on a shared machine.
 *
 * Every process runs JavaScript that the TypeScript compiler emitted (`ts.transpileModule`, no type check)
 * from the current src/, test/helpers/topology.ts and the bench's helpers, into the temp dir with the
 * repository's layout (dist/ is not touched): what `npm run build` gives users. tsx (esbuild with
 * keepNames) wraps every named closure in a `__name()` call, which costs in hot paths and is not what
 * users run; APPACTIVE_BENCH_RUNNER=tsx runs the TypeScript through tsx anyway.
 *
 * Environment:
 *   APPACTIVE_BENCH_DURATION_S (5), APPACTIVE_BENCH_WARMUP_S (2), APPACTIVE_BENCH_ROUNDS (5)
 *   APPACTIVE_BENCH_RUNNER        built (default) | tsx
 *   APPACTIVE_BENCH_CPU_PROF=DIR  run every target with `--cpu-prof`; each writes
 *                                 DIR/<target>/CPU.*.cpuprofile when it stops (under tsx, thread 0's file
 *                                 is the main thread's, the other tsx's loader thread). Read them with
 *                                 bench/lib/cpuprofile-top.ts. Profiling slows the targets, so that run's
 *                                 figures are not the bench's
 *   APPACTIVE_BENCH_KEEP=1        keep the temp dir with every process's log
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import ts from 'typescript'
import { type Child, cpuSeconds, freePort, tail } from './lib/children.js'
import { machineInfo } from './lib/machine.js'
import { envInt, median } from './lib/numbers.js'
import { printReport, printTable, type Row, round, targetRow } from './lib/report.js'
import { type Answer, benchSession } from './lib/session.js'
import { ensureWrk, runWrk, type WrkResult } from './lib/wrk.js'

const ROOT = new URL('..', import.meta.url).pathname
const TSX = import.meta.resolve('tsx')

const DURATION_S = envInt('APPACTIVE_BENCH_DURATION_S', 5)
const WARMUP_S = envInt('APPACTIVE_BENCH_WARMUP_S', 2)
const ROUNDS = envInt('APPACTIVE_BENCH_ROUNDS', 5)
const RUNNER = process.env.APPACTIVE_BENCH_RUNNER ?? 'built'
if (RUNNER !== 'built' && RUNNER !== 'tsx') throw new Error('APPACTIVE_BENCH_RUNNER must be built or tsx')
const CPU_PROF = process.env.APPACTIVE_BENCH_CPU_PROF
const KEEP = process.env.APPACTIVE_BENCH_KEEP === '1'
const CONNECTIONS = 64
const PATH = '/orders/7?uid=4000'
const TARGETS = { rps: 0.95, p99: 1.05 }

const session = benchSession('bridges', KEEP)
const { log, children, tmp, cleanup, get, untilAnswer } = session
// --------------------------------------------------------------------------------------------- processes

const machine = machineInfo()

/**
 * Transpiles src/, test/helpers/topology.ts and the bench's helpers into `<tmp>/build` with the repository's
 * layout (so their relative imports hold), next to a copy of package.json (`type: module`) and a link to
 * node_modules. Returns the directory to run the helpers from.
 */
function build(): string {
  const out = join(tmp, 'build')
  const sources = (dir: string): string[] =>
    readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    )
  const files = [
    ...sources('src'),
    'test/helpers/topology.ts',
    'bench/lib/backend.ts',
    'bench/lib/bridge-targets.ts',
  ]
  for (const file of files) {
    const js = ts.transpileModule(readFileSync(join(ROOT, file), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: file,
    })
    const target = join(out, file.replace(/\.ts$/, '.js'))
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(target, js.outputText)
  }
  copyFileSync(join(ROOT, 'package.json'), join(out, 'package.json'))
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'), 'dir')
  log(`transpiled ${files.length} files into ${relative(tmp, out)}/`)
  return out
}

// ----------------------------------------------------------------------------------------------- targets

type PairName = 'express' | 'fastify' | 'client'
type Side = 'plain' | 'appactive'

/** One timed wrk run and the CPU time the target (and the backend) used meanwhile, per request. */
interface Measured extends WrkResult {
  readonly cpuUsPerReq: number
  readonly backendCpuUsPerReq: number
}

interface Target {
  readonly pair: PairName
  readonly side: Side
  readonly name: string
  readonly child: Child
  readonly url: string
  readonly results: Measured[]
}

const LABELS: Record<PairName, string> = {
  express: 'Express 5, appactiveMiddleware',
  fastify: 'Fastify 5, appactivePlugin',
  client: 'undici client, routeInterceptor',
}

async function main(): Promise<void> {
  const wrkVersion = ensureWrk()
  log(`${wrkVersion}; temp dir ${tmp}`)
  const base = RUNNER === 'tsx' ? ROOT : build()
  const spawnOptions = { cwd: base, env: { ...process.env, NODE_OPTIONS: '' }, logDir: tmp }
  const node = (name: string, file: string, ...args: string[]) => {
    // Node 20 refuses --cpu-prof in NODE_OPTIONS: it goes on the command line.
    const profile =
      CPU_PROF === undefined || name === 'backend'
        ? []
        : ['--cpu-prof', `--cpu-prof-dir=${resolve(CPU_PROF, name)}`]
    const script =
      RUNNER === 'tsx' ? ['--import', TSX, join(ROOT, file)] : [join(base, file.replace(/\.ts$/, '.js'))]
    return children.spawn(name, process.execPath, [...profile, ...script, ...args], spawnOptions)
  }

  const backendPort = await freePort()
  const backendUrl = `http://127.0.0.1:${backendPort}`
  const backend = node('backend', 'bench/lib/backend.ts', String(backendPort))
  await untilAnswer(backend, backendUrl)

  const targets: Target[] = []
  for (const pair of ['express', 'fastify', 'client'] as const) {
    for (const side of ['plain', 'appactive'] as const) {
      const name = `${pair}-${side}`
      const port = await freePort()
      const child = node(name, 'bench/lib/bridge-targets.ts', name, String(port), backendUrl)
      targets.push({ pair, side, name, child, url: `http://127.0.0.1:${port}`, results: [] })
    }
  }
  for (const t of targets) await untilAnswer(t.child, t.url)
  for (const t of targets) await sanityCheck(t)

  const pairs = (['express', 'fastify', 'client'] as const).map((pair) =>
    targets.filter((t) => t.pair === pair),
  )
  for (let r = 1; r <= ROUNDS; r++) {
    for (const pair of pairs) {
      for (const t of r % 2 === 1 ? pair : [...pair].reverse()) {
        if (t.child.proc.exitCode !== null || t.child.proc.signalCode !== null)
          throw new Error(`${t.name} died during the bench:\n${tail(t.child.logFile)}`)
        await runWrk(`${t.url}${PATH}`, WARMUP_S, CONNECTIONS)
        const [cpu0, backendCpu0] = [cpuSeconds([t.child.pid]), cpuSeconds([backend.pid])]
        const res = await runWrk(`${t.url}${PATH}`, DURATION_S, CONNECTIONS)
        const [cpu1, backendCpu1] = [cpuSeconds([t.child.pid]), cpuSeconds([backend.pid])]
        if (res.non2xx > 0) throw new Error(`${t.name}: ${res.non2xx} non-2xx answers; the bench is broken`)
        const perReq = (seconds: number) => (seconds * 1e6) / Math.max(1, res.requests)
        const m = {
          ...res,
          cpuUsPerReq: perReq(cpu1 - cpu0),
          backendCpuUsPerReq: perReq(backendCpu1 - backendCpu0),
        }
        t.results.push(m)
        log(
          `round ${r}/${ROUNDS} ${t.name.padEnd(17)} ${Math.round(res.rps).toString().padStart(6)} rps  ` +
            `p99 ${res.p99Ms.toFixed(2)} ms  CPU ${m.cpuUsPerReq.toFixed(1)} us/req` +
            (res.socketErrors > 0 ? `  socket errors ${res.socketErrors}` : ''),
        )
      }
    }
  }
  await cleanup()
  report(targets, wrkVersion)
}

/** Fails before any timing when a target would not measure what its name says. */
async function sanityCheck(t: Target): Promise<void> {
  const fail = (what: string, a: Answer) => {
    throw new Error(
      `${t.name}: ${what}; got ${a.status} ${JSON.stringify(a.headers)} ${a.body.slice(0, 300)}`,
    )
  }
  if (t.pair === 'client') {
    const hello = await get(`${t.url}${PATH}`)
    if (hello.status !== 200 || !hello.body.includes('"hello"'))
      fail(`GET ${PATH} is not the backend's`, hello)
    const seen = await get(`${t.url}/_seen?uid=4000`)
    const headers = (JSON.parse(seen.body || '{}') as { headers?: Record<string, string> }).headers ?? {}
    const routed =
      headers['x-appactive-route-id'] === '4000' &&
      headers['x-appactive-unit'] === 'hz' &&
      (headers.baggage ?? '').includes('4000')
    if (t.side === 'appactive' && !routed) fail('the backend saw no route headers and baggage', seen)
    if (t.side === 'plain' && headers['x-appactive-route-id'] !== undefined)
      fail('the plain client sent route headers', seen)
    return
  }
  const ok = await get(`${t.url}${PATH}`)
  const routeId = t.side === 'appactive' ? '4000' : null
  if (ok.status !== 200 || ok.body !== JSON.stringify({ id: '7', routeId }))
    fail(`GET ${PATH} must answer {"id":"7","routeId":${JSON.stringify(routeId)}}`, ok)
  if (t.side === 'plain') return
  // Key 7000 is unit sh's: a live protection refuses it and names the owner.
  const wrong = await get(`${t.url}/orders/7?uid=7000`)
  if (wrong.status !== 421 || wrong.headers['x-appactive-unit'] !== 'sh')
    fail('a key of unit sh must be refused with 421', wrong)
}

function report(targets: readonly Target[], wrkVersion: string): void {
  const stat = (t: Target, f: (m: Measured) => number) => median(t.results.map(f))
  printTable(
    targets.map((t) => ({
      target: t.name,
      rps: stat(t, (m) => m.rps),
      'p50 ms': stat(t, (m) => m.p50Ms),
      'p99 ms': stat(t, (m) => m.p99Ms),
      'CPU us/req': stat(t, (m) => m.cpuUsPerReq),
      'backend CPU us/req': t.pair === 'client' ? stat(t, (m) => m.backendCpuUsPerReq) : '-',
      'rps per round': t.results.map((m) => Math.round(m.rps).toLocaleString('en-US')).join(' / '),
      'socket errors': t.results.reduce((n, m) => n + m.socketErrors, 0),
    })),
    `bench:bridges: ${wrkVersion} -t1 -c${CONNECTIONS} -d${DURATION_S}s --latency GET ${PATH} ` +
      `after a ${WARMUP_S} s warm-up; median of ${ROUNDS} rounds; ${machine.cpu_cores} cores shared by wrk ` +
      `and the target (and the backend for the client); 1-min load at start ${machine.loadavg_1m}`,
  )

  const metrics: Record<string, number> = {}
  const rows: Row[] = []
  const verdicts: Row[] = []
  for (const pair of ['express', 'fastify', 'client'] as const) {
    const plain = targets.find((t) => t.pair === pair && t.side === 'plain')!
    const aa = targets.find((t) => t.pair === pair && t.side === 'appactive')!
    // Round by round: the two runs of a round are back to back, so the machine's load is alike.
    const paired = (f: (m: Measured) => number) => aa.results.map((m, i) => f(m) / f(plain.results[i]!))
    const rps = paired((m) => m.rps)
    const p99 = paired((m) => m.p99Ms)
    const cpu = paired((m) => m.cpuUsPerReq)
    const addedNs = aa.results.map((m, i) => (m.cpuUsPerReq - plain.results[i]!.cpuUsPerReq) * 1000)
    Object.assign(metrics, {
      [`${pair}_plain_rps`]: round(
        stat(plain, (m) => m.rps),
        0,
      ),
      [`${pair}_appactive_rps`]: round(
        stat(aa, (m) => m.rps),
        0,
      ),
      [`${pair}_plain_p99_ms`]: round(
        stat(plain, (m) => m.p99Ms),
        2,
      ),
      [`${pair}_appactive_p99_ms`]: round(
        stat(aa, (m) => m.p99Ms),
        2,
      ),
      [`${pair}_rps_ratio`]: round(median(rps), 3),
      [`${pair}_p99_ratio`]: round(median(p99), 3),
      [`${pair}_cpu_ratio`]: round(median(cpu), 3),
      [`${pair}_cpu_added_ns`]: round(median(addedNs), 0),
    })
    const perRound = (xs: number[]) => xs.map((x) => x.toFixed(3)).join(' / ')
    rows.push({
      bridge: LABELS[pair],
      'rps ratio': metrics[`${pair}_rps_ratio`]!,
      'p99 ratio': metrics[`${pair}_p99_ratio`]!,
      'CPU ratio': metrics[`${pair}_cpu_ratio`]!,
      'CPU ns/req added': metrics[`${pair}_cpu_added_ns`]!,
      'rps ratio per round': perRound(rps),
      'p99 ratio per round': perRound(p99),
      'CPU ratio per round': perRound(cpu),
    })
    verdicts.push(
      targetRow(metrics, `${pair}_rps_ratio`, '>=', TARGETS.rps),
      targetRow(metrics, `${pair}_p99_ratio`, '<=', TARGETS.p99),
    )
  }
  printTable(rows, 'with / without appactive (median over rounds of the ratio within each round)')
  printTable(verdicts, 'targets (issue 5)')
  printReport({ bench: 'bridges', machine, metrics })
}

session.run(main)
