import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { assertExit, cli, cliInProcess, fixture, ROOT } from './helpers.js'

const COMMANDS = [
  ['route'],
  ['rules'],
  ['rules', 'validate'],
  ['rules', 'diff'],
  ['rules', 'import'],
  ['rules', 'export'],
  ['publish'],
  ['cutover'],
  ['failover'],
  ['status'],
  ['audit'],
]

describe('appactive', { concurrency: availableParallelism() }, () => {
  it('prints the package version with --version and -V', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    const [long, short] = await Promise.all([cli(['--version']), cli(['-V'])])
    assertExit(long, 0)
    assert.equal(long.stdout, `${pkg.version}\n`)
    assertExit(short, 0)
    assert.equal(short.stdout, long.stdout)
  })

  it('prints help with an example for every command, on stdout', async () => {
    const runs = await Promise.all([cli(['--help']), ...COMMANDS.map((c) => cliInProcess([...c, '--help']))])
    for (const run of runs) {
      assertExit(run, 0)
      assert.match(run.stdout, /^Usage: appactive/)
      assert.match(run.stdout, /\nExamples?:\n {2}\$ appactive /)
      assert.equal(run.stderr, '')
    }
  })

  it('shows help on stderr and exits 2 without a command', async () => {
    const [bare, rules] = await Promise.all([cli([]), cliInProcess(['rules'])])
    for (const run of [bare, rules]) {
      assertExit(run, 2)
      assert.equal(run.stdout, '')
      assert.match(run.stderr, /^Usage: appactive/)
    }
  })

  it('exits 2 on an unknown command or option, naming it and pointing to --help', async () => {
    const [command, option, sub] = await Promise.all([
      cli(['frobnicate']),
      cliInProcess(['--frob']),
      cliInProcess(['rules', 'validate', '--strict', fixture('baseline.yaml')]),
    ])
    assertExit(command, 2)
    assert.match(
      command.stderr,
      /^appactive: APPACTIVE_INVALID_ARGUMENT: unknown command 'frobnicate'\n.*--help/,
    )
    assertExit(option, 2)
    assert.match(option.stderr, /^appactive: APPACTIVE_INVALID_ARGUMENT: unknown option '--frob'/)
    assertExit(sub, 2)
    assert.match(
      sub.stderr,
      /^appactive: APPACTIVE_INVALID_ARGUMENT: unknown option '--strict'\n.*rules validate --help/,
    )
  })

  it('runs through bin/appactive.js', async () => {
    const run = await cli(['route', '--rules', fixture('baseline.yaml'), '--json', '0'], {
      entry: ['bin/appactive.js'],
    })
    assertExit(run, 0)
    assert.equal(run.stdout, '{"id":"0","unit":"unit","key":0,"fenced":false,"reason":"range","version":1}\n')
  })
})
