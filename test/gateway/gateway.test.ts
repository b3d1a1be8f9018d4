import assert from 'node:assert/strict'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import type { Socket } from 'node:net'
import { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import { request } from 'undici'
import { createAgent, type RoutingAgent } from '../../src/agent/index.js'
import { createGateway, type Gateway } from '../../src/gateway/index.js'
import type { GatewayConfig } from '../../src/gateway/types.js'
import type { RuleSet } from '../../src/rules/index.js'
import { rules, silent } from '../helpers/agents.js'
import { app, type Backend, deadUrl, echoBackend, gatewayConfig } from '../helpers/gateway.js'

/** The baseline rules (unit 0~1999, center 2000~9999), reading r_id from query, header and cookie. */
function threeSources(
  version: number,
  unitUpTo = 1999,
  fence: string[] = [],
  extra: Partial<RuleSet> = {},
): RuleSet {
  return {
    ...rules(version, unitUpTo, fence),
    idSource: [
      { from: 'query', name: 'r_id' },
      { from: 'header', name: 'x-user-id' },
      { from: 'cookie', name: 'r_id' },
    ],
    ...extra,
  }
}

interface Running {
  gw: Gateway
  url: string
  agent: RoutingAgent
}

async function start(
  t: { after: (fn: () => Promise<void>) => void },
  config: GatewayConfig,
  ruleSet: RuleSet = threeSources(1),
): Promise<Running> {
  const agent = createAgent({ unit: config.unit, app: 'gateway', logger: silent, cache: false })
  assert.equal(agent.apply(ruleSet).status, 'applied')
  const gw = createGateway(config, { agent, logger: silent })
  const { main } = await gw.listen()
  t.after(() => gw.close())
  return { gw, url: `http://127.0.0.1:${main.port}`, agent }
}

async function backends(
  t: { after: (fn: () => Promise<void>) => void },
  ...names: string[]
): Promise<Backend[]> {
  const all = await Promise.all(names.map((n) => echoBackend(n)))
  t.after(async () => {
    await Promise.all(all.map((b) => b.close()))
  })
  return all
}

async function get(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
) {
  const res = await request(url, {
    method: (init.method ?? 'GET') as 'GET',
    headers: init.headers ?? {},
    ...(init.body !== undefined ? { body: init.body } : {}),
  })
  const text = await res.body.text()
  let json: Record<string, unknown> | undefined
  try {
    json = JSON.parse(text) as Record<string, unknown>
  } catch {
    json = undefined
  }
  return { status: res.statusCode, headers: res.headers, json, text }
}

describe('gateway routing', () => {
  test('routes by query, header and cookie to the owner unit, with the hop headers set', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const { url } = await start(t, gatewayConfig([app({ center: [center!.url], unit: [unit!.url] })]))
    const cases: Array<[string, Record<string, string>, string]> = [
      ['/item?r_id=100', {}, 'unit-1'],
      ['/item?r_id=2500', {}, 'center-1'],
      ['/item', { 'x-user-id': '12000' }, 'center-1'],
      ['/item', { 'x-user-id': '11999' }, 'unit-1'],
      ['/item', { cookie: 'xr_id=5000; r_id=7' }, 'unit-1'],
      ['/item?r_id=100', { 'x-user-id': '5000' }, 'unit-1'], // query first
    ]
    for (const [path, headers, backend] of cases) {
      const r = await get(`${url}${path}`, { headers })
      assert.equal(r.status, 200, path)
      assert.equal(r.json?.backend, backend, `${path} ${JSON.stringify(headers)}`)
    }
    const seen = unit!.seen.at(-1)!.headers
    assert.equal(seen['x-appactive-route-id'], '100')
    assert.equal(seen['x-appactive-unit'], 'unit')
    assert.equal(seen['x-appactive-rule-version'], '1')
    assert.equal(seen['x-appactive-hops'], '0')
    assert.match(String(seen.baggage), /appactive\.route-id=100/)
    assert.equal(seen['x-forwarded-proto'], 'http')
    assert.match(String(seen['x-forwarded-for']), /127\.0\.0\.1/)
  })

  test('strips spoofed x-appactive headers and baggage members a client sends', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const { url } = await start(t, gatewayConfig([app({ center: [center!.url], unit: [unit!.url] })]))
    const r = await get(`${url}/x?r_id=2500`, {
      headers: {
        'x-appactive-unit': 'unit',
        'x-appactive-route-id': '1',
        'x-appactive-hops': '5',
        'X-AppActive-Rule-Version': '99',
        'x-appactive-peer': 'guess',
        baggage: 'appactive.route-id=1,other=keep',
      },
    })
    assert.equal(r.json?.backend, 'center-1')
    const h = center!.seen.at(-1)!.headers
    assert.equal(h['x-appactive-route-id'], '2500')
    assert.equal(h['x-appactive-unit'], 'center')
    assert.equal(h['x-appactive-hops'], '0')
    assert.equal(h['x-appactive-rule-version'], '1')
    assert.equal(h['x-appactive-peer'], undefined)
    assert.match(String(h.baggage), /other=keep/)
    assert.doesNotMatch(String(h.baggage), /route-id=1(,|$)/)
  })

  test('unknown app 404; missing id with a reject fallback 400; local fallback otherwise', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const apps = [
      app(
        { center: [center!.url], unit: [unit!.url] },
        { name: 'strict', match: { hosts: ['strict.test'], pathPrefix: '/' }, fallback: 'reject' },
      ),
      app(
        { center: [center!.url], unit: [unit!.url] },
        { name: 'shop', match: { hosts: [], pathPrefix: '/shop' } },
      ),
    ]
    const { url } = await start(t, gatewayConfig(apps))
    const none = await get(`${url}/other`)
    assert.equal(none.status, 404)
    assert.deepEqual(Object.keys((none.json as { error: object }).error), ['code', 'message'])
    const rejected = await get(`${url}/shop`, { headers: { host: 'strict.test' } })
    assert.equal(rejected.status, 400)
    assert.equal((rejected.json as { error: { code: string } }).error.code, 'APPACTIVE_NO_ROUTE_ID')
    const garbled = await get(`${url}/shop?r_id=%zz`, { headers: { cookie: ';;==; r_id' } })
    assert.equal(garbled.status, 200)
    assert.equal(garbled.json?.backend, 'center-1', 'not numeric: the local fallback (center)')
    assert.equal((await get(`${url}/shopping?r_id=1`)).status, 404, 'prefixes match on segment boundaries')
  })

  test('an app with unitEnabled false always goes to the local unit', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const { url } = await start(
      t,
      gatewayConfig([app({ center: [center!.url], unit: [unit!.url] }, { unitEnabled: false })]),
    )
    assert.equal((await get(`${url}/?r_id=5`)).json?.backend, 'center-1')
  })
})

