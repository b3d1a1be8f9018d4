import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import {
  AppActiveError,
  type ErrorCode,
  ErrorCodes,
  FencedError,
  formatIssue,
  InvalidArgumentError,
  LeaseExpiredError,
  NoProviderError,
  NoRouteIdError,
  NotCenterError,
  ProbeUnreachableError,
  ReplicationTimeoutError,
  RuleInvalidError,
  WrongUnitError,
} from '../../src/errors/index.js'

const BRAND = Symbol.for('appactive.error.v1')

/** One instance of every error class, built the way the library builds them. */
const samples = (): AppActiveError[] => [
  new FencedError('2500', { ruleVersion: 3 }),
  new WrongUnitError('2500', 'center', 'unit'),
  new NotCenterError('center', 'unit'),
  new NoRouteIdError(),
  new LeaseExpiredError({ agent: 'a1' }),
  new RuleInvalidError([{ path: 'version', message: 'version cannot be negative' }]),
  new NoProviderError('orders', 'unit'),
  new ReplicationTimeoutError('hz', 'sh', 5000, { applied: '0-1-41' }),
  new ProbeUnreachableError('sh', 'mariadb://127.0.0.1:3307/test', 'ECONNREFUSED'),
  new InvalidArgumentError('bad option', { option: 'localUnit' }),
]

describe('error codes', () => {
  it('has one error class for every code in ErrorCodes, and no class without a code', () => {
    const codes = samples().map((e) => e.code)
    assert.deepEqual([...codes].sort(), Object.keys(ErrorCodes).sort())
    assert.equal(new Set(codes).size, codes.length, 'one class per code')
  })

  it('gives every code an HTTP status, a retryable flag and a summary', () => {
    for (const [code, meta] of Object.entries(ErrorCodes)) {
      assert.match(code, /^APPACTIVE_[A-Z_]+$/)
      assert.ok(Number.isInteger(meta.httpStatus) && meta.httpStatus >= 400 && meta.httpStatus < 600, code)
      assert.equal(typeof meta.retryable, 'boolean')
      assert.ok(meta.summary.length > 0)
    }
  })

  it('derives httpStatus and retryable from the code', () => {
    for (const err of samples()) {
      assert.equal(err.httpStatus, ErrorCodes[err.code].httpStatus, err.code)
      assert.equal(err.retryable, ErrorCodes[err.code].retryable, err.code)
    }
    assert.equal(new FencedError('1').httpStatus, 503)
    assert.equal(new FencedError('1').retryable, true)
    assert.equal(new WrongUnitError('1', 'a', 'b').httpStatus, 421)
    assert.equal(new NoRouteIdError().httpStatus, 400)
    assert.equal(new RuleInvalidError([]).retryable, false)
    assert.equal(new LeaseExpiredError().retryable, true)
    assert.equal(new InvalidArgumentError('x').httpStatus, 500)
  })

  it('documents every code in docs/reference/errors.md, and no code that does not exist', () => {
    const text = readFileSync(new URL('../../docs/reference/errors.md', import.meta.url), 'utf8')
    const missing = Object.keys(ErrorCodes).filter((code) => !text.includes(`\`${code}\``))
    assert.deepEqual(missing, [])
    const documented = [...text.matchAll(/`(APPACTIVE_[A-Z_]+)`/g)].map((m) => m[1])
    assert.deepEqual(
      documented.filter((c) => !(c! in ErrorCodes)),
      [],
    )
  })
})

describe('error classes', () => {
  it('are Errors with their class name, a message, details and a stack', () => {
    for (const err of samples()) {
      assert.ok(err instanceof Error)
      assert.ok(err instanceof AppActiveError)
      assert.equal(err.name, err.constructor.name)
      assert.ok(err.message.length > 0)
      assert.equal(typeof err.stack, 'string')
      assert.equal(typeof err.details, 'object')
    }
  })

  it('carry the facts of the failure in details and fields', () => {
    const wrong = new WrongUnitError('2500', 'center', 'unit', { ruleVersion: 4 })
    assert.equal(wrong.message, 'route id 2500 belongs to unit center, not unit')
    assert.equal(wrong.owner, 'center')
    assert.deepEqual(wrong.details, { routeId: '2500', owner: 'center', unit: 'unit', ruleVersion: 4 })
    const fenced = new FencedError('2500', { ruleVersion: 3 })
    assert.deepEqual(fenced.details, { routeId: '2500', ruleVersion: 3 })
    assert.equal(new NotCenterError('hz', 'sh').center, 'hz')
    assert.deepEqual(new NoProviderError('orders', 'sh').details, { service: 'orders', unit: 'sh' })
    assert.equal(new NoRouteIdError('custom').message, 'custom')
  })

  it('keep the cause', () => {
    const cause = new Error('root')
    const err = new AppActiveError('APPACTIVE_NO_PROVIDER', 'x', {}, { cause })
    assert.equal(err.cause, cause)
  })

  it('serialize code, message and details with toJSON', () => {
    const err = new FencedError('2500')
    assert.deepEqual(err.toJSON(), {
      code: 'APPACTIVE_FENCED',
      message: 'route id 2500 is fenced while a cut-over moves it',
      details: { routeId: '2500' },
    })
    assert.deepEqual(JSON.parse(JSON.stringify(err)), err.toJSON())
    for (const e of samples()) assert.equal(JSON.parse(JSON.stringify(e)).code, e.code)
  })
})

