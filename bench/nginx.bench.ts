/**
 * `npm run bench:nginx`: the nginx engine (`appactive gateway --engine nginx`: nginx + nginx/appactive.lua)
 * against a plain nginx keepalive proxy, the backend direct and the Node gateway, all in ONE run, on
 * loopback, with wrk (issue 10 item 6; reference/nginx-engine.md §5-6 for the study this repeats).
 *
 * Targets, all ending at the SAME backend (bench/lib/backend.ts, its own process):
 *   backend       the backend direct (the ceiling)
 *   nginx-plain   Debian's nginx, 1 worker, `proxy_pass` to an upstream block with `keepalive 64` (THE
 *                 baseline: every ratio is against it, measured in the same run)
 *   nginx-engine  the real CLI `appactive gateway --engine nginx --workers 1`: nginx 1 worker running the
 *                 routing in Lua, its Node sidecar agent reading a rule file
 *   node-gateway  the real CLI `appactive gateway --workers 1` on the same config
 * `GET /item?r_id=12345` (key 2345, unit `unit`): routed, hop headers set, forwarded.
 *
 * Method: per target `wrk -t1 -c64 -d2s` (warm-up), then `-d8s --latency`; targets interleaved for 3 rounds,
 * medians reported. CPU µs per request (user + system from /proc) of the proxy's processes: for the
 * engine, its nginx processes only (the sidecar is idle between rule updates) — the honest cost.
 * Then the update latency under load: an engine started in this process (`startNginxGateway`, its nginx in
 * its own processes) gets 10 versions pushed to its sidecar agent (r_id 12345's owner flips) while wrk
 * runs on it; after each push the bench polls the backend's `/_seen` echo until a request carries the new
 * `x-appactive-rule-version`: `nginx_update_visible_ms` is the median from the push to that request
 * (compile + state file + admin PUT + read-back + the first request). wrk's errors and non-2xx answers
 * during the updates are reported (they must be 0). A file channel adds its own watch and 50 ms debounce.
 *
 * Environment: APPACTIVE_BENCH_DURATION_S (8), APPACTIVE_BENCH_WARMUP_S (2), APPACTIVE_BENCH_ROUNDS (3),
 * APPACTIVE_BENCH_UPDATES (10), APPACTIVE_BENCH_GATEWAY_RUNNER built (default) | tsx, APPACTIVE_BENCH_KEEP=1.
 * Needs wrk (installed from Debian when missing) and Debian's nginx + libnginx-mod-http-lua + lua-cjson.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import type { RuleChannel, RuleSink } from '../src/channels/types.js'
import { resolveGatewayConfig } from '../src/gateway/index.js'
import { findNginx, startNginxGateway } from '../src/gateway/nginx/index.js'
import { type Child, cpuSeconds, descendants, freePort, tail } from './lib/children.js'
import { machineInfo } from './lib/machine.js'
import { envInt, median } from './lib/numbers.js'
import { printReport, printTable, type Row, round, targetRow } from './lib/report.js'
import { benchRunner, startBackend } from './lib/runner.js'
import { benchSession } from './lib/session.js'
import { ensureWrk, runWrk, type WrkResult } from './lib/wrk.js'

const DURATION_S = envInt('APPACTIVE_BENCH_DURATION_S', 8)
const WARMUP_S = envInt('APPACTIVE_BENCH_WARMUP_S', 2)
const ROUNDS = envInt('APPACTIVE_BENCH_ROUNDS', 3)
const UPDATES = envInt('APPACTIVE_BENCH_UPDATES', 10)
const RUNNER_ENV = process.env.APPACTIVE_BENCH_GATEWAY_RUNNER ?? 'built'
if (RUNNER_ENV !== 'built' && RUNNER_ENV !== 'tsx')
  throw new Error('APPACTIVE_BENCH_GATEWAY_RUNNER must be built or tsx')
const RUNNER: 'built' | 'tsx' = RUNNER_ENV
const KEEP = process.env.APPACTIVE_BENCH_KEEP === '1'
const CONNECTIONS = 64
const PATH = '/item?r_id=12345'

const session = benchSession('nginx', KEEP)
const { log, children, tmp, cleanup, get, untilAnswer } = session
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const machine = machineInfo()

/** The rule file: every key of mod 10000 owned by `owner`. */
function rules(version: number, owner: 'unit' | 'center'): string {
  return JSON.stringify({
    version,
    units: [{ name: 'center', center: true }, { name: 'unit' }],
    idSource: [{ from: 'query', name: 'r_id' }],
    transform: [{ type: 'mod', divisor: 10000 }],
    mapping: [{ unit: owner, ranges: ['0~9999'] }],
    fallback: 'local',
  })
}

