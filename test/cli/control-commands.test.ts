// The commands that talk to the control plane (publish, cutover, failover, status, audit), run as the
// real CLI (spawned) or through main() in this process, against a real control plane with its
// orchestrator and two real agents (one per unit) on a shared-database topology.
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import type { RoutingAgent } from '../../src/agent/index.js'
import type { StatusOutput } from '../../src/cli/commands/status.js'
import { main } from '../../src/cli/main.js'
import { createOrchestrator, type Operation, type OrchestratorOptions } from '../../src/control/index.js'
import {
  ADMIN,
  call,
  doc,
  OPERATOR,
  SHARED_DB,
  type Started,
  start,
  VIEWER,
  world,
} from '../helpers/control.js'
import { assertExit, cli, cliInProcess, fixture, jsonLines, lines, type Run, tempDir } from './helpers.js'

const LEASE_MS = 800

type T = Parameters<typeof start>[0]

async function controlPlane(
  t: T,
  options: OrchestratorOptions = {},
  extra: { bodyLimit?: number } = {},
): Promise<{ s: Started; agents: RoutingAgent[] }> {
  const s = await start(t, {
    leaseMs: LEASE_MS,
    heartbeatMs: 150,
    orchestrator: createOrchestrator({ ackTimeoutMs: LEASE_MS + 1000, ...options }),
    ...extra,
  })
  return { s, agents: await world(t, s, SHARED_DB) }
}

/** The connection options of an in-process run. */
const conn = (s: Started, token = OPERATOR) => ['--control-url', s.url, '--token', token]
/** The environment of a spawned run. */
const env = (s: Started, token = OPERATOR) => ({
  env: { APPACTIVE_CONTROL_URL: s.url, APPACTIVE_TOKEN: token },
})

async function operations(s: Started): Promise<Operation[]> {
  return (await call(s.url, 'GET', '/v1/operations', VIEWER)).json.operations
}

const latest = async (s: Started) => (await s.store.latestRuleSet())!

/** Runs main() with a fake terminal on stdout and stdin, stdin holding `input`. */
async function onTerminal(args: readonly string[], input: string): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const stdin = Object.assign(Readable.from([input]), { isTTY: true })
  const code = await main(args, {
    stdout: Object.assign({ write: (s: string) => (stdout += s) }, { isTTY: true, columns: 120 }),
    stderr: { write: (s: string) => (stderr += s) },
    stdin,
  })
  return { code, stdout, stderr }
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

const PHASES = ['fence', 'drain', 'catch-up', 'switch', 'unfence']

describe('appactive publish', () => {
  test('publishes a file as the next version and prints it; every problem of an invalid one; refuses moves', async (t) => {
    const { s } = await controlPlane(t)
    const dir = await tempDir(t)
    const same = join(dir, 'same.json')
    await writeFile(same, JSON.stringify({ ...doc(), description: 'same mapping' }))
    const ok = await cli(['publish', same, '--reason', 'no change'], env(s))
    assertExit(ok, 0)
    assert.match(ok.stdout, /^published version 2 \(sha256 [0-9a-f]{12}\) by olga\n$/)
    const record = await latest(s)
    assert.equal(record.version, 2)
    assert.equal(record.reason, 'no change')

    const bad = await cliInProcess(['publish', fixture('problems.yaml'), ...conn(s)])
    assertExit(bad, 1)
    assert.match(bad.stderr, /^appactive: RULE_INVALID: invalid rule set: 3 problem\(s\)\n/)
    assert.match(bad.stderr, /\n {2}mapping\[0\]\.ranges\[1\]: 5000~4000 has lo greater than hi\n/)
    assert.match(bad.stderr, /\n {2}mapping\[2\]\.unit: unknown unit "nowhere"/)
    assert.match(bad.stderr, /\n {2}mapping\[1\]\.ranges\[0\]: 2000~9999 overlaps 0~2999/)

    const moving = join(dir, 'moving.yaml')
    await writeFile(moving, JSON.stringify(doc(2999)))
    const refused = await cliInProcess(['publish', moving, ...conn(s)])
    assertExit(refused, 1)
    assert.match(refused.stderr, /^appactive: OWNERSHIP_CHANGE: this rule set moves 1000 key\(s\)/)
    const unconfirmed = await cliInProcess(['publish', moving, '--force', ...conn(s, ADMIN)])
    assertExit(unconfirmed, 2)
    assert.match(unconfirmed.stderr, /^appactive: CONFIRMATION_REQUIRED: not published: --force/)
    assert.equal((await latest(s)).version, 2, 'nothing more was published')
  })

  test('a syntax error is reported with its line; an oversized body is refused (413)', async (t) => {
    const { s } = await controlPlane(t, {}, { bodyLimit: 4096 })
    const broken = await cliInProcess(['publish', fixture('malformed.json'), ...conn(s)])
    assertExit(broken, 1)
    assert.match(broken.stderr, /^appactive: APPACTIVE_RULE_INVALID: .*malformed JSON/)
    const dir = await tempDir(t)
    const big = join(dir, 'big.json')
    await writeFile(big, JSON.stringify({ ...doc(), description: 'x'.repeat(8000) }))
    const run = await cliInProcess(['publish', big, ...conn(s)])
    assertExit(run, 1)
    assert.match(run.stderr, /^appactive: BODY_TOO_LARGE: the request body is larger than 4096 bytes\n$/)
  })
})

