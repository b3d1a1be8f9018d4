import assert from 'node:assert/strict'
import { availableParallelism } from 'node:os'
import { describe, it } from 'node:test'
import { assertExit, cli, cliInProcess, fixture, jsonLines, lines } from './helpers.js'

interface Issue {
  path: string
  message: string
  file?: string
  line?: number
  column?: number
}

describe('appactive rules validate', { concurrency: availableParallelism() }, () => {
  it('says ok with the version and counts, for YAML and JSON', async () => {
    const [yaml, json] = await Promise.all([
      cli(['rules', 'validate', fixture('baseline.yaml')]),
      cliInProcess(['rules', 'validate', fixture('baseline.json')]),
    ])
    assertExit(yaml, 0)
    assert.equal(yaml.stdout, `ok: ${fixture('baseline.yaml')} (version 1, 2 units, 2 ranges)\n`)
    assert.equal(yaml.stderr, '')
    assertExit(json, 0)
    assert.equal(json.stdout, `ok: ${fixture('baseline.json')} (version 1, 2 units, 2 ranges)\n`)
  })

  it('prints one JSON object with --json', async () => {
    const run = await cliInProcess(['rules', 'validate', '--json', fixture('grow.yaml')])
    assertExit(run, 0)
    assert.deepEqual(jsonLines(run.stdout), [
      { ok: true, path: fixture('grow.yaml'), version: 3, units: 3, ranges: 3, labels: 1, warnings: [] },
    ])
  })

  it('lists every semantic problem, one per line, and exits 1', async () => {
    const run = await cli(['rules', 'validate', fixture('problems.yaml')])
    assertExit(run, 1)
    const out = lines(run.stdout)
    assert.equal(out.length, 3, run.stdout)
    assert.ok(out.every((l) => l.startsWith(`${fixture('problems.yaml')}: mapping[`)))
    assert.match(run.stdout, /mapping\[0\]\.ranges\[1\]: 5000~4000 has lo greater than hi/)
    assert.match(run.stdout, /mapping\[2\]\.unit: unknown unit "nowhere"/)
    assert.match(run.stdout, /mapping\[1\]\.ranges\[0\]: 2000~9999 overlaps 0~2999/)
    assert.equal(run.stderr, `appactive: APPACTIVE_RULE_INVALID: ${fixture('problems.yaml')}: 3 problems\n`)
  })

  it('prints {"ok":false,"issues":[...]} with --json', async () => {
    const run = await cliInProcess(['rules', 'validate', '--json', fixture('problems.yaml')])
    assertExit(run, 1)
    const [result] = jsonLines(run.stdout) as [{ ok: boolean; path: string; issues: Issue[] }]
    assert.equal(result.ok, false)
    assert.equal(result.path, fixture('problems.yaml'))
    assert.deepEqual(
      result.issues.map((i) => i.path),
      ['mapping[0].ranges[1]', 'mapping[2].unit', 'mapping[1].ranges[0]'],
    )
  })

  it('lists every wrong type and unknown field', async () => {
    const run = await cliInProcess(['rules', 'validate', fixture('types.json')])
    assertExit(run, 1)
    assert.match(run.stdout, /version: expected a number, got string "one"/)
    assert.match(run.stdout, /units\[0\]\.center: expected true or false/)
    assert.match(run.stdout, /transform\[0\]\.divisor: divisor must be greater than 0/)
    assert.match(run.stdout, /extra: unknown field "extra"/)
  })

  it('lists an unknown field together with an overlap and a bad range', async () => {
    const run = await cliInProcess(['rules', 'validate', fixture('mixed.yaml')])
    assertExit(run, 1)
    assert.match(run.stdout, /color: unknown field "color"/)
    assert.match(run.stdout, /5000~4000 has lo greater than hi/)
    assert.match(run.stdout, /overlaps/)
  })

  it('gives the line and column of malformed JSON', async () => {
    const run = await cliInProcess(['rules', 'validate', fixture('malformed.json')])
    assertExit(run, 1)
    assert.match(run.stdout, /^test\/fixtures\/cli\/malformed\.json:3:31: malformed JSON: /)
  })

  it('gives the line and column of malformed YAML', async () => {
    const run = await cliInProcess(['rules', 'validate', fixture('broken.yaml')])
    assertExit(run, 1)
    assert.match(run.stdout, /^test\/fixtures\/cli\/broken\.yaml:6:40: malformed YAML: /)
  })

  it('reports malformed YAML, an empty file, a missing path and a directory without rules', async () => {
    const runs = await Promise.all(
      ['broken.yaml', 'empty.yaml', 'nothere.yaml', 'empty-dir'].map((f) =>
        cliInProcess(['rules', 'validate', fixture(f)]),
      ),
    )
    const [broken, empty, missing, dir] = runs
    for (const run of runs) {
      assertExit(run, 1)
      assert.match(run.stderr, /^appactive: APPACTIVE_RULE_INVALID: .*: 1 problem\n$/)
    }
    assert.match(broken!.stdout, /broken\.yaml.*malformed YAML: /)
    assert.equal(empty!.stdout, `${fixture('empty.yaml')}: is empty\n`)
    assert.equal(missing!.stdout, `${fixture('nothere.yaml')}: no such file or directory\n`)
    assert.match(dir!.stdout, /empty-dir: is a directory without AppActive rule files/)
  })

  it('validates an AppActive rule directory', async () => {
    const run = await cliInProcess(['rules', 'validate', fixture('appactive')])
    assertExit(run, 0)
    assert.match(run.stdout, /^ok: test\/fixtures\/cli\/appactive \(version \d+, 2 units, 2 ranges\)\n$/)
  })

  it('is a usage error (exit 2) without a path or with two', async () => {
    const [none, two] = await Promise.all([
      cli(['rules', 'validate']),
      cliInProcess(['rules', 'validate', fixture('baseline.yaml'), fixture('next.yaml')]),
    ])
    assertExit(none, 2)
    assert.match(none.stderr, /^appactive: APPACTIVE_INVALID_ARGUMENT: missing required argument 'path'/)
    assertExit(two, 2)
    assert.match(two.stderr, /^appactive: APPACTIVE_INVALID_ARGUMENT: too many arguments/)
  })
})
