import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import { request } from 'undici'
import { createAgent, type RoutingAgent } from '../../src/agent/index.js'
import { ServicePatterns, withAppActive } from '../../src/bridges/http-server/index.js'
import { currentRoute } from '../../src/context/index.js'
import type { RuleSet } from '../../src/rules/index.js'
import { silent } from '../helpers/agents.js'
import { threeUnits } from '../helpers/topology.js'

const topology = threeUnits

const services = { '/orders/**': 'unit', '/stock/*': 'center', '/catalog/**': 'normal' } as const

async function serve(t: { after: (fn: () => Promise<void>) => void }, unit: string, ruleSet: RuleSet) {
  const agent: RoutingAgent = createAgent({ unit, app: 'shop', logger: silent, cache: false })
  agent.apply(ruleSet)
  const server = createServer(
    withAppActive(
      (_req, res) => {
        const route = currentRoute()
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ unit, route }))
      },
      { agent, services },
    ),
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  return { agent, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

async function call(url: string, path: string, method = 'GET', headers: Record<string, string> = {}) {
  const res = await request(`${url}${path}`, { method: method as 'GET', headers })
  const body = (await res.body.json()) as Record<string, unknown>
  return { status: res.statusCode, headers: res.headers, body }
}

describe('node:http adapter: provider protection', () => {
  test('every service type x right unit / wrong unit / no id / fenced', async (t) => {
    const units = {
      center: await serve(t, 'center', topology(1, true)),
      hz: await serve(t, 'hz', topology(1, true)),
      sh: await serve(t, 'sh', topology(1, true)),
    }
    // unit service, right unit: admitted, handler sees the route context.
    const ok = await call(units.hz.url, '/orders/1?uid=4000', 'POST')
    assert.equal(ok.status, 200)
    assert.deepEqual(ok.body.route, { routeId: '4000', hops: 0, ruleVersion: 1 })
    // unit service, wrong unit: 421 naming the owner.
    const wrong = await call(units.sh.url, '/orders/1?uid=4000')
    assert.equal(wrong.status, 421)
    assert.equal(wrong.headers['x-appactive-unit'], 'hz')
    assert.equal((wrong.body.error as { code: string }).code, 'APPACTIVE_WRONG_UNIT')
    // unit service, no id: 400.
    const noId = await call(units.hz.url, '/orders/1')
    assert.equal(noId.status, 400)
    assert.equal((noId.body.error as { code: string }).code, 'APPACTIVE_NO_ROUTE_ID')
    // unit service, fenced key: writes 503 with Retry-After; reads pass.
    const fenced = await call(units.hz.url, '/orders/1?uid=5050', 'PUT')
    assert.equal(fenced.status, 503)
    assert.equal(fenced.headers['retry-after'], '1')
    assert.equal((fenced.body.error as { code: string }).code, 'APPACTIVE_FENCED')
    assert.equal((await call(units.hz.url, '/orders/1?uid=5050')).status, 200)
    // center service: only in the center, for any id (or none).
    assert.equal((await call(units.center.url, '/stock/7?uid=9000', 'POST')).status, 200)
    assert.equal((await call(units.center.url, '/stock/7', 'POST')).status, 200)
    const notCenter = await call(units.sh.url, '/stock/7?uid=9000')
    assert.equal(notCenter.status, 421)
    assert.equal(notCenter.headers['x-appactive-unit'], 'center')
    assert.equal((notCenter.body.error as { code: string }).code, 'APPACTIVE_NOT_CENTER')
    // normal service: anywhere, id or not, fenced or not.
    for (const u of Object.values(units)) {
      assert.equal((await call(u.url, '/catalog/x?uid=5050', 'POST')).status, 200)
      assert.equal((await call(u.url, '/catalog/x')).status, 200)
    }
    // an unmatched path is normal by default.
    assert.equal((await call(units.sh.url, '/health')).status, 200)
  })

  test("the gateway's x-appactive-route-id wins over the request's own id source", async (t) => {
    const hz = await serve(t, 'hz', topology(1))
    const r = await call(hz.url, '/orders/1?uid=1', 'GET', {
      'x-appactive-route-id': '4000',
      'x-appactive-hops': '1',
    })
    assert.equal(r.status, 200)
    assert.deepEqual(r.body.route, { routeId: '4000', hops: 1, ruleVersion: 1 })
  })

  test('a new rule version applies to the next request', async (t) => {
    const hz = await serve(t, 'hz', topology(1))
    assert.equal((await call(hz.url, '/orders/1?uid=7000')).status, 421)
    hz.agent.apply({ ...topology(2), mapping: [{ unit: 'hz', ranges: ['0~9999'] }] })
    assert.equal((await call(hz.url, '/orders/1?uid=7000')).status, 200)
  })

  test('malformed or oversized route-id headers get 400, not a crash', async (t) => {
    const hz = await serve(t, 'hz', topology(1))
    const r = await call(hz.url, '/orders/1?uid=4000', 'GET', { 'x-appactive-route-id': 'x'.repeat(5000) })
    assert.equal(r.status, 400)
    assert.equal((r.body.error as { code: string }).code, 'APPACTIVE_NO_ROUTE_ID')
    const again = await call(hz.url, '/orders/1?uid=4000')
    assert.equal(again.status, 200, 'the server still serves')
  })
})

describe('service patterns', () => {
  test('the most specific pattern wins; ** covers the bare prefix', () => {
    const p = new ServicePatterns({
      '/**': 'normal',
      '/detail/*': 'unit',
      '/detail/**': 'center',
      '/buy/*': 'center',
    })
    assert.equal(p.typeOf('/detail/3'), 'unit')
    assert.equal(p.typeOf('/detail/3/4'), 'center')
    assert.equal(p.typeOf('/detail'), 'center')
    assert.equal(p.typeOf('/buy/1?x=2'), 'center')
    assert.equal(p.typeOf('/list'), 'normal')
    assert.throws(() => new ServicePatterns({ orders: 'unit' }), /must start with \//)
    assert.throws(() => new ServicePatterns({ '/a': 'weird' as 'unit' }), /must be unit, center or normal/)
  })
})
