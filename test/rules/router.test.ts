import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AppActiveError, InvalidArgumentError, RuleInvalidError } from '../../src/errors/index.js'
import {
  compileRouter,
  DENSE_LIMIT,
  fnv1a32,
  MAX_KEY,
  type RouteDecision,
  type Router,
  type RuleSet,
} from '../../src/rules/index.js'
import { baseline, bigMod, threeUnits } from '../helpers/rules.js'

const decision = (
  unit: string | null,
  key: number | null,
  fenced: boolean,
  reason: RouteDecision['reason'],
) => ({
  unit,
  key,
  fenced,
  reason,
})

/** Baseline with a hole at 2000~2999 (owned by no unit). */
const gappy = (overrides: Partial<RuleSet> = {}): RuleSet =>
  baseline({
    mapping: [
      { unit: 'unit', ranges: ['0~1999'] },
      { unit: 'center', ranges: ['3000~9999'] },
    ],
    fallback: 'local',
    ...overrides,
  })

describe('router: numeric ids (DESIGN §2 row 1)', () => {
  const r = compileRouter(baseline())

  it('routes by the key of the decimal id', () => {
    assert.deepEqual(r.route('1999'), decision('unit', 1999, false, 'range'))
    assert.deepEqual(r.route('2000'), decision('center', 2000, false, 'range'))
    assert.deepEqual(r.route('12001'), decision('center', 2001, false, 'range'))
    assert.deepEqual(r.route('11999'), decision('unit', 1999, false, 'range'))
  })

  it('reads leading zeros and a plus sign as the same number', () => {
    assert.deepEqual(r.route('007'), decision('unit', 7, false, 'range'))
    assert.deepEqual(r.route('+7'), decision('unit', 7, false, 'range'))
    assert.deepEqual(r.route('+0002500'), decision('center', 2500, false, 'range'))
  })

  it('computes the key exactly on ids of any length', () => {
    for (const id of ['123456789012345678901234567890121999', '9'.repeat(40), '18446744073709551615']) {
      const key = bigMod(id, 10000)
      assert.deepEqual(r.route(id), decision(key < 2000 ? 'unit' : 'center', key, false, 'range'), id)
    }
  })

  it('takes the floor modulus of a negative id', () => {
    assert.deepEqual(r.route('-5'), decision('center', 9995, false, 'range'))
    assert.deepEqual(r.route('-9999'), decision('unit', 1, false, 'range'))
    assert.deepEqual(r.route('-10000'), decision('unit', 0, false, 'range'))
  })

  it('treats anything outside the number grammar as not numeric', () => {
    for (const id of ['12.5', '0x10', '1e3', ' 42', '42 ', '-', '+', '--5', '٤٢', 'alice']) {
      assert.deepEqual(r.route(id), decision(null, null, false, 'not_numeric'), JSON.stringify(id))
    }
  })

  it('treats a missing or empty id as missing', () => {
    for (const id of [undefined, null, ''])
      assert.deepEqual(r.route(id), decision(null, null, false, 'missing'))
  })
})

describe('router: labels (DESIGN §2 row 3)', () => {
  const r = compileRouter(threeUnits({ fallback: 'reject' }))

  it('checks labels on the raw id before the transform and the ranges', () => {
    // 12345 mod 10000 = 2345 belongs to hz by range, but the label gives it to sh.
    assert.deepEqual(r.route('12345'), decision('sh', null, false, 'label'))
    assert.deepEqual(r.route('crawler'), decision('hz', null, false, 'label'))
    assert.deepEqual(r.route('vip-1'), decision('sh', null, false, 'label'))
  })

  it('matches labels exactly: another spelling of the same number goes by its range', () => {
    assert.deepEqual(r.route('012345'), decision('hz', 2345, false, 'range'))
    assert.deepEqual(r.route('+12345'), decision('hz', 2345, false, 'range'))
    assert.deepEqual(r.route('Crawler'), decision(null, null, false, 'not_numeric'))
    assert.deepEqual(r.route('crawler '), decision(null, null, false, 'not_numeric'))
  })
})

