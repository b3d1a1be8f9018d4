import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { AppActiveError, RuleInvalidError } from '../../src/errors/index.js'
import {
  assertRuleSet,
  formatPath,
  MAX_DIVISOR,
  type RuleSet,
  validateRuleSet,
} from '../../src/rules/index.js'
import { baseline, clone, issuesOf, problems, threeUnits, valid } from '../helpers/rules.js'

describe('validateRuleSet: structure', () => {
  it('accepts the baseline and returns it typed', () => {
    const v = validateRuleSet(baseline())
    assert.equal(v.ok, true)
    if (v.ok) assert.deepEqual(v.ruleSet, baseline())
    valid(threeUnits())
  })

  it('names an unknown field with its full path', () => {
    const rs = clone(baseline()) as unknown as Record<string, unknown>
    rs.colour = 'blue'
    ;(rs.mapping as Array<Record<string, unknown>>)[1]!.weight = 3
    assert.deepEqual(problems(rs), [
      'mapping[1].weight: unknown field "weight"',
      'colour: unknown field "colour"',
    ])
  })

  it('says what type was expected and what was found', () => {
    assert.deepEqual(problems({ ...baseline(), version: '1' }), [
      'version: expected a number, got string "1"',
    ])
    assert.deepEqual(problems({ ...baseline(), units: {} }), ['units: expected a list, got an object'])
    assert.deepEqual(
      problems({
        ...baseline(),
        mapping: [
          { unit: 'unit', ranges: [5] },
          { unit: 'center', ranges: '2000~9999' },
        ],
      }),
      [
        'mapping[0].ranges[0]: expected a string, got number 5',
        'mapping[1].ranges: expected a list, got string "2000~9999"',
      ],
    )
    assert.deepEqual(
      problems({ ...baseline(), units: [{ name: 'unit', center: 'yes' }, { name: 'center' }] }),
      ['units[0].center: expected true or false, got string "yes"'],
    )
  })

  it('reports every missing required field', () => {
    const rs = clone(baseline()) as unknown as Record<string, unknown>
    delete rs.version
    delete rs.idSource
    delete rs.mapping
    assert.deepEqual(problems(rs), [
      'version: is required (a number)',
      'idSource: is required (a list)',
      'mapping: is required (a list)',
    ])
  })

  it('rejects a document that is not an object', () => {
    assert.deepEqual(problems([baseline()]), [': expected an object, got a list'])
    assert.deepEqual(problems(null), [': expected an object, got null'])
    assert.deepEqual(problems('x'), [': expected an object, got string "x"'])
  })

  it('rejects unknown transform types, id sources and fallbacks with the allowed values', () => {
    assert.deepEqual(problems({ ...baseline(), transform: [{ type: 'rot13' }] }), [
      'transform[0].type: must be one of "mod", "hash" or "identity"',
    ])
    assert.deepEqual(problems({ ...baseline(), idSource: [{ from: 'body', name: 'x' }] }), [
      'idSource[0].from: must be one of "query", "header" or "cookie"',
    ])
    assert.deepEqual(problems({ ...baseline(), fallback: 'nearest' }), [
      'fallback: must be "local", "reject" or { unit: NAME }',
    ])
  })

  it('rejects invalid unit, header and cookie names and an empty label', () => {
    const out = problems({
      ...baseline({
        units: [{ name: '1st' }, { name: 'center', center: true }],
        idSource: [
          { from: 'header', name: 'x r id' },
          { from: 'cookie', name: 'a;b' },
        ],
      }),
      mapping: [{ unit: 'center', ranges: ['0~9999'], labels: [''] }],
    })
    assert.deepEqual(
      out.map((p) => p.split(':')[0]),
      ['units[0].name', 'idSource[0].name', 'idSource[1].name', 'mapping[0].labels[0]'],
    )
    assert.ok(out[3]!.endsWith('a label cannot be empty'))
  })

  it('requires at least one unit and at least one id source', () => {
    assert.deepEqual(problems({ ...baseline(), units: [], mapping: [] }), [
      'units: at least one unit is needed',
    ])
    assert.deepEqual(problems({ ...baseline(), idSource: [] }), [
      'idSource: at least one id source is needed',
    ])
  })
})

