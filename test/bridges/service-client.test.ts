import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo, LookupFunction } from 'node:net'
import { after, describe, type TestContext, test } from 'node:test'
import { Agent } from 'undici'
import {
  ControlPlaneRegistry,
  createAgent,
  type ServiceInstance,
  type ServiceRegistry,
  StaticRegistry,
  TemplateRegistry,
} from '../../src/agent/index.js'
import {
  createServiceClient,
  type ServiceClient,
  type ServiceClientOptions,
} from '../../src/bridges/http-client/index.js'
import { createControlChannel } from '../../src/channels/control/client.js'
import { createRuleServer } from '../../src/channels/control/server.js'
import { runWithRoute } from '../../src/context/index.js'
import {
  InvalidArgumentError,
  LeaseExpiredError,
  NoProviderError,
  NoRouteIdError,
} from '../../src/errors/index.js'
import { compileRouter } from '../../src/rules/index.js'
import { silent, TOKEN, until } from '../helpers/agents.js'
import { type Backend, deadUrl, echoBackend, type Seen } from '../helpers/gateway.js'
import { threeUnits } from '../helpers/topology.js'

// Route ids on threeUnits(): 42 -> center, 4000 -> hz, 7000 -> sh; a non-numeric id maps to no unit.
const router = compileRouter(threeUnits())

const backends: Record<string, Backend> = {}
for (const name of ['center-1', 'hz-1', 'hz-2', 'sh-1']) backends[name] = await echoBackend(name)
after(() => Promise.all(Object.values(backends).map((b) => b.close())))
const url = (name: string) => backends[name]!.url
const dead = await deadUrl()

/** Every unit's instances of `product`, `stock` and `search`. */
const fleet = { center: [url('center-1')], hz: [url('hz-1'), url('hz-2')], sh: [url('sh-1')] }
const services: ServiceClientOptions['services'] = {
  product: { type: 'unit' },
  stock: { type: 'center' },
  search: { type: 'normal' },
}

function client(
  t: TestContext,
  registry: ServiceRegistry,
  extra: Partial<ServiceClientOptions> = {},
): ServiceClient {
  const c = createServiceClient({ registry, router, localUnit: 'hz', services, ...extra })
  t.after(() => c.close())
  return c
}

/** Calls `service` inside a route context for `routeId` (none when undefined); returns the answer. */
async function call(
  c: ServiceClient,
  service: string,
  routeId: string | undefined,
  path = '/p',
  options: Parameters<ServiceClient['request']>[2] = {},
): Promise<Seen & { status: number }> {
  return runWithRoute({ routeId }, async () => {
    const res = await c.request(service, path, options)
    return { ...((await res.body.json()) as Seen), status: res.statusCode }
  })
}

/** How many requests each backend saw, from now on. */
function counter() {
  const start = Object.fromEntries(Object.entries(backends).map(([n, b]) => [n, b.seen.length]))
  return () =>
    Object.fromEntries(
      Object.entries(backends)
        .map(([n, b]) => [n, b.seen.length - start[n]!] as const)
        .filter(([, n]) => n > 0),
    )
}

