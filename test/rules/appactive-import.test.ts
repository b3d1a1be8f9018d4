// fromAppActive / toAppActive: how each AppActive file maps, every problem reported with its file, and the
// export -> import round trip.
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { test } from 'node:test'
import { RuleInvalidError, type RuleIssue } from '../../src/errors/index.js'
import {
  type AppActiveFiles,
  compileRouter,
  fromAppActive,
  type RuleSet,
  toAppActive,
} from '../../src/rules/index.js'

const FIXTURES = new URL('../fixtures/appactive/', import.meta.url)
const ROLES = ['idSource', 'idTransformer', 'idUnitMapping', 'forbiddenRule', 'machine'] as const

function fixture(dir: string, name: string): string {
  return readFileSync(new URL(`${dir}/${name}`, FIXTURES), 'utf8')
}

function dirFiles(dir: string): AppActiveFiles {
  const files: AppActiveFiles = {}
  for (const role of ROLES) {
    const url = new URL(`${dir}/${role}.json`, FIXTURES)
    if (existsSync(url)) files[role] = readFileSync(url, 'utf8')
  }
  return files
}

function withFiles(over: AppActiveFiles): AppActiveFiles {
  return { ...dirFiles('baseline'), ...over }
}

function importIssues(files: AppActiveFiles): readonly RuleIssue[] {
  try {
    fromAppActive(files)
  } catch (err) {
    assert.ok(err instanceof RuleInvalidError, String(err))
    return err.issues
  }
  assert.fail('the import should have failed')
}

const BASELINE: RuleSet = {
  version: 1,
  units: [{ name: 'unit' }, { name: 'center', center: true }],
  idSource: [
    { from: 'query', name: 'r_id' },
    { from: 'header', name: 'r_id' },
    { from: 'cookie', name: 'r_id' },
  ],
  transform: [{ type: 'mod', divisor: 10000 }],
  mapping: [
    { unit: 'unit', ranges: ['0~1999'] },
    { unit: 'center', ranges: ['2000~9999'] },
  ],
  fallback: 'local',
}

test('the portal baseline imports into the expected rule set, with no warning', () => {
  const result = fromAppActive(dirFiles('baseline'))
  assert.deepEqual(result.ruleSet, BASELINE)
  assert.deepEqual(result.warnings, [])
  assert.equal(result.localUnit, 'unit')
})

test('object and array transformer forms give the same rule set', () => {
  const object = fromAppActive(dirFiles('baseline')).ruleSet
  const array = fromAppActive(withFiles({ idTransformer: fixture('baseline', 'idTransformer.gateway.json') }))
  assert.deepEqual(array.ruleSet, object)
  assert.deepEqual(array.warnings, [])
  const numeric = fromAppActive(withFiles({ idTransformer: '{"id": "userIdBetween", "mod": 10000}' }))
  assert.deepEqual(numeric.ruleSet, object)
})

test('version and fallback come from the options', () => {
  const { ruleSet } = fromAppActive(dirFiles('baseline'), { version: 7, fallback: { unit: 'center' } })
  assert.equal(ruleSet.version, 7)
  assert.deepEqual(ruleSet.fallback, { unit: 'center' })
})

test('a missing required file is an issue naming it; all of them are listed', () => {
  const issues = importIssues({ idSource: fixture('baseline', 'idSource.json') })
  assert.deepEqual(
    issues.map((i) => i.file),
    ['idTransformer.json', 'idUnitMapping.json'],
  )
  assert.match(issues[0]!.message, /is missing/)
  assert.equal(importIssues({}).length, 3)
})

test('malformed JSON reports the file, line and column, next to the other files’ problems', () => {
  const issues = importIssues(
    withFiles({
      idUnitMapping: '{\n  "itemType": "UnitRuleItem",\n  "items": [,]\n}\n',
      idTransformer: '{"id": "x", "mod": "0"}',
    }),
  )
  assert.equal(issues.length, 2)
  const parse = issues.find((i) => i.file === 'idUnitMapping.json')!
  assert.match(parse.message, /malformed JSON/)
  assert.equal(parse.line, 3)
  assert.equal(typeof parse.column, 'number')
  assert.ok(issues.some((i) => i.file === 'idTransformer.json'))
})

