// Conformance with AppActive (reference §8 acceptance vectors and §7 T3-T5): where AppActive's gateway (GW)
// and Java client agree, appactive gives their answer; where they disagree, each row says which side the
// DESIGN §2 decision follows and why. Rules are the portal files in test/fixtures/appactive.
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { test } from 'node:test'
import { RuleInvalidError } from '../../src/errors/index.js'
import {
  type AppActiveFiles,
  compileRouter,
  fromAppActive,
  type RouteReason,
  type Router,
} from '../../src/rules/index.js'

const FIXTURES = new URL('../fixtures/appactive/', import.meta.url)
const ROLES = ['idSource', 'idTransformer', 'idUnitMapping', 'forbiddenRule', 'machine'] as const

function fixture(dir: string, name: string): string {
  return readFileSync(new URL(`${dir}/${name}`, FIXTURES), 'utf8')
}

/** The AppActive files of a fixture directory. */
function dirFiles(dir: string): AppActiveFiles {
  const files: AppActiveFiles = {}
  for (const role of ROLES) {
    const url = new URL(`${dir}/${role}.json`, FIXTURES)
    if (existsSync(url)) files[role] = readFileSync(url, 'utf8')
  }
  return files
}

/** AppActive's gateway runs in `center` (its $self_unit is hard-coded, B18): the local unit of these tests. */
function routerOf(files: AppActiveFiles, localUnit = 'center'): Router {
  return compileRouter(fromAppActive(files).ruleSet, { localUnit })
}

/** The baseline files with some replaced. */
function withFiles(over: AppActiveFiles): AppActiveFiles {
  return { ...dirFiles('baseline'), ...over }
}

function mapping(items: Record<string, Array<Record<string, string[]>>>): string {
  return JSON.stringify({
    itemType: 'UnitRuleItem',
    items: Object.entries(items).map(([name, conditions]) => ({ name, conditions })),
  })
}

/** Asserts the import fails and returns its issues. */
function importIssues(files: AppActiveFiles): readonly { path: string; message: string; file?: string }[] {
  try {
    fromAppActive(files)
  } catch (err) {
    assert.ok(err instanceof RuleInvalidError, String(err))
    assert.equal(err.code, 'APPACTIVE_RULE_INVALID')
    return err.issues
  }
  assert.fail('the import should have failed')
}

const baseline = routerOf(dirFiles('baseline'))
const next = routerOf(dirFiles('next'))

type Java = 'UNIT' | 'CENTER' | 'null' | 'throws'
interface Expect {
  readonly unit: string
  readonly reason: RouteReason
}
interface Row {
  /** The route id; undefined = absent. */
  readonly id: string | undefined
  /** Read from this request URL through the id sources, instead of `id`. */
  readonly url?: string
  readonly gw: readonly [string, string]
  readonly java: readonly [Java, Java]
  readonly ours: readonly [Expect, Expect]
  /** Which side appactive follows where GW and Java disagree, and why. */
  readonly why?: string
}

const unit = (reason: RouteReason = 'range'): Expect => ({ unit: 'unit', reason })
const center = (reason: RouteReason = 'range'): Expect => ({ unit: 'center', reason })
/** A row where GW and Java agree (Java upper-cased unit names). */
function agree(gwBase: 'unit' | 'center', gwNext: 'unit' | 'center'): Omit<Row, 'id'> {
  const java = (u: 'unit' | 'center'): Java => (u === 'unit' ? 'UNIT' : 'CENTER')
  return {
    gw: [gwBase, gwNext],
    java: [java(gwBase), java(gwNext)],
    ours: [
      { unit: gwBase, reason: 'range' },
      { unit: gwNext, reason: 'range' },
    ],
  }
}