describe('service client: type decides the unit', () => {
  test('a unit service goes to the owner of the route id, round-robin over its instances', async (t) => {
    const c = client(t, new StaticRegistry({ product: fleet }))
    const seen = []
    for (let i = 0; i < 4; i++) seen.push((await call(c, 'product', '4000')).backend)
    assert.deepEqual(seen.sort(), ['hz-1', 'hz-1', 'hz-2', 'hz-2'])
    assert.equal((await call(c, 'product', '7000')).backend, 'sh-1')
    assert.equal((await call(c, 'product', '42')).backend, 'center-1')
  })

  test('the route headers and baggage travel, the caller headers stay', async (t) => {
    const c = client(t, new StaticRegistry({ product: fleet }))
    const seen = await runWithRoute({ routeId: '7000', unit: 'sh', ruleVersion: 1 }, async () => {
      const res = await c.request('product', '/items/9?x=1', {
        headers: { baggage: 'tenant=acme', 'x-trace': 't1' },
      })
      return (await res.body.json()) as Seen
    })
    assert.equal(seen.url, '/items/9?x=1')
    assert.equal(seen.headers['x-appactive-route-id'], '7000')
    assert.equal(seen.headers['x-appactive-unit'], 'sh')
    assert.equal(seen.headers['x-appactive-rule-version'], '1')
    assert.match(String(seen.headers.baggage), /tenant=acme/)
    assert.match(String(seen.headers.baggage), /appactive\.route-id=7000/)
    assert.equal(seen.headers['x-trace'], 't1')
  })

  test('a unit service without a route id, or with one no unit owns, fails before any request', async (t) => {
    const c = client(t, new StaticRegistry({ product: fleet }))
    const count = counter()
    await assert.rejects(call(c, 'product', undefined), (err: unknown) => {
      return err instanceof NoRouteIdError && /product is a unit service/.test(err.message)
    })
    await assert.rejects(c.request('product', '/p'), NoRouteIdError) // outside any route context
    await assert.rejects(call(c, 'product', 'abc'), /route id abc maps to no unit/)
    assert.deepEqual(count(), {})
  })

  test('a unit service whose owner has no instance fails naming service and unit, never another unit', async (t) => {
    const c = client(t, new StaticRegistry({ product: { center: fleet.center, hz: fleet.hz } }))
    const count = counter()
    await assert.rejects(
      call(c, 'product', '7000'),
      (err: unknown) =>
        err instanceof NoProviderError &&
        err.code === 'APPACTIVE_NO_PROVIDER' &&
        err.message === 'no provider of product in unit sh',
    )
    assert.deepEqual(count(), {})
  })

  test('a unit service whose owner instances are all down fails, and still calls no other unit', async (t) => {
    const c = client(t, new StaticRegistry({ product: { ...fleet, sh: [dead, `${dead}/x`] } }))
    const count = counter()
    await assert.rejects(call(c, 'product', '7000'), { code: 'ECONNREFUSED' })
    await assert.rejects(call(c, 'product', '7000'), { code: 'ECONNREFUSED' })
    assert.deepEqual(count(), {})
  })

  test('a center service goes to the center, with or without a route id', async (t) => {
    const c = client(t, new StaticRegistry({ stock: fleet }))
    assert.equal((await call(c, 'stock', '7000')).backend, 'center-1')
    assert.equal((await call(c, 'stock', undefined)).backend, 'center-1')
    const none = client(t, new StaticRegistry({ stock: { hz: fleet.hz } }))
    await assert.rejects(call(none, 'stock', '4000'), /no provider of stock in unit center/)
  })

  test('a normal service stays in the local unit, and goes to the others only when it has none', async (t) => {
    const c = client(t, new StaticRegistry({ search: fleet }))
    for (let i = 0; i < 4; i++) assert.match((await call(c, 'search', '7000')).backend, /^hz-/)
    const elsewhere = client(t, new StaticRegistry({ search: { center: fleet.center, sh: fleet.sh } }))
    const got = new Set<string>()
    for (let i = 0; i < 2; i++) got.add((await call(elsewhere, 'search', undefined)).backend)
    assert.ok(
      [...got].every((b) => b === 'center-1' || b === 'sh-1'),
      [...got].join(),
    )
    const nowhere = client(t, new StaticRegistry({ search: {} }))
    await assert.rejects(call(nowhere, 'search', undefined), /no provider of search in unit hz/)
  })

  test('the agent option: its rule set decides owners and its unit is the local unit', async (t) => {
    const agent = createAgent({ unit: 'sh', app: 'shop', logger: silent, cache: false })
    const c = client(t, new StaticRegistry({ product: fleet, search: fleet }), {
      agent,
      router: undefined,
      localUnit: undefined,
    })
    await assert.rejects(call(c, 'product', '4000'), LeaseExpiredError) // no rule set yet
    assert.equal((await call(c, 'search', undefined)).backend, 'sh-1') // normal needs none
    assert.equal(agent.apply(threeUnits()).status, 'applied')
    assert.match((await call(c, 'product', '4000')).backend, /^hz-/)
  })
})

