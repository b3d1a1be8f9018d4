/**
 * `npm start`: the multi-unit shop demo on one machine, with no external service by default.
 *
 * Starts, as child processes of this supervisor: with `--db mariadb`, a MariaDB server per unit with
 * GTID replication both ways (lib/mariadb.ts); the control plane (SQLite store); then in each unit
 * (`center`, `unit`) the shop's services (frontend, product, orders with its points module; storage in
 * the center only) and a gateway. With `--mq rabbitmq|nats` it first creates the run's exchange or
 * stream on that broker (lib/bus.ts). Stores the topology and the initial rule set through the control
 * plane's API, waits until every process is ready, prints the URLs, and stops everything on Ctrl-C
 * (SIGINT) or SIGTERM: the shop first, then the control plane, then the databases; the broker's objects
 * and the temp dirs are removed; no process is left behind.
 *
 *   npm start [-- --db sqlite|mariadb] [--mq memory|rabbitmq|nats] [--verbose]
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { relative } from 'node:path'
import { request } from 'undici'
import { parse as parseYaml } from 'yaml'
import { fail as failWith, parseFlags } from './lib/args.js'
import { brokerAddress, busSettings, MQ_KINDS, type MqKind, provision } from './lib/bus.js'
import { controlApi } from './lib/control-api.js'
import { DB_KINDS, type DbKind, dbFiles, initDatabases, removeDatabases } from './lib/db.js'
import { bold, dim, green, pipeLines, red } from './lib/logs.js'
import type { MariadbServer } from './lib/mariadb.js'
import { mariadbMissing } from './lib/mariadb-server.js'
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

const USAGE = `usage: npm start [-- --db sqlite|mariadb] [--mq memory|rabbitmq|nats] [--verbose]

  --db sqlite     embedded SQLite databases, shared by both units in the same city (the default)
  --db mariadb    a MariaDB server per unit, started here in a temp dir on free ports, each replicating
                  the other's writes with GTID; cut-overs wait on the GTID probe (needs mariadb-server)
  --mq memory     order.placed events over an in-process channel (the default)
  --mq rabbitmq   over RabbitMQ at $DEMO_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672)
  --mq nats       over NATS JetStream at $DEMO_NATS_URL (default 127.0.0.1:4222)
  --verbose       debug logs and the gateways' access logs
  -h, --help      this text`

const script = { name: 'demo', usage: USAGE }

function out(line: string): void {
  process.stdout.write(`${line}\n`)
}
function fail(message: string, code: number): never {
  return failWith(script, message, code)
}

// ---- arguments -------------------------------------------------------------------------------------

const args = parseFlags(
  script,
  { db: 'sqlite', mq: 'memory' },
  { choices: { db: DB_KINDS, mq: MQ_KINDS }, switches: ['verbose'] },
)
const db = args.db as DbKind
if (db === 'mariadb') {
  const missing = mariadbMissing()
  if (missing !== undefined) fail(`${missing}. Nothing was started.`, 1)
}
const mq = busSettings({
  ...process.env,
  DEMO_MQ: args.mq as MqKind,
  DEMO_MQ_NAME: `appactive-demo-${randomBytes(4).toString('hex')}`,
})

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

// ---- the broker: the run's exchange or stream, or nothing starts ----------------------------------

/** The run's objects on the broker, deleted when the demo stops. */
let broker: { teardown(): Promise<void> } | undefined
if (mq.kind !== 'memory') {
  try {
    broker = await provision(mq, UNITS)
  } catch (err) {
    const why = (err as Error).message || (err as { code?: string }).code
    fail(
      `${mq.kind === 'nats' ? 'NATS' : 'RabbitMQ'} at ${brokerAddress(mq)} cannot be used: ${why}. Nothing was started.`,
      1,
    )
  }
}

// ---- processes -------------------------------------------------------------------------------------

interface Proc {
  readonly label: string
  readonly unit: UnitName | undefined
  readonly kind: 'control' | 'gateway' | 'mariadb' | AppName
  readonly child: ChildProcess
  exited: boolean
}

const started = performance.now()
const dir = dataDir()
mkdirSync(dir, { recursive: true })
if (db === 'sqlite') initDatabases(dir)
else removeDatabases(dir)
const token = () => randomBytes(24).toString('hex')
const tokens = { admin: token(), operator: token(), viewer: token(), agent: token(), peer: token() }
const procs: Proc[] = []
let stopping = false
/** With --db mariadb: the servers and their temp dir (removed at stop, and at exit). */
let mariadbDir: string | undefined
let servers: MariadbServer[] = []

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
    DEMO_DB: db,
    DEMO_MQ: mq.kind,
    DEMO_MQ_NAME: mq.name,
    DEMO_AMQP_URL: mq.amqpUrl,
    DEMO_NATS_URL: mq.natsUrl,
    ...extra,
  }
}

/** This unit's MariaDB, for its processes. */
function dbEnv(unit: UnitName | undefined): Record<string, string> {
  const server = servers.find((s) => s.unit === unit)
  return server === undefined ? {} : { DEMO_MARIADB_URL: server.url }
}

