/**
 * `npm run bench:gateway`: the appactive gateway against a plain Node proxy, in one run, on loopback, with
 * wrk (issue 4 item 7; ecosystem.md §2 for how the proxies were compared before).
 *
 * Targets, all ending at the SAME backend (bench/lib/backend.ts: a single-process node:http JSON server,
 * keep-alive, in its own process):
 *   backend    the backend direct (the ceiling)
 *   plain      bench/lib/plain-proxy.ts: node:http + one undici Pool `stream()` (callback form, as the
 *              gateway), hop-by-hop headers removed, X-Forwarded-For/-Proto/-Host set, no routing (THE
 *              baseline: every ratio is against it, measured in the same run)
 *   gw-1w      the gateway, 1 worker (in-process), access log off
 *   gw-2w      the gateway, 2 workers (node:cluster), access log off
 *   gw-1w-log  the gateway, 1 worker, access log on (the config default), written to a file
 *   gw-1w-heap the gateway, 1 worker, `heap: { maxSemiSpaceMb: 8 }` (so one node:cluster worker under a
 *              primary, started with --max-semi-space-size=8): what capping V8's young generation saves
 *              in memory and costs in CPU
 * Each gateway is the real CLI (`appactive gateway --config FILE --workers N`) in its own process, with a
 * config written to a temp dir: unit `center`, a rule-set file (`r_id` from the query, `mod 10000`, every key
 * owned by unit `unit`), one app whose `unit` upstream is the backend (the config refuses the same instance
 * in two units, and `center` owns no key). `r_id=12345`
 * (key 2345) goes to unit `unit`: the request is routed, its hop headers set, and forwarded.
 *
 * By default every process runs JavaScript compiled into the temp dir: the CLI from the current src/ (tsc
 * with the build config; dist/ is not touched), the backend and the plain proxy transpiled from bench/lib.
 * Under tsx, every process carries tsx's loader thread (about 34 MB RSS here), which would inflate
 * `gateway_rss_mb`. APPACTIVE_BENCH_GATEWAY_RUNNER=tsx runs the TypeScript through tsx instead (no build).
 *
 * Method: per target, `wrk -t1 -c64 -d2s` (warm-up, discarded), then `wrk -t1 -c64 -d8s --latency`; targets
 * are interleaved (backend, plain, gw-1w, gw-2w, gw-1w-log, then again) for 3 rounds and the medians of
 * the rounds reported, because the machine is shared and noisy. Every process (wrk included) shares the
 * machine's cores. After the rounds, the RSS of the 1-worker gateway's process (VmRSS) is read from /proc.
 * Before any timing, each target's answer is checked, and each gateway's forwarded request must carry the
 * hop headers for unit `unit` (so the bench cannot time a 404 or a fallback).
 *
 * Besides wrk's figures, each timed run reads the CPU time (user + system, /proc/PID/stat) the target's
 * processes and the backend used, per request: less noisy than rps on a shared machine, and it shows what
 * the extra headers cost the backend.
 *
 * Environment:
 *   APPACTIVE_BENCH_DURATION_S (8), APPACTIVE_BENCH_WARMUP_S (2), APPACTIVE_BENCH_ROUNDS (3)
 *   APPACTIVE_BENCH_GATEWAY_RUNNER  built (default) | tsx
 *   APPACTIVE_BENCH_CPU_PROF=DIR    run the 1-worker gateways with `--cpu-prof`: they write
 *                                   DIR/gw-1w.cpuprofile and DIR/gw-1w-log.cpuprofile when they stop (read them
 *                                   with bench/lib/cpuprofile-top.ts); profiling slows them, so that run's
 *                                   figures are not the bench's
 *   APPACTIVE_BENCH_KEEP=1          keep the temp dir with every process's log
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { type Child, cpuSeconds, descendants, freePort, memoryMb, tail } from './lib/children.js'
import { machineInfo } from './lib/machine.js'
import { envInt, median } from './lib/numbers.js'
import { printReport, printTable, type Row, round, targetRow } from './lib/report.js'
import { benchRunner, startBackend } from './lib/runner.js'
import { benchSession } from './lib/session.js'
import { ensureWrk, runWrk, type WrkResult } from './lib/wrk.js'

const DURATION_S = envInt('APPACTIVE_BENCH_DURATION_S', 8)
const WARMUP_S = envInt('APPACTIVE_BENCH_WARMUP_S', 2)
const ROUNDS = envInt('APPACTIVE_BENCH_ROUNDS', 3)
const RUNNER_ENV = process.env.APPACTIVE_BENCH_GATEWAY_RUNNER ?? 'built'
if (RUNNER_ENV !== 'built' && RUNNER_ENV !== 'tsx')
  throw new Error('APPACTIVE_BENCH_GATEWAY_RUNNER must be built or tsx')
const RUNNER: 'built' | 'tsx' = RUNNER_ENV
const CPU_PROF = process.env.APPACTIVE_BENCH_CPU_PROF
const KEEP = process.env.APPACTIVE_BENCH_KEEP === '1'
/** `heap.maxSemiSpaceMb` of the gw-1w-heap target. */
const HEAP_SEMI_SPACE_MB = 8
const CONNECTIONS = 64
const PATH = '/item?r_id=12345'