describe('router: fallback (DESIGN §2 row 5)', () => {
  it('resolves local to the entry unit for missing, non-numeric and uncovered ids', () => {
    const r = compileRouter(gappy(), { localUnit: 'center' })
    assert.deepEqual(r.route(undefined), decision('center', null, false, 'missing'))
    assert.deepEqual(r.route('bob'), decision('center', null, false, 'not_numeric'))
    assert.deepEqual(r.route('2500'), decision('center', 2500, false, 'uncovered'))
    const u = compileRouter(gappy(), { localUnit: 'unit' })
    assert.deepEqual(u.route('2500'), decision('unit', 2500, false, 'uncovered'))
    assert.deepEqual(u.route('1500'), decision('unit', 1500, false, 'range'))
    assert.deepEqual(u.route('3500'), decision('center', 3500, false, 'range'))
  })

  it('resolves local to null when the process stands in no unit', () => {
    const r = compileRouter(gappy())
    assert.equal(r.localUnit, undefined)
    assert.deepEqual(r.route('2500'), decision(null, 2500, false, 'uncovered'))
    assert.deepEqual(r.route(''), decision(null, null, false, 'missing'))
  })

  it('sends to the named unit with a unit fallback', () => {
    const r = compileRouter(gappy({ fallback: { unit: 'center' } }), { localUnit: 'unit' })
    assert.deepEqual(r.route('2999'), decision('center', 2999, false, 'uncovered'))
    assert.deepEqual(r.route('x'), decision('center', null, false, 'not_numeric'))
    assert.deepEqual(r.route(null), decision('center', null, false, 'missing'))
  })

  it('rejects (unit null) with a reject fallback, and rejects by default', () => {
    for (const rs of [gappy({ fallback: 'reject' }), baseline()]) {
      const r = compileRouter(rs, { localUnit: 'unit' })
      assert.equal(r.fallback, 'reject')
      assert.equal(r.route('x').unit, null)
      assert.equal(r.route(undefined).unit, null)
    }
    assert.deepEqual(
      compileRouter(gappy({ fallback: 'reject' })).route('2000'),
      decision(null, 2000, false, 'uncovered'),
    )
  })

  it('lets one app override the rule set fallback', () => {
    const rs = gappy({ fallback: { unit: 'center' } })
    assert.equal(compileRouter(rs, { fallback: 'reject' }).route('2500').unit, null)
    assert.equal(compileRouter(rs, { fallback: { unit: 'unit' } }).route('2500').unit, 'unit')
    assert.equal(compileRouter(rs, { fallback: 'local', localUnit: 'unit' }).route('x').unit, 'unit')
    assert.deepEqual(compileRouter(rs, { fallback: 'reject' }).fallback, 'reject')
    assert.deepEqual(compileRouter(rs).fallback, { unit: 'center' })
    // Covered keys and labels never use the fallback.
    assert.equal(compileRouter(rs, { fallback: 'reject' }).route('3500').unit, 'center')
  })

  it('throws InvalidArgumentError for an unknown localUnit or an unknown fallback unit', () => {
    assert.throws(
      () => compileRouter(baseline(), { localUnit: 'mars' }),
      (err: unknown) =>
        err instanceof InvalidArgumentError &&
        err.code === 'APPACTIVE_INVALID_ARGUMENT' &&
        err.message === 'localUnit "mars" is not a unit of rule set v1',
    )
    assert.throws(() => compileRouter(baseline(), { localUnit: 'Unit' }), InvalidArgumentError)
    assert.throws(
      () => compileRouter(baseline(), { fallback: { unit: 'mars' } }),
      (err: unknown) => err instanceof InvalidArgumentError && /fallback unit "mars"/.test(err.message),
    )
  })

  it('validates the rule set first', () => {
    assert.throws(
      () => compileRouter(baseline({ units: [{ name: 'unit' }, { name: 'center' }] })),
      (err: unknown) => err instanceof RuleInvalidError && err instanceof AppActiveError,
    )
  })
})

