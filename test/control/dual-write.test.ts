// The proof of DESIGN §4's invariant (issue 7 item 8): writers in their own processes, each with a real
// agent, write through the in-flight write API into PostgreSQL while 20 randomized cut-overs run; agents
// are delayed (a slow proxy), killed and restarted, and the control plane is SIGKILLed once. The
// checker then shows that no route id was accepted by two units in overlapping time, none while fenced
// or outside its owner, and no acknowledged write is missing. It also catches orchestrators that skip
// the drain or the ack wait.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { describe, test } from 'node:test'
import pg from 'pg'
import { createOrchestrator, type Operation, type OrchestratorOptions } from '../../src/control/index.js'
import { compileRouter, type RuleSet } from '../../src/rules/index.js'
import { TOKEN } from '../helpers/agents.js'
import { ADMIN, call, doc, OPERATOR, SHARED_DB, start } from '../helpers/control.js'
import { type AckedWrite, checkHistory, type DbRow, type Violation } from '../helpers/dual-write/checker.js'
import { type DelayProxy, delayProxy } from '../helpers/dual-write/delay-proxy.js'
import { freePort } from '../helpers/ports.js'
import { needs, PG_CONFIG, POSTGRES } from '../helpers/services.js'

const ROOT = new URL('../../', import.meta.url).pathname
const LEASE = '1s'
const IDS = [
  ...Array.from({ length: 8 }, (_, i) => String(1992 + i)),
  ...Array.from({ length: 8 }, (_, i) => String(2000 + i)),
]
/** Our environment without node:test's (a child would think it is a test runner's subprocess). */
function childEnv(): NodeJS.ProcessEnv {
  const { NODE_TEST_CONTEXT: _c, NODE_OPTIONS: _o, ...rest } = process.env
  return rest
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const clock = () => performance.timeOrigin + performance.now()

type T = Parameters<typeof start>[0]

/** The writers, their acknowledged writes, their kills. */
class Writers {
  readonly acks: AckedWrite[] = []
  readonly killedAt = new Map<string, number[]>()
  readonly #procs = new Map<string, ChildProcess>()
  readonly #env: Record<string, string>
  readonly #log: string[] = []

  constructor(env: Record<string, string>) {
    this.#env = env
  }

  start(node: string, unit: string, controlUrl: string): void {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/dual-write/writer.ts'], {
      cwd: ROOT,
      env: { ...childEnv(), ...this.#env, DW_NODE: node, DW_UNIT: unit, DW_CONTROL_URL: controlUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.#procs.set(node, child)
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{"row"')) return void this.#log.push(`${node}: ${line}`)
      this.acks.push(JSON.parse(line) as AckedWrite)
    })
    child.stderr!.on('data', (d) => this.#log.push(`${node}: ${d}`))
  }

  kill(node: string): void {
    const child = this.#procs.get(node)
    if (child === undefined || child.exitCode !== null) return
    child.kill('SIGKILL')
    const list = this.killedAt.get(node) ?? []
    list.push(clock())
    this.killedAt.set(node, list)
  }

  /** Stops every writer: its loop ends after the write in progress; resolves when all have exited. */
  async stop(): Promise<void> {
    await Promise.all(
      [...this.#procs.values()].map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return
        const exited = new Promise((r) => c.once('exit', r))
        c.kill('SIGTERM')
        const timer = setTimeout(() => c.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(timer)
      }),
    )
  }

  log(): string {
    return this.#log.join('\n').slice(-4000)
  }
}

interface Scenario {
  readonly url: string
  readonly writers: Writers
  readonly table: string
  readonly db: pg.Client
}

async function setup(
  t: T,
  url: string,
  writeMs: string,
  delayed?: DelayProxy,
  ids: readonly string[] = IDS,
): Promise<Scenario> {
  const db = new pg.Client(PG_CONFIG)
  await db.connect()
  const table = `dual_write_${process.pid}_${Math.floor(Math.random() * 1e6)}`
  await db.query(
    `CREATE TABLE ${table} (id bigserial PRIMARY KEY, route_id text NOT NULL, unit text NOT NULL, node text NOT NULL, version int NOT NULL, t_begin double precision NOT NULL)`,
  )
  t.after(async () => {
    await db.query(`DROP TABLE IF EXISTS ${table}`)
    await db.end()
  })
  assert.equal(
    (await call(url, 'PUT', '/v1/topology', ADMIN, { topology: SHARED_DB, reason: 'setup' })).status,
    200,
  )
  assert.equal((await call(url, 'POST', '/v1/rules', OPERATOR, { ruleSet: doc(), reason: 'v1' })).status, 201)
  const writers = new Writers({
    DW_TOKEN: TOKEN,
    DW_TABLE: table,
    DW_IDS: ids.join(','),
    DW_WRITE_MS: writeMs,
    DW_PG: JSON.stringify(PG_CONFIG),
  })
  t.after(() => writers.stop())
  writers.start('c1', 'center', url)
  writers.start('c2', 'center', delayed?.url ?? url)
  writers.start('u1', 'unit', url)
  writers.start('u2', 'unit', url)
  // Every writer registered and on v1 before anything moves.
  const deadline = performance.now() + 30_000
  for (;;) {
    const nodes = (await call(url, 'GET', '/v1/nodes', OPERATOR)).json
    const live = (nodes?.nodes ?? []) as { nodeId: string; appliedVersion: number; status: string }[]
    const ready = (n: string) =>
      live.some((l) => l.nodeId === n && l.appliedVersion === 1 && l.status === 'live')
    if (['c1', 'c2', 'u1', 'u2'].every(ready)) break
    if (performance.now() > deadline)
      assert.fail(`writers did not register: ${JSON.stringify(nodes).slice(0, 300)} ${writers.log()}`)
    await sleep(100)
  }
  return { url, writers, table, db }
}

/** Moves `range` (lo~hi) to the unit that does not own it now; resolves with the operation's id. */
async function startCutover(url: string, range: string): Promise<string> {
  const latest = (await call(url, 'GET', '/v1/rules/latest', OPERATOR)).json.ruleSet as RuleSet
  const owner = compileRouter(latest).route(range.split('~')[0]!).unit
  const to = owner === 'center' ? 'unit' : 'center'
  const plan = () =>
    call(url, 'POST', '/v1/cutovers', OPERATOR, { moves: [{ ranges: [range], to }], reason: 'chaos' })
  let created = await plan()
  // The interlock refuses a plan while the target unit has no healthy node (a killed writer restarting).
  for (
    let i = 0;
    i < 50 && created.status === 400 && /no healthy node/.test(JSON.stringify(created.json));
    i++
  ) {
    await sleep(100)
    created = await plan()
  }
  assert.equal(created.status, 201, JSON.stringify(created.json?.issues ?? created.json))
  const started = await call(url, 'POST', `/v1/operations/${created.json.id}/start`, OPERATOR)
  assert.equal(started.status, 202, JSON.stringify(started.json))
  return created.json.id as string
}

/** Polls the operation until it ends (tolerating a control plane that is down for a while). */
async function ended(url: () => string, id: string, timeoutMs = 60_000): Promise<Operation> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const op = await call(url(), 'GET', `/v1/operations/${id}`, OPERATOR)
      .then((r) => r.json as Operation)
      .catch(() => undefined)
    if (op !== undefined && op.state !== 'running' && op.state !== 'planned') return op
    if (performance.now() > deadline)
      assert.fail(`operation ${id} did not end (${op?.state} in ${op?.phase})`)
    await sleep(50)
  }
}