test('idSource: arg is query, order kept; spaces around commas are tolerated with a warning', () => {
  const { ruleSet, warnings } = fromAppActive(
    withFiles({ idSource: '{"source": "cookie , arg,header", "tokenKey": "uid"}' }),
  )
  assert.deepEqual(ruleSet.idSource, [
    { from: 'cookie', name: 'uid' },
    { from: 'query', name: 'uid' },
    { from: 'header', name: 'uid' },
  ])
  assert.equal(warnings.length, 1)
  assert.match(warnings[0]!, /^idSource\.json: source: .*spaces around commas/)
})

test('idSource: an unknown source is an issue', () => {
  const issues = importIssues(withFiles({ idSource: '{"source": "arg,body,Header", "tokenKey": "r_id"}' }))
  assert.equal(issues.length, 2)
  assert.ok(issues.every((i) => i.file === 'idSource.json' && i.path === 'source'))
  assert.match(issues[0]!.message, /"body" is not a source/)
  assert.match(issues[1]!.message, /lower case: header/)
  const none = importIssues(withFiles({ idSource: '{"source": "arg"}' }))
  assert.equal(none[0]!.path, 'tokenKey')
})

test('idTransformer: mod 0, a negative or a non-number mod is an issue; "" and null are identity', () => {
  for (const mod of ['0', '-5', 0, 'abc', '10.5', true]) {
    const issues = importIssues(withFiles({ idTransformer: JSON.stringify({ id: 'userIdBetween', mod }) }))
    assert.equal(issues.length, 1, String(mod))
    assert.equal(issues[0]!.file, 'idTransformer.json')
    assert.equal(issues[0]!.path, 'mod')
  }
  for (const transformer of ['{"id": "userIdBetween", "mod": null}', '{"id": "userIdBetween"}']) {
    const { ruleSet } = fromAppActive(withFiles({ idTransformer: transformer }))
    assert.deepEqual(ruleSet.transform, [])
  }
  const huge = importIssues(
    withFiles({ idTransformer: '{"id": "userIdBetween", "mod": "1000000000000000"}' }),
  )
  assert.equal(huge[0]!.file, 'idTransformer.json')
  assert.equal(huge[0]!.path, 'mod')
})

test('idTransformer: a chain is importable when every condition uses the last step', () => {
  const files = withFiles({
    idTransformer: '[{"id": "a", "mod": "1000"}, {"id": "b", "mod": "100"}]',
    idUnitMapping: JSON.stringify({
      itemType: 'UnitRuleItem',
      items: [
        { name: 'unit', conditions: [{ '@b': ['0~49'] }] },
        { name: 'center', conditions: [{ '@b': ['50~99'] }] },
      ],
    }),
  })
  const { ruleSet } = fromAppActive(files)
  assert.deepEqual(ruleSet.transform, [
    { type: 'mod', divisor: 1000 },
    { type: 'mod', divisor: 100 },
  ])
  const router = compileRouter(ruleSet)
  assert.equal(router.unitOf('12345'), 'unit')
  assert.equal(router.unitOf('1999'), 'center')
  // The last step must have an id of its own.
  const same = importIssues({
    ...files,
    idTransformer: '[{"id": "b", "mod": "1000"}, {"id": "b", "mod": "100"}]',
  })
  assert.match(same[0]!.message, /needs an id of its own/)
})

test('a condition token that names no transformer id is applied, with a warning', () => {
  const { ruleSet, warnings } = fromAppActive(withFiles({ idTransformer: '{"id": "other", "mod": "10000"}' }))
  assert.deepEqual(ruleSet.mapping, BASELINE.mapping)
  assert.equal(warnings.length, 1)
  assert.match(
    warnings[0]!,
    /^idUnitMapping\.json: items\[0\]\.conditions\[0\]\.@userIdBetween: token "userIdBetween"/,
  )
})

test('unit names keep their case; center is found ignoring case', () => {
  const { ruleSet } = fromAppActive(
    withFiles({
      idUnitMapping: JSON.stringify({
        itemType: 'UnitRuleItem',
        items: [
          { name: 'HZ', conditions: [{ '@userIdBetween': ['0~4999'] }] },
          { name: 'Center', conditions: [{ '@userIdBetween': ['5000~9999'] }] },
        ],
      }),
      machine: '{"unitFlag": "hz"}',
    }),
  )
  assert.deepEqual(ruleSet.units, [{ name: 'HZ' }, { name: 'Center', center: true }])
})