describe('router: fence', () => {
  it('fences the keys of fenced ranges and only those, keeping their owner', () => {
    const r = compileRouter(baseline({ fence: { ranges: ['1500~2499'] } }))
    assert.deepEqual(r.route('1499'), decision('unit', 1499, false, 'range'))
    assert.deepEqual(r.route('1500'), decision('unit', 1500, true, 'range'))
    assert.deepEqual(r.route('2000'), decision('center', 2000, true, 'range'))
    assert.deepEqual(r.route('2499'), decision('center', 2499, true, 'range'))
    assert.deepEqual(r.route('2500'), decision('center', 2500, false, 'range'))
    assert.deepEqual(r.route('-8000'), decision('center', 2000, true, 'range'))
    assert.equal(r.isFenced('12000'), true)
    assert.equal(r.isFenced('12500'), false)
    assert.equal(r.isFenced(undefined), false)
  })

  it('fences mapped labels without changing their owner', () => {
    const r = compileRouter(threeUnits({ fence: { labels: ['vip-1'] } }))
    assert.deepEqual(r.route('vip-1'), decision('sh', null, true, 'label'))
    assert.deepEqual(r.route('crawler'), decision('hz', null, false, 'label'))
  })

  it('keeps fenced keys that no unit owns fenced under a unit fallback', () => {
    const r = compileRouter(gappy({ fallback: { unit: 'center' }, fence: { ranges: ['1900~2500'] } }))
    assert.deepEqual(r.route('1950'), decision('unit', 1950, true, 'range'))
    assert.deepEqual(r.route('2100'), decision('center', 2100, true, 'uncovered'))
    assert.deepEqual(r.route('2501'), decision('center', 2501, false, 'uncovered'))
    assert.deepEqual(r.route('3000'), decision('center', 3000, false, 'range'))
  })

  it('keeps fenced uncovered keys fenced with a local fallback, on the sparse path too', () => {
    const rs: RuleSet = baseline({
      transform: [{ type: 'mod', divisor: 10_000_000 }],
      mapping: [{ unit: 'unit', ranges: ['0~4999999'] }],
      fence: { ranges: ['4999990~5000010'] },
      fallback: 'local',
    })
    const r = compileRouter(rs, { localUnit: 'center' })
    assert.deepEqual(r.route('4999990'), decision('unit', 4999990, true, 'range'))
    assert.deepEqual(r.route('5000000'), decision('center', 5000000, true, 'uncovered'))
    assert.deepEqual(r.route('5000011'), decision('center', 5000011, false, 'uncovered'))
  })

  it('fencing a label no unit maps changes nothing but the fenced flag', () => {
    // fence.labels may name a label no unit maps when the fallback is not reject (validation allows it).
    const rs = baseline({ fallback: 'local', fence: { labels: ['2500', 'ghost'] } })
    const fenced = compileRouter(rs, { localUnit: 'unit' })
    const plain = compileRouter({ ...rs, fence: undefined }, { localUnit: 'unit' })
    assert.deepEqual(plain.route('2500'), decision('center', 2500, false, 'range'))
    assert.deepEqual(fenced.route('2500'), decision('center', 2500, true, 'range'))
    assert.deepEqual(fenced.route('ghost'), decision('unit', null, true, 'not_numeric'))
  })
})

