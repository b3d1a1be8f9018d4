import assert from 'node:assert/strict'
import { availableParallelism } from 'node:os'
import { describe, it } from 'node:test'
import { assertExit, cli, cliInProcess, fixture, jsonLines, lines } from './helpers.js'

const IDS = ['0', '1999', '2000', '12000', '-5', 'abc', '']
const NOTE = /pass --unit NAME/g

describe('appactive route', { concurrency: availableParallelism() }, () => {
  it('prints one JSON line per id, in order, with unit, key, fenced, reason and version', async () => {
    const run = await cli(['route', '--rules', fixture('baseline.yaml'), '--json', ...IDS])
    assertExit(run, 0)
    assert.deepEqual(jsonLines(run.stdout), [
      { id: '0', unit: 'unit', key: 0, fenced: false, reason: 'range', version: 1 },
      { id: '1999', unit: 'unit', key: 1999, fenced: false, reason: 'range', version: 1 },
      { id: '2000', unit: 'center', key: 2000, fenced: false, reason: 'range', version: 1 },
      { id: '12000', unit: 'center', key: 2000, fenced: false, reason: 'range', version: 1 },
      { id: '-5', unit: 'center', key: 9995, fenced: false, reason: 'range', version: 1 },
      { id: 'abc', unit: null, key: null, fenced: false, reason: 'not_numeric', version: 1 },
      { id: '', unit: null, key: null, fenced: false, reason: 'missing', version: 1 },
    ])
    // Without a local unit the `local` fallback resolves to nothing: one note says how to fix it.
    assert.equal(run.stderr.match(NOTE)?.length, 1, run.stderr)
  })

  it('gives the same answers from the JSON form of the rule set', async () => {
    const [yaml, json] = await Promise.all([
      cliInProcess(['route', '--rules', fixture('baseline.yaml'), '--json', ...IDS]),
      cliInProcess(['route', '--rules', fixture('baseline.json'), '--json', ...IDS]),
    ])
    assertExit(json, 0)
    assert.equal(json.stdout, yaml.stdout)
  })

  it('resolves the local fallback with --unit, and then prints no note', async () => {
    const run = await cliInProcess([
      'route',
      '--rules',
      fixture('baseline.yaml'),
      '--unit',
      'unit',
      '--json',
      'abc',
      '',
    ])
    assertExit(run, 0)
    assert.deepEqual(
      jsonLines(run.stdout).map((l) => {
        const { unit, reason } = l as { unit: string; reason: string }
        return [unit, reason]
      }),
      [
        ['unit', 'not_numeric'],
        ['unit', 'missing'],
      ],
    )
    assert.doesNotMatch(run.stderr, NOTE)
  })

  it('takes -5 as an id both bare and after --, and -abc after --', async () => {
    const [bare, dashed] = await Promise.all([
      cli(['route', '--rules', fixture('baseline.yaml'), '--json', '-5', '7']),
      cli(['route', '--rules', fixture('baseline.yaml'), '--json', '--', '-5', '7', '-abc']),
    ])
    assertExit(bare, 0)
    assertExit(dashed, 0)
    const ids = (run: { stdout: string }) => jsonLines(run.stdout).map((l) => (l as { id: string }).id)
    assert.deepEqual(ids(bare), ['-5', '7'])
    assert.deepEqual(ids(dashed), ['-5', '7', '-abc'])
    assert.deepEqual(jsonLines(dashed.stdout).slice(0, 2), jsonLines(bare.stdout))
  })

  it('rejects -abc before -- as an unknown option (exit 2) and says to put it after --', async () => {
    const run = await cli(['route', '--rules', fixture('baseline.yaml'), '-abc'])
    assertExit(run, 2)
    assert.match(run.stderr, /^appactive: APPACTIVE_INVALID_ARGUMENT: unknown option '-abc'/)
    assert.match(run.stderr, /after --/)
    assert.equal(run.stdout, '')
  })

  it('computes the key exactly for ids longer than 2^53', async () => {
    const run = await cliInProcess([
      'route',
      '--rules',
      fixture('baseline.yaml'),
      '--json',
      '123456789012345678901234567890',
    ])
    assertExit(run, 0)
    assert.deepEqual(jsonLines(run.stdout)[0], {
      id: '123456789012345678901234567890',
      unit: 'center',
      key: 7890,
      fenced: false,
      reason: 'range',
      version: 1,
    })
  })

  it('prints an aligned table by default, with an empty id quoted', async () => {
    const run = await cliInProcess([
      'route',
      '--rules',
      fixture('baseline.yaml'),
      '--unit',
      'center',
      '0',
      '12000',
      '',
    ])
    assertExit(run, 0)
    const out = lines(run.stdout)
    assert.equal(out.length, 4)
    assert.match(out[0]!, /^ID\s+UNIT\s+KEY\s+FENCED\s+REASON$/)
    assert.deepEqual(
      out.slice(1).map((l) => l.split(/\s{2,}/)),
      [
        ['0', 'unit', '0', 'no', 'range'],
        ['12000', 'center', '2000', 'no', 'range'],
        ['""', 'center', '-', 'no', 'missing'],
      ],
    )
    // Aligned: every column starts at the same offset on every line.
    const at = (line: string, word: string) => line.indexOf(` ${word}`) + 1
    assert.equal(at(out[1]!, 'unit'), at(out[0]!, 'UNIT'))
    assert.equal(at(out[2]!, '2000'), at(out[0]!, 'KEY'))
    assert.equal(at(out[3]!, 'missing'), at(out[0]!, 'REASON'))
  })

  it('marks fenced keys', async () => {
    const run = await cliInProcess([
      'route',
      '--rules',
      fixture('fenced.yaml'),
      '--json',
      '2500',
      '1500',
      '3000',
    ])
    assertExit(run, 0)
    assert.deepEqual(
      jsonLines(run.stdout).map((l) => (l as { fenced: boolean }).fenced),
      [true, false, false],
    )
  })

  it('reads --rules and --unit from APPACTIVE_RULES and APPACTIVE_UNIT', async () => {
    const run = await cli(['route', '--json', 'abc'], {
      env: { APPACTIVE_RULES: fixture('baseline.yaml'), APPACTIVE_UNIT: 'center' },
    })
    assertExit(run, 0)
    assert.equal((jsonLines(run.stdout)[0] as { unit: string }).unit, 'center')
  })

  it('rejects a --unit that names no unit (exit 2), listing the units or the near miss', async () => {
    const [none, caseOnly, env] = await Promise.all([
      cliInProcess(['route', '--rules', fixture('baseline.yaml'), '--unit', 'hz', '1']),
      cliInProcess(['route', '--rules', fixture('baseline.yaml'), '--unit', 'Center', '1']),
      cli(['route', '--rules', fixture('baseline.yaml'), '1'], { env: { APPACTIVE_UNIT: 'hz' } }),
    ])
    assertExit(none, 2)
    assert.match(
      none.stderr,
      /^appactive: APPACTIVE_INVALID_ARGUMENT: --unit "hz" is not a unit .*\(units: unit, center\)/,
    )
    assertExit(caseOnly, 2)
    assert.match(caseOnly.stderr, /did you mean "center"\?/)
    assertExit(env, 2)
    assert.match(env.stderr, /APPACTIVE_UNIT="hz" is not a unit/)
    assert.equal(none.stdout + caseOnly.stdout + env.stdout, '')
  })

  it('is a usage error (exit 2) without --rules or without ids', async () => {
    const [noRules, noIds] = await Promise.all([
      cli(['route', '1']),
      cliInProcess(['route', '--rules', fixture('baseline.yaml')]),
    ])
    assertExit(noRules, 2)
    assert.match(
      noRules.stderr,
      /^appactive: APPACTIVE_INVALID_ARGUMENT: required option '--rules <path>' not specified/,
    )
    assertExit(noIds, 2)
    assert.match(noIds.stderr, /^appactive: APPACTIVE_INVALID_ARGUMENT: missing required argument 'id'/)
  })

  it('fails (exit 1) on a missing file, an empty file and invalid rules, listing every problem', async () => {
    const [missing, empty, problems] = await Promise.all([
      cli(['route', '--rules', fixture('nothere.yaml'), '1']),
      cliInProcess(['route', '--rules', fixture('empty.yaml'), '1']),
      cliInProcess(['route', '--rules', fixture('problems.yaml'), '1']),
    ])
    assertExit(missing, 1)
    assert.match(
      missing.stderr,
      /^appactive: APPACTIVE_RULE_INVALID: .*nothere\.yaml: no such file or directory/,
    )
    assertExit(empty, 1)
    assert.match(empty.stderr, /^appactive: APPACTIVE_RULE_INVALID: .*empty\.yaml: is empty/)
    assertExit(problems, 1)
    assert.match(problems.stderr, /^appactive: APPACTIVE_RULE_INVALID: /)
    assert.match(problems.stderr, /\n {2}.*lo greater than hi/)
    assert.match(problems.stderr, /\n {2}.*unknown unit "nowhere"/)
    assert.match(problems.stderr, /\n {2}.*overlaps/)
    assert.equal(missing.stdout + empty.stdout + problems.stdout, '')
  })

  it('routes with an AppActive rule directory, taking the local unit from machine.json', async () => {
    const run = await cli(['route', '--rules', fixture('appactive'), '--json', ...IDS])
    assertExit(run, 0)
    const got = jsonLines(run.stdout).map((l) => {
      const { id, unit, key, fenced, reason } = l as Record<string, unknown>
      return { id, unit, key, fenced, reason }
    })
    assert.deepEqual(got, [
      { id: '0', unit: 'unit', key: 0, fenced: false, reason: 'range' },
      { id: '1999', unit: 'unit', key: 1999, fenced: false, reason: 'range' },
      { id: '2000', unit: 'center', key: 2000, fenced: false, reason: 'range' },
      { id: '12000', unit: 'center', key: 2000, fenced: false, reason: 'range' },
      { id: '-5', unit: 'center', key: 9995, fenced: false, reason: 'range' },
      { id: 'abc', unit: 'unit', key: null, fenced: false, reason: 'not_numeric' },
      { id: '', unit: 'unit', key: null, fenced: false, reason: 'missing' },
    ])
    for (const l of jsonLines(run.stdout)) assert.equal(typeof (l as { version: unknown }).version, 'number')
  })
})
