import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import { request } from 'undici'
import type { ServiceInstance } from '../../src/agent/index.js'
import { createAgent, type RoutingAgent } from '../../src/agent/index.js'
import {
  appactiveKoa,
  appactiveMiddleware,
  appactivePlugin,
  type ProtectionOptions,
} from '../../src/bridges/http-server/index.js'
import { currentRoute } from '../../src/context/index.js'
import { silent } from '../helpers/agents.js'
import { threeUnits } from '../helpers/topology.js'

const ruleSet = threeUnits(1, true)
const services = { '/orders/**': 'unit', '/stock/**': 'center' } as const

/** Starts an app of `framework` in `unit`; every route answers `{ unit, routeId }` read from the context. */
type Start = (agent: RoutingAgent, unit: string, extra?: Partial<ProtectionOptions>) => Promise<Server>

const reply = async (unit: string) => {
  await new Promise((r) => setImmediate(r)) // the context must survive an await
  return { unit, routeId: currentRoute()?.routeId ?? null }
}

const frameworks: Record<string, Start> = {
  async express(agent, unit, extra = {}) {
    const app = express()
    app.use(appactiveMiddleware({ agent, services, ...extra }))
    app.all('/{*rest}', async (_req, res) => {
      res.json(await reply(unit))
    })
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return server
  },
  async fastify(agent, unit, extra = {}) {
    const app = Fastify()
    await app.register(appactivePlugin, { agent, services, ...extra })
    app.all('/*', async () => reply(unit))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return app.server
  },
  async koa(agent, unit, extra = {}) {
    const app = new Koa()
    app.use(appactiveKoa({ agent, services, ...extra }))
    app.use(async (ctx) => {
      ctx.body = await reply(unit)
    })
    const server = app.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return server
  },
}

async function call(
  base: string,
  path: string,
  method = 'GET',
  headers: Record<string, string> = {},
  body?: string,
) {
  const res = await request(`${base}${path}`, { method: method as 'GET', headers, ...(body ? { body } : {}) })
  return {
    status: res.statusCode,
    headers: res.headers,
    body: (await res.body.json()) as Record<string, unknown>,
  }
}

for (const [name, start] of Object.entries(frameworks)) {
  describe(`${name} adapter`, () => {
    test('unit / center / normal services x right unit, wrong unit, no id, fenced', async (t) => {
      const bases: Record<string, string> = {}
      for (const unit of ['center', 'hz', 'sh']) {
        const agent = createAgent({ unit, app: 'shop', logger: silent, cache: false })
        agent.apply(ruleSet)
        const server = await start(agent, unit)
        t.after(() => new Promise<void>((r) => server.close(() => r())))
        bases[unit] = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      }
      const ok = await call(bases.hz!, '/orders/1?uid=4000', 'POST')
      assert.equal(ok.status, 200)
      assert.deepEqual(ok.body, { unit: 'hz', routeId: '4000' })

      const wrong = await call(bases.sh!, '/orders/1?uid=4000')
      assert.equal(wrong.status, 421)
      assert.equal(wrong.headers['x-appactive-unit'], 'hz')
      assert.equal((wrong.body.error as { code: string }).code, 'APPACTIVE_WRONG_UNIT')

      assert.equal((await call(bases.hz!, '/orders/1')).status, 400)
      const fenced = await call(bases.hz!, '/orders/1?uid=5001', 'DELETE')
      assert.equal(fenced.status, 503)
      assert.equal(fenced.headers['retry-after'], '1')
      assert.equal((await call(bases.hz!, '/orders/1?uid=5001')).status, 200, 'reads of a fenced key pass')

      assert.equal((await call(bases.center!, '/stock/9?uid=9000', 'POST')).status, 200)
      const notCenter = await call(bases.hz!, '/stock/9')
      assert.equal(notCenter.status, 421)
      assert.equal((notCenter.body.error as { code: string }).code, 'APPACTIVE_NOT_CENTER')

      const normal = await call(bases.sh!, '/catalog/x?uid=4000')
      assert.deepEqual(normal.body, { unit: 'sh', routeId: '4000' })

      // A route-id header that does not decode is refused, whatever the service type; never a crash.
      for (const bad of ['%E0%A4%A', 'x'.repeat(1000), 'a b']) {
        for (const path of ['/orders/1?uid=4000', '/catalog/x']) {
          const res = await call(bases.hz!, path, 'GET', { 'x-appactive-route-id': bad })
          assert.equal(res.status, 400, `${path} with route id ${bad.slice(0, 12)}`)
          assert.equal((res.body.error as { code: string }).code, 'APPACTIVE_NO_ROUTE_ID')
          assert.match((res.body.error as { message: string }).message, /malformed x-appactive-route-id/)
        }
      }
      const trusted = await call(bases.hz!, '/orders/1', 'GET', { 'x-appactive-route-id': '4000' })
      assert.deepEqual(trusted.body, { unit: 'hz', routeId: '4000' }, "the gateway's header is trusted")
    })

    test('forward mode: a misplaced request is served by the right unit once, body and all', async (t) => {
      const instances: ServiceInstance[] = []
      const registry = { instances: (service: string) => (service === 'shop' ? instances : []) }
      const bases: Record<string, string> = {}
      for (const unit of ['center', 'hz', 'sh']) {
        const agent = createAgent({ unit, app: 'shop', logger: silent, cache: false })
        agent.apply(ruleSet)
        const server = await start(agent, unit, { forward: { registry, service: 'shop' } })
        t.after(() => new Promise<void>((r) => server.close(() => r())))
        bases[unit] = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
        if (unit !== 'sh') instances.push({ url: bases[unit]!, unit })
      }
      const moved = await call(
        bases.sh!,
        '/orders/1?uid=4000',
        'POST',
        { 'content-type': 'text/plain' },
        'x'.repeat(100_000),
      )
      assert.equal(moved.status, 200)
      assert.deepEqual(moved.body, { unit: 'hz', routeId: '4000' }, 'served by the owner, in its context')
      const center = await call(bases.hz!, '/stock/9?uid=4000')
      assert.deepEqual(center.body, { unit: 'center', routeId: '4000' })
      // Already forwarded once: answered where it lands.
      const looped = await call(bases.sh!, '/orders/1?uid=4000', 'GET', { 'x-appactive-hops': '1' })
      assert.equal(looped.status, 421)
      // sh has no registered instance: the refusal says so.
      const none = await call(bases.hz!, '/orders/1?uid=7000')
      assert.equal(none.status, 421)
      assert.match((none.body.error as { message: string }).message, /no provider of shop in unit sh/)
    })

    test("concurrent requests never see each other's route context", async (t) => {
      const agent = createAgent({ unit: 'hz', app: 'shop', logger: silent, cache: false })
      agent.apply(ruleSet)
      const server = await start(agent, 'hz')
      t.after(() => new Promise<void>((r) => server.close(() => r())))
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      const ids = Array.from({ length: 200 }, (_, i) => String(10_000 * i + 3333 + i))
      const results = await Promise.all(ids.map((id) => call(base, `/catalog/x?uid=${id}`)))
      assert.deepEqual(
        results.map((r) => r.body.routeId),
        ids,
      )
    })
  })
}
