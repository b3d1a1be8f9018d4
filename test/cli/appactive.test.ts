import assert from 'node:assert/strict'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { parse } from 'yaml'
import { assertExit, cli, cliInProcess, fixture, jsonLines, lines, tempDir } from './helpers.js'

const DIR = fixture('appactive')

describe('appactive rules import', { concurrency: availableParallelism() }, () => {
  it('prints the canonical rule set as YAML, equal in ownership to the baseline', async (t) => {
    const run = await cli(['rules', 'import', '--from-appactive', DIR])
    assertExit(run, 0)
    const rs = parse(run.stdout) as { units: Array<{ name: string }>; fallback?: unknown }
    assert.deepEqual(
      rs.units.map((u) => u.name),
      ['unit', 'center'],
    )
    const file = join(await tempDir(t), 'imported.yaml')
    await writeFile(file, run.stdout)
    const diff = await cliInProcess(['rules', 'diff', fixture('baseline.yaml'), file])
    assertExit(diff, 0)
    assert.equal(diff.stdout, 'no change\n')
  })

  it('prints JSON with --format json, taking --version and --fallback', async () => {
    const run = await cliInProcess([
      'rules',
      'import',
      '--from-appactive',
      DIR,
      '--format',
      'json',
      '--version',
      '7',
      '--fallback',
      'reject',
    ])
    assertExit(run, 0)
    const rs = JSON.parse(run.stdout) as { version: number; fallback: unknown }
    assert.equal(rs.version, 7)
    assert.equal(rs.fallback, 'reject')
  })

  it('writes --out FILE in the format of its extension, and refuses to overwrite it without --force', async (t) => {
    const out = join(await tempDir(t), 'rules.json')
    const first = await cliInProcess([
      'rules',
      'import',
      '--from-appactive',
      DIR,
      '--out',
      out,
      '--version',
      '3',
    ])
    assertExit(first, 0)
    assert.equal(first.stdout, '')
    assert.equal((JSON.parse(await readFile(out, 'utf8')) as { version: number }).version, 3)
    const again = await cliInProcess([
      'rules',
      'import',
      '--from-appactive',
      DIR,
      '--out',
      out,
      '--version',
      '4',
    ])
    assertExit(again, 1)
    assert.match(again.stderr, /^appactive: EEXIST: refusing to overwrite .*rules\.json; add --force/)
    assert.equal((JSON.parse(await readFile(out, 'utf8')) as { version: number }).version, 3)
    const forced = await cliInProcess([
      'rules',
      'import',
      '--from-appactive',
      DIR,
      '--out',
      out,
      '--version',
      '4',
      '--force',
    ])
    assertExit(forced, 0)
    assert.equal((JSON.parse(await readFile(out, 'utf8')) as { version: number }).version, 4)
    const valid = await cliInProcess(['rules', 'validate', out])
    assertExit(valid, 0)
  })

  it('rejects absurd option values as usage errors (exit 2)', async () => {
    const bad = [
      ['--version', '1e99'],
      ['--version', '-1'],
      ['--version', '1.5'],
      ['--version', '99999999999999999'],
      ['--format', 'xml'],
      ['--fallback', '9lives'],
    ]
    const runs = await Promise.all(
      bad.map((opt) => cliInProcess(['rules', 'import', '--from-appactive', DIR, ...opt])),
    )
    for (const [i, run] of runs.entries()) {
      assertExit(run, 2)
      assert.match(run.stderr, new RegExp(`^appactive: APPACTIVE_INVALID_ARGUMENT: option '${bad[i]![0]}`))
      assert.equal(run.stdout, '')
    }
  })

  it('fails on a file, a missing directory and a directory without AppActive files', async () => {
    const [file, missing, empty, none] = await Promise.all([
      cliInProcess(['rules', 'import', '--from-appactive', fixture('baseline.yaml')]),
      cliInProcess(['rules', 'import', '--from-appactive', fixture('nothere')]),
      cliInProcess(['rules', 'import', '--from-appactive', fixture('empty-dir')]),
      cliInProcess(['rules', 'import']),
    ])
    assertExit(file, 2)
    assert.match(file.stderr, /is a file; it takes a directory/)
    assertExit(missing, 1)
    assert.match(missing.stderr, /^appactive: APPACTIVE_RULE_INVALID: .*nothere: no such file or directory/)
    assertExit(empty, 1)
    assert.match(empty.stderr, /without AppActive rule files/)
    assertExit(none, 2)
    assert.match(none.stderr, /required option '--from-appactive <dir>' not specified/)
  })
})

describe('appactive rules export', { concurrency: availableParallelism() }, () => {
  it('writes the AppActive files into a new directory, and they import back to the same rules', async (t) => {
    const dir = join(await tempDir(t), 'nested', 'rule')
    const run = await cli(['rules', 'export', '--to-appactive', dir, fixture('next.yaml')])
    assertExit(run, 0)
    const written = lines(run.stdout)
    const names = await readdir(dir)
    assert.deepEqual(written.sort(), names.map((n) => join(dir, n)).sort())
    for (const n of ['idSource.json', 'idTransformer.json', 'idUnitMapping.json'])
      assert.ok(names.includes(n), n)
    const diff = await cliInProcess(['rules', 'diff', fixture('next.yaml'), dir])
    assertExit(diff, 0)
    assert.equal(diff.stdout, 'no change\n')
  })

  it('refuses to overwrite existing files without --force, and writes nothing', async (t) => {
    const dir = await tempDir(t)
    await writeFile(join(dir, 'idUnitMapping.json'), 'mine\n')
    const refused = await cliInProcess(['rules', 'export', '--to-appactive', dir, fixture('baseline.yaml')])
    assertExit(refused, 1)
    assert.match(
      refused.stderr,
      /^appactive: EEXIST: refusing to overwrite .*idUnitMapping\.json; add --force/,
    )
    assert.deepEqual(await readdir(dir), ['idUnitMapping.json'])
    assert.equal(await readFile(join(dir, 'idUnitMapping.json'), 'utf8'), 'mine\n')
    const forced = await cliInProcess([
      'rules',
      'export',
      '--json',
      '--force',
      '--to-appactive',
      dir,
      fixture('baseline.yaml'),
    ])
    assertExit(forced, 0)
    const [out] = jsonLines(forced.stdout) as [{ dir: string; files: string[]; warnings: string[] }]
    assert.equal(out.dir, dir)
    assert.ok(out.files.includes(join(dir, 'idUnitMapping.json')))
    assert.notEqual(await readFile(join(dir, 'idUnitMapping.json'), 'utf8'), 'mine\n')
  })

  it('fails when DIR is a file, or the rules are invalid', async (t) => {
    const file = join(await tempDir(t), 'plain')
    await writeFile(file, '')
    const [notDir, invalid] = await Promise.all([
      cliInProcess(['rules', 'export', '--to-appactive', file, fixture('baseline.yaml')]),
      cliInProcess(['rules', 'export', '--to-appactive', `${file}-x`, fixture('problems.yaml')]),
    ])
    assertExit(notDir, 1)
    assert.match(notDir.stderr, /^appactive: ENOTDIR: .*plain is not a directory/)
    assertExit(invalid, 1)
    assert.match(invalid.stderr, /^appactive: APPACTIVE_RULE_INVALID: /)
  })
})