/** A plain nginx reverse proxy with keepalive upstream, nothing else (no Lua module loaded). */
function plainConf(dir: string, port: number, backendPort: number): string {
  return `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000;
  upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`
}

interface Measured extends WrkResult {
  readonly cpuUsPerReq: number
}

interface Target {
  readonly key: 'backend' | 'plain' | 'engine' | 'node'
  readonly label: string
  readonly child: Child
  readonly url: string
  /** The processes whose CPU time is the target's cost. */
  readonly pids: () => number[]
  readonly results: Measured[]
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return ''
  }
}

async function main(): Promise<void> {
  const install = findNginx()
  if (typeof install === 'string') throw new Error(install)
  const wrkVersion = ensureWrk()
  log(`${wrkVersion}; temp dir ${tmp}`)
  const run = benchRunner(RUNNER, tmp, log)
  const env = { ...process.env, NODE_OPTIONS: '', APPACTIVE_CACHE: 'off', APPACTIVE_LOG_LEVEL: 'warn' }
  const spawnOptions = { cwd: tmp, env, logDir: tmp }

  const { child: backend, url: backendUrl } = await startBackend(session, run, 'backend', spawnOptions, PATH)
  // Unit center's instance (the config refuses one instance in two units); it serves only after an update
  // hands it the keys.
  const center = await startBackend(session, run, 'backend-center', spawnOptions, PATH)

  const plainDir = join(tmp, 'nginx-plain')
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
    mkdirSync(join(plainDir, d), { recursive: true })
  const plainPort = await freePort()
  writeFileSync(
    join(plainDir, 'nginx.conf'),
    plainConf(plainDir, plainPort, Number(new URL(backendUrl).port)),
  )
  const plain = children.spawn(
    'nginx-plain',
    install.binary,
    ['-p', plainDir, '-c', join(plainDir, 'nginx.conf')],
    spawnOptions,
  )

  const rulesFile = join(tmp, 'rules.json')
  writeFileSync(rulesFile, rules(1, 'unit'))
  const gateway = async (name: string, engine: 'node' | 'nginx', centerUrl: string) => {
    const port = await freePort()
    const config = join(tmp, `${name}.json`)
    writeFileSync(
      config,
      JSON.stringify({
        unit: 'center',
        listen: `127.0.0.1:${port}`,
        rules: rulesFile,
        accessLog: false,
        workers: 1,
        apps: [{ name: 'bench', upstreams: { unit: [backendUrl], center: [centerUrl] } }],
      }),
    )
    const args = [...run.cli.slice(1), 'gateway', '--config', config, '--engine', engine]
    if (engine === 'nginx') args.push('--run-dir', join(tmp, `${name}-run`))
    const child = children.spawn(name, run.cli[0]!, args, spawnOptions)
    return { child, url: `http://127.0.0.1:${port}` }
  }
  const engine = await gateway('nginx-engine', 'nginx', center.url)
  const node = await gateway('node-gateway', 'node', center.url)
  await untilAnswer(plain, `http://127.0.0.1:${plainPort}${PATH}`, 200)
  await untilAnswer(engine.child, `${engine.url}${PATH}`, 200)
  await untilAnswer(node.child, `${node.url}${PATH}`, 200)

  const nginxOf = (child: Child) => () => descendants(child.pid).filter((p) => cmdline(p).includes('nginx'))
  const targets: Target[] = [
    {
      key: 'backend',
      label: 'backend direct',
      child: backend,
      url: backendUrl,
      pids: () => [backend.pid],
      results: [],
    },
    {
      key: 'plain',
      label: 'nginx plain proxy_pass + keepalive (baseline)',
      child: plain,
      url: `http://127.0.0.1:${plainPort}`,
      pids: () => [plain.pid, ...descendants(plain.pid)],
      results: [],
    },
    {
      key: 'engine',
      label: 'appactive nginx engine (Lua)',
      child: engine.child,
      url: engine.url,
      pids: nginxOf(engine.child),
      results: [],
    },
    {
      key: 'node',
      label: 'appactive Node gateway, 1 worker',
      child: node.child,
      url: node.url,
      pids: () => [node.child.pid, ...descendants(node.child.pid)],
      results: [],
    },
  ]
  await sanityChecks(targets)

  for (let r = 1; r <= ROUNDS; r++) {
    for (const t of targets) {
      if (t.child.proc.exitCode !== null || t.child.proc.signalCode !== null)
        throw new Error(`${t.child.name} died during the bench:\n${tail(t.child.logFile)}`)
      await runWrk(`${t.url}${PATH}`, WARMUP_S, CONNECTIONS)
      const pids = t.pids()
      const cpu0 = cpuSeconds(pids)
      const res = await runWrk(`${t.url}${PATH}`, DURATION_S, CONNECTIONS)
      const cpu1 = cpuSeconds(pids)
      if (res.non2xx > 0) throw new Error(`${t.label}: ${res.non2xx} non-2xx answers; the bench is broken`)
      const m: Measured = { ...res, cpuUsPerReq: ((cpu1 - cpu0) * 1e6) / Math.max(1, res.requests) }
      t.results.push(m)
      log(
        `round ${r}/${ROUNDS} ${t.key.padEnd(7)} ${Math.round(res.rps).toString().padStart(6)} rps  ` +
          `p50 ${res.p50Ms.toFixed(2)} ms  p99 ${res.p99Ms.toFixed(2)} ms  CPU ${m.cpuUsPerReq.toFixed(1)} us/req` +
          (res.socketErrors > 0 ? `  socket errors ${res.socketErrors}` : ''),
      )
    }
  }

  const updates = await updateLatency(backendUrl, center.url)
  await cleanup()
  report(targets, updates, wrkVersion, run.how)
}

