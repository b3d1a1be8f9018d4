/**
 * `npm start`: the multi-unit shop demo on one machine, with no external service.
 *
 * Starts, as child processes of this supervisor: the control plane (SQLite store), then in each unit
 * (`center`, `unit`) the shop's services (frontend, product, orders; storage in the center only) and a
 * gateway. Stores the topology and the initial rule set through the control plane's API, waits until
 * every process is ready, prints the URLs, and stops everything on Ctrl-C (SIGINT) or SIGTERM: the
 * shop first, the control plane last, no process left behind.
 *
 *   npm start [-- --db sqlite] [--verbose]
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { relative } from 'node:path'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { parse as parseYaml } from 'yaml'
import { controlApi } from './lib/control-api.js'
import { dbFiles, initDatabases } from './lib/db.js'
import { bold, dim, green, pipeLines, red } from './lib/logs.js'
import {
  APPS,
  type AppName,
  allPorts,
  controlUrl,
  type DemoState,
  dataDir,
  gatewayAdminPort,
  gatewayUrl,
  ROOT,
  serviceUrl,
  stateFile,
  UNITS,
  type UnitName,
} from './lib/topology.js'

const USAGE = `usage: npm start [-- --db sqlite] [--verbose]

  --db sqlite   embedded SQLite databases, shared by both units in the same city (the default)
  --verbose     debug logs and the gateways' access logs
  -h, --help    this text`

function out(line: string): void {
  process.stdout.write(`${line}\n`)
}
function fail(message: string, code: number): never {
  process.stderr.write(`demo: ${message}\n`)
  process.exit(code)
}

// ---- arguments -------------------------------------------------------------------------------------

let args: { db: string; verbose: boolean; help: boolean }
try {
  const { values } = parseArgs({
    options: {
      db: { type: 'string', default: 'sqlite' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  })
  args = values as typeof args
} catch (err) {
  fail(`${(err as Error).message}\n${USAGE}`, 2)
}
if (args.help) {
  out(USAGE)
  process.exit(0)
}
if (args.db === 'mariadb') {
  fail('--db mariadb (one MariaDB per unit, with GTID replication) is not available yet; use --db sqlite', 2)
}
if (args.db !== 'sqlite') fail(`--db must be sqlite, got ${JSON.stringify(args.db)}\n${USAGE}`, 2)

// ---- ports: all free, or nothing starts ------------------------------------------------------------

function portFree(port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(undefined)))
  })
}

const busy: string[] = []
for (const { port, what } of allPorts()) {
  const err = await portFree(port)
  if (err !== undefined) {
    busy.push(
      err.code === 'EADDRINUSE'
        ? `port ${port} (${what}) is already in use`
        : `port ${port} (${what}) cannot be used: ${err.code ?? err.message}`,
    )
  }
}
if (busy.length > 0) {
  fail(
    `${busy.join('\n      ')}\n      Nothing was started. Stop whatever holds the port (another demo? \`ss -ltnp 'sport = :${busy[0]!.match(/\d+/)![0]}'\`) and run npm start again.`,
    1,
  )
}

// ---- processes -------------------------------------------------------------------------------------

interface Proc {
  readonly label: string
  readonly unit: UnitName | undefined
  readonly kind: 'control' | 'gateway' | AppName
  readonly child: ChildProcess
  exited: boolean
}

const started = performance.now()
const dir = dataDir()
mkdirSync(dir, { recursive: true })
initDatabases(dir)
const token = () => randomBytes(24).toString('hex')
const tokens = { admin: token(), operator: token(), viewer: token(), agent: token(), peer: token() }
const procs: Proc[] = []
let stopping = false

/** The environment of a child: the user's, less any appactive setting, plus the demo's. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('APPACTIVE_') || k === 'APPACTIVE_LOG_LEVEL' || k === 'APPACTIVE_DEBUG') env[k] = v
  }
  return {
    ...env,
    APPACTIVE_CONTROL_URL: controlUrl(),
    APPACTIVE_TOKEN: tokens.agent,
    APPACTIVE_CACHE: 'off',
    APPACTIVE_DEMO_DIR: dir,
    APPACTIVE_LOG_LEVEL: args.verbose ? 'debug' : (process.env.APPACTIVE_LOG_LEVEL ?? 'info'),
    DEMO_ACCESS_LOG: args.verbose ? '1' : '0',
    ...extra,
  }
}

function start(kind: Proc['kind'], unit: UnitName | undefined, extra: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', `demo/services/${kind}.ts`], {
    cwd: ROOT,
    env: childEnv(unit === undefined ? extra : { APPACTIVE_UNIT: unit, ...extra }),
    // The IPC channel is the children's lifeline: when this process is gone, they stop (lib/lifecycle.ts).
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  const label = unit === undefined ? kind : `${unit}/${kind}`
  const proc: Proc = { label, unit, kind, child, exited: false }
  pipeLines(child.stdout!, label, unit, out, args.verbose)
  pipeLines(child.stderr!, label, unit, out, args.verbose)
  child.on('exit', (code, signal) => {
    proc.exited = true
    if (!stopping) {
      out(red(`${label} exited (${signal ?? `code ${code}`}); stopping the demo`))
      void stop(1)
    }
  })
  procs.push(proc)
  return proc
}

// Whatever happens to this process, its children go with it.
process.on('exit', () => {
  for (const p of procs) if (!p.exited) p.child.kill('SIGKILL')
})

/** SIGTERM to `group`, then SIGKILL to whatever still runs after `ms`. */
async function terminate(group: Proc[], ms: number): Promise<void> {
  const running = group.filter((p) => !p.exited)
  await Promise.all(
    running.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exited) return resolve()
          const timer = setTimeout(() => {
            out(red(`${p.label} did not stop in ${ms} ms: killed`))
            p.child.kill('SIGKILL')
          }, ms)
          p.child.once('exit', () => {
            clearTimeout(timer)
            resolve()
          })
          p.child.kill('SIGTERM')
        }),
    ),
  )
}