describe('gateway hold during fence', () => {
  test('holds a write for a fenced key, then releases it to the new owner', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const { url, agent } = await start(t, gatewayConfig([app({ center: [center!.url], unit: [unit!.url] })]))
    agent.apply(threeSources(2, 1999, ['2000~2999']))
    const read = await get(`${url}/x?r_id=2500`)
    assert.equal(read.json?.backend, 'center-1', 'reads are not held in writes mode')
    const started = performance.now()
    const pending = get(`${url}/x?r_id=2500`, { method: 'POST', body: 'order' })
    await new Promise((r) => setTimeout(r, 100))
    agent.apply(threeSources(3, 2999, ['2000~2999'])) // switch, still fenced: stays held
    await new Promise((r) => setTimeout(r, 50))
    agent.apply(threeSources(4, 2999)) // unfence: released to the new owner
    const r = await pending
    assert.equal(r.status, 200)
    assert.equal(r.json?.backend, 'unit-1')
    assert.equal(r.json?.bytes, 5)
    assert.ok(performance.now() - started >= 140, 'it waited for the fence to lift')
  })

  test('past the time bound or the queue bound a held request gets 503 with Retry-After', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const config = gatewayConfig([app({ center: [center!.url], unit: [unit!.url] })], {
      hold: { enabled: true, methods: 'writes', maxMs: 150, maxQueue: 2, retryAfterS: 3 },
    })
    const { url } = await start(t, config, threeSources(1, 1999, ['2000~2999']))
    const all = await Promise.all(
      [1, 2, 3, 4].map(() => get(`${url}/x?r_id=2001`, { method: 'PUT', body: '{}' })),
    )
    const statuses = all.map((r) => r.status).sort()
    assert.deepEqual(statuses, [503, 503, 503, 503])
    for (const r of all) {
      assert.equal(r.headers['retry-after'], '3')
      assert.equal((r.json as { error: { code: string } }).error.code, 'APPACTIVE_FENCED')
    }
    assert.equal(center!.seen.length + unit!.seen.length, 0, 'nothing fenced reached a backend')
  })
})