/** Stops the writers and checks everything that happened. */
async function verdict(s: Scenario): Promise<{ violations: Violation[]; rows: DbRow[] }> {
  await s.writers.stop()
  const endedAt = clock()
  const { rows } = await s.db.query<{
    id: string
    route_id: string
    unit: string
    node: string
    version: number
    t_begin: number
  }>(`SELECT id, route_id, unit, node, version, t_begin FROM ${s.table}`)
  const dbRows: DbRow[] = rows.map((r) => ({
    row: Number(r.id),
    id: r.route_id,
    unit: r.unit,
    node: r.node,
    version: r.version,
    t0: r.t_begin,
  }))
  const versions = [...new Set(dbRows.map((r) => r.version))]
  const routers = new Map()
  for (const v of versions) {
    const rs = (await call(s.url, 'GET', `/v1/rules/${v}`, OPERATOR)).json.ruleSet as RuleSet
    routers.set(v, compileRouter(rs))
  }
  const violations = checkHistory({
    rows: dbRows,
    acks: s.writers.acks,
    killedAt: s.writers.killedAt,
    routers,
    endedAt,
  })
  return { violations, rows: dbRows }
}

const skip = await needs(POSTGRES)

describe('dual-write checker', { skip }, () => {
  test('the checker finds overlaps, missing and unowned writes in a synthetic history', () => {
    const rs = { ...doc(), version: 1 } as RuleSet
    const routers = new Map([[1, compileRouter(rs)]])
    const row = (row: number, unit: string, t0: number, id = '2000'): DbRow => ({
      row,
      id,
      unit,
      node: unit,
      version: 1,
      t0,
    })
    const ack = (r: DbRow, t1: number): AckedWrite => ({ ...r, t1 })
    const a = row(1, 'center', 0)
    const b = row(2, 'unit', 5)
    const kinds = (v: Violation[]) => v.map((x) => x.kind).sort()
    const base = { killedAt: new Map(), routers, endedAt: 100 }
    assert.deepEqual(kinds(checkHistory({ ...base, rows: [a], acks: [ack(a, 4)] })), [])
    assert.deepEqual(kinds(checkHistory({ ...base, rows: [a, b], acks: [ack(a, 10), ack(b, 12)] })), [
      'not-owner',
      'overlap',
    ])
    assert.deepEqual(kinds(checkHistory({ ...base, rows: [], acks: [ack(a, 4)] })), ['missing'])
    // A killed writer's unacknowledged row lasts until its kill.
    const killed = { ...base, killedAt: new Map([['center', [20]]]) }
    const c = row(3, 'center', 10, '2001')
    const d = { ...row(4, 'center', 15, '2001'), node: 'other' }
    assert.deepEqual(kinds(checkHistory({ ...killed, rows: [c, d], acks: [ack(d, 16)] })), [])
    const u = { ...row(5, 'unit', 18, '2001'), node: 'u' }
    assert.ok(kinds(checkHistory({ ...killed, rows: [c, u], acks: [ack(u, 19)] })).includes('overlap'))
  })

  test('20 randomized cut-overs with delayed, killed and restarted agents and a killed control plane: no violation', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'appactive-dw-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    let cp = await controlPlaneProcess(dir, port)
    t.after(() => void cp.kill('SIGKILL'))
    const proxy = await delayProxy(port, 60)
    t.after(() => proxy.close())
    const s = await setup(t, url, '2-30', proxy)

    const states: string[] = []
    const nodes = ['c1', 'c2', 'u1', 'u2']
    const units: Record<string, string> = { c1: 'center', c2: 'center', u1: 'unit', u2: 'unit' }
    for (let k = 0; k < 20; k++) {
      if (k % 5 === 2) {
        const victim = nodes[Math.floor(Math.random() * nodes.length)]!
        s.writers.kill(victim)
        setTimeout(
          () => s.writers.start(victim, units[victim]!, victim === 'c2' ? proxy.url : url),
          200 + Math.random() * 400,
        )
      }
      const id = await startCutover(url, k % 2 === 0 ? '2000~2099' : '1900~1999')
      if (k === 9) {
        await sleep(Math.random() * 150)
        cp.kill('SIGKILL')
        await new Promise((r) => cp.once('exit', r))
        cp = await controlPlaneProcess(dir, port)
      }
      const op = await ended(() => url, id)
      states.push(op.state)
      assert.notEqual(op.state, 'failed', `operation ${k} failed: ${op.error?.message}`)
      await sleep(Math.random() * 100)
    }
    const { violations, rows } = await verdict(s)
    assert.deepEqual(violations.slice(0, 5), [], `${violations.length} violation(s)`)
    assert.ok(
      states.filter((x) => x === 'succeeded').length >= 10,
      `too few cut-overs succeeded: ${states.join(' ')}`,
    )
    // The run exercised what it claims: both units wrote ids that moved between them.
    for (const id of ['1995', '2003']) {
      const units = new Set(rows.filter((r) => r.id === id).map((r) => r.unit))
      assert.deepEqual([...units].sort(), ['center', 'unit'], `writes to ${id}`)
    }
    assert.ok(s.writers.acks.length > 200, `only ${s.writers.acks.length} writes`)
  })

  for (const broken of ['drain', 'ackWait'] as const) {
    test(`catches an orchestrator that skips the ${broken === 'drain' ? 'drain' : 'ack wait'}`, async (t) => {
      const unsafeSkip: OrchestratorOptions['unsafeSkip'] =
        broken === 'drain' ? { drain: true } : { ackWait: true }
      const cp = await start(t, {
        leaseMs: 1000,
        heartbeatMs: 250,
        orchestrator: createOrchestrator({ unsafeSkip }),
      })
      const port = Number(new URL(cp.url).port)
      // A slow network to one old owner (ack wait), or long writes straddling the switch (drain), on few
      // ids so that the new owner soon writes one of them: either mistake must show, even under load.
      const proxy = await delayProxy(port, broken === 'ackWait' ? 400 : 1)
      t.after(() => proxy.close())
      const writeMs = broken === 'drain' ? '600-1500' : '50-150'
      const s = await setup(t, cp.url, writeMs, proxy, ['1998', '1999', '2000', '2001'])
      for (let k = 0; k < 5; k++) {
        const op = await ended(
          () => cp.url,
          await startCutover(cp.url, k % 2 === 0 ? '2000~2099' : '1900~1999'),
        )
        assert.equal(op.state, 'succeeded')
        await sleep(broken === 'drain' ? 1500 : 500)
      }
      const { violations } = await verdict(s)
      assert.ok(
        violations.some((v) => v.kind === 'overlap'),
        `the checker found no overlap with the ${broken} step skipped (${violations.length} violations)`,
      )
    })
  }
})

async function controlPlaneProcess(dir: string, port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'src/cli/run.ts',
      'control',
      '--listen',
      `127.0.0.1:${port}`,
      '--store',
      `sqlite:${join(dir, 'cp.db')}`,
      '--lease',
      LEASE,
    ],
    {
      cwd: ROOT,
      env: {
        ...childEnv(),
        APPACTIVE_ADMIN_TOKEN: ADMIN,
        APPACTIVE_OPERATOR_TOKEN: OPERATOR,
        APPACTIVE_AGENT_TOKEN: TOKEN,
        APPACTIVE_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let stderr = ''
  child.stderr!.on('data', (d) => {
    stderr += d
  })
  for await (const line of createInterface({ input: child.stdout! })) {
    if (line.startsWith('appactive control plane on')) return child
  }
  throw new Error(`the control plane did not start: ${stderr}`)
}
