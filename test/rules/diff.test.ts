import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RuleInvalidError } from '../../src/errors/index.js'
import {
  applyDiff,
  compileRouter,
  diffRuleSets,
  mergeRanges,
  ownershipOf,
  type RuleSet,
  validateRuleSet,
} from '../../src/rules/index.js'
import { baseline, threeUnits, valid } from '../helpers/rules.js'

/** The portal cut: keys 2000~2999 move from center to unit. */
const portalCut = (): RuleSet =>
  baseline({
    version: 2,
    mapping: [
      { unit: 'unit', ranges: ['0~2999'] },
      { unit: 'center', ranges: ['3000~9999'] },
    ],
  })

describe('diffRuleSets', () => {
  it('plans the portal cut: 2000~2999 from center to unit, fenced, 1000 keys', () => {
    const d = diffRuleSets(baseline(), portalCut())
    assert.deepEqual(d, {
      fromVersion: 1,
      toVersion: 2,
      moved: [{ lo: 2000, hi: 2999, from: 'center', to: 'unit' }],
      labels: [],
      addedUnits: [],
      removedUnits: [],
      toUnits: portalCut().units,
      center: undefined,
      fence: { ranges: ['2000~2999'], labels: [] },
      movedKeys: 1000,
    })
  })

  it('finds nothing to move between two rule sets with the same ownership', () => {
    const split = baseline({
      mapping: [
        { unit: 'center', ranges: ['5000~9999', '2000~4999'] },
        { unit: 'unit', ranges: ['1000~1999', '0~999'] },
      ],
    })
    const d = diffRuleSets(baseline(), split)
    assert.deepEqual(d.moved, [])
    assert.deepEqual(d.labels, [])
    assert.deepEqual(d.fence, { ranges: [], labels: [] })
    assert.equal(d.movedKeys, 0)
    assert.equal(diffRuleSets(baseline(), baseline()).movedKeys, 0)
  })

  it('counts a transform written as [] and as [identity] as the same', () => {
    const a = baseline({ transform: [], fallback: 'local' })
    const b = baseline({ transform: [{ type: 'identity' }], fallback: 'local' })
    assert.equal(diffRuleSets(a, b).movedKeys, 0)
  })

  it('plans label moves, additions and removals, sorted and fenced', () => {
    const from = threeUnits()
    const to = threeUnits({
      mapping: [
        { unit: 'hz', ranges: ['0~3999'], labels: ['vip-1'] },
        { unit: 'sh', ranges: ['4000~6999'], labels: ['12345', 'new'] },
        { unit: 'bj', ranges: ['7000~9999'] },
      ],
    })
    const d = diffRuleSets(from, to)
    assert.deepEqual(d.labels, [
      { label: 'crawler', from: 'hz', to: null },
      { label: 'new', from: null, to: 'sh' },
      { label: 'vip-1', from: 'sh', to: 'hz' },
    ])
    assert.deepEqual(d.fence, { ranges: [], labels: ['crawler', 'new', 'vip-1'] })
    assert.equal(d.movedKeys, 0)
  })

  it('plans moves to a new unit and away from a removed one', () => {
    const from = threeUnits()
    const to = threeUnits({
      units: [{ name: 'hz', center: true }, { name: 'sh' }, { name: 'gz', description: 'new' }],
      mapping: [
        { unit: 'hz', ranges: ['0~3999'], labels: ['crawler'] },
        { unit: 'sh', ranges: ['4000~6999'], labels: ['vip-1', '12345'] },
        { unit: 'gz', ranges: ['7000~9999'] },
      ],
    })
    const d = diffRuleSets(from, to)
    assert.deepEqual(d.addedUnits, [{ name: 'gz', description: 'new' }])
    assert.deepEqual(d.removedUnits, ['bj'])
    assert.deepEqual(d.moved, [{ lo: 7000, hi: 9999, from: 'bj', to: 'gz' }])
    assert.equal(d.movedKeys, 3000)
    const applied = valid(applyDiff(from, d))
    assert.deepEqual(
      applied.units.map((u) => u.name),
      ['hz', 'sh', 'gz'],
    )
    assert.equal(compileRouter(applied).ownerOfKey(8000), 'gz')
  })

  it('plans keys that become owned or unowned (null side)', () => {
    const from = baseline({ fallback: 'local' })
    const to = baseline({
      fallback: 'local',
      mapping: [
        { unit: 'unit', ranges: ['0~1499'] },
        { unit: 'center', ranges: ['2000~9999'] },
      ],
    })
    assert.deepEqual(diffRuleSets(from, to).moved, [{ lo: 1500, hi: 1999, from: 'unit', to: null }])
    assert.deepEqual(diffRuleSets(to, from).moved, [{ lo: 1500, hi: 1999, from: null, to: 'unit' }])
  })

  it('merges adjacent moves with the same from and to, and keeps different ones apart', () => {
    const from = threeUnits()
    const to = threeUnits({
      mapping: [
        { unit: 'hz', ranges: ['0~2999'], labels: ['crawler'] },
        { unit: 'sh', ranges: ['3000~3499', '3500~6999'], labels: ['vip-1', '12345'] },
        { unit: 'bj', ranges: ['7000~9999'] },
      ],
    })
    const d = diffRuleSets(from, to)
    assert.deepEqual(d.moved, [{ lo: 3000, hi: 3999, from: 'hz', to: 'sh' }])
    const swap = threeUnits({
      mapping: [
        { unit: 'hz', ranges: ['0~2999', '4000~4999'], labels: ['crawler'] },
        { unit: 'sh', ranges: ['3000~3999', '5000~6999'], labels: ['vip-1', '12345'] },
        { unit: 'bj', ranges: ['7000~9999'] },
      ],
    })
    const s = diffRuleSets(from, swap)
    assert.deepEqual(s.moved, [
      { lo: 3000, hi: 3999, from: 'hz', to: 'sh' },
      { lo: 4000, hi: 4999, from: 'sh', to: 'hz' },
    ])
    assert.deepEqual(s.fence.ranges, ['3000~4999'], 'the fence merges moves whatever their units')
    assert.equal(s.movedKeys, 2000)
  })

  it('refuses two rule sets with different transforms', () => {
    const to = baseline({
      transform: [{ type: 'mod', divisor: 1000 }],
      mapping: [{ unit: 'unit', ranges: ['0~999'] }],
    })
    assert.throws(
      () => diffRuleSets(baseline(), to),
      (err: unknown) =>
        err instanceof RuleInvalidError &&
        err.issues.length === 1 &&
        err.issues[0]!.path === 'transform' &&
        /^invalid change: transform: the transform differs/.test(err.message),
    )
    assert.throws(
      () =>
        diffRuleSets(
          baseline(),
          baseline({ transform: [{ type: 'hash' }, { type: 'mod', divisor: 10000 }] }),
        ),
      RuleInvalidError,
    )
  })

  it('refuses an invalid rule set on either side', () => {
    const bad = baseline({ units: [{ name: 'unit' }, { name: 'center' }] })
    assert.throws(() => diffRuleSets(bad, baseline()), RuleInvalidError)
    assert.throws(() => diffRuleSets(baseline(), bad), RuleInvalidError)
  })
})