describe('appactive cutover', () => {
  test('--dry-run prints the transcript and creates nothing', async (t) => {
    const { s } = await controlPlane(t)
    const run = await cliInProcess([
      'cutover',
      '--move',
      '2000~2999',
      '--to-unit',
      'unit',
      '--dry-run',
      ...conn(s),
    ])
    assertExit(run, 0)
    const out = lines(run.stdout)
    assert.equal(out[0], 'cut-over from version 1 to version 4: 1000 key(s) and 0 label(s) move')
    assert.equal(out[1], '  2000~2999: center -> unit')
    assert.deepEqual(
      out.filter((l) => /^\d\. /.test(l)).map((l) => l.split(':')[0]),
      PHASES.map((p, i) => `${i + 1}. ${p}`),
    )
    assert.deepEqual(await operations(s), [])
    assert.equal((await latest(s)).version, 1)
  })

  test('piped and without --yes it refuses with exit 2 and creates nothing', async (t) => {
    const { s } = await controlPlane(t)
    const run = await cli(['cutover', '--move', '2000~2999', '--to-unit', 'unit'], env(s))
    assertExit(run, 2)
    assert.equal(run.stdout, '')
    assert.match(
      run.stderr,
      /^appactive: CONFIRMATION_REQUIRED: the cut-over was not started: stdin is not a terminal.*add --yes/,
    )
    assert.deepEqual(await operations(s), [])
  })

  test('--yes runs it: one line per phase, in order, then how it ended; exit 0', async (t) => {
    const { s, agents } = await controlPlane(t)
    const run = await cli(['cutover', '--move', '2000~2999', '--to-unit', 'unit', '--yes'], env(s))
    assertExit(run, 0)
    const out = lines(run.stdout)
    assert.match(
      out[0]!,
      /^cut-over [0-9a-f-]{36} started by olga: version 1 -> 4, 1000 key\(s\) and 0 label\(s\) move$/,
    )
    const phases = out.filter((l) => l.startsWith('phase '))
    assert.deepEqual(
      phases.map((l) => l.split(' ').slice(1, 3).join(' ')),
      PHASES.map((p) => `${p} ok`),
    )
    assert.match(phases[0]!, /^phase fence ok \d+ ms \(version 2, 2 acked\)$/)
    assert.match(phases[2]!, /^phase catch-up ok \d+ ms \(center -> unit: none, nothing to wait for\)$/)
    assert.match(out.at(-1)!, /^cut-over [0-9a-f-]{36} succeeded in \d+ ms: version 4 in force$/)
    const rs = (await latest(s)).ruleSet
    assert.equal(rs.version, 4)
    assert.equal(rs.fence, undefined)
    for (const a of agents) assert.equal(a.route('2500').unit, 'unit')
    const [op] = await operations(s)
    assert.equal(op?.state, 'succeeded')
    assert.equal(op?.reason, 'cut-over of 2000~2999 to unit (appactive CLI)')
  })

  test('--json prints one JSON object per event: operations, phases, then the result', async (t) => {
    const { s } = await controlPlane(t)
    const dir = await tempDir(t)
    const target = join(dir, 'target.yaml')
    await writeFile(target, JSON.stringify(doc(2999)))
    const run = await cliInProcess(['cutover', '--to', target, '--yes', '--json', ...conn(s)])
    assertExit(run, 0)
    const events = jsonLines(run.stdout) as Array<Record<string, unknown> & { type: string }>
    assert.ok(events.every((e) => ['operation', 'progress', 'phase', 'result'].includes(e.type)))
    assert.ok(events.some((e) => e.type === 'progress'))
    const revisions = events
      .filter((e) => e.type === 'operation')
      .map((e) => (e.operation as Operation).revision)
    assert.deepEqual(
      revisions,
      [...revisions].sort((a, b) => a - b),
      'operation records arrive in order',
    )
    assert.deepEqual(
      events.filter((e) => e.type === 'phase').map((e) => [e.name, e.outcome, typeof e.ms]),
      PHASES.map((p) => [p, 'ok', 'number']),
    )
    const result = events.at(-1)!
    assert.equal(result.type, 'result')
    assert.equal(result.state, 'succeeded')
    assert.equal(result.toVersion, 4)
    assert.equal(result.exitCode, 0)
    assert.ok(typeof result.totalMs === 'number' && result.totalMs >= 0)
  })

  test('bad input: every problem of the plan is listed (exit 1), nothing is created; usage errors exit 2', async (t) => {
    const { s } = await controlPlane(t)
    const run = await cliInProcess([
      'cutover',
      '--move',
      '5000~4000,0~10',
      '--to-unit',
      'unit',
      '--yes',
      ...conn(s),
    ])
    assertExit(run, 1)
    assert.match(run.stderr, /^appactive: PLAN_INVALID: the cutover cannot be planned: 2 problem\(s\)\n/)
    assert.match(run.stderr, /\n {2}moves\[0\]\.ranges\[0\]: .*5000~4000/)
    assert.match(run.stderr, /\n {2}moves\[0\]\.ranges\[1\]: keys 0~10 are already owned by unit "unit"\n/)
    const unknown = await cliInProcess([
      'cutover',
      '--move',
      '2000~2999',
      '--to-unit',
      'nowhere',
      '--dry-run',
      ...conn(s),
    ])
    assertExit(unknown, 1)
    assert.match(unknown.stderr, /\n {2}moves\[0\]\.to: unknown unit "nowhere" \(units: center, unit\)\n/)
    const usage = await cliInProcess(['cutover', '--move', '2000~2999', ...conn(s)])
    assertExit(usage, 2)
    assert.match(
      usage.stderr,
      /^appactive: APPACTIVE_INVALID_ARGUMENT: --move and --label need --to-unit UNIT/,
    )
    assert.deepEqual(await operations(s), [])
  })

  test('a run that rolls back prints the failed phase and the rollback, and exits 1', async (t) => {
    const { s, agents } = await controlPlane(t, { drainTimeoutMs: 300 })
    const write = agents[0]!.beginWrite('2500')
    t.after(() => write.end())
    const run = await cliInProcess([
      'cutover',
      '--move',
      '2000~2999',
      '--to-unit',
      'unit',
      '--yes',
      ...conn(s),
    ])
    assertExit(run, 1)
    const phases = lines(run.stdout).filter((l) => l.startsWith('phase '))
    assert.deepEqual(
      phases.map((l) => l.split(' ').slice(1, 3).join(' ')),
      ['fence ok', 'drain failed', 'rollback compensated'],
    )
    assert.match(
      phases[1]!,
      /^phase drain failed \d+ ms \(guarded writes on fenced keys are still in flight on c1/,
    )
    assert.match(
      lines(run.stdout).at(-1)!,
      /^cut-over [0-9a-f-]{36} rolled-back after \d+ ms: version 3 in force$/,
    )
    assert.match(run.stderr, /^appactive: DRAIN_TIMEOUT: guarded writes on fenced keys are still in flight/)
  })

  test('on a terminal it shows the plan and asks; "y" runs it with a ✓ line per phase, "n" creates nothing', async (t) => {
    const { s } = await controlPlane(t)
    const args = ['cutover', '--move', '2000~2999', '--to-unit', 'unit', ...conn(s)]
    const no = await onTerminal(args, 'n\n')
    assertExit(no, 2)
    assert.match(no.stdout, /^cut-over from version 1 to version 4/)
    assert.match(
      no.stderr,
      /Start this cut-over \(version 1 -> 4, 1000 key\(s\) and 0 label\(s\) move\)\? \[y\/N\] /,
    )
    assert.match(
      no.stderr,
      /appactive: NOT_CONFIRMED: the cut-over was not confirmed: nothing was started\n$/,
    )
    assert.deepEqual(await operations(s), [])

    const yes = await onTerminal(args, 'y\n')
    assertExit(yes, 0)
    for (const p of PHASES) assert.match(yes.stdout, new RegExp(`\\r\\x1b\\[2K✓ ${p} +\\d+ ms +ok`))
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the spinner's line reset is what it looks for
    assert.match(yes.stdout, /\r\x1b\[2K[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] fence +\d+\.\d s/, 'a spinner while a phase runs')
    assert.match(yes.stdout, /succeeded in \d+ ms: version 4 in force\n$/)
    assert.equal((await operations(s))[0]?.state, 'succeeded')
  })
})

describe('appactive failover', () => {
  test('refused without --yes; --force needs --yes even on a terminal; --force --yes switches at once', async (t) => {
    const { s, agents } = await controlPlane(t)
    const piped = await cliInProcess(['failover', '--unit', 'unit', '--to', 'center', ...conn(s)])
    assertExit(piped, 2)
    assert.match(piped.stderr, /^appactive: CONFIRMATION_REQUIRED: the failover of unit unit was not started/)
    const forced = await onTerminal(
      ['failover', '--unit', 'unit', '--to', 'center', '--force', ...conn(s)],
      'y\n',
    )
    assertExit(forced, 2)
    assert.doesNotMatch(forced.stderr, /\[y\/N\]/, 'no question is enough for a forced step')
    assert.match(
      forced.stderr,
      /CONFIRMATION_REQUIRED: not started: a forced failover does not wait out unit unit's/,
    )
    assert.deepEqual(await operations(s), [])

    const run = await cliInProcess([
      'failover',
      '--unit',
      'unit',
      '--to',
      'center',
      '--force',
      '--yes',
      ...conn(s),
    ])
    assertExit(run, 0)
    const out = lines(run.stdout)
    assert.match(
      out[0]!,
      /^failover of unit unit \(forced\) [0-9a-f-]{36} started by olga: version 1 -> 2, 2000 key/,
    )
    assert.match(out[1]!, /^phase wait-leases skipped \d+ ms \(forced: .*, RPO unknown\)$/)
    assert.match(out[2]!, /^phase switch ok \d+ ms \(version 2, 1 acked, RTO \d+ ms\)$/)
    assert.match(out[3]!, /succeeded in \d+ ms: version 2 in force \(RTO \d+ ms, RPO unknown\)$/)
    assert.equal(agents[0]!.route('500').unit, 'center')
  })
})

describe('appactive status and audit', () => {
  test('status shows the rule set, fence, units, nodes with versions and leases, and the running phase', async (t) => {
    const { s, agents } = await controlPlane(t)
    const write = agents[0]!.beginWrite('2500')
    t.after(() => write.end())
    const created = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, {
      moves: [{ ranges: ['2000~2999'], to: 'unit' }],
      reason: 'status test',
    })
    const id = created.json.id as string
    assert.equal((await call(s.url, 'POST', `/v1/operations/${id}/start`, OPERATOR)).status, 202)
    const deadline = performance.now() + 10_000
    while ((await call(s.url, 'GET', `/v1/operations/${id}`, VIEWER)).json.phase !== 'drain') {
      assert.ok(performance.now() < deadline, 'never reached the drain')
      await new Promise((r) => setTimeout(r, 10))
    }
    const run = await cliInProcess(['status', ...conn(s, VIEWER)])
    assertExit(run, 0)
    const out = lines(run.stdout)
    assert.match(out[0]!, new RegExp(`^control plane +${s.url} \\(store sqlite, orchestrator on\\)$`))
    assert.match(out[1]!, /^rule set +version 2, by operation:[0-9a-f-]{36} at \S+: cutover .*: fence$/)
    assert.match(out[2]!, /^fence +2000~2999 \(writes refused there\)$/)
    assert.match(
      out[3]!,
      new RegExp(`^operation +cutover ${id} running: phase drain for \\d+ ms, started by olga`),
    )
    assert.ok(out.includes('UNIT    CENTER  OWNS       NODES'), run.stdout)
    assert.ok(out.includes('center  yes     2000~9999  1 live of 1'), run.stdout)
    assert.ok(out.includes('unit    no      0~1999     1 live of 1'), run.stdout)
    assert.match(run.stdout, /\nc1 +shop +center +2 +ok, \d+ ms left +live\n/)
    assert.match(run.stdout, /\nu1 +shop +unit +2 +ok, \d+ ms left +live\n/)

    const json = await cliInProcess(['status', '--json', ...conn(s, VIEWER)])
    assertExit(json, 0)
    const [status] = jsonLines(json.stdout) as [StatusOutput]
    assert.equal(status.ruleSet?.version, 2)
    assert.deepEqual(status.ruleSet?.fence, { ranges: ['2000~2999'], labels: [] })
    assert.equal(status.operation?.id, id)
    assert.equal(status.operation?.phase, 'drain')
    assert.deepEqual(status.nodes.map((n) => [n.nodeId, n.appliedVersion, n.status]).sort(), [
      ['c1', 2, 'live'],
      ['u1', 2, 'live'],
    ])
    write.end()
  })

  test('audit prints the log as a table or JSON, filtered by action, and says when more may follow', async (t) => {
    const { s } = await controlPlane(t)
    const run = await cliInProcess(['audit', '--action', 'ruleset.publish', ...conn(s, VIEWER)])
    assertExit(run, 0)
    const out = lines(run.stdout)
    assert.match(out[0]!, /^SEQ +AT +ACTOR +ACTION +TARGET +DETAILS$/)
    assert.equal(out.length, 2, run.stdout)
    assert.match(out[1]!, /^\d+ +\S+Z +olga +ruleset\.publish +ruleset:1 +reason=v1$/)
    const json = await cliInProcess(['audit', '--json', '--limit', '2', ...conn(s, VIEWER)])
    assertExit(json, 0)
    const [page] = jsonLines(json.stdout) as [{ entries: { seq: number; action: string }[]; next: number }]
    assert.deepEqual(
      page.entries.map((e) => e.action),
      ['topology.update', 'ruleset.publish'],
    )
    assert.equal(page.next, page.entries[1]!.seq)
    assert.equal(
      json.stderr,
      `appactive: note: more entries may follow: appactive audit --after ${page.next}\n`,
    )
  })
})

describe('talking to the control plane', () => {
  test('an unreachable control plane: a clear message naming the URL and exit 3', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`
    const run = await cli(['status'], { env: { APPACTIVE_CONTROL_URL: url, APPACTIVE_TOKEN: VIEWER } })
    assertExit(run, 3)
    assert.match(
      run.stderr,
      new RegExp(
        `^appactive: CONTROL_UNREACHABLE: cannot reach the control plane at ${url} \\(APPACTIVE_CONTROL_URL\\): .*ECONNREFUSED`,
      ),
    )
    assert.match(run.stderr, /\n {2}is it running\? set --control-url or APPACTIVE_CONTROL_URL/)
  })

  test('a wrong token gets a clear 401 message, a too-low role the 403 message; both exit 3', async (t) => {
    const { s } = await controlPlane(t)
    const wrong = await cli(['audit'], env(s, 'not-a-token-of-this-control-plane'))
    assertExit(wrong, 3)
    assert.match(
      wrong.stderr,
      new RegExp(
        `^appactive: UNAUTHORIZED: the control plane at ${s.url} refused the request \\(401\\): the token was not accepted\\n`,
      ),
    )
    assert.match(wrong.stderr, /\n {2}set APPACTIVE_TOKEN or --token/)
    const none = await cliInProcess(['status', '--control-url', s.url])
    assertExit(none, 3)
    assert.match(none.stderr, /\(401\): no token was given/)
    const viewer = await cliInProcess([
      'cutover',
      '--move',
      '2000~2999',
      '--to-unit',
      'unit',
      '--yes',
      ...conn(s, VIEWER),
    ])
    assertExit(viewer, 3)
    assert.match(
      viewer.stderr,
      /^appactive: FORBIDDEN: role viewer cannot do this; it needs operator \(403\)\n$/,
    )
  })
})