async function stop(code: number): Promise<void> {
  if (stopping) return
  stopping = true
  out(dim('demo: stopping the shop, then the control plane...'))
  // The shop first, so its agents leave the control plane while it still runs.
  await terminate(
    procs.filter((p) => p.kind !== 'control'),
    5000,
  )
  await terminate(
    procs.filter((p) => p.kind === 'control'),
    5000,
  )
  rmSync(stateFile(dir), { force: true })
  out(code === 0 ? 'demo: stopped; every process has exited' : red('demo: stopped'))
  process.exit(code)
}

// One Ctrl-C under `npm start` arrives twice: from the terminal (to the whole process group) and
// forwarded by npm. Only a second Ctrl-C, a moment later, kills without waiting.
let firstSignalAt: number | undefined
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    const now = performance.now()
    if (firstSignalAt === undefined) firstSignalAt = now
    else if (now - firstSignalAt < 1000) return
    else {
      out(red('demo: second signal: killing every process now'))
      for (const p of procs) if (!p.exited) p.child.kill('SIGKILL')
      process.exit(130)
    }
    void stop(0)
  })
}

// ---- readiness -----------------------------------------------------------------------------------

/** Polls `url` until it answers 2xx (or the demo stops, or `ms` passes). */
async function ready(url: string, ms = 60_000): Promise<void> {
  const deadline = performance.now() + ms
  for (;;) {
    if (stopping) throw new Error('stopping')
    try {
      const res = await request(url, { headersTimeout: 2000, bodyTimeout: 2000 })
      await res.body.dump()
      if (res.statusCode < 300) return
    } catch {}
    if (performance.now() > deadline) throw new Error(`${url} was not ready in ${ms / 1000} s`)
    await new Promise((r) => setTimeout(r, 150))
  }
}

try {
  start('control', undefined, {
    DEMO_ADMIN_TOKEN: tokens.admin,
    DEMO_OPERATOR_TOKEN: tokens.operator,
    DEMO_VIEWER_TOKEN: tokens.viewer,
    DEMO_LEASE_MS: '3000',
  })
  await ready(`${controlUrl()}/healthz`)

  // The topology and the initial rule set, as an operator would store them.
  const api = controlApi(controlUrl(), tokens.admin)
  const yaml = (name: string) => parseYaml(readFileSync(new URL(`rules/${name}`, import.meta.url), 'utf8'))
  await api.call('PUT', '/v1/topology', { topology: yaml('topology.yaml'), reason: 'demo topology' })
  await api.call('POST', '/v1/rules', {
    ruleSet: yaml('initial.yaml'),
    reason: "initial rules, as AppActive's demo: unit 0~1999, center 2000~9999",
  })

  const state: DemoState = {
    pid: process.pid,
    startedAt: new Date().toISOString(),
    controlUrl: controlUrl(),
    tokens: { admin: tokens.admin, operator: tokens.operator, viewer: tokens.viewer },
    gateways: { center: gatewayUrl('center'), unit: gatewayUrl('unit') },
    storageUrl: serviceUrl('storage', 'center'),
    dataDir: dir,
    db: 'sqlite',
    files: dbFiles(dir),
  }
  writeFileSync(stateFile(dir), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 })

  const waits: Promise<void>[] = []
  for (const unit of UNITS) {
    for (const app of APPS[unit]) {
      start(app, unit)
      waits.push(ready(`${serviceUrl(app, unit)}/healthz`))
    }
    start('gateway', unit, { DEMO_PEER_TOKEN: tokens.peer })
    waits.push(ready(`http://127.0.0.1:${gatewayAdminPort(unit)}/readyz`))
  }
  await Promise.all(waits)
} catch (err) {
  if (!stopping) {
    out(red(`demo: could not start: ${(err as Error).message}`))
    await stop(1)
  }
  await new Promise(() => {}) // stop() exits
}

const secs = ((performance.now() - started) / 1000).toFixed(1)
const stateShown = relative(process.cwd(), stateFile(dir)) || stateFile(dir)
out('')
out(
  `${green(bold('appactive demo is up'))} in ${secs} s: rule set v1, unit owns 0~1999, center owns 2000~9999`,
)
out('')
out(`  the shop via the center gateway   ${bold(`${gatewayUrl('center')}/?r_id=2000`)}`)
out(`  the shop via the unit gateway     ${bold(`${gatewayUrl('unit')}/?r_id=1000`)}`)
out(`  control plane                     ${controlUrl()}   ${dim(`(tokens in ${stateShown})`)}`)
out('')
out(`  try  curl -s '${gatewayUrl('unit')}/api/detail?r_id=2000&pId=12'`)
out('       npm run demo:cutover     moves users 2000~2999 to unit, live')
out('       npm run demo:load        reads and writes through both gateways during a cut-over')
out('')
out(`  Ctrl-C stops every process.`)