describe('applyDiff', () => {
  it('applies the portal cut to the baseline', () => {
    const applied = applyDiff(baseline(), diffRuleSets(baseline(), portalCut()))
    assert.deepEqual(applied.mapping, [
      { unit: 'unit', ranges: ['0~2999'] },
      { unit: 'center', ranges: ['3000~9999'] },
    ])
    assert.equal(applied.version, 1, 'version stays from')
    valid(applied)
  })

  it('yields a valid rule set when the center unit is removed and a kept unit becomes the center', () => {
    const from: RuleSet = threeUnits()
    const to: RuleSet = threeUnits({
      version: 8,
      units: [{ name: 'sh', center: true }, { name: 'bj' }, { name: 'gz' }],
      mapping: [
        { unit: 'gz', ranges: ['0~3999'], labels: ['crawler'] },
        { unit: 'sh', ranges: ['4000~6999'], labels: ['vip-1', '12345'] },
        { unit: 'bj', ranges: ['7000~9999'] },
      ],
    })
    const d = diffRuleSets(from, to)
    assert.deepEqual(d.removedUnits, ['hz'])
    assert.deepEqual(d.addedUnits, [{ name: 'gz' }])
    const applied = applyDiff(from, d)
    const v = validateRuleSet(applied)
    assert.ok(v.ok, `applyDiff produced an invalid rule set: ${JSON.stringify(v.ok ? [] : v.issues)}`)
    assert.deepEqual(
      applied.units.filter((u) => u.center).map((u) => u.name),
      ['sh'],
    )
  })

  it('yields a valid rule set when the center moves to a new unit', () => {
    const from: RuleSet = baseline()
    const to: RuleSet = baseline({
      version: 2,
      units: [{ name: 'unit' }, { name: 'center2', center: true }],
      mapping: [
        { unit: 'unit', ranges: ['0~1999'] },
        { unit: 'center2', ranges: ['2000~9999'] },
      ],
    })
    const applied = valid(applyDiff(from, diffRuleSets(from, to)))
    assert.equal(compileRouter(applied).centerUnit, 'center2')
  })
})

describe('ownershipOf and mergeRanges', () => {
  it('sorts ranges and merges adjacent ones of the same unit only', () => {
    const rs = threeUnits({
      mapping: [
        { unit: 'bj', ranges: ['7000~9999'] },
        { unit: 'hz', ranges: ['2000~3999', '0~1999'] },
        { unit: 'sh', ranges: ['4000~6999'] },
      ],
    })
    assert.deepEqual(ownershipOf(rs), [
      { lo: 0, hi: 3999, unit: 'hz' },
      { lo: 4000, hi: 6999, unit: 'sh' },
      { lo: 7000, hi: 9999, unit: 'bj' },
    ])
  })

  it('merges overlapping and adjacent ranges whatever their order', () => {
    assert.deepEqual(
      mergeRanges([
        { lo: 10, hi: 20 },
        { lo: 0, hi: 4 },
        { lo: 5, hi: 7 },
        { lo: 15, hi: 30 },
        { lo: 40, hi: 40 },
        { lo: 12, hi: 13 },
      ]),
      [
        { lo: 0, hi: 7 },
        { lo: 10, hi: 30 },
        { lo: 40, hi: 40 },
      ],
    )
    assert.deepEqual(mergeRanges([]), [])
  })
})