describe('gateway failures', () => {
  test('a dead instance is skipped within its unit; traffic never crosses units', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const dead = await deadUrl()
    const { url } = await start(t, gatewayConfig([app({ center: [dead, center!.url], unit: [unit!.url] })]))
    const results = []
    for (let i = 0; i < 10; i++) results.push(await get(`${url}/x?r_id=2500`))
    // A refused connection is retried on the unit's other instance: no request fails.
    assert.deepEqual(
      results.map((r) => r.status),
      Array(10).fill(200),
    )
    assert.ok(results.every((r) => r.json?.backend === 'center-1'))
    assert.equal(unit!.seen.length, 0)
  })

  test('a unit with no reachable instance answers 502 then 503 APPACTIVE_NO_PROVIDER, never another unit', async (t) => {
    const [center] = await backends(t, 'center-1')
    const dead = await deadUrl()
    const { url } = await start(t, gatewayConfig([app({ center: [center!.url], unit: [dead] })]))
    const started = performance.now()
    const statuses = []
    for (let i = 0; i < 5; i++) statuses.push((await get(`${url}/x?r_id=5`)).status)
    assert.ok(performance.now() - started < 3000, 'refused connections fail fast')
    assert.equal(statuses[0], 502)
    assert.equal(statuses.at(-1), 503)
    assert.equal(center!.seen.length, 0)
  })

  test('an internal error answers 500 INTERNAL, and the next request is served', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const { url, gw } = await start(t, gatewayConfig([app({ center: [center!.url], unit: [unit!.url] })]))
    // A bug in the handler (here: the upstream registry throws once) must not crash or hang the request.
    const registry = gw.handler.upstreams
    const real = registry.get.bind(registry)
    let failures = 1
    registry.get = (appName, unitName) => {
      if (failures-- > 0) throw new Error('boom')
      return real(appName, unitName)
    }
    const broken = await get(`${url}/x?r_id=2500`)
    assert.equal(broken.status, 500)
    assert.deepEqual(broken.json, { error: { code: 'INTERNAL', message: 'internal error' } })
    const next = await get(`${url}/x?r_id=2500`)
    assert.equal(next.status, 200)
    assert.equal(next.json?.backend, 'center-1')
  })

  test('oversized request headers get 431', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const { url } = await start(
      t,
      gatewayConfig([app({ center: [center!.url], unit: [unit!.url] })], { maxHeaderBytes: 2048 }),
    )
    const r = await get(`${url}/x?r_id=1`, { headers: { 'x-big': 'a'.repeat(4000) } })
    assert.equal(r.status, 431)
  })
})

