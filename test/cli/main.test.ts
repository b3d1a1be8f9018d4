import assert from 'node:assert/strict'
import { test } from 'node:test'
import { main } from '../../src/cli/main.js'
import { Output } from '../../src/cli/output.js'
import { RuleInvalidError, WrongUnitError } from '../../src/errors/index.js'

/** A CliIO that keeps what is written. */
function capture() {
  const text = { stdout: '', stderr: '' }
  return {
    text,
    io: {
      stdout: { write: (s: string) => (text.stdout += s) },
      stderr: { write: (s: string) => (text.stderr += s) },
    },
  }
}

test('main runs a command in-process and returns its exit code', async () => {
  const { io, text } = capture()
  const code = await main(['route', '--rules', 'test/fixtures/cli/baseline.yaml', '--json', '2000'], io)
  assert.equal(code, 0)
  assert.equal(
    text.stdout,
    '{"id":"2000","unit":"center","key":2000,"fenced":false,"reason":"range","version":1}\n',
  )
})

test('main returns 2 for a usage error and writes it to stderr', async () => {
  const { io, text } = capture()
  assert.equal(await main(['route', '--rules', 'x.yaml', '--nope', '1'], io), 2)
  assert.equal(text.stdout, '')
  assert.match(text.stderr, /^appactive: APPACTIVE_INVALID_ARGUMENT: unknown option '--nope'/)
})

test('an unexpected error prints "internal error" without a stack, unless debugging', () => {
  const quiet = capture()
  assert.equal(new Output(quiet.io, false).fail(new TypeError('boom')), 1)
  assert.equal(
    quiet.text.stderr,
    'appactive: internal error: boom\nappactive: note: set APPACTIVE_DEBUG=1 to see where it happened\n',
  )
  const debug = capture()
  assert.equal(new Output(debug.io, true).fail(new TypeError('boom')), 1)
  assert.match(debug.text.stderr, /^appactive: internal error: boom\nTypeError: boom\n\s+at /)
})

test('an error prints its code; a rule error prints every issue; a system error its errno', () => {
  const { io, text } = capture()
  const out = new Output(io)
  assert.equal(out.fail(new WrongUnitError('42', 'hz', 'sh')), 1)
  const issues = [
    { path: 'a', message: 'first' },
    { path: 'b', message: 'second', file: 'r.yaml', line: 3, column: 4 },
  ]
  assert.equal(out.fail(new RuleInvalidError(issues)), 1)
  const errno = Object.assign(new Error("EACCES: permission denied, open '/x'"), { code: 'EACCES' })
  assert.equal(out.fail(errno), 1)
  assert.equal(
    text.stderr,
    [
      'appactive: APPACTIVE_WRONG_UNIT: route id 42 belongs to unit hz, not sh',
      'appactive: APPACTIVE_RULE_INVALID: invalid rule set: a: first (and 1 more)',
      '  a: first',
      '  r.yaml:3:4: b: second',
      "appactive: EACCES: permission denied, open '/x'",
      '',
    ].join('\n'),
  )
})