/** Fails before any timing when a target would not measure what its name says. */
async function sanityChecks(targets: readonly Target[]): Promise<void> {
  for (const t of targets) {
    const hello = await get(`${t.url}${PATH}`)
    if (hello.status !== 200 || !hello.body.includes('"hello"'))
      throw new Error(`${t.label}: GET ${PATH} answered ${hello.status} ${hello.body.slice(0, 200)}`)
    if (t.key === 'backend' || t.key === 'plain') continue
    const seen = await get(`${t.url}/_seen?r_id=12345`)
    const headers = (JSON.parse(seen.body || '{}') as { headers?: Record<string, string> }).headers ?? {}
    if (headers['x-appactive-unit'] !== 'unit' || headers['x-appactive-route-id'] !== '12345')
      throw new Error(`${t.label}: the backend saw no routing headers for unit "unit": ${seen.body}`)
  }
}

interface Updates {
  readonly visibleMs: number[]
  readonly wrk: WrkResult
}

/** A channel the bench drives: `publish` hands a rule set to the sidecar agent at once. */
class PushChannel implements RuleChannel {
  readonly name = 'bench'
  readonly leasing = false
  #sink: RuleSink | undefined
  async start(sink: RuleSink): Promise<void> {
    this.#sink = sink
  }
  publish(ruleSet: string): void {
    this.#sink!.apply(JSON.parse(ruleSet), { source: this.name })
  }
  async close(): Promise<void> {}
}

/**
 * An engine in this process (its nginx in its own processes) whose sidecar gets each version pushed at
 * once: UPDATES versions under wrk load, ms from each push to the first request carrying it.
 */
async function updateLatency(backendUrl: string, centerUrl: string): Promise<Updates> {
  const port = await freePort()
  const channel = new PushChannel()
  const config = resolveGatewayConfig({
    unit: 'center',
    listen: `127.0.0.1:${port}`,
    rules: join(tmp, 'unused.json'),
    accessLog: false,
    workers: 1,
    apps: [{ name: 'bench', upstreams: { unit: [backendUrl], center: [centerUrl] } }],
  })
  const edge = await startNginxGateway(config, {
    channels: [channel],
    runDir: join(tmp, 'update-run'),
    logger: pino({ level: 'warn' }, pino.destination(2)),
  })
  try {
    const url = `http://127.0.0.1:${port}`
    channel.publish(rules(1, 'unit'))
    while (edge.servedVersion !== 1) await sleep(5)
    const seconds = Math.max(4, Math.ceil(UPDATES * 0.3) + 3)
    const load = runWrk(`${url}${PATH}`, seconds, CONNECTIONS)
    await sleep(1000)
    const visibleMs: number[] = []
    for (let i = 0; i < UPDATES; i++) {
      const version = i + 2
      const pushed = performance.now()
      channel.publish(rules(version, version % 2 === 0 ? 'center' : 'unit'))
      for (;;) {
        const seen = await get(`${url}/_seen?r_id=12345`)
        const headers = (JSON.parse(seen.body || '{}') as { headers?: Record<string, string> }).headers
        if (Number(headers?.['x-appactive-rule-version']) === version) break
        if (performance.now() - pushed > 10_000) throw new Error(`v${version} not served 10 s after the push`)
      }
      visibleMs.push(performance.now() - pushed)
      log(`update ${i + 1}/${UPDATES}: v${version} served after ${visibleMs[i]!.toFixed(1)} ms`)
      await sleep(200)
    }
    return { visibleMs, wrk: await load }
  } finally {
    await edge.stop()
  }
}