describe('router: transforms and lookup structures', () => {
  const ids = [
    '0',
    '1',
    '1999',
    '2000',
    '2001',
    '2999',
    '3000',
    '9999',
    '-1',
    '+42',
    '0042',
    '123456789',
    'x',
    '',
  ]

  it('gives the same answers on the dense (mod 10^4) and sparse (mod 10^7) paths', () => {
    // The mod 10^7 rule set repeats the mod 10^4 mapping and fence in each of its 1000 blocks.
    const block = (b: number, lo: number, hi: number) => `${b * 10000 + lo}~${b * 10000 + hi}`
    const blocks = Array.from({ length: 1000 }, (_, b) => b)
    const dense = compileRouter(baseline({ fence: { ranges: ['1990~2010'] } }))
    const sparse = compileRouter(
      baseline({
        transform: [{ type: 'mod', divisor: 10_000_000 }],
        mapping: [
          { unit: 'unit', ranges: blocks.map((b) => block(b, 0, 1999)) },
          { unit: 'center', ranges: blocks.map((b) => block(b, 2000, 9999)) },
        ],
        fence: { ranges: blocks.map((b) => block(b, 1990, 2010)) },
      }),
    )
    assert.equal(dense.maxKey, 9999)
    assert.equal(sparse.maxKey, 9_999_999)
    const more = ['1989', '1990', '2010', '2011', '72001990', '-10', '99999999999999999999991995']
    for (const id of [...ids, ...more, ...Array.from({ length: 500 }, (_, i) => String(i * 7919 + 13))]) {
      const d = dense.route(id)
      const s = sparse.route(id)
      assert.deepEqual(
        { unit: s.unit, fenced: s.fenced, reason: s.reason, key: s.key === null ? null : s.key % 10000 },
        d,
        id,
      )
    }
  })

  it('gives the same answers with the identity transform (sparse) as mod 10^4 (dense) below 10^4', () => {
    const dense = compileRouter(baseline({ fence: { ranges: ['1990~2010'] } }))
    const identity = compileRouter(
      baseline({ transform: [], fence: { ranges: ['1990~2010'] }, fallback: 'local' }),
      { localUnit: 'unit' },
    )
    assert.equal(identity.maxKey, MAX_KEY)
    for (let k = 0; k < 10000; k += 7) assert.deepEqual(identity.route(String(k)), dense.route(String(k)))
    for (const k of ['1990', '2010', '2011', '9999', '0']) assert.deepEqual(identity.route(k), dense.route(k))
    assert.deepEqual(identity.route('10000'), decision('unit', 10000, false, 'uncovered'))
  })

  it('sends identity ids beyond 2^53 - 1 to the fallback as uncovered, with no key', () => {
    const r = compileRouter(
      baseline({ transform: [], mapping: [{ unit: 'unit', ranges: ['0~9007199254740991'] }] }),
    )
    assert.deepEqual(r.route('9007199254740991'), decision('unit', 9007199254740991, false, 'range'))
    assert.deepEqual(r.route('12345678901234567890'), decision(null, null, false, 'uncovered'))
    assert.deepEqual(r.route('-12345678901234567890'), decision(null, null, false, 'uncovered'))
    assert.equal(r.route('-5').reason, 'uncovered')
    assert.equal(r.route('-5').unit, null)
  })

  it('keys a hash transform by FNV-1a of the UTF-8 id, then mod', () => {
    const rs = baseline({
      transform: [{ type: 'hash' }, { type: 'mod', divisor: 10000 }],
    })
    const r = compileRouter(rs)
    for (const id of ['alice@example.com', 'tenant-ä', '租户', '😀', '12345', '-5']) {
      const key = fnv1a32(id) % 10000
      assert.deepEqual(r.route(id), decision(key < 2000 ? 'unit' : 'center', key, false, 'range'), id)
    }
    assert.equal(r.route('alice@example.com').key, fnv1a32('alice@example.com') % 10000)
  })

  it('keys a bare hash transform on the sparse path over the whole 32-bit space', () => {
    const r = compileRouter(
      baseline({
        transform: [{ type: 'hash' }],
        mapping: [
          { unit: 'unit', ranges: ['0~2147483647'] },
          { unit: 'center', ranges: ['2147483648~4294967295'] },
        ],
        fence: { ranges: ['0~99999'] },
      }),
    )
    for (let i = 0; i < 300; i++) {
      const id = `user-${i}@example.com`
      const h = fnv1a32(id)
      assert.deepEqual(r.route(id), decision(h < 2 ** 31 ? 'unit' : 'center', h, h <= 99999, 'range'), id)
    }
  })

  it('handles a key space right at the dense limit and right above it', () => {
    for (const divisor of [DENSE_LIMIT, DENSE_LIMIT + 1]) {
      const r = compileRouter(
        baseline({
          transform: [{ type: 'mod', divisor }],
          mapping: [
            { unit: 'unit', ranges: ['0~0', `${divisor - 1}~${divisor - 1}`] },
            { unit: 'center', ranges: [`1~${divisor - 2}`] },
          ],
        }),
      )
      assert.equal(r.maxKey, divisor - 1)
      assert.equal(r.route('0').unit, 'unit')
      assert.equal(r.route(String(divisor - 1)).unit, 'unit')
      assert.equal(r.route(String(divisor)).unit, 'unit')
      assert.equal(r.route('1').unit, 'center')
      assert.equal(r.route(String(divisor - 2)).unit, 'center')
      assert.equal(r.ownerOfKey(divisor - 1), 'unit')
      assert.equal(r.ownerOfKey(divisor), null)
    }
  })

  it('packs up to 250 units', () => {
    const units = Array.from({ length: 250 }, (_, i) => ({
      name: `u${i}`,
      ...(i === 249 ? { center: true } : {}),
    }))
    const r = compileRouter(
      baseline({
        units,
        mapping: units.map((u, i) => ({ unit: u.name, ranges: [`${i * 40}~${i * 40 + 39}`] })),
        fence: { ranges: ['9960~9999'] },
      }),
    )
    assert.equal(r.centerUnit, 'u249')
    assert.deepEqual(r.route('9999'), decision('u249', 9999, true, 'range'))
    assert.deepEqual(r.route('0'), decision('u0', 0, false, 'range'))
    assert.deepEqual(r.route('5000'), decision('u125', 5000, false, 'range'))
  })
})