// Reference §8, main table: every row, baseline and next.
const ROWS: readonly Row[] = [
  { id: '0', ...agree('unit', 'unit') },
  { id: '1', ...agree('unit', 'unit') },
  { id: '1999', ...agree('unit', 'unit') },
  { id: '2000', ...agree('center', 'unit') },
  { id: '2499', ...agree('center', 'unit') },
  { id: '2999', ...agree('center', 'unit') },
  { id: '3000', ...agree('center', 'center') },
  { id: '9999', ...agree('center', 'center') },
  { id: '10000', ...agree('unit', 'unit') },
  { id: '11999', ...agree('unit', 'unit') },
  { id: '12000', ...agree('center', 'unit') },
  { id: '20001', ...agree('unit', 'unit') },
  { id: '007', ...agree('unit', 'unit') },
  { id: '+7', ...agree('unit', 'unit') },
  {
    id: '-1',
    gw: ['center', 'center'],
    java: ['null', 'null'],
    ours: [center(), center()],
    why: 'GW: floor modulus, -1 mod 10000 = 9999; Java kept the sign and found no unit',
  },
  {
    id: '-5',
    gw: ['center', 'center'],
    java: ['null', 'null'],
    ours: [center(), center()],
    why: 'GW: floor modulus, -5 mod 10000 = 9995',
  },
  {
    id: 'abc',
    gw: ['center', 'center'],
    java: ['throws', 'throws'],
    ours: [center('not_numeric'), center('not_numeric')],
    why: 'both refuse it as a number; the explicit fallback (local = center) replaces the Java exception',
  },
  {
    id: '12.5',
    gw: ['unit', 'unit'],
    java: ['throws', 'throws'],
    ours: [center('not_numeric'), center('not_numeric')],
    why: 'Java: not numeric (GW coerced it with tonumber); the fallback decides',
  },
  {
    id: ' 42',
    gw: ['unit', 'unit'],
    java: ['throws', 'throws'],
    ours: [center('not_numeric'), center('not_numeric')],
    why: 'Java: ids are not trimmed, so not numeric',
  },
  {
    id: '0x10',
    gw: ['unit', 'unit'],
    java: ['throws', 'throws'],
    ours: [center('not_numeric'), center('not_numeric')],
    why: 'Java: hex is not a decimal id',
  },
  {
    id: '1e3',
    gw: ['unit', 'unit'],
    java: ['throws', 'throws'],
    ours: [center('not_numeric'), center('not_numeric')],
    why: 'Java: an exponent is not a decimal id',
  },
  {
    id: '99999999999999999999',
    gw: ['unit', 'unit'],
    java: ['throws', 'throws'],
    ours: [center(), center()],
    why: 'neither: GW lost precision (0), Java overflowed a long; the exact mod is 9999 (DESIGN §2)',
  },
  {
    id: '',
    gw: ['center', 'center'],
    java: ['throws', 'throws'],
    ours: [center('missing'), center('missing')],
    why: 'both have no id; the explicit fallback (local = center) replaces the Java exception',
  },
  {
    id: undefined,
    gw: ['center', 'center'],
    java: ['throws', 'throws'],
    ours: [center('missing'), center('missing')],
    why: 'as for the empty id',
  },
  {
    id: '-',
    gw: ['center', 'center'],
    java: ['throws', 'throws'],
    ours: [center('not_numeric'), center('not_numeric')],
    why: 'a sign without digits is not numeric; the fallback decides',
  },
  {
    id: '2000',
    url: '/?r_id=%32000',
    gw: ['center', 'center'],
    java: ['CENTER', 'UNIT'],
    ours: [center(), unit()],
    why: 'Java: a query argument is percent-decoded, %32000 is 2000 (nginx did not decode it)',
  },
]

test('the table marks a row as a disagreement exactly when GW and Java disagree', () => {
  for (const row of ROWS) {
    const disagree = row.gw.some((gw, side) => gw.toUpperCase() !== row.java[side])
    assert.equal(row.why !== undefined, disagree, `row ${JSON.stringify(row.url ?? row.id)}`)
  }
})