describe('validateRuleSet: version and divisor', () => {
  it('rejects a negative, fractional or unsafe version', () => {
    assert.deepEqual(problems({ ...baseline(), version: -1 }), ['version: version cannot be negative'])
    assert.deepEqual(problems({ ...baseline(), version: 1.5 }), ['version: must be a whole number, got 1.5'])
    assert.ok(
      problems({ ...baseline(), version: Number.MAX_SAFE_INTEGER + 1 }).includes(
        'version: version is too large',
      ),
    )
    valid({ ...baseline(), version: 0 })
    valid({ ...baseline(), version: Number.MAX_SAFE_INTEGER })
  })

  it('rejects mod 0, a negative, fractional or too large divisor', () => {
    const withDivisor = (divisor: number) =>
      problems({
        ...baseline(),
        transform: [{ type: 'mod', divisor }],
        mapping: [{ unit: 'unit', ranges: ['0~0'] }],
        fallback: 'local',
      })
    assert.deepEqual(withDivisor(0), ['transform[0].divisor: divisor must be greater than 0'])
    assert.deepEqual(withDivisor(-10000), ['transform[0].divisor: divisor must be greater than 0'])
    assert.deepEqual(withDivisor(100.5), ['transform[0].divisor: must be a whole number, got 100.5'])
    assert.deepEqual(withDivisor(MAX_DIVISOR + 1), [
      'transform[0].divisor: divisor must be at most 100000000000000 (10^14)',
    ])
    valid({
      ...baseline(),
      transform: [{ type: 'mod', divisor: MAX_DIVISOR }],
      mapping: [{ unit: 'unit', ranges: ['0~99999999999999'] }],
    })
  })
})