describe('router: API surface', () => {
  const r: Router = compileRouter(threeUnits({ fence: { ranges: ['3990~4010'], labels: ['vip-1'] } }), {
    localUnit: 'bj',
  })
  const ids = [
    undefined,
    null,
    '',
    '0',
    '3995',
    '4005',
    '4011',
    '12345',
    'vip-1',
    'crawler',
    'x',
    '-1',
    '1'.repeat(30),
  ]

  it('returns exactly { unit, key, fenced, reason } from route()', () => {
    for (const id of ids)
      assert.deepEqual(Object.keys(r.route(id)).sort(), ['fenced', 'key', 'reason', 'unit'])
  })

  it('lookup() decodes to the same answer as route()', () => {
    for (const id of ids) {
      const code = r.lookup(id)
      assert.equal(typeof code, 'number')
      const d = r.route(id)
      assert.equal(r.unitAt(code), d.unit, String(id))
      assert.equal(r.fencedAt(code), d.fenced, String(id))
      assert.equal(r.reasonAt(code), d.reason, String(id))
      assert.equal(r.unitOf(id), d.unit)
      assert.equal(r.isFenced(id), d.fenced)
    }
  })

  it('answers ownerOfKey from the ranges alone (no labels, no fallback)', () => {
    assert.equal(r.ownerOfKey(0), 'hz')
    assert.equal(r.ownerOfKey(3999), 'hz')
    assert.equal(r.ownerOfKey(4000), 'sh')
    assert.equal(r.ownerOfKey(9999), 'bj')
    assert.equal(r.ownerOfKey(10000), null)
    assert.equal(r.ownerOfKey(-1), null)
    assert.equal(r.ownerOfKey(1.5), null)
    assert.equal(r.ownerOfKey(Number.NaN), null)
    const g = compileRouter(gappy({ fallback: { unit: 'center' } }))
    assert.equal(g.ownerOfKey(2500), null)
  })

  it('exposes the compiled facts and is frozen', () => {
    assert.equal(r.version, 7)
    assert.deepEqual(r.units, ['hz', 'sh', 'bj'])
    assert.equal(r.centerUnit, 'hz')
    assert.equal(r.localUnit, 'bj')
    assert.equal(r.maxKey, 9999)
    assert.equal(r.fallback, 'reject')
    assert.equal(r.keyOf('-5'), 9995)
    assert.ok(Number.isNaN(r.keyOf('vip-1')))
    assert.ok(Object.isFrozen(r))
    assert.ok(Object.isFrozen(r.units))
  })

  it('extracts the route id from a request in source order and routes it', () => {
    assert.equal(r.extract({ url: '/o?r_id=4005', headers: { 'x-r-id': '1' } }), '4005')
    assert.equal(r.extract({ url: '/o', headers: { 'x-r-id': '1', cookie: 'r_id=2' } }), '1')
    assert.equal(r.extract({ url: '/o', headers: { cookie: 'r_id=2' } }), '2')
    assert.equal(r.extract({}), undefined)
    assert.deepEqual(r.routeRequest({ url: '/o?r_id=4005' }), decision('sh', 4005, true, 'range'))
    assert.deepEqual(r.routeRequest({ url: '/o?x=1' }), decision(null, null, false, 'missing'))
    assert.deepEqual(
      r.routeRequest({ headers: { cookie: 'r_id=crawler' } }),
      decision('hz', null, false, 'label'),
    )
  })
})