const session = benchSession('gateway', KEEP)
const { log, children, tmp, cleanup, get, untilAnswer } = session
// --------------------------------------------------------------------------------------------- processes

const machine = machineInfo()

// ----------------------------------------------------------------------------------------------- targets

/** One timed wrk run, and the CPU time the target's processes and the backend used meanwhile. */
interface Measured extends WrkResult {
  /** CPU µs (user + system) per request of the proxy's processes (the backend's own, for the direct target). */
  readonly cpuUsPerReq: number
  /** CPU µs per request of the backend, while a proxy was measured (more headers cost it more). */
  readonly backendCpuUsPerReq: number
}

interface Target {
  readonly key: 'backend' | 'plain' | 'gw1' | 'gw2' | 'gw1log' | 'gw1heap'
  readonly label: string
  readonly child: Child
  readonly url: string
  readonly results: Measured[]
}

async function main(): Promise<void> {
  const wrkVersion = ensureWrk()
  log(`${wrkVersion}; temp dir ${tmp}`)
  const run = benchRunner(RUNNER, tmp, log)
  const env = { ...process.env, NODE_OPTIONS: '' }
  // Logs (the access log among them) go to a directory of their own: each gateway watches the rule
  // file's directory, and a log written next to it would wake every gateway on every line.
  const logDir = join(tmp, 'logs')
  mkdirSync(logDir)
  const spawnOptions = { cwd: tmp, env, logDir }

  const { child: backend, url: backendUrl } = await startBackend(session, run, 'backend', spawnOptions, PATH)

  const plainPort = await freePort()
  const plain = children.spawn(
    'plain-proxy',
    process.execPath,
    run.helper('bench/lib/plain-proxy.ts', String(plainPort), backendUrl),
    spawnOptions,
  )

  writeFileSync(
    join(tmp, 'rules.json'),
    JSON.stringify({
      version: 1,
      units: [{ name: 'center', center: true }, { name: 'unit' }],
      idSource: [{ from: 'query', name: 'r_id' }],
      transform: [{ type: 'mod', divisor: 10000 }],
      mapping: [{ unit: 'unit', ranges: ['0~9999'] }],
      fallback: 'local',
    }),
  )
  const gateway = async (name: string, workers: number, accessLog: boolean, heap?: object) => {
    const [port, adminPort] = [await freePort(), await freePort()]
    const config = join(tmp, `${name}.json`)
    writeFileSync(
      config,
      JSON.stringify({
        unit: 'center',
        listen: `127.0.0.1:${port}`,
        admin: `127.0.0.1:${adminPort}`,
        rules: './rules.json',
        accessLog,
        ...(heap === undefined ? {} : { heap }),
        // The config refuses one instance in two units; every key is unit's, so center needs none.
        apps: [{ name: 'bench', upstreams: { unit: [backendUrl] } }],
      }),
    )
    // Node 20 refuses --cpu-prof in NODE_OPTIONS: it goes on the command line.
    const profile =
      CPU_PROF !== undefined && workers === 1
        ? ['--cpu-prof', `--cpu-prof-dir=${resolve(CPU_PROF)}`, `--cpu-prof-name=${name}.cpuprofile`]
        : []
    const child = children.spawn(
      name,
      run.cli[0]!,
      [...profile, ...run.cli.slice(1), 'gateway', '--config', config, '--workers', String(workers)],
      {
        ...spawnOptions,
        env: {
          ...env,
          APPACTIVE_CACHE: 'off',
          // info: the access log is written at info level (startup lines only when it is off).
          APPACTIVE_LOG_LEVEL: 'info',
        },
      },
    )
    return { child, url: `http://127.0.0.1:${port}`, admin: `http://127.0.0.1:${adminPort}` }
  }
  const gw1 = await gateway('gw-1w', 1, false)
  const gw2 = await gateway('gw-2w', 2, false)
  const gw1log = await gateway('gw-1w-log', 1, true)
  const gw1heap = await gateway('gw-1w-heap', 1, false, { maxSemiSpaceMb: HEAP_SEMI_SPACE_MB })
  await untilAnswer(plain, `http://127.0.0.1:${plainPort}${PATH}`, 200)
  // /readyz: rules applied and, for the cluster, every worker ready.
  for (const g of [gw1, gw2, gw1log, gw1heap]) await untilAnswer(g.child, `${g.admin}/readyz`, 200)

  const targets: Target[] = [
    { key: 'backend', label: 'backend direct', child: backend, url: backendUrl, results: [] },
    {
      key: 'plain',
      label: 'plain proxy (node:http + undici Pool.stream)',
      child: plain,
      url: `http://127.0.0.1:${plainPort}`,
      results: [],
    },
    { key: 'gw1', label: 'appactive gateway, 1 worker', child: gw1.child, url: gw1.url, results: [] },
    { key: 'gw2', label: 'appactive gateway, 2 workers', child: gw2.child, url: gw2.url, results: [] },
    {
      key: 'gw1log',
      label: 'appactive gateway, 1 worker, access log on (default)',
      child: gw1log.child,
      url: gw1log.url,
      results: [],
    },
    {
      key: 'gw1heap',
      label: `appactive gateway, 1 worker, heap.maxSemiSpaceMb ${HEAP_SEMI_SPACE_MB}`,
      child: gw1heap.child,
      url: gw1heap.url,
      results: [],
    },
  ]
  await sanityChecks(targets)

  for (let r = 1; r <= ROUNDS; r++) {
    for (const t of targets) {
      if (t.child.proc.exitCode !== null || t.child.proc.signalCode !== null)
        throw new Error(`${t.child.name} died during the bench:\n${tail(t.child.logFile)}`)
      await runWrk(`${t.url}${PATH}`, WARMUP_S, CONNECTIONS)
      const pids = [t.child.pid, ...descendants(t.child.pid)]
      const [cpu0, backendCpu0] = [cpuSeconds(pids), cpuSeconds([backend.pid])]
      const res = await runWrk(`${t.url}${PATH}`, DURATION_S, CONNECTIONS)
      const [cpu1, backendCpu1] = [cpuSeconds(pids), cpuSeconds([backend.pid])]
      if (res.non2xx > 0) throw new Error(`${t.label}: ${res.non2xx} non-2xx answers; the bench is broken`)
      const perReq = (seconds: number) => (seconds * 1e6) / Math.max(1, res.requests)
      const m: Measured = {
        ...res,
        cpuUsPerReq: perReq(cpu1 - cpu0),
        backendCpuUsPerReq: perReq(backendCpu1 - backendCpu0),
      }
      t.results.push(m)
      log(
        `round ${r}/${ROUNDS} ${t.key.padEnd(7)} ${Math.round(res.rps).toString().padStart(6)} rps  ` +
          `p50 ${res.p50Ms.toFixed(2)} ms  p99 ${res.p99Ms.toFixed(2)} ms  ` +
          `CPU ${m.cpuUsPerReq.toFixed(1)} us/req (backend ${m.backendCpuUsPerReq.toFixed(1)})` +
          (res.socketErrors > 0 ? `  socket errors ${res.socketErrors}` : ''),
      )
    }
  }

  // RSS after the runs: the 1-worker gateway serves in its own (CLI) process; the cluster's workers are
  // the primary's children.
  const rssOf = (pid: number): Mem => ({
    rss: memoryMb(pid, 'VmRSS') ?? Number.NaN,
    hwm: memoryMb(pid, 'VmHWM') ?? Number.NaN,
    anon: memoryMb(pid, 'RssAnon') ?? Number.NaN,
    pss: memoryMb(pid, 'Pss') ?? Number.NaN,
  })
  const gw1Pids = [gw1.child.pid, ...descendants(gw1.child.pid)]
  if (gw1Pids.length !== 1)
    log(`the 1-worker gateway has child processes (${gw1Pids.join(', ')}); measuring the last`)
  const gw1Rss = rssOf(gw1Pids[gw1Pids.length - 1]!)
  const gw1logRss = rssOf(gw1log.child.pid)
  const gw1heapPrimary = rssOf(gw1heap.child.pid)
  const gw1heapWorkers = descendants(gw1heap.child.pid).map(rssOf)
  const gw2Primary = rssOf(gw2.child.pid)
  const gw2Workers = descendants(gw2.child.pid).map(rssOf)
  const plainRss = rssOf(plain.pid)
  const backendRss = rssOf(backend.pid)

  await cleanup()
  report(
    targets,
    { gw1Rss, gw1logRss, gw1heapPrimary, gw1heapWorkers, gw2Primary, gw2Workers, plainRss, backendRss },
    wrkVersion,
    run.how,
  )
}