describe('service client: health and retries', () => {
  test('instances the registry marks unhealthy are never chosen', async (t) => {
    const list: ServiceInstance[] = [
      { url: url('hz-1'), unit: 'hz', healthy: false },
      { url: url('hz-2'), unit: 'hz' },
    ]
    const c = client(t, { instances: () => list })
    for (let i = 0; i < 4; i++) assert.equal((await call(c, 'product', '4000')).backend, 'hz-2')
  })

  test('a GET refused by one instance is retried on the next of the same unit, which then comes first', async (t) => {
    const c = client(t, new StaticRegistry({ product: { hz: [dead, url('hz-1')], sh: fleet.sh } }))
    const count = counter()
    assert.equal((await call(c, 'product', '4000')).backend, 'hz-1')
    assert.deepEqual(count(), { 'hz-1': 1 })
    // Passively ejected: later calls try the live instance first, whatever the round-robin turn.
    assert.deepEqual(
      runWithRoute({ routeId: '4000' }, () => c.resolve('product').map((i) => i.url)),
      [url('hz-1'), dead],
    )
    for (let i = 0; i < 3; i++) assert.equal((await call(c, 'product', '4000')).backend, 'hz-1')
  })

  test('the ejection is short: after the window the instance is back in the rotation', async (t) => {
    const c = client(t, new StaticRegistry({ product: { hz: [dead, url('hz-1')] } }), { ejectMs: 30 })
    await call(c, 'product', '4000')
    const order = () => runWithRoute({ routeId: '4000' }, () => c.resolve('product').map((i) => i.url))
    assert.equal(order().at(-1), dead)
    await until(() => order()[0] === dead, 2000, 'the ejection to end')
  })

  test('a POST is not retried; marked idempotent it is', async (t) => {
    const registry = new StaticRegistry({ product: { hz: [dead, url('hz-1')] } })
    const count = counter()
    const once1 = client(t, registry)
    await assert.rejects(call(once1, 'product', '4000', '/orders', { method: 'POST', body: '{}' }), {
      code: 'ECONNREFUSED',
    })
    assert.deepEqual(count(), {})
    const marked = client(t, registry)
    const seen = await call(marked, 'product', '4000', '/orders', {
      method: 'POST',
      body: '{}',
      idempotent: true,
    })
    assert.equal(seen.backend, 'hz-1')
    assert.equal(seen.method, 'POST')
  })

  test('retries stop at the retry budget', async (t) => {
    const c = client(t, new StaticRegistry({ product: { hz: [dead, dead, url('hz-1')] } }), { retries: 1 })
    await assert.rejects(call(c, 'product', '4000'), { code: 'ECONNREFUSED' })
  })

  test('an HTTP error status is an answer, not a failure: no retry', async (t) => {
    const failing = createServer((_req, res) => res.writeHead(503).end('busy'))
    failing.listen(0, '127.0.0.1')
    await once(failing, 'listening')
    t.after(() => new Promise<void>((r) => failing.close(() => r())))
    const base = `http://127.0.0.1:${(failing.address() as AddressInfo).port}`
    const c = client(t, new StaticRegistry({ product: { hz: [base, url('hz-1')] } }))
    const count = counter()
    const status = await runWithRoute({ routeId: '4000' }, async () => {
      const res = await c.request('product', '/p')
      await res.body.dump()
      return res.statusCode
    })
    assert.equal(status, 503)
    assert.deepEqual(count(), {})
  })
})