function report(targets: readonly Target[], updates: Updates, wrkVersion: string, how: string): void {
  const stat = (t: Target) => ({
    rps: median(t.results.map((r) => r.rps)),
    p50: median(t.results.map((r) => r.p50Ms)),
    p99: median(t.results.map((r) => r.p99Ms)),
    cpu: median(t.results.map((r) => r.cpuUsPerReq)),
  })
  const s = new Map(targets.map((t) => [t.key, stat(t)]))
  const plain = s.get('plain')!
  const rows: Row[] = targets.map((t) => ({
    target: t.label,
    rps: s.get(t.key)!.rps,
    'p50 ms': s.get(t.key)!.p50,
    'p99 ms': s.get(t.key)!.p99,
    'rps vs plain nginx': round(s.get(t.key)!.rps / plain.rps, 3),
    'p99 vs plain nginx': round(s.get(t.key)!.p99 / plain.p99, 3),
    'CPU us/req': s.get(t.key)!.cpu,
    'rps per round': t.results.map((r) => Math.round(r.rps).toLocaleString('en-US')).join(' / '),
    'socket errors': t.results.reduce((n, r) => n + r.socketErrors, 0),
  }))
  const loadNote = machine.loadavg_1m > 0.5 ? `; load average at start ${machine.loadavg_1m}` : ''
  printTable(
    rows,
    `bench:nginx: ${wrkVersion} -t1 -c${CONNECTIONS} -d${DURATION_S}s --latency GET ${PATH} after a ${WARMUP_S} s warm-up; ` +
      `median of ${ROUNDS} interleaved rounds; ${machine.cpu_cores} cores shared by wrk, the backend and the proxy; ` +
      `CPU of the engine = its nginx processes; Node processes run as ${how}${loadNote}`,
  )
  const engine = s.get('engine')!
  const node = s.get('node')!
  const metrics = {
    backend_rps: round(s.get('backend')!.rps, 0),
    nginx_plain_rps: round(plain.rps, 0),
    nginx_engine_rps: round(engine.rps, 0),
    node_gateway_rps: round(node.rps, 0),
    nginx_engine_rps_ratio: round(engine.rps / plain.rps, 3),
    nginx_engine_p99_ratio: round(engine.p99 / plain.p99, 3),
    node_gateway_rps_ratio: round(node.rps / plain.rps, 3),
    nginx_plain_cpu_per_req_ns: round(plain.cpu * 1000, 0),
    nginx_engine_cpu_per_req_ns: round(engine.cpu * 1000, 0),
    nginx_update_visible_ms: round(median(updates.visibleMs), 1),
    nginx_update_errors_ratio: round(
      (updates.wrk.socketErrors + updates.wrk.non2xx) / Math.max(1, updates.wrk.requests),
      6,
    ),
  }
  printTable(
    [
      {
        'updates under load': UPDATES,
        'visible after, ms (each)': updates.visibleMs.map((ms) => ms.toFixed(1)).join(' '),
        'median ms': metrics.nginx_update_visible_ms,
        'wrk requests': updates.wrk.requests,
        'socket errors': updates.wrk.socketErrors,
        'non-2xx': updates.wrk.non2xx,
      },
    ],
    'rule updates under wrk load: from the push to the sidecar until a request carries the new version',
  )
  printTable(
    [
      targetRow(metrics, 'nginx_engine_rps_ratio', '>=', 0.95),
      targetRow(metrics, 'nginx_engine_p99_ratio', '<=', 1.15),
      targetRow(metrics, 'nginx_update_visible_ms', '<=', 50),
    ],
    'targets (issue 10)',
  )
  printReport({ bench: 'nginx', machine, metrics })
}

session.run(main)