function start(
  kind: Exclude<Proc['kind'], 'mariadb'>,
  unit: UnitName | undefined,
  extra: Record<string, string> = {},
): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', `demo/services/${kind}.ts`], {
    cwd: ROOT,
    env: childEnv(unit === undefined ? extra : { APPACTIVE_UNIT: unit, ...dbEnv(unit), ...extra }),
    // The IPC channel is the children's lifeline: when this process is gone, they stop (lib/lifecycle.ts).
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  return watch(child, kind, unit)
}

/** A unit's MariaDB server. setpriv's parent-death signal is its lifeline: it dies with this process. */
function startMariadb(server: MariadbServer): Proc {
  // Its log is the error log in the temp dir (shown with --verbose, or when it exits unexpectedly).
  const child = spawn(server.command, server.args, {
    stdio: ['ignore', args.verbose ? 'pipe' : 'ignore', args.verbose ? 'pipe' : 'ignore'],
  })
  child.once('exit', () => {
    if (stopping) return
    const log = existsSync(server.errorLog) ? readFileSync(server.errorLog, 'utf8') : ''
    for (const line of log.trim().split('\n').slice(-10)) out(`${server.unit}/mariadb   ${line}`)
  })
  return watch(child, 'mariadb', server.unit as UnitName)
}

function watch(child: ChildProcess, kind: Proc['kind'], unit: UnitName | undefined): Proc {
  const label = unit === undefined ? kind : `${unit}/${kind}`
  const proc: Proc = { label, unit, kind, child, exited: false }
  if (child.stdout) pipeLines(child.stdout, label, unit, out, args.verbose)
  if (child.stderr) pipeLines(child.stderr, label, unit, out, args.verbose)
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

// Whatever happens to this process, its children go with it (and the MariaDB temp dir).
process.on('exit', () => {
  for (const p of procs) if (!p.exited) p.child.kill('SIGKILL')
  if (mariadbDir !== undefined) rmSync(mariadbDir, { recursive: true, force: true })
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
  await terminate(
    procs.filter((p) => p.kind === 'mariadb'),
    10_000,
  )
  if (mariadbDir !== undefined) rmSync(mariadbDir, { recursive: true, force: true })
  if (broker !== undefined) {
    await broker
      .teardown()
      .catch((err: Error) => out(red(`demo: could not clean up ${mq.name}: ${err.message}`)))
  }
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
  if (db === 'mariadb') {
    const { mariadbTempDir, prepareMariadb, replicateAndSeed, untilUp } = await import('./lib/mariadb.js')
    mariadbDir = mariadbTempDir()
    servers = await prepareMariadb(mariadbDir, UNITS)
    const running = servers.map((s) => ({ server: s, proc: startMariadb(s) }))
    await Promise.all(running.map(({ server, proc }) => untilUp(server, () => proc.exited || stopping)))
    await replicateAndSeed(servers, 'center')
  }
  const urlOf = (unit: UnitName) => servers.find((s) => s.unit === unit)?.url ?? ''
  start('control', undefined, {
    DEMO_MARIADB_CENTER: urlOf('center'),
    DEMO_MARIADB_UNIT: urlOf('unit'),
    DEMO_ADMIN_TOKEN: tokens.admin,
    DEMO_OPERATOR_TOKEN: tokens.operator,
    DEMO_VIEWER_TOKEN: tokens.viewer,
    DEMO_LEASE_MS: '3000',
  })
  await ready(`${controlUrl()}/healthz`)

  // The topology and the initial rule set, as an operator would store them.
  const api = controlApi(controlUrl(), tokens.admin)
  const yaml = (name: string) => parseYaml(readFileSync(new URL(`rules/${name}`, import.meta.url), 'utf8'))
  // With --db mariadb, the databases and their replication probes are those of rules/mariadb.yaml.
  const topology = { ...yaml('topology.yaml'), ...(db === 'mariadb' ? yaml('mariadb.yaml') : {}) }
  await api.call('PUT', '/v1/topology', { topology, reason: `demo topology (--db ${db})` })
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
    db,
    ...(mariadbDir === undefined
      ? {}
      : { mariadb: { dir: mariadbDir, urls: { center: urlOf('center'), unit: urlOf('unit') } } }),
    mq: { kind: mq.kind, name: mq.name },
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
out(
  db === 'mariadb'
    ? `  databases                         MariaDB per unit: ${servers.map((s) => `${s.unit} 127.0.0.1:${s.port}`).join(', ')}, GTID replication both ways`
    : `  databases                         SQLite, shared by both units ${dim(`(${relative(process.cwd(), dir) || dir})`)}`,
)
out(
  mq.kind === 'memory'
    ? '  order.placed events               in-process'
    : `  order.placed events               ${mq.kind === 'nats' ? 'NATS JetStream' : 'RabbitMQ'} at ${brokerAddress(mq)} (${mq.kind === 'nats' ? 'stream' : 'exchange'} ${mq.name})`,
)
out('')
out(`  try  curl -s '${gatewayUrl('unit')}/api/detail?r_id=2000&pId=12'`)
out('       npm run demo:cutover     moves users 2000~2999 to unit, live')
out('       npm run demo:load        reads and writes through both gateways during a cut-over')
out('')
out(`  Ctrl-C stops every process.`)