test('duplicate item names (ignoring case) are an issue', () => {
  const issues = importIssues(
    withFiles({
      idUnitMapping: JSON.stringify({
        itemType: 'UnitRuleItem',
        items: [
          { name: 'unit', conditions: [{ '@userIdBetween': ['0~1999'] }] },
          { name: 'center', conditions: [{ '@userIdBetween': ['2000~9999'] }] },
          { name: 'UNIT', conditions: [{ '@userIdBetween': ['0~1999'] }] },
        ],
      }),
    }),
  )
  assert.equal(issues.length, 1)
  assert.equal(issues[0]!.path, 'items[2].name')
  assert.match(issues[0]!.message, /already defined at items\[0\]/)
})

test('no item named center adds a unit center with no keys, with a warning', () => {
  const { ruleSet, warnings } = fromAppActive(
    withFiles({
      idUnitMapping: JSON.stringify({
        itemType: 'UnitRuleItem',
        items: [{ name: 'hz', conditions: [{ '@userIdBetween': ['0~9999'] }] }],
      }),
      machine: undefined,
    }),
  )
  assert.deepEqual(ruleSet.units, [{ name: 'hz' }, { name: 'center', center: true }])
  assert.equal(warnings.length, 1)
  assert.match(warnings[0]!, /no item is named center/)
})

test('conditions that are not @ or $ and values that are not strings are issues', () => {
  const issues = importIssues(
    withFiles({
      idUnitMapping: JSON.stringify({
        itemType: 'UnitRuleItem',
        items: [
          { name: 'unit', conditions: [{ '#userIdBetween': ['0~1999'], '@userIdBetween': [5] }] },
          { name: 'center', conditions: {} },
        ],
      }),
    }),
  )
  assert.deepEqual(
    issues.map((i) => i.path),
    [
      'items[0].conditions[0].#userIdBetween',
      'items[0].conditions[0].@userIdBetween[0]',
      'items[1].conditions',
    ],
  )
})

test('a file of the wrong shape is an issue at the place it goes wrong', () => {
  const u = (items: unknown) => JSON.stringify({ itemType: 'UnitRuleItem', items })
  const cases: Array<[AppActiveFiles, string, string]> = [
    [{ idSource: '["arg"]' }, 'idSource.json', ''],
    [{ idSource: '{"tokenKey": "r_id"}' }, 'idSource.json', 'source'],
    [{ idTransformer: '"10000"' }, 'idTransformer.json', ''],
    [{ idTransformer: '[]' }, 'idTransformer.json', ''],
    [{ idTransformer: '[{"id": "a", "mod": "10"}, 5]' }, 'idTransformer.json', '[1]'],
    [{ idTransformer: '{"id": 5, "mod": "10000"}' }, 'idTransformer.json', 'id'],
    [{ idUnitMapping: '"UnitRuleItem"' }, 'idUnitMapping.json', ''],
    [{ idUnitMapping: '{"itemType": "UnitRuleItem", "items": {}}' }, 'idUnitMapping.json', 'items'],
    [{ idUnitMapping: u(['unit']) }, 'idUnitMapping.json', 'items[0]'],
    [{ idUnitMapping: u([{ conditions: [] }]) }, 'idUnitMapping.json', 'items[0].name'],
    [
      { idUnitMapping: u([{ name: 'center', conditions: ['0~9'] }]) },
      'idUnitMapping.json',
      'items[0].conditions[0]',
    ],
    [
      { idUnitMapping: u([{ name: 'center', conditions: [{ '@userIdBetween': '0~9' }] }]) },
      'idUnitMapping.json',
      'items[0].conditions[0].@userIdBetween',
    ],
    [{ forbiddenRule: '{"itemType": "ForbiddenRuleItem"}' }, 'forbiddenRule.json', 'items'],
    [{ machine: '{"unitFlag": 5}' }, 'machine.json', 'unitFlag'],
    [{ machine: '[]' }, 'machine.json', ''],
  ]
  for (const [over, file, path] of cases) {
    const issues = importIssues(withFiles(over))
    assert.equal(issues.length, 1, JSON.stringify(over))
    assert.equal(issues[0]!.file, file, JSON.stringify(over))
    assert.equal(issues[0]!.path, path, JSON.stringify(over))
    assert.match(issues[0]!.message, /^must |^is /, JSON.stringify(over))
  }
})

test('machine.json: unitFlag is the local unit, matched ignoring case; absent means center', () => {
  assert.equal(fromAppActive(withFiles({ machine: '{"unitFlag": "UNIT"}' })).localUnit, 'unit')
  assert.equal(fromAppActive(withFiles({ machine: undefined })).localUnit, undefined)
  const absent = fromAppActive(withFiles({ machine: '{}' }))
  assert.equal(absent.localUnit, 'center')
  assert.match(absent.warnings[0]!, /^machine\.json: unitFlag: is absent/)
  const unknown = importIssues(withFiles({ machine: '{"unitFlag": "A"}' }))
  assert.equal(unknown[0]!.file, 'machine.json')
  assert.match(unknown[0]!.message, /"A" is not a unit/)
})

