import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { Agent, request } from 'undici'
import { propagateFetch, routeInterceptor } from '../../src/bridges/http-client/index.js'
import { runWithRoute } from '../../src/context/index.js'
import { echoBackend } from '../helpers/gateway.js'

const backend = await echoBackend('b')
after(() => backend.close())

describe('outgoing route propagation', () => {
  test('the undici interceptor adds the hop headers and baggage inside a route context only', async () => {
    const agent = new Agent().compose(routeInterceptor())
    after(() => agent.close())
    const inside = await runWithRoute({ routeId: 'u 42', unit: 'hz', ruleVersion: 7, hops: 1 }, async () => {
      const res = await request(`${backend.url}/a`, {
        dispatcher: agent,
        headers: { baggage: 'tenant=acme', 'x-appactive-route-id': 'forged', accept: 'application/json' },
      })
      return (await res.body.json()) as { headers: Record<string, string> }
    })
    assert.equal(inside.headers['x-appactive-route-id'], 'u%2042')
    assert.equal(inside.headers['x-appactive-unit'], 'hz')
    assert.equal(inside.headers['x-appactive-rule-version'], '7')
    assert.equal(inside.headers['x-appactive-hops'], '1')
    assert.match(inside.headers.baggage!, /tenant=acme/)
    assert.match(inside.headers.baggage!, /appactive\.route-id=u%2042/)
    assert.equal(inside.headers.accept, 'application/json')
    const outside = (await (await request(`${backend.url}/b`, { dispatcher: agent })).body.json()) as {
      headers: Record<string, string>
    }
    assert.equal(outside.headers['x-appactive-route-id'], undefined)
  })

  test('global fetch carries the route context once propagateFetch() is on', async () => {
    const stop = propagateFetch()
    after(stop)
    const ids = ['1', '2', '3', '4', '5']
    const seen = await Promise.all(
      ids.map((id) =>
        runWithRoute({ routeId: id }, async () => {
          await new Promise((r) => setImmediate(r))
          const res = await fetch(`${backend.url}/f`)
          return ((await res.json()) as { headers: Record<string, string> }).headers['x-appactive-route-id']
        }),
      ),
    )
    assert.deepEqual(seen, ids)
    const plain = (await (await fetch(`${backend.url}/g`)).json()) as { headers: Record<string, string> }
    assert.equal(plain.headers['x-appactive-route-id'], undefined)
    stop()
    const off = await runWithRoute(
      { routeId: '9' },
      async () => (await (await fetch(`${backend.url}/h`)).json()) as { headers: Record<string, string> },
    )
    assert.equal(off.headers['x-appactive-route-id'], undefined)
  })
})

test('the interceptor and propagateFetch together send the route id once', async () => {
  const stop = propagateFetch()
  after(stop)
  const agent = new Agent().compose(routeInterceptor())
  after(() => agent.close())
  const { headers } = await runWithRoute({ routeId: '77' }, async () => {
    const res = await request(`${backend.url}/both`, { dispatcher: agent })
    return (await res.body.json()) as { headers: Record<string, string> }
  })
  // node:http joins a repeated header with ", ": a second copy would show here.
  assert.equal(headers['x-appactive-route-id'], '77')
  assert.equal(headers.baggage, 'appactive.route-id=77')
})