describe('validateRuleSet: semantics', () => {
  it('reports every semantic problem of a document in one pass, each with its exact path', () => {
    const rs = {
      version: 3,
      units: [{ name: 'hz', center: true }, { name: 'sh', center: true }, { name: 'HZ' }],
      idSource: [
        { from: 'header', name: 'X-R-Id' },
        { from: 'header', name: 'x-r-id' },
      ],
      transform: [{ type: 'mod', divisor: 100 }, { type: 'hash' }],
      mapping: [
        { unit: 'hz', ranges: ['0~49', '3000~2000'], labels: ['vip'] },
        { unit: 'bj', ranges: ['40~99', '0~100'], labels: ['vip'] },
      ],
      fence: { ranges: ['0~200'] },
      fallback: { unit: 'gz' },
    }
    assert.deepEqual(problems(rs), [
      'units[2].name: unit "HZ" is already defined at units[0]',
      'units: more than one center: hz, sh',
      'transform[1]: hash must be the first step of the transform',
      'idSource[1]: header "x-r-id" is listed twice',
      'mapping[0].ranges[1]: 3000~2000 has lo greater than hi',
      'mapping[1].unit: unknown unit "bj" (units: hz, sh, HZ)',
      'mapping[1].labels[0]: label "vip" is already mapped at mapping[0].labels[0]',
      'mapping[1].ranges[1]: 0~100 overlaps 0~49 at mapping[0].ranges[0] (unit hz)',
      'mapping[1].ranges[0]: 40~99 overlaps 0~100 at mapping[1].ranges[1] (unit bj)',
      'fallback.unit: unknown unit "gz" (units: hz, sh, HZ)',
    ])
    // With a rejecting fallback, the fence and coverage problems join the list.
    const paths = issuesOf({
      ...rs,
      fallback: undefined,
      fence: { ranges: ['0~200'], labels: ['nobody'] },
    }).map((i) => i.path)
    assert.deepEqual(paths.slice(-3), ['mapping', 'fence.ranges[0]', 'fence.labels[0]'])
    assert.equal(paths.length, 12)
  })

  it('rejects ranges that overlap across entries, naming both places', () => {
    assert.deepEqual(
      problems(
        baseline({
          mapping: [
            { unit: 'unit', ranges: ['0~2000'] },
            { unit: 'center', ranges: ['2000~9999'] },
          ],
        }),
      ),
      ['mapping[1].ranges[0]: 2000~9999 overlaps 0~2000 at mapping[0].ranges[0] (unit unit)'],
    )
  })

  it('rejects ranges that overlap within one entry, and a range nested inside another', () => {
    assert.deepEqual(
      problems(
        baseline({
          mapping: [
            { unit: 'unit', ranges: ['0~1999', '1500~1600'] },
            { unit: 'center', ranges: ['2000~9999', '2000~2000'] },
          ],
        }),
      ),
      [
        'mapping[0].ranges[1]: 1500~1600 overlaps 0~1999 at mapping[0].ranges[0] (unit unit)',
        'mapping[1].ranges[0]: 2000~9999 overlaps 2000~2000 at mapping[1].ranges[1] (unit center)',
      ],
    )
  })

  it('accepts ranges that touch without overlapping', () => {
    valid(
      baseline({
        mapping: [
          { unit: 'unit', ranges: ['0~0', '1~1999'] },
          { unit: 'center', ranges: ['2000~2000', '2001~9999'] },
        ],
      }),
    )
  })

  it('rejects an unknown unit with a suggestion', () => {
    assert.deepEqual(
      problems(
        baseline({
          mapping: [
            { unit: 'Unit', ranges: ['0~1999'] },
            { unit: 'centre', ranges: ['2000~9999'] },
          ],
        }),
      ),
      [
        'mapping[0].unit: unknown unit "Unit" (did you mean "unit"?)',
        'mapping[1].unit: unknown unit "centre" (units: unit, center)',
      ],
    )
    assert.deepEqual(problems(baseline({ fallback: { unit: 'UNIT' } })), [
      'fallback.unit: unknown unit "UNIT" (did you mean "unit"?)',
    ])
  })

  it('requires exactly one center', () => {
    assert.deepEqual(problems(baseline({ units: [{ name: 'unit' }, { name: 'center' }] })), [
      'units: no unit is the center; mark exactly one with center: true',
    ])
    assert.deepEqual(
      problems(
        baseline({
          units: [
            { name: 'unit', center: true },
            { name: 'center', center: true },
          ],
        }),
      ),
      ['units: more than one center: unit, center'],
    )
    valid(
      baseline({
        units: [
          { name: 'unit', center: false },
          { name: 'center', center: true },
        ],
      }),
    )
  })

  it('rejects unit names that differ only in case', () => {
    assert.deepEqual(
      problems(baseline({ units: [{ name: 'unit' }, { name: 'center', center: true }, { name: 'UNIT' }] })),
      ['units[2].name: unit "UNIT" is already defined at units[0]'],
    )
  })

  it('rejects ranges outside the key space of the transform', () => {
    assert.deepEqual(
      problems(
        baseline({
          mapping: [
            { unit: 'unit', ranges: ['0~1999'] },
            { unit: 'center', ranges: ['2000~10000'] },
          ],
          fence: { ranges: ['9000~12000'] },
        }),
      ),
      [
        'mapping[1].ranges[0]: 2000~10000 is outside the key space 0~9999 of the transform',
        // the rejected range owns nothing, so its keys are also reported as a gap
        'mapping: keys 2000~9999 are owned by no unit; cover them or set an explicit fallback',
        'fence.ranges[0]: 9000~12000 is outside the key space 0~9999 of the transform',
      ],
    )
    assert.deepEqual(
      problems(
        baseline({
          transform: [{ type: 'hash' }],
          mapping: [{ unit: 'unit', ranges: ['0~4294967296'] }],
          fallback: 'local',
        }),
      ),
      ['mapping[0].ranges[0]: 0~4294967296 is outside the key space 0~4294967295 of the transform'],
    )
    valid(baseline({ transform: [{ type: 'hash' }], mapping: [{ unit: 'unit', ranges: ['0~4294967295'] }] }))
    valid(baseline({ transform: [], mapping: [{ unit: 'unit', ranges: ['0~9007199254740991'] }] }))
  })

  it('reports malformed ranges in mapping and fence with the range sentence', () => {
    assert.deepEqual(
      problems(
        baseline({
          mapping: [
            { unit: 'unit', ranges: ['0~1999', '3000~2000'] },
            { unit: 'center', ranges: ['2000~9999'] },
          ],
          fence: { ranges: ['x'] },
        }),
      ),
      [
        'mapping[0].ranges[1]: 3000~2000 has lo greater than hi',
        'fence.ranges[0]: "x" is not a range; write it as lo~hi with whole numbers, e.g. 2000~2999',
      ],
    )
  })

  it('allows hash only as the first step and identity only alone', () => {
    assert.deepEqual(problems(baseline({ transform: [{ type: 'mod', divisor: 10000 }, { type: 'hash' }] })), [
      'transform[1]: hash must be the first step of the transform',
      // the key space of the (invalid) chain is the hash's
      'mapping: keys 10000~4294967295 are owned by no unit; cover them or set an explicit fallback',
    ])
    assert.deepEqual(
      problems(baseline({ transform: [{ type: 'identity' }, { type: 'mod', divisor: 10000 }] })),
      ['transform[0]: identity cannot be combined with other steps (an empty transform is identity too)'],
    )
    valid(baseline({ transform: [{ type: 'hash' }, { type: 'mod', divisor: 10000 }] }))
    valid(
      baseline({
        transform: [
          { type: 'mod', divisor: 1000000 },
          { type: 'mod', divisor: 10000 },
        ],
      }),
    )
    valid(baseline({ transform: [{ type: 'identity' }], fallback: 'local' }))
  })

  it('rejects a label mapped twice, across entries and within one entry', () => {
    assert.deepEqual(
      problems(
        baseline({
          mapping: [
            { unit: 'unit', ranges: ['0~1999'], labels: ['vip', 'crawler', 'vip'] },
            { unit: 'center', ranges: ['2000~9999'], labels: ['crawler'] },
          ],
        }),
      ),
      [
        'mapping[0].labels[2]: label "vip" is already mapped at mapping[0].labels[0]',
        'mapping[1].labels[0]: label "crawler" is already mapped at mapping[0].labels[1]',
      ],
    )
  })

  it('rejects an id source listed twice (header and cookie names ignoring case, query names exactly)', () => {
    assert.deepEqual(
      problems(
        baseline({
          idSource: [
            { from: 'header', name: 'X-R-Id' },
            { from: 'header', name: 'x-r-id' },
            { from: 'query', name: 'r_id' },
            { from: 'query', name: 'r_id' },
          ],
        }),
      ),
      ['idSource[1]: header "x-r-id" is listed twice', 'idSource[3]: query "r_id" is listed twice'],
    )
    valid(
      baseline({
        idSource: [
          { from: 'query', name: 'r_id' },
          { from: 'query', name: 'R_ID' },
          { from: 'header', name: 'r_id' },
          { from: 'cookie', name: 'r_id' },
        ],
      }),
    )
  })

  it('rejects a fence on keys no unit owns when the fallback rejects, and allows it with local or unit fallback', () => {
    const gappy = (fallback?: RuleSet['fallback']): RuleSet =>
      baseline({
        mapping: [
          { unit: 'unit', ranges: ['0~1999'] },
          { unit: 'center', ranges: ['3000~9999'] },
        ],
        fence: { ranges: ['1500~2500'], labels: ['ghost'] },
        ...(fallback === undefined ? {} : { fallback }),
      })
    assert.deepEqual(problems(gappy('reject')), [
      'fence.ranges[0]: 1500~2500 fences keys no unit owns (2000~2500)',
      'fence.labels[0]: label "ghost" is not mapped to a unit',
    ])
    assert.deepEqual(problems(gappy()), [
      'mapping: keys 2000~2999 are owned by no unit; cover them or set an explicit fallback',
      'fence.ranges[0]: 1500~2500 fences keys no unit owns (2000~2500)',
      'fence.labels[0]: label "ghost" is not mapped to a unit',
    ])
    valid(gappy('local'))
    valid(gappy({ unit: 'center' }))
    // A fence on owned keys is fine with any fallback.
    valid(baseline({ fence: { ranges: ['1500~2500'] }, fallback: 'reject' }))
  })

  it('rejects coverage gaps without a fallback and allows them with any explicit fallback', () => {
    const gaps = {
      mapping: [
        { unit: 'unit', ranges: ['10~19', '30~39'] },
        { unit: 'center', ranges: ['50~59', '70~79'] },
      ],
    }
    assert.deepEqual(problems(baseline(gaps)), [
      'mapping: keys 0~9, 20~29, 40~49, ... (5 gaps) are owned by no unit; cover them or set an explicit fallback',
    ])
    assert.deepEqual(problems(baseline({ mapping: [{ unit: 'unit', ranges: ['0~1999'] }] })), [
      'mapping: keys 2000~9999 are owned by no unit; cover them or set an explicit fallback',
    ])
    assert.deepEqual(problems(baseline({ mapping: [] })), [
      'mapping: keys 0~9999 are owned by no unit; cover them or set an explicit fallback',
    ])
    valid(baseline({ ...gaps, fallback: 'local' }))
    valid(baseline({ ...gaps, fallback: 'reject' }))
    valid(baseline({ ...gaps, fallback: { unit: 'center' } }))
  })
})