test('forbiddenRule with two items fences both (AppActive honoured one, B7); empty items fence nothing', () => {
  const { ruleSet, warnings } = fromAppActive(
    withFiles({
      forbiddenRule: JSON.stringify({
        itemType: 'ForbiddenRuleItem',
        items: [
          { name: 'a', conditions: [{ '@userIdBetween': ['2000~2999'] }] },
          { name: 'b', conditions: [{ '@userIdBetween': ['5000~5099'] }] },
        ],
      }),
    }),
  )
  assert.deepEqual(ruleSet.fence, { ranges: ['2000~2999', '5000~5099'] })
  assert.match(warnings.join('\n'), /B7/)
  const router = compileRouter(ruleSet, { localUnit: 'center' })
  assert.equal(router.isFenced('2500'), true)
  assert.equal(router.isFenced('15050'), true)
  assert.equal(router.isFenced('3000'), false)
  assert.equal(fromAppActive(dirFiles('baseline')).ruleSet.fence, undefined)
  const bad = importIssues(
    withFiles({
      forbiddenRule:
        '{"itemType": "ForbiddenRuleItem", "items": [{"conditions": [{"@userIdBetween": ["9~1"]}]}]}',
    }),
  )
  assert.equal(bad[0]!.file, 'forbiddenRule.json')
  assert.equal(bad[0]!.path, 'items[0].conditions[0].@userIdBetween[0]')
})

test('unknown fields and an unexpected itemType warn and do not fail', () => {
  const { warnings } = fromAppActive(
    withFiles({
      idSource: '{"source": "arg", "tokenKey": "r_id", "extra": 1}',
      forbiddenRule: '{"itemType": "UnitRuleItem", "items": []}',
      machine: '{"unitFlag": "unit", "zone": "a"}',
    }),
  )
  assert.deepEqual(warnings, [
    'idSource.json: extra: unknown field "extra" is ignored',
    'forbiddenRule.json: itemType: is the string "UnitRuleItem", expected "ForbiddenRuleItem"; the file is read as ForbiddenRuleItem anyway',
    'machine.json: zone: unknown field "zone" is ignored',
  ])
})

// --- export ---------------------------------------------------------------------------------------

const RICH: RuleSet = {
  version: 3,
  units: [{ name: 'center', center: true }, { name: 'hz' }, { name: 'sh' }, { name: 'spare' }],
  idSource: [
    { from: 'header', name: 'x-uid' },
    { from: 'cookie', name: 'x-uid' },
  ],
  transform: [{ type: 'mod', divisor: 10000 }],
  mapping: [
    { unit: 'hz', ranges: ['0~2999'], labels: ['vip-1', '77'] },
    { unit: 'center', ranges: ['3000~4999', '9000~9999'] },
    { unit: 'sh', ranges: ['5000~7999'], labels: ['crawler'] },
    { unit: 'hz', ranges: ['8000~8499'] },
  ],
  fence: { ranges: ['2000~2999', '8000~8099'], labels: ['crawler'] },
  fallback: 'local',
}

test('export then import routes every id the same (ids 0..20000 step 7, labels, odd ids)', () => {
  const exported = toAppActive(RICH)
  const files: AppActiveFiles = {
    idSource: exported.files['idSource.json'],
    idTransformer: exported.files['idTransformer.json'],
    idUnitMapping: exported.files['idUnitMapping.json'],
    forbiddenRule: exported.files['forbiddenRule.json'],
  }
  const back = fromAppActive(files, { version: 3 })
  const a = compileRouter(RICH, { localUnit: 'sh' })
  const b = compileRouter(back.ruleSet, { localUnit: 'sh' })
  const ids = ['vip-1', '77', 'crawler', 'abc', '', '-5', '+7', '99999999999999999999', '8499', '8500']
  for (let i = 0; i <= 20000; i += 7) ids.push(String(i))
  for (const id of ids) assert.deepEqual(b.route(id), a.route(id), JSON.stringify(id))
  assert.deepEqual(
    b.units.map((u) => u),
    ['center', 'hz', 'sh', 'spare'],
  )
  const request = { url: '/?x-uid=1', headers: { cookie: 'x-uid=5001' } }
  assert.equal(b.extract(request), a.extract(request))
})