describe('instanceof across copies', () => {
  /** What an error thrown by a second installed copy of appactive looks like to this copy. */
  function foreign(name: string, code: ErrorCode): object {
    const err = new Error('from another copy') as Error & Record<PropertyKey, unknown>
    err.name = name
    err.code = code
    err[BRAND] = true
    return err
  }

  it('recognizes an error of another copy by its brand and name', () => {
    const copy = foreign('FencedError', 'APPACTIVE_FENCED')
    assert.ok(copy instanceof AppActiveError)
    assert.ok(copy instanceof FencedError)
    assert.ok(!(copy instanceof WrongUnitError))
    const plain = { [BRAND]: true, name: 'WrongUnitError' }
    assert.ok(plain instanceof WrongUnitError)
    assert.ok(plain instanceof AppActiveError)
  })

  it('does not recognize unbranded look-alikes', () => {
    const fake = new Error('x')
    fake.name = 'FencedError'
    assert.ok(!(fake instanceof FencedError))
    assert.ok(!(fake instanceof AppActiveError))
    assert.ok(!({ name: 'FencedError' } instanceof FencedError))
    for (const v of [null, undefined, 'FencedError', 42])
      assert.ok(!((v as unknown) instanceof AppActiveError))
    assert.ok(!(new Error('x') instanceof AppActiveError))
  })

  it('keeps the brand on real instances and distinguishes the classes', () => {
    const fenced = new FencedError('1')
    assert.equal((fenced as unknown as Record<symbol, unknown>)[BRAND], true)
    assert.ok(fenced instanceof FencedError)
    assert.ok(!(fenced instanceof WrongUnitError))
    assert.ok(!(fenced instanceof RuleInvalidError))
  })

  it('still recognizes instances of an application subclass as the parent class', () => {
    class TenantFencedError extends FencedError {}
    const err = new TenantFencedError('2500')
    assert.equal(err.name, 'TenantFencedError')
    assert.ok(err instanceof TenantFencedError)
    assert.ok(err instanceof AppActiveError)
    assert.ok(err instanceof FencedError, 'a subclass instance is an instance of its parent')
  })
})

describe('RuleInvalidError and formatIssue', () => {
  it('summarizes the first issue and counts the others', () => {
    const err = new RuleInvalidError([
      { path: 'mapping[1].ranges[0]', message: '3000~2000 has lo greater than hi' },
      { path: 'units', message: 'no unit is the center' },
      { path: 'version', message: 'version cannot be negative' },
    ])
    assert.equal(
      err.message,
      'invalid rule set: mapping[1].ranges[0]: 3000~2000 has lo greater than hi (and 2 more)',
    )
    assert.equal(err.issues.length, 3)
    assert.deepEqual(err.details, { issues: err.issues })
    assert.equal(new RuleInvalidError([], 'file').message, 'invalid file: unknown problem')
  })

  it('formats file, line, column, path and message as one line', () => {
    assert.equal(
      formatIssue({ file: 'r.yaml', line: 3, column: 7, path: 'units', message: 'bad' }),
      'r.yaml:3:7: units: bad',
    )
    assert.equal(formatIssue({ line: 3, column: 7, path: '', message: 'bad' }), 'line 3:7: bad')
    assert.equal(formatIssue({ file: 'r.json', line: 2, path: '', message: 'bad' }), 'r.json:2:1: bad')
    assert.equal(formatIssue({ file: 'r.json', path: 'version', message: 'bad' }), 'r.json: version: bad')
    assert.equal(formatIssue({ path: 'version', message: 'bad' }), 'version: bad')
    assert.equal(formatIssue({ path: '', message: 'bad' }), 'bad')
  })
})
