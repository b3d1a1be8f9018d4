// The planner on its own (pure): what moves, the fence, and every problem of a bad request.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { NodeView } from '../../src/channels/index.js'
import type { Topology } from '../../src/control/model.js'
import { type PlanResult, planCutover, planFailover } from '../../src/control/plan.js'
import { threeUnits } from '../helpers/rules.js'

const current = threeUnits({ version: 10 }) // hz 0~3999 + crawler (center), sh 4000~6999 + vip-1, 12345, bj 7000~9999

function node(nodeId: string, unit: string, extra: Partial<NodeView> = {}): NodeView {
  return {
    nodeId,
    app: 'shop',
    unit,
    address: undefined,
    pid: undefined,
    appliedVersion: 10,
    registeredAt: 0,
    lastHeartbeatAt: 0,
    leaseExpiresAt: 1e12,
    lapsed: false,
    inflightFenced: 0,
    connected: true,
    lastError: undefined,
    ...extra,
  }
}

const nodes = [node('hz-1', 'hz'), node('sh-1', 'sh'), node('bj-1', 'bj')]
const units = ['hz', 'sh', 'bj']
const topology: Topology = {
  units: [{ name: 'hz', center: true }, { name: 'sh' }, { name: 'bj' }],
  apps: [],
  dbScopes: [],
  probes: units.flatMap((s) =>
    units.filter((t) => t !== s).map((t) => ({ source: s, target: t, kind: 'none' as const })),
  ),
}
const ctx = { current, topology, nodes }

function issues(r: PlanResult): string[] {
  assert.equal(r.ok, false, 'expected the plan to be refused')
  return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`)
}

describe('planCutover', () => {
  test('moves ranges and labels; the fence is exactly what moves', () => {
    const r = planCutover({ moves: [{ ranges: ['3000~3999'], labels: ['crawler'], to: 'sh' }] }, ctx)
    assert.ok(r.ok)
    assert.deepEqual(r.plan.moved, [{ lo: 3000, hi: 3999, from: 'hz', to: 'sh' }])
    assert.deepEqual(r.plan.labels, [{ label: 'crawler', from: 'hz', to: 'sh' }])
    assert.deepEqual(r.plan.fence, { ranges: ['3000~3999'], labels: ['crawler'] })
    assert.equal(r.plan.target.version, 13)
    const sh = r.plan.target.mapping.find((e) => e.unit === 'sh')
    assert.deepEqual(sh, { unit: 'sh', ranges: ['3000~6999'], labels: ['crawler', 'vip-1', '12345'] })
    assert.deepEqual(
      r.plan.catchUp.map((c) => [c.source, c.target, c.probes.length]),
      [['hz', 'sh', 1]],
    )
  })

  test('lists every problem of the moves at once', () => {
    const r = planCutover(
      {
        moves: [
          { ranges: ['4500~4600', '1~5'], to: 'sh' },
          { ranges: ['3~8', '9~x'], labels: ['vip-1'], to: 'bj' },
          { ranges: ['100~200'], to: 'nowhere' },
          { labels: ['crawler'], to: 'hz' },
        ],
      },
      ctx,
    )
    assert.deepEqual(issues(r), [
      'moves[0].ranges[0]: keys 4500~4600 are already owned by unit "sh"',
      'moves[1].ranges[1]: "9~x" is not a range; write it as lo~hi with whole numbers, e.g. 2000~2999',
      'moves[2].to: unknown unit "nowhere" (units: hz, sh, bj)',
      'moves[3].labels[0]: label "crawler" is already owned by unit "hz"',
      'moves[1].ranges[0]: 3~8 overlaps 1~5 at moves[0].ranges[1]',
    ])
  })

  test('refuses a fenced version in force, a changed transform, and both or neither of moves and target', () => {
    const fenced = { ...ctx, current: { ...current, fence: { ranges: ['1~2'] } } }
    assert.match(
      issues(planCutover({ moves: [{ ranges: ['0~1'], to: 'sh' }] }, fenced))[0]!,
      /^current\.fence: version 10 still carries a fence \(1~2\)/,
    )
    const other = {
      ...current,
      transform: [{ type: 'mod' as const, divisor: 100 }],
      mapping: [{ unit: 'hz', ranges: ['0~99'] }],
    }
    assert.match(issues(planCutover({ target: other }, ctx))[0]!, /^target\.transform: the transform differs/)
    assert.deepEqual(issues(planCutover({}, ctx)), [
      ': give exactly one of target (a whole rule set) and moves',
    ])
    assert.deepEqual(issues(planCutover({ target: current, moves: [] }, ctx)), [
      ': give exactly one of target (a whole rule set) and moves',
    ])
  })

  test('a target unit without a healthy node blocks the plan; agents behind are a warning', () => {
    const lapsed = [
      node('hz-1', 'hz'),
      node('sh-1', 'sh', { lapsed: true }),
      node('bj-1', 'bj', { appliedVersion: 9 }),
    ]
    const r = planCutover({ moves: [{ ranges: ['0~9'], to: 'sh' }] }, { ...ctx, nodes: lapsed })
    assert.deepEqual(issues(r), [
      'nodes: no healthy node in target unit "sh": nothing would serve the moved keys',
    ])
    const ok = planCutover({ moves: [{ ranges: ['0~9'], to: 'bj' }] }, { ...ctx, nodes: lapsed })
    assert.ok(ok.ok)
    assert.ok(ok.plan.warnings.some((w) => w.includes('agents not on version 10') && w.includes('bj-1')))
    assert.ok(ok.plan.warnings.some((w) => w.includes('lapsed lease') && w.includes('sh-1')))
  })
})

describe('planFailover', () => {
  test('gives every key and label of the lost unit to the survivor; a fence in force is lifted (warning)', () => {
    const fenced = { ...ctx, current: { ...current, fence: { ranges: ['1~2'] } } }
    const r = planFailover({ unit: 'sh', to: 'hz', force: true }, fenced)
    assert.ok(r.ok)
    assert.deepEqual(r.plan.moved, [{ lo: 4000, hi: 6999, from: 'sh', to: 'hz' }])
    assert.deepEqual(
      r.plan.labels.map((l) => l.label),
      ['12345', 'vip-1'],
    )
    assert.deepEqual(r.plan.fence, { ranges: [], labels: [] })
    assert.equal(r.plan.target.fence, undefined)
    assert.equal(r.plan.target.version, 11)
    assert.equal(r.plan.force, true)
    assert.ok(r.plan.warnings.some((w) => /still carries a fence/.test(w)))
    assert.ok(r.plan.warnings.some((w) => /force skips waiting them out/.test(w)))
  })

  test("refuses an unknown unit, moving other units' keys, and keys left on the lost unit", () => {
    assert.deepEqual(issues(planFailover({ unit: 'mars', to: 'hz' }, ctx)), [
      'unit: unknown unit "mars" (units: hz, sh, bj)',
    ])
    const r = planFailover({ unit: 'sh', moves: [{ ranges: ['4000~5999', '7000~7099'], to: 'hz' }] }, ctx)
    assert.deepEqual(issues(r), [
      "target: a failover moves only unit sh's keys, but 7000~7099 (bj -> hz) would move too",
      'target: 6000~6999, "vip-1", "12345" would still belong to the lost unit sh: every key of it must move',
    ])
  })
})
