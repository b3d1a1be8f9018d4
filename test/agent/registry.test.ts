import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  resolveInstances,
  type ServiceInstance,
  type ServiceRegistry,
  StaticRegistry,
  type TargetQuery,
  TemplateRegistry,
  targetUnits,
} from '../../src/agent/index.js'
import { AppActiveError, InvalidArgumentError, NoProviderError } from '../../src/errors/index.js'

function query(over: Partial<TargetQuery>): TargetQuery {
  return { service: 'product', type: 'unit', owner: 'hz', localUnit: 'sh', centerUnit: 'center', ...over }
}

/** A registry over a fixed instance list (health included). */
function listed(instances: ServiceInstance[]): ServiceRegistry {
  return { instances: (service) => (service === 'product' ? instances : []) }
}

const fleet: ServiceInstance[] = [
  { url: 'http://c1', unit: 'center' },
  { url: 'http://h1', unit: 'hz' },
  { url: 'http://s1', unit: 'sh' },
  { url: 'http://h2', unit: 'hz', healthy: false },
  { url: 'http://s2', unit: 'sh' },
  { url: 'http://h3', unit: 'hz' },
]

const urls = (list: readonly ServiceInstance[]) => list.map((i) => i.url)

describe('targetUnits', () => {
  test('a unit service targets the owner unit only, and nothing without an owner', () => {
    assert.deepEqual(targetUnits(query({ type: 'unit' }), ['center', 'hz', 'sh']), ['hz'])
    assert.deepEqual(targetUnits(query({ type: 'unit', owner: null }), ['center', 'hz', 'sh']), [])
  })

  test('a center service targets the center whatever the owner and the local unit', () => {
    assert.deepEqual(targetUnits(query({ type: 'center' }), ['hz', 'sh']), ['center'])
  })

  test('a normal service targets the local unit first, then every other known unit once', () => {
    assert.deepEqual(targetUnits(query({ type: 'normal' }), ['center', 'sh', 'hz']), ['sh', 'center', 'hz'])
    assert.deepEqual(targetUnits(query({ type: 'normal' })), ['sh'])
  })
})

describe('resolveInstances', () => {
  test('a unit service gets the owner unit healthy instances only', () => {
    assert.deepEqual(urls(resolveInstances(listed(fleet), query({ type: 'unit' }))), [
      'http://h1',
      'http://h3',
    ])
  })

  test('a unit service whose owner has no healthy instance fails, naming service and unit, never another unit', () => {
    const registry = listed(fleet.filter((i) => i.unit !== 'hz' || i.healthy === false))
    assert.throws(
      () => resolveInstances(registry, query({ type: 'unit' })),
      (err: unknown) =>
        err instanceof NoProviderError &&
        err.code === 'APPACTIVE_NO_PROVIDER' &&
        err.message === 'no provider of product in unit hz' &&
        err.details.service === 'product' &&
        err.details.unit === 'hz',
    )
  })

  test('a registry with no instances at all for the service is the same error', () => {
    assert.throws(
      () => resolveInstances(listed(fleet), query({ service: 'stock', type: 'center' })),
      /no provider of stock in unit center/,
    )
  })

  test('a center service gets the center instances only', () => {
    assert.deepEqual(urls(resolveInstances(listed(fleet), query({ type: 'center' }))), ['http://c1'])
  })

  test('a normal service gets the local unit first, then the other units, unhealthy ones skipped', () => {
    const got = urls(resolveInstances(listed(fleet), query({ type: 'normal', localUnit: 'hz' })))
    assert.deepEqual(got, ['http://h1', 'http://h3', 'http://c1', 'http://s1', 'http://s2'])
  })

  test('a normal service whose unit has none goes to the others; with none anywhere it fails', () => {
    const got = urls(resolveInstances(listed(fleet), query({ type: 'normal', localUnit: 'gz' })))
    assert.deepEqual(got.sort(), ['http://c1', 'http://h1', 'http://h3', 'http://s1', 'http://s2'])
    const down = listed(fleet.map((i) => ({ ...i, healthy: false })))
    assert.throws(
      () => resolveInstances(down, query({ type: 'normal', localUnit: 'gz' })),
      (err: unknown) => err instanceof AppActiveError && err.message === 'no provider of product in unit gz',
    )
  })
})

describe('StaticRegistry', () => {
  test('lists every unit instances of a service, and none of an unknown service', () => {
    const r = new StaticRegistry({ product: { hz: ['http://h1', 'http://h2'], sh: ['http://s1'] } })
    assert.deepEqual(r.instances('product'), [
      { url: 'http://h1', unit: 'hz' },
      { url: 'http://h2', unit: 'hz' },
      { url: 'http://s1', unit: 'sh' },
    ])
    assert.deepEqual(r.instances('stock'), [])
    assert.ok(Object.isFrozen(r.instances('product')))
  })

  test('refuses malformed entries when built, naming the entry', () => {
    const bad: unknown[] = [
      { product: { hz: 'http://h1' } },
      { product: { hz: ['http://h1', 42] } },
      { product: { hz: [''] } },
      { product: null },
    ]
    for (const services of bad) {
      assert.throws(
        () => new StaticRegistry(services as never),
        (err: unknown) => err instanceof InvalidArgumentError && /registry entry product/.test(err.message),
        JSON.stringify(services),
      )
    }
  })
})

describe('TemplateRegistry', () => {
  test('fills {unit} and {service} for every unit', () => {
    const r = new TemplateRegistry('http://{service}.{unit}.svc:8080/api', ['center', 'hz'])
    assert.deepEqual(r.instances('product'), [
      { url: 'http://product.center.svc:8080/api', unit: 'center' },
      { url: 'http://product.hz.svc:8080/api', unit: 'hz' },
    ])
    const fixed = new TemplateRegistry('http://product.{unit}.svc:8080', ['sh'])
    assert.deepEqual(fixed.instances('anything'), [{ url: 'http://product.sh.svc:8080', unit: 'sh' }])
  })

  test('inserts a name that contains a placeholder as is, and builds each service list once', () => {
    const r = new TemplateRegistry('http://{service}.{unit}', ['hz'])
    assert.equal(r.instances('a{unit}')[0]?.url, 'http://a{unit}.hz')
    assert.equal(r.instances('product'), r.instances('product'))
  })

  test('refuses a template without {unit} and a malformed unit list', () => {
    assert.throws(() => new TemplateRegistry('http://product.svc', ['hz']), /no \{unit\} placeholder/)
    assert.throws(() => new TemplateRegistry('http://{unit}', 'hz' as never), InvalidArgumentError)
  })
})
