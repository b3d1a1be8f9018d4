import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  assignRoute,
  currentRoute,
  extractRoute,
  HOPS_HEADER,
  injectRoute,
  ROUTE_ID_HEADER,
  routeHeaders,
  runWithRoute,
  stripRouteHeaders,
  UNIT_HEADER,
} from '../../src/context/index.js'

function recorder(): { headers: Record<string, string>; set: (name: string, value: string) => void } {
  const headers: Record<string, string> = {}
  return {
    headers,
    set: (name, value) => {
      headers[name] = value
    },
  }
}

test('extractRoute reads the hop headers into a frozen route context', () => {
  const route = extractRoute({ ...routeHeaders({ routeId: 'u1', unit: 'hz', ruleVersion: 4, hops: 1 }) })
  assert.deepEqual(route, { routeId: 'u1', unit: 'hz', ruleVersion: 4, hops: 1 })
  assert.ok(Object.isFrozen(route))
  assert.deepEqual(extractRoute({}), { routeId: undefined, hops: 0 })
})

test('extractRoute falls back to the baggage member when the header has no usable id', () => {
  assert.equal(extractRoute({ baggage: 'a=1,appactive.route-id=u%202' }).routeId, 'u 2')
  assert.equal(extractRoute(new Headers({ baggage: 'appactive.route-id=7' })).routeId, '7')
  assert.equal(extractRoute(['Baggage', 'a=1', 'baggage', 'appactive.route-id=8']).routeId, '8')
  assert.equal(
    extractRoute({ [ROUTE_ID_HEADER]: 'from-header', baggage: 'appactive.route-id=from-baggage' }).routeId,
    'from-header',
  )
  assert.equal(extractRoute({ [ROUTE_ID_HEADER]: '%ZZ', baggage: 'appactive.route-id=b' }).routeId, 'b')
})

test('injectRoute writes the hop headers and merges the baggage member into the existing baggage', () => {
  const { headers, set } = recorder()
  injectRoute({ routeId: 'a b', unit: 'sh', hops: 1 }, set, 'tenant=acme;p, appactive.route-id=stale')
  assert.deepEqual(headers, {
    [ROUTE_ID_HEADER]: 'a%20b',
    [UNIT_HEADER]: 'sh',
    [HOPS_HEADER]: '1',
    baggage: 'tenant=acme;p,appactive.route-id=a%20b',
  })
})

test('injectRoute reads the existing baggage through a getter, once', () => {
  const { headers, set } = recorder()
  let calls = 0
  injectRoute({ routeId: '9' }, set, () => {
    calls++
    return ['a=1', 'b=2']
  })
  assert.equal(calls, 1)
  assert.equal(headers.baggage, 'a=1,b=2,appactive.route-id=9')
})

test('injectRoute without a route id removes a stale baggage member and leaves other baggage alone', () => {
  const stale = recorder()
  injectRoute({ unit: 'hz' }, stale.set, 'a=1,appactive.route-id=old')
  assert.deepEqual(stale.headers, { [UNIT_HEADER]: 'hz', [HOPS_HEADER]: '0', baggage: 'a=1' })
  const clean = recorder()
  injectRoute({}, clean.set, 'a = 1')
  assert.deepEqual(clean.headers, { [HOPS_HEADER]: '0' })
  const none = recorder()
  injectRoute(undefined, none.set, 'appactive.route-id=old')
  assert.deepEqual(none.headers, {})
})

test('assignRoute is injectRoute on a headers record: same headers, empty baggage removed', () => {
  const route = { routeId: 'u 1', unit: 'sh', ruleVersion: 4, hops: 0 }
  for (const baggage of [undefined, 'k=v', 'appactive.route-id=old,k=v']) {
    const r = recorder()
    injectRoute(route, r.set, baggage)
    const record: Record<string, string> = baggage === undefined ? { host: 'h' } : { host: 'h', baggage }
    assert.equal(assignRoute(record, route), record)
    assert.deepEqual(record, { host: 'h', ...(baggage === undefined ? {} : { baggage }), ...r.headers })
  }
  // No route id: a stale member goes, and a baggage left empty is removed rather than sent empty.
  const stale: Record<string, string> = { baggage: 'appactive.route-id=old' }
  assert.deepEqual(assignRoute(stale, { unit: 'sh' }), { [UNIT_HEADER]: 'sh', [HOPS_HEADER]: '0' })
  const untouched = { baggage: 'k=v' }
  assert.deepEqual(assignRoute(untouched, {}), { baggage: 'k=v', [HOPS_HEADER]: '0' })
})

test('a route survives a hop: context → injectRoute → Headers → extractRoute → context', async () => {
  const sent = await runWithRoute({ routeId: '用户;42', unit: 'hz', ruleVersion: 3 }, async () => {
    const headers = new Headers({ baggage: 'trace=on' })
    injectRoute(
      currentRoute(),
      (n, v) => headers.set(n, v),
      () => headers.get('baggage') ?? undefined,
    )
    return headers
  })
  assert.equal(sent.get('baggage'), `trace=on,appactive.route-id=${encodeURIComponent('用户;42')}`)
  const received = extractRoute(sent)
  runWithRoute(received, () =>
    assert.deepEqual(currentRoute(), { routeId: '用户;42', unit: 'hz', ruleVersion: 3, hops: 0 }),
  )
})

test('after the edge strips a client request, neither headers nor baggage carry a route', () => {
  const client: Record<string, unknown> = {
    [ROUTE_ID_HEADER]: 'victim',
    [UNIT_HEADER]: 'center',
    baggage: 'appactive.route-id=victim,trace=on',
  }
  stripRouteHeaders(client)
  assert.deepEqual(extractRoute(client as Record<string, string>), { routeId: undefined, hops: 0 })
  assert.equal(client.baggage, 'trace=on')
})