/** Fails before any timing when a target would not measure what its name says. */
async function sanityChecks(targets: readonly Target[]): Promise<void> {
  for (const t of targets) {
    const hello = await get(`${t.url}${PATH}`)
    if (hello.status !== 200 || !hello.body.includes('"hello"'))
      throw new Error(`${t.label}: GET ${PATH} answered ${hello.status} ${hello.body.slice(0, 200)}`)
    if (t.key === 'backend') continue
    const seen = await get(`${t.url}/_seen?r_id=12345`)
    const headers = (JSON.parse(seen.body || '{}') as { headers?: Record<string, string> }).headers ?? {}
    if (headers['x-forwarded-for'] === undefined) throw new Error(`${t.label}: no x-forwarded-for upstream`)
    if (t.key === 'plain') continue
    if (headers['x-appactive-unit'] !== 'unit' || headers['x-appactive-route-id'] !== '12345')
      throw new Error(`${t.label}: the backend saw no routing headers for unit "unit": ${seen.body}`)
  }
}

/** MB from /proc: VmRSS, its peak VmHWM, the private RssAnon part, and Pss. */
interface Mem {
  readonly rss: number
  readonly hwm: number
  readonly anon: number
  readonly pss: number
}

interface Memory {
  readonly gw1Rss: Mem
  readonly gw1logRss: Mem
  readonly gw1heapPrimary: Mem
  readonly gw1heapWorkers: readonly Mem[]
  readonly gw2Primary: Mem
  readonly gw2Workers: readonly Mem[]
  readonly plainRss: Mem
  readonly backendRss: Mem
}

