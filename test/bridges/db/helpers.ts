/** Shared pieces of the database guard tests: agents in each situation, and the scope x outcome matrix. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { createAgent, type RoutingAgent, type WriteScope } from '../../../src/agent/index.js'
import type { RuleChannel } from '../../../src/channels/types.js'
import { runWithRoute } from '../../../src/context/index.js'
import { AppActiveError, type ErrorCode } from '../../../src/errors/index.js'
import { rules, silent } from '../../helpers/agents.js'

/** Route ids of the baseline rules (mod 10000: unit 0~1999, center 2000~9999). */
export const UNIT_ID = '5'
export const CENTER_ID = '2500'
/** The fence that covers UNIT_ID. */
export const FENCE = ['0~9']

let nodes = 0

export interface AgentSetup {
  /** The agent's unit: `unit` or `center`. */
  readonly unit: 'unit' | 'center'
  /** Apply the baseline with FENCE instead of without. */
  readonly fenced?: boolean
  /** Give the agent a lease, then let it lapse. */
  readonly expired?: boolean
}

/** An agent holding the baseline rules (version 1, or 2 when fenced), in the situation asked for. */
export async function agentFor(setup: AgentSetup): Promise<RoutingAgent> {
  if (!setup.expired) {
    const agent = createAgent({
      unit: setup.unit,
      app: 'shop',
      nodeId: `db-${++nodes}`,
      logger: silent,
      cache: false,
    })
    agent.apply(rules(1))
    if (setup.fenced) agent.apply(rules(2, 1999, FENCE))
    return agent
  }
  // A leasing channel that delivers nothing, and a clock the test moves: granted at 0, lapsed at 1000.
  let now = 0
  const channel: RuleChannel = { name: 'test-control', leasing: true, async start() {}, async close() {} }
  const agent = createAgent({
    unit: setup.unit,
    app: 'shop',
    nodeId: `db-${++nodes}`,
    logger: silent,
    cache: false,
    channels: [channel],
    clock: { now: () => now },
  })
  await agent.start()
  agent.apply(rules(1))
  agent.renewLease(0, 100, 1)
  assert.equal(agent.state().lease, 'valid')
  now = 1000
  assert.equal(agent.state().lease, 'expired')
  return agent
}

export type Outcome = 'allowed' | 'fenced' | 'wrong unit' | 'not center' | 'no id' | 'lease expired'

export interface MatrixRow extends AgentSetup {
  readonly scope: WriteScope
  readonly outcome: Outcome
  readonly routeId: string | undefined
  /** The refusal's code, or undefined when the write goes through. */
  readonly expect: ErrorCode | undefined
  /** Why a row that sounds like a refusal is allowed. */
  readonly why?: string
}

/** Every scope x every outcome (DESIGN §3): what a guarded write gets in each situation. */
export const MATRIX: readonly MatrixRow[] = [
  { scope: 'unit', outcome: 'allowed', unit: 'unit', routeId: UNIT_ID, expect: undefined },
  {
    scope: 'unit',
    outcome: 'fenced',
    unit: 'unit',
    fenced: true,
    routeId: UNIT_ID,
    expect: 'APPACTIVE_FENCED',
  },
  { scope: 'unit', outcome: 'wrong unit', unit: 'unit', routeId: CENTER_ID, expect: 'APPACTIVE_WRONG_UNIT' },
  {
    scope: 'unit',
    outcome: 'not center',
    unit: 'unit',
    routeId: UNIT_ID,
    expect: undefined,
    why: 'unit data is written in its owner unit, center or not',
  },
  { scope: 'unit', outcome: 'no id', unit: 'unit', routeId: undefined, expect: 'APPACTIVE_NO_ROUTE_ID' },
  {
    scope: 'unit',
    outcome: 'lease expired',
    unit: 'unit',
    expired: true,
    routeId: UNIT_ID,
    expect: 'APPACTIVE_LEASE_EXPIRED',
  },
  { scope: 'center', outcome: 'allowed', unit: 'center', routeId: CENTER_ID, expect: undefined },
  {
    scope: 'center',
    outcome: 'fenced',
    unit: 'center',
    fenced: true,
    routeId: UNIT_ID,
    expect: undefined,
    why: 'center data is not moved by cut-overs',
  },
  {
    scope: 'center',
    outcome: 'wrong unit',
    unit: 'center',
    routeId: UNIT_ID,
    expect: undefined,
    why: 'the center takes writes for any route id',
  },
  { scope: 'center', outcome: 'not center', unit: 'unit', routeId: UNIT_ID, expect: 'APPACTIVE_NOT_CENTER' },
  {
    scope: 'center',
    outcome: 'no id',
    unit: 'center',
    routeId: undefined,
    expect: undefined,
    why: 'center writes need no route id',
  },
  {
    scope: 'center',
    outcome: 'lease expired',
    unit: 'center',
    expired: true,
    routeId: CENTER_ID,
    expect: 'APPACTIVE_LEASE_EXPIRED',
  },
]