for (const [side, router] of [
  [0, baseline],
  [1, next],
] as const) {
  const name = side === 0 ? 'baseline' : 'next'
  test(`reference §8 main table, ${name}: ${ROWS.length} route ids`, () => {
    for (const row of ROWS) {
      const label = `${name} ${JSON.stringify(row.url ?? row.id)}`
      const id = row.url === undefined ? row.id : router.extract({ url: row.url })
      if (row.url !== undefined) assert.equal(id, row.id, `${label}: extracted id`)
      const got = router.route(id)
      const want = row.ours[side]
      assert.equal(got.unit, want.unit, `${label}: unit (${row.why ?? 'GW and Java agree'})`)
      assert.equal(got.reason, want.reason, `${label}: reason`)
      assert.equal(got.fenced, false, `${label}: fenced`)
      const gw = row.gw[side]
      const java = row.java[side]
      if (gw.toUpperCase() === java) assert.equal(got.unit, gw, `${label}: where GW and Java agree, we agree`)
    }
  })
}

test('negative ids take the floor modulus, as the gateway did (key 9999 and 9995)', () => {
  assert.equal(baseline.route('-1').key, 9999)
  assert.equal(baseline.route('-5').key, 9995)
  assert.equal(baseline.route('99999999999999999999').key, 9999)
})

test('source precedence: arg 100 wins over header 5000, so unit', () => {
  const id = baseline.extract({ url: '/?r_id=100', headers: { r_id: '5000' } })
  assert.equal(id, '100')
  assert.equal(baseline.route(id).unit, 'unit')
  // header then cookie, when there is no arg
  assert.equal(baseline.extract({ url: '/', headers: { r_id: '5000', cookie: 'r_id=1' } }), '5000')
  assert.equal(baseline.extract({ url: '/', headers: { cookie: 'r_id=1' } }), '1')
})

test('forbidden fence 2000~2999 (mod 10000): 2000, 2500, 2999, 12500 fenced; 1999, 3000, 9999 not', () => {
  const cut = routerOf(dirFiles('cut'))
  for (const id of ['2000', '2500', '2999', '12500']) assert.equal(cut.isFenced(id), true, id)
  for (const id of ['1999', '3000', '9999']) assert.equal(cut.isFenced(id), false, id)
  // Java threw "sourceRouteId is not number" for abc; appactive answers: not numeric, not fenced.
  assert.deepEqual(cut.route('abc'), { unit: 'center', key: null, fenced: false, reason: 'not_numeric' })
  assert.deepEqual(cut.route('2500'), { unit: 'center', key: 2500, fenced: true, reason: 'range' })
})

test('overlap unit:0~5000, center:3000~9999 fails validation (GW said unit, Java CENTER: we refuse)', () => {
  const issues = importIssues(
    withFiles({
      idUnitMapping: mapping({
        unit: [{ '@userIdBetween': ['0~5000'] }],
        center: [{ '@userIdBetween': ['3000~9999'] }],
      }),
    }),
  )
  assert.equal(issues.length, 1)
  assert.equal(issues[0]!.file, 'idUnitMapping.json')
  assert.equal(issues[0]!.path, 'items[1].conditions[0].@userIdBetween[0]')
  assert.match(issues[0]!.message, /3000~9999 overlaps 0~5000 at items\[0\]/)
  assert.match(issues[0]!.message, /B5/)
})

test('B2: several @ conditions in one item all count (we follow Java: 50, 250, 550 -> unit; 150 -> center)', () => {
  const router = routerOf(
    withFiles({
      idTransformer: '{"id": "u", "mod": "10000"}',
      idUnitMapping: mapping({
        unit: [{ '@u': ['0~99', '200~299'] }, { '@u': ['500~599'] }],
        center: [{ '@u': ['100~199'] }],
      }),
    }),
  )
  for (const id of ['50', '250', '550']) assert.equal(router.unitOf(id), 'unit', id)
  assert.equal(router.unitOf('150'), 'center')
})

test('Java rule-load failures fail the import, with an issue naming the range', () => {
  for (const range of ['1999~0', '5', 'a~b', ' 0~5', '-5~5']) {
    const issues = importIssues(
      withFiles({
        idUnitMapping: mapping({
          unit: [{ '@userIdBetween': [range] }],
          center: [{ '@userIdBetween': ['2000~9999'] }],
        }),
      }),
    )
    assert.equal(issues.length, 1, range)
    assert.equal(issues[0]!.file, 'idUnitMapping.json', range)
    assert.equal(issues[0]!.path, 'items[0].conditions[0].@userIdBetween[0]', range)
    assert.ok(issues[0]!.message.includes(range), `${range}: ${issues[0]!.message}`)
  }
})

