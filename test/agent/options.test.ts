import assert from 'node:assert/strict'
import { hostname } from 'node:os'
import { describe, test } from 'node:test'
import { parseDuration, resolveAgentOptions } from '../../src/agent/index.js'
import { InvalidArgumentError } from '../../src/errors/index.js'

/** Asserts `fn` throws InvalidArgumentError whose message matches `message`. */
function invalid(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`)
    assert.equal(err.code, 'APPACTIVE_INVALID_ARGUMENT')
    assert.match(err.message, message)
    return true
  })
}

describe('resolveAgentOptions', () => {
  test('the unit comes from the option, else from APPACTIVE_UNIT', () => {
    assert.equal(resolveAgentOptions({ unit: 'hz' }, {}).unit, 'hz')
    assert.equal(resolveAgentOptions({}, { APPACTIVE_UNIT: 'sh' }).unit, 'sh')
    // The option wins over the environment.
    assert.equal(resolveAgentOptions({ unit: 'hz' }, { APPACTIVE_UNIT: 'sh' }).unit, 'hz')
  })

  test('app, nodeId and address come from options, else from APPACTIVE_APP, _NODE_ID, _ADDRESS', () => {
    const env = { APPACTIVE_APP: 'shop', APPACTIVE_NODE_ID: 'node-1', APPACTIVE_ADDRESS: '10.0.0.1:8080' }
    const fromEnv = resolveAgentOptions({ unit: 'hz' }, env)
    assert.equal(fromEnv.app, 'shop')
    assert.equal(fromEnv.nodeId, 'node-1')
    assert.equal(fromEnv.address, '10.0.0.1:8080')
    const fromOptions = resolveAgentOptions({ unit: 'hz', app: 'cart', nodeId: 'n2', address: 'a:1' }, env)
    assert.equal(fromOptions.app, 'cart')
    assert.equal(fromOptions.nodeId, 'n2')
    assert.equal(fromOptions.address, 'a:1')
  })

  test('a missing unit is an InvalidArgumentError naming APPACTIVE_UNIT', () => {
    invalid(() => resolveAgentOptions({}, {}), /APPACTIVE_UNIT/)
    // An empty value counts as missing, in the option and in the environment.
    invalid(() => resolveAgentOptions({}, { APPACTIVE_UNIT: '' }), /APPACTIVE_UNIT/)
    invalid(() => resolveAgentOptions({ unit: '' }, {}), /APPACTIVE_UNIT/)
  })

  test('malformed unit, app and nodeId are rejected', () => {
    for (const unit of ['1hz', 'h z', 'hz/1', '-hz', 'a'.repeat(64), 'hz\n']) {
      invalid(() => resolveAgentOptions({ unit }, {}), /not a valid unit name/)
    }
    invalid(() => resolveAgentOptions({}, { APPACTIVE_UNIT: 'no spaces' }), /not a valid unit name/)
    for (const app of ['9shop', 'sh op', 'shop!']) {
      invalid(() => resolveAgentOptions({ unit: 'hz', app }, {}), /not a valid app name/)
    }
    for (const nodeId of ['-n', 'n 1', 'n/1', 'x'.repeat(129)]) {
      invalid(() => resolveAgentOptions({ unit: 'hz', nodeId }, {}), /nodeId/)
    }
  })

  test('longest valid names are accepted', () => {
    const r = resolveAgentOptions({ unit: `u${'a'.repeat(62)}`, nodeId: `n${'1'.repeat(127)}` }, {})
    assert.equal(r.unit.length, 63)
    assert.equal(r.nodeId.length, 128)
    assert.equal(resolveAgentOptions({ unit: 'cn-hz.1_a' }, {}).unit, 'cn-hz.1_a')
    assert.equal(
      resolveAgentOptions({ unit: 'hz', nodeId: 'pod@host:1.a_b-c' }, {}).nodeId,
      'pod@host:1.a_b-c',
    )
  })

  test('defaults: app "default", nodeId <host>-<pid>-<6 hex>, no address; the result is frozen', () => {
    const r = resolveAgentOptions({ unit: 'hz' }, {})
    assert.equal(r.app, 'default')
    assert.equal(r.address, undefined)
    assert.equal(r.pid, process.pid)
    const prefix = `${hostname()}-${process.pid}-`
    assert.ok(r.nodeId.startsWith(prefix), r.nodeId)
    assert.match(r.nodeId.slice(prefix.length), /^[0-9a-f]{6}$/)
    // Each process (each resolution) gets its own random suffix.
    assert.notEqual(resolveAgentOptions({ unit: 'hz' }, {}).nodeId, r.nodeId)
    assert.ok(Object.isFrozen(r))
  })

  test('reads process.env when no env object is passed', () => {
    const saved = process.env.APPACTIVE_UNIT
    process.env.APPACTIVE_UNIT = 'from-env'
    try {
      assert.equal(resolveAgentOptions({}).unit, 'from-env')
    } finally {
      if (saved === undefined) delete process.env.APPACTIVE_UNIT
      else process.env.APPACTIVE_UNIT = saved
    }
  })
})

describe('parseDuration', () => {
  test('units: ms, s, m, and bare numbers of ms', () => {
    assert.equal(parseDuration('500ms'), 500)
    assert.equal(parseDuration('5s'), 5000)
    assert.equal(parseDuration('2m'), 120_000)
    assert.equal(parseDuration('250'), 250)
    assert.equal(parseDuration('1.5s'), 1500)
    assert.equal(parseDuration(' 5s '), 5000)
    assert.equal(parseDuration('0'), 0)
  })

  test('numbers are ms', () => {
    assert.equal(parseDuration(250), 250)
    assert.equal(parseDuration(0), 0)
    assert.equal(parseDuration(0.5), 0.5)
  })

  test('anything else is undefined', () => {
    for (const junk of [
      '',
      'abc',
      '5h',
      '5 s',
      '-5',
      '-5s',
      '1e3',
      '5S',
      's',
      '.5s',
      '5.s',
      '9'.repeat(400),
    ]) {
      assert.equal(parseDuration(junk), undefined, JSON.stringify(junk))
    }
    for (const junk of [-1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      assert.equal(parseDuration(junk), undefined, String(junk))
    }
    assert.equal(parseDuration(undefined), undefined)
  })
})