describe('service client: registries', () => {
  test('instance URLs with a base path, and bare host:port addresses', async (t) => {
    const bare = url('sh-1').replace('http://', '')
    const c = client(t, new StaticRegistry({ product: { hz: [`${url('hz-1')}/api/`], sh: [bare] } }))
    const seen = await call(c, 'product', '4000', '/items/1')
    assert.equal(seen.url, '/api/items/1')
    assert.equal((await call(c, 'product', '7000')).backend, 'sh-1')
  })

  test('a template registry: the owner unit host name is called', async (t) => {
    // One server answers for every `<unit>.localhost`; a resolver of the test's own maps them to
    // loopback (this machine's resolver does not), so the Host header tells which unit was called.
    const server = createServer((req, res) => res.end(req.headers.host))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    t.after(() => new Promise<void>((r) => server.close(() => r())))
    const port = (server.address() as AddressInfo).port
    const lookup = ((_host, options, cb) => {
      if ((options as { all?: boolean }).all) cb(null, [{ address: '127.0.0.1', family: 4 }])
      else (cb as (e: null, a: string, f: number) => void)(null, '127.0.0.1', 4)
    }) as LookupFunction
    const dispatcher = new Agent({ connect: { lookup } })
    t.after(() => dispatcher.close())
    const registry = new TemplateRegistry(`http://{unit}.localhost:${port}`, ['center', 'hz', 'sh'])
    const c = client(t, registry, { dispatcher })
    const host = (routeId: string, service = 'product') =>
      runWithRoute({ routeId }, async () => (await c.request(service, '/')).body.text())
    assert.equal(await host('7000'), `sh.localhost:${port}`)
    assert.equal(await host('4000'), `hz.localhost:${port}`)
    assert.equal(await host('4000', 'stock'), `center.localhost:${port}`)
  })

  test('the control-plane registry: agents registered with their address; a unit that leaves is not replaced', async (t) => {
    const rs = createRuleServer({ tokens: [TOKEN], leaseMs: 2000 })
    const { port } = await rs.listen(0)
    t.after(() => rs.close())
    const cp = `http://127.0.0.1:${port}`
    const agents = []
    for (const [nodeId, unit, address] of [
      ['p-hz-1', 'hz', url('hz-1')],
      ['p-sh-1', 'sh', url('sh-1').replace('http://', '')],
    ] as const) {
      const channel = createControlChannel({
        url: cp,
        token: TOKEN,
        identity: { nodeId, app: 'product', unit, address },
        logger: silent,
      })
      const agent = createAgent({
        unit,
        app: 'product',
        nodeId,
        channels: [channel],
        logger: silent,
        cache: false,
      })
      t.after(() => agent.close())
      await agent.start()
      agents.push(agent)
    }
    const registry = new ControlPlaneRegistry({ url: cp, token: TOKEN, services: ['product'], refreshMs: 20 })
    t.after(() => registry.close())
    await registry.ready()
    const c = client(t, registry)
    assert.equal((await call(c, 'product', '4000')).backend, 'hz-1')
    assert.equal((await call(c, 'product', '7000')).backend, 'sh-1')
    await agents[0]!.close() // hz leaves the control plane
    await until(() => registry.instances('product').length === 1, 5000, 'hz to leave the registry')
    const count = counter()
    await assert.rejects(call(c, 'product', '4000'), /no provider of product in unit hz/)
    assert.deepEqual(count(), {})
  })
})

describe('service client: options', () => {
  test('refuses bad options and unknown services with clear errors', async (t) => {
    const registry = new StaticRegistry({ product: fleet })
    const bad: [Partial<ServiceClientOptions>, RegExp][] = [
      [{ registry: undefined }, /needs a registry/],
      [{ localUnit: undefined }, /needs \{ agent \} or \{ localUnit \}/],
      [{ services: {} }, /at least one service/],
      [{ services: { product: { type: 'unitx' as never } } }, /service product needs a type/],
      [{ retries: -1 }, /retries must be a number >= 0/],
    ]
    for (const [extra, message] of bad) {
      assert.throws(
        () => createServiceClient({ registry, router, localUnit: 'hz', services, ...extra }),
        (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message),
        String(message),
      )
    }
    const c = client(t, registry)
    await assert.rejects(call(c, 'payments', '4000'), /service payments is not configured/)
    await assert.rejects(
      runWithRoute({ routeId: '4000' }, () => c.request('product', 'p')),
      /path must start with \//,
    )
  })
})