test('export writes pretty JSON, the gateway array form, and warns about labels', () => {
  const { files, warnings } = toAppActive(RICH)
  assert.deepEqual(Object.keys(files), [
    'idSource.json',
    'idTransformer.json',
    'idTransformer.gateway.json',
    'idUnitMapping.json',
    'forbiddenRule.json',
  ])
  for (const text of Object.values(files)) {
    assert.ok(text.endsWith('}\n') || text.endsWith(']\n'))
    assert.equal(text, `${JSON.stringify(JSON.parse(text), null, 2)}\n`)
  }
  assert.deepEqual(JSON.parse(files['idSource.json']!), { source: 'header,cookie', tokenKey: 'x-uid' })
  assert.deepEqual(JSON.parse(files['idTransformer.gateway.json']!), [{ id: 'userIdBetween', mod: '10000' }])
  const mapping = JSON.parse(files['idUnitMapping.json']!)
  assert.deepEqual(mapping.items[1], {
    name: 'hz',
    conditions: [{ '@userIdBetween': ['0~2999', '8000~8499'] }, { $userIdBetween: ['vip-1', '77'] }],
  })
  assert.deepEqual(mapping.items[3], { name: 'spare', conditions: [] })
  assert.equal(warnings.length, 1)
  assert.match(warnings[0]!, /unit hz, unit sh, the fence.*B32/)
})

test('exporting the imported portal baseline gives back the portal files', () => {
  const { files, warnings } = toAppActive(fromAppActive(dirFiles('baseline')).ruleSet)
  assert.deepEqual(warnings, [])
  for (const name of ['idSource.json', 'idTransformer.json', 'idUnitMapping.json', 'forbiddenRule.json']) {
    assert.deepEqual(JSON.parse(files[name]!), JSON.parse(fixture('baseline', name)), name)
  }
  const cut = toAppActive(fromAppActive(dirFiles('cut')).ruleSet).files['forbiddenRule.json']!
  assert.deepEqual(JSON.parse(cut), JSON.parse(fixture('cut', 'forbiddenRule.json')))
})

test('export: identity is mod "", a mod chain collapses when it is one mod', () => {
  const identity = toAppActive({ ...BASELINE, transform: [] })
  assert.deepEqual(JSON.parse(identity.files['idTransformer.json']!), { id: 'userIdBetween', mod: '' })
  const chain = toAppActive({
    ...BASELINE,
    transform: [
      { type: 'mod', divisor: 100000 },
      { type: 'mod', divisor: 10000 },
      { type: 'mod', divisor: 50000 },
    ],
  })
  assert.equal(JSON.parse(chain.files['idTransformer.json']!).mod, '10000')
})

test('export of a hash rule set, of a mod chain that is not one mod, or of differing names throws', () => {
  const cases: Array<[Partial<RuleSet>, string]> = [
    [{ transform: [{ type: 'hash' }, { type: 'mod', divisor: 10000 }] }, 'hash'],
    [
      {
        transform: [
          { type: 'mod', divisor: 10000 },
          { type: 'mod', divisor: 3000 },
        ],
        mapping: [{ unit: 'unit', ranges: ['0~2999'] }],
      },
      'not one mod',
    ],
    [
      {
        idSource: [
          { from: 'query', name: 'r_id' },
          { from: 'header', name: 'uid' },
        ],
      },
      'one name',
    ],
  ]
  for (const [change, message] of cases) {
    assert.throws(
      () => toAppActive({ ...BASELINE, ...change }),
      (err: unknown) => err instanceof RuleInvalidError && err.message.includes(message),
      message,
    )
  }
  assert.throws(() => toAppActive({ ...BASELINE, units: [] }), RuleInvalidError)
})

test('export warns when the fallback is not local and when the center is not named center', () => {
  const { warnings } = toAppActive({
    ...BASELINE,
    units: [{ name: 'unit' }, { name: 'hz', center: true }],
    mapping: [
      { unit: 'unit', ranges: ['0~1999'] },
      { unit: 'hz', ranges: ['2000~9999'] },
    ],
    fallback: 'reject',
  })
  assert.equal(warnings.length, 2)
  assert.match(warnings[0]!, /B30/)
  assert.match(warnings[1]!, /fallback is "reject"/)
  const { fallback: _, ...noFallback } = BASELINE
  const absent = toAppActive(noFallback)
  assert.equal(absent.warnings.length, 1)
  assert.match(absent.warnings[0]!, /fallback is absent/)
})