describe('gateway forwarding via peer gateways', () => {
  test('corrects a misrouted request through the owner unit gateway; the loop guard answers 508', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const peerToken = 'peer-secret-0123456789abcdef'
    const unitGw = await start(
      t,
      gatewayConfig([app({ unit: [unit!.url] })], {
        unit: 'unit',
        forwarding: 'gateway',
        peerToken,
        units: {},
      }),
    )
    const centerGw = await start(
      t,
      gatewayConfig([app({ center: [center!.url] })], {
        forwarding: 'gateway',
        peerToken,
        units: { unit: { gateway: unitGw.url } },
      }),
    )
    const r = await get(`${centerGw.url}/x?r_id=100`)
    assert.equal(r.status, 200)
    assert.equal(r.json?.backend, 'unit-1')
    const h = unit!.seen.at(-1)!.headers
    assert.equal(h['x-appactive-hops'], '1')
    assert.equal(h['x-appactive-peer'], undefined, 'the peer token never reaches an app')
    assert.equal((await get(`${centerGw.url}/x?r_id=2500`)).json?.backend, 'center-1')

    // The unit gateway's rules say center owns 100: it must not bounce the request back.
    unitGw.agent.apply(threeSources(2, 50))
    const loop = await get(`${centerGw.url}/x?r_id=100`)
    assert.equal(loop.status, 508)
  })
})

describe('gateway streaming and upgrades', () => {
  test('streams a large request body without buffering it', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const { url } = await start(t, gatewayConfig([app({ center: [center!.url], unit: [unit!.url] })]))
    const chunk = Buffer.alloc(1024 * 1024, 120)
    const total = 256
    let sent = 0
    const body = new Readable({
      read() {
        this.push(sent++ < total ? chunk : null)
      },
    })
    const rssBefore = process.memoryUsage().rss
    const res = await request(`${url}/upload?r_id=2500`, { method: 'POST', body })
    const seen = (await res.body.json()) as { bytes: number; backend: string }
    assert.equal(seen.backend, 'center-1')
    assert.equal(seen.bytes, total * chunk.length)
    const grew = (process.memoryUsage().rss - rssBefore) / 1024 / 1024
    assert.ok(grew < 128, `RSS grew ${grew.toFixed(0)} MB for a 256 MB upload`)
  })

  test('routes a WebSocket upgrade at upgrade time and splices the sockets', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const { url } = await start(t, gatewayConfig([app({ center: [center!.url], unit: [unit!.url] })]))
    const { port } = new URL(url)
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path: '/ws?r_id=7',
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        'sec-websocket-version': '13',
      },
    })
    req.end()
    const [res, socket] = (await once(req, 'upgrade', { signal: AbortSignal.timeout(5000) })) as [
      { headers: Record<string, string> },
      Socket,
    ]
    assert.equal(res.headers['x-backend'], 'unit-1')
    assert.equal(res.headers['x-route-id'], '7')
    socket.write('ping')
    const [data] = await once(socket, 'data', { signal: AbortSignal.timeout(5000) })
    assert.equal(String(data), 'ping')
    socket.destroy()
  })
})

describe('gateway rule changes under load', () => {
  test('applies rule versions live with zero failed requests', async (t) => {
    const [center, unit] = await backends(t, 'center-1', 'unit-1')
    const { url, agent } = await start(t, gatewayConfig([app({ center: [center!.url], unit: [unit!.url] })]))
    let version = 1
    const flipper = setInterval(() => {
      version++
      agent.apply(threeSources(version, version % 2 === 0 ? 2999 : 1999))
    }, 10)
    const failures: number[] = []
    let done = 0
    const worker = async (w: number) => {
      for (let i = 0; i < 60; i++) {
        const id = (w * 997 + i * 37) % 10000
        const r = await get(`${url}/x?r_id=${id}`, {
          method: i % 3 === 0 ? 'POST' : 'GET',
          body: i % 3 === 0 ? 'x' : undefined,
        })
        if (r.status !== 200) failures.push(r.status)
        done++
      }
    }
    await Promise.all(Array.from({ length: 20 }, (_, w) => worker(w)))
    clearInterval(flipper)
    assert.equal(done, 1200)
    assert.deepEqual(failures, [])
    assert.ok(version > 5, `${version - 1} rule changes happened during the run`)
  })
})
