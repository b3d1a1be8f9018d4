import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { assertExit, cli, cliInProcess, fixture, jsonLines, tempDir } from './helpers.js'

describe('appactive rules diff', { concurrency: availableParallelism() }, () => {
  it('prints the moved ranges and the fence', async () => {
    const run = await cli(['rules', 'diff', fixture('baseline.yaml'), fixture('next.yaml')])
    assertExit(run, 0)
    assert.equal(
      run.stdout,
      [
        'version 1 -> 2: 1000 keys and 0 labels move',
        'moved:',
        '  2000~2999  center -> unit  (1000 keys)',
        'fence:',
        '  ranges: [2000~2999]',
        '  labels: []',
        '',
      ].join('\n'),
    )
    assert.equal(run.stderr, '')
  })

  it('prints one JSON object with --json', async () => {
    const run = await cliInProcess([
      'rules',
      'diff',
      '--json',
      fixture('baseline.yaml'),
      fixture('next.yaml'),
    ])
    assertExit(run, 0)
    assert.deepEqual(jsonLines(run.stdout), [
      {
        changed: true,
        fromVersion: 1,
        toVersion: 2,
        moved: [{ range: '2000~2999', lo: 2000, hi: 2999, from: 'center', to: 'unit', keys: 1000 }],
        labels: [],
        addedUnits: [],
        removedUnits: [],
        fence: { ranges: ['2000~2999'], labels: [] },
        movedKeys: 1000,
      },
    ])
  })

  it('prints moved labels and added and removed units', async () => {
    const [grow, shrink] = await Promise.all([
      cliInProcess(['rules', 'diff', fixture('baseline.yaml'), fixture('grow.yaml')]),
      cliInProcess(['rules', 'diff', '--json', fixture('grow.yaml'), fixture('baseline.yaml')]),
    ])
    assertExit(grow, 0)
    assert.match(grow.stdout, /^ {2}0~999 {2}unit -> hz {2}\(1000 keys\)$/m)
    assert.match(grow.stdout, /^ {2}"vip1" {2}\(none\) -> hz$/m)
    assert.match(grow.stdout, /^units added: hz$/m)
    assert.match(grow.stdout, /^ {2}labels: \["vip1"\]$/m)
    assertExit(shrink, 0)
    const [d] = jsonLines(shrink.stdout) as [Record<string, unknown>]
    assert.deepEqual(d.removedUnits, ['hz'])
    assert.deepEqual(d.labels, [{ label: 'vip1', from: 'hz', to: null }])
  })

  it('prints "no change" and exits 0 when nothing moves', async () => {
    const [text, json] = await Promise.all([
      cliInProcess(['rules', 'diff', fixture('baseline.yaml'), fixture('baseline.json')]),
      cliInProcess(['rules', 'diff', '--json', fixture('baseline.yaml'), fixture('baseline.json')]),
    ])
    assertExit(text, 0)
    assert.equal(text.stdout, 'no change\n')
    assertExit(json, 0)
    const [d] = jsonLines(json.stdout) as [Record<string, unknown>]
    assert.equal(d.changed, false)
    assert.deepEqual(d.moved, [])
  })

  it('compares an AppActive directory with a rule-set file', async () => {
    const run = await cliInProcess(['rules', 'diff', fixture('appactive'), fixture('next.yaml')])
    assertExit(run, 0)
    assert.match(run.stdout, /^ {2}2000~2999 {2}center -> unit {2}\(1000 keys\)$/m)
  })

  it('fails (exit 1) when the transform differs, or a side is invalid', async (t) => {
    const dir = await tempDir(t)
    const other = join(dir, 'mod1000.json')
    await writeFile(
      other,
      JSON.stringify({
        version: 2,
        units: [{ name: 'center', center: true }],
        idSource: [{ from: 'query', name: 'r_id' }],
        transform: [{ type: 'mod', divisor: 1000 }],
        mapping: [{ unit: 'center', ranges: ['0~999'] }],
      }),
    )
    const [transform, invalid] = await Promise.all([
      cliInProcess(['rules', 'diff', fixture('baseline.yaml'), other]),
      cliInProcess(['rules', 'diff', fixture('baseline.yaml'), fixture('problems.yaml')]),
    ])
    assertExit(transform, 1)
    assert.match(transform.stderr, /^appactive: APPACTIVE_RULE_INVALID: .*transform differs/)
    assertExit(invalid, 1)
    assert.match(invalid.stderr, /^appactive: APPACTIVE_RULE_INVALID: /)
    assert.equal(transform.stdout + invalid.stdout, '')
  })

  it('is a usage error (exit 2) with one path', async () => {
    const run = await cliInProcess(['rules', 'diff', fixture('baseline.yaml')])
    assertExit(run, 2)
    assert.match(run.stderr, /^appactive: APPACTIVE_INVALID_ARGUMENT: missing required argument 'to'/)
  })
})