test('$uid exact list with identity: abc and 42 -> unit, 43 -> fallback (labels, GW only; Java refused $, B32)', () => {
  const { ruleSet, warnings } = fromAppActive(
    withFiles({
      idTransformer: '[{"id": "uid", "mod": ""}]',
      idUnitMapping: mapping({ unit: [{ $uid: ['abc', '42'] }] }),
    }),
  )
  assert.ok(warnings.some((w) => w.includes('B32')))
  const router = compileRouter(ruleSet, { localUnit: 'center' })
  assert.deepEqual(router.route('abc'), { unit: 'unit', key: null, fenced: false, reason: 'label' })
  assert.equal(router.route('42').unit, 'unit')
  assert.deepEqual(router.route('43'), { unit: 'center', key: 43, fenced: false, reason: 'uncovered' })
})

test('GW chain [a mod 1000, b mod 100] with conditions on both a and b is not importable', () => {
  const issues = importIssues(
    withFiles({
      idTransformer: '[{"id": "a", "mod": "1000"}, {"id": "b", "mod": "100"}]',
      idUnitMapping: mapping({ unit: [{ '@b': ['0~49'] }], x: [{ '@a': ['900~999'] }] }),
    }),
  )
  assert.equal(issues.length, 1)
  assert.equal(issues[0]!.file, 'idTransformer.json')
  assert.match(issues[0]!.message, /2 steps/)
  assert.match(issues[0]!.message, /idUnitMapping\.json items\[1\]\.conditions\[0\]\.@a/)
  assert.match(issues[0]!.message, /write every condition on "b"/)
})

test('B3: cookie r-id is read exactly, not from xr-id: 5000 -> center', () => {
  const router = routerOf(withFiles({ idSource: '{"source": "cookie", "tokenKey": "r-id"}' }))
  const id = router.extract({ headers: { cookie: 'xr-id=100; r-id=5000' } })
  assert.equal(id, '5000')
  assert.equal(router.route(id).unit, 'center')
})

// Reference §7: the Java client's own tests, on its test fixtures.
const javaFiles = (transformer: string): AppActiveFiles => ({
  idSource: fixture('java-client-test', 'idSource.json'),
  idTransformer: fixture('java-client-test', transformer),
  idUnitMapping: fixture('java-client-test', 'unitMappingRule.json'),
  forbiddenRule: fixture('java-client-test', 'forbiddenRule.json'),
})

test('T3: mod 1000 and identity ("mod": "") transformers', () => {
  const mod = routerOf(javaFiles('transformerModRule.json'))
  const keys = (r: Router) => ['1', '12', '111', '1123123500'].map((id) => r.keyOf(id))
  assert.deepEqual(keys(mod), [1, 12, 111, 500])
  const identity = fromAppActive(javaFiles('transformerWholeRule.json')).ruleSet
  assert.deepEqual(identity.transform, [])
  assert.deepEqual(keys(compileRouter(identity)), [1, 12, 111, 1123123500])
})

test('T4: forbidden 100~499, 500~799 with identity: A, B, D not fenced; 100, 499 fenced; 1499 not', () => {
  const router = routerOf(javaFiles('transformerWholeRule.json'))
  for (const id of ['A', 'B', 'D', '1499']) assert.equal(router.isFenced(id), false, id)
  for (const id of ['100', '499']) assert.equal(router.isFenced(id), true, id)
})

test('T5: bj 100~499,500~799 and nh 800~999: names come back as written (Java upper-cased them)', () => {
  const { ruleSet, warnings } = fromAppActive(javaFiles('transformerWholeRule.json'), { fallback: 'reject' })
  assert.ok(warnings.some((w) => w.includes('no item is named center')))
  const router = compileRouter(ruleSet)
  // Java answered null for these; with fallback reject appactive answers null too.
  for (const id of ['A', 'B', 'C', 'H']) assert.equal(router.unitOf(id), null, id)
  for (const id of ['100', '499', '500']) assert.equal(router.unitOf(id), 'bj', id)
  for (const id of ['800', '900']) assert.equal(router.unitOf(id), 'nh', id)
})