describe('assertRuleSet and formatPath', () => {
  it('throws RuleInvalidError carrying every issue', () => {
    const bad = baseline({ units: [{ name: 'unit' }, { name: 'center' }], version: -1 })
    assert.throws(
      () => assertRuleSet(bad),
      (err: unknown) => {
        assert.ok(err instanceof RuleInvalidError)
        assert.ok(err instanceof AppActiveError)
        assert.equal(err.code, 'APPACTIVE_RULE_INVALID')
        assert.deepEqual(err.issues, [{ path: 'version', message: 'version cannot be negative' }])
        assert.equal(err.message, 'invalid rule set: version: version cannot be negative')
        return true
      },
    )
    assert.deepEqual(assertRuleSet(baseline()), baseline())
  })

  it('formats zod paths the way the messages print them', () => {
    assert.equal(formatPath(['mapping', 1, 'ranges', 0]), 'mapping[1].ranges[0]')
    assert.equal(formatPath(['fallback', 'unit']), 'fallback.unit')
    assert.equal(formatPath([]), '')
    assert.equal(formatPath([0, 'a']), '[0].a')
  })
})

describe('validateRuleSet: property', () => {
  it('is ok exactly when no two ranges overlap (naive pairwise check)', () => {
    const range = fc
      .tuple(fc.nat({ max: 999 }), fc.nat({ max: 60 }))
      .map(([lo, len]) => ({ lo, hi: Math.min(999, lo + len) }))
    fc.assert(
      fc.property(fc.array(fc.tuple(range, fc.nat({ max: 2 })), { maxLength: 12 }), (placed) => {
        const units = ['a', 'b', 'c']
        const rs: RuleSet = {
          version: 1,
          units: [{ name: 'a', center: true }, { name: 'b' }, { name: 'c' }],
          idSource: [{ from: 'query', name: 'r_id' }],
          transform: [{ type: 'mod', divisor: 1000 }],
          mapping: units.map((unit, u) => ({
            unit,
            ranges: placed.filter(([, pu]) => pu === u).map(([r]) => `${r.lo}~${r.hi}`),
          })),
          fallback: 'local',
        }
        let overlaps = false
        for (let i = 0; i < placed.length; i++)
          for (let j = i + 1; j < placed.length; j++) {
            const [a] = placed[i]!
            const [b] = placed[j]!
            if (a.lo <= b.hi && b.lo <= a.hi) overlaps = true
          }
        const v = validateRuleSet(rs)
        assert.equal(v.ok, !overlaps, JSON.stringify(v.ok ? [] : v.issues))
        if (!v.ok) assert.ok(v.issues.every((i) => i.message.includes(' overlaps ')))
      }),
      { numRuns: 300 },
    )
  })
})