function report(targets: readonly Target[], mem: Memory, wrkVersion: string, how: string): void {
  const stats = new Map(
    targets.map((t) => [
      t.key,
      {
        rps: median(t.results.map((r) => r.rps)),
        p50: median(t.results.map((r) => r.p50Ms)),
        p99: median(t.results.map((r) => r.p99Ms)),
        cpu: median(t.results.map((r) => r.cpuUsPerReq)),
        backendCpu: median(t.results.map((r) => r.backendCpuUsPerReq)),
      },
    ]),
  )
  const s = (key: Target['key']) => stats.get(key)!
  const plain = s('plain')
  const rows: Row[] = targets.map((t) => ({
    target: t.label,
    rps: s(t.key).rps,
    'p50 ms': s(t.key).p50,
    'p99 ms': s(t.key).p99,
    'rps vs plain': round(s(t.key).rps / plain.rps, 3),
    'p99 vs plain': round(s(t.key).p99 / plain.p99, 3),
    'CPU us/req': s(t.key).cpu,
    'backend CPU us/req': t.key === 'backend' ? '-' : s(t.key).backendCpu,
    'rps per round': t.results.map((r) => Math.round(r.rps).toLocaleString('en-US')).join(' / '),
    'socket errors': t.results.reduce((n, r) => n + r.socketErrors, 0),
  }))
  const loadNote = machine.loadavg_1m > 0.5 ? `; load average at start ${machine.loadavg_1m}` : ''
  printTable(
    rows,
    `bench:gateway: ${wrkVersion} -t1 -c${CONNECTIONS} -d${DURATION_S}s --latency GET ${PATH} after a ${WARMUP_S} s warm-up; ` +
      `median of ${ROUNDS} interleaved rounds; ${machine.cpu_cores} cores shared by wrk, the backend and the proxy${loadNote}`,
  )
  const mb = (m: Mem) => ({
    'RSS MB': round(m.rss, 1),
    'peak RSS MB': round(m.hwm, 1),
    'anon RSS MB': round(m.anon, 1),
    'PSS MB': round(m.pss, 1),
  })
  printTable(
    [
      { process: 'gateway, 1 worker (in-process)', ...mb(mem.gw1Rss) },
      { process: 'gateway, 1 worker, access log on', ...mb(mem.gw1logRss) },
      { process: `gateway, 1 worker, heap ${HEAP_SEMI_SPACE_MB} MB: primary`, ...mb(mem.gw1heapPrimary) },
      ...mem.gw1heapWorkers.map((w) => ({
        process: `gateway, 1 worker, heap ${HEAP_SEMI_SPACE_MB} MB: worker`,
        ...mb(w),
      })),
      { process: 'gateway, 2 workers: primary', ...mb(mem.gw2Primary) },
      ...mem.gw2Workers.map((w, i) => ({ process: `gateway, 2 workers: worker ${i + 1}`, ...mb(w) })),
      { process: 'plain proxy', ...mb(mem.plainRss) },
      { process: 'backend', ...mb(mem.backendRss) },
    ],
    `memory after the runs (/proc/PID/status VmRSS, VmHWM, RssAnon; smaps_rollup Pss); processes run as ${how}`,
  )

  const metrics = {
    backend_rps: round(s('backend').rps, 0),
    plain_proxy_rps: round(plain.rps, 0),
    gateway_1w_rps: round(s('gw1').rps, 0),
    gateway_2w_rps: round(s('gw2').rps, 0),
    gateway_1w_rps_ratio: round(s('gw1').rps / plain.rps, 3),
    gateway_1w_p99_ratio: round(s('gw1').p99 / plain.p99, 3),
    gateway_rss_mb: round(mem.gw1Rss.rss, 1),
    gateway_1w_accesslog_rps: round(s('gw1log').rps, 0),
    gateway_2w_rps_ratio: round(s('gw2').rps / plain.rps, 3),
    gateway_1w_heap8_rps_ratio: round(s('gw1heap').rps / plain.rps, 3),
    gateway_1w_heap8_cpu_ratio: round(s('gw1heap').cpu / s('gw1').cpu, 3),
    gateway_1w_heap8_rss_mb: round(Math.max(...mem.gw1heapWorkers.map((w) => w.rss)), 1),
  }
  printTable(
    [
      targetRow(metrics, 'gateway_1w_rps_ratio', '>=', 0.9),
      targetRow(metrics, 'gateway_1w_p99_ratio', '<=', 1.2),
      targetRow(metrics, 'gateway_rss_mb', '<=', 100),
    ],
    'targets (issue 4)',
  )
  printReport({ bench: 'gateway', machine, metrics })
}

session.run(main)