/** The name of a matrix row's test. */
export function rowName(row: MatrixRow): string {
  const result = row.expect ?? `allowed${row.why ? ` (${row.why})` : ''}`
  return `${row.scope} scope, ${row.outcome}: ${result}`
}

/**
 * Asserts `err` is the typed refusal `row` expects, carrying the facts DESIGN §3 names: the route id,
 * this unit, the owner and the rule version.
 */
export function assertRefusal(err: unknown, row: MatrixRow, agent: RoutingAgent): void {
  assert.ok(err instanceof AppActiveError, `expected an AppActiveError, got ${String(err)}`)
  assert.equal(err.code, row.expect)
  assert.equal(err.details.unit, agent.identity.unit)
  assert.equal(err.details.version, agent.version)
  assert.equal(err.details.scope, row.scope)
  if (row.routeId !== undefined) assert.equal(err.details.routeId, row.routeId)
  if (row.expect === 'APPACTIVE_WRONG_UNIT' || row.expect === 'APPACTIVE_FENCED') {
    assert.equal(err.details.owner, row.routeId === CENTER_ID ? 'center' : 'unit')
  }
  if (row.expect === 'APPACTIVE_NOT_CENTER') assert.equal(err.details.owner, 'center')
}

/** Runs `fn` and returns what it threw (or undefined). */
export async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn()
    return undefined
  } catch (err) {
    return err
  }
}

/** A logger that records warnings. */
export function recordingLogger(): { warn(obj: object, msg: string): void; warnings: string[] } {
  const warnings: string[] = []
  return { warnings, warn: (_obj, msg) => warnings.push(msg) }
}

/** A table name of this test process, so parallel runs do not collide. */
export function tableName(driver: string): string {
  return `aa_guard_${driver}_${process.pid}`
}

/**
 * The matrix verdict for one surface: an allowed write lands once; a refused one fails with the row's
 * error and lands nowhere; nothing stays in flight either way.
 */
export async function assertOutcome(
  name: string,
  row: MatrixRow,
  agent: RoutingAgent,
  err: unknown,
  written: number | Promise<number>,
): Promise<void> {
  if (row.expect === undefined) {
    assert.equal(err, undefined, `${name}: ${String(err)}`)
    assert.equal(await written, 1, `${name}: the row is written`)
  } else {
    assertRefusal(err, row, agent)
    assert.equal(await written, 0, `${name}: a refused write never reaches the database`)
  }
  assert.equal(agent.state().inflight, 0, `${name}: nothing stays in flight`)
}

/** Every scope x every outcome on every surface of an async driver (`prefix` keeps the rows' tags apart). */
export function asyncMatrix(
  prefix: string,
  surfaces: Record<string, (agent: RoutingAgent, row: MatrixRow, tag: string) => Promise<unknown>>,
  count: (tag: string) => Promise<number>,
): void {
  describe('every scope x every outcome, on every API', () => {
    MATRIX.forEach((row, r) => {
      test(rowName(row), async () => {
        const agent = await agentFor(row)
        for (const [name, send] of Object.entries(surfaces)) {
          const tag = `${prefix}${r}-${name}`
          const err = await runWithRoute({ routeId: row.routeId }, () => caught(() => send(agent, row, tag)))
          await assertOutcome(name, row, agent, err, count(tag))
        }
      })
    })
  })
}
