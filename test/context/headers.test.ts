import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { test } from 'node:test'
import {
  assignRouteHeaders,
  HOPS_HEADER,
  isRouteHeader,
  ROUTE_ID_HEADER,
  RULE_VERSION_HEADER,
  readRouteHeaders,
  routeHeaders,
  stripRouteHeaders,
  UNIT_HEADER,
  writeRouteHeaders,
} from '../../src/context/index.js'

test('the header names are the ones DESIGN §3 fixes', () => {
  assert.deepEqual(
    [ROUTE_ID_HEADER, UNIT_HEADER, RULE_VERSION_HEADER, HOPS_HEADER],
    ['x-appactive-route-id', 'x-appactive-unit', 'x-appactive-rule-version', 'x-appactive-hops'],
  )
})

test('a token id travels verbatim; any other id is percent-encoded and read back exactly', () => {
  const cases: [string, string][] = [
    ['user-42', 'user-42'],
    ['10086', '10086'],
    ['a+b|c~d', 'a+b|c~d'],
    ['a;b,c d', 'a%3Bb%2Cc%20d'],
    ['100%', '100%25'],
    ['%41', '%2541'],
    ['(x)', '(x)'],
    ['tom@example.com', 'tom%40example.com'],
    ['用户😀', encodeURIComponent('用户😀')],
  ]
  for (const [id, wire] of cases) {
    const headers = routeHeaders({ routeId: id })
    assert.equal(headers[ROUTE_ID_HEADER], wire, id)
    assert.equal(readRouteHeaders(headers).routeId, id, id)
  }
})

test('all fields round-trip, and writeRouteHeaders calls the setter once per field', () => {
  const calls: [string, string][] = []
  writeRouteHeaders({ routeId: 'u 1', unit: 'hz', ruleVersion: 12, hops: 1 }, (n, v) => calls.push([n, v]))
  assert.deepEqual(calls, [
    [ROUTE_ID_HEADER, 'u%201'],
    [UNIT_HEADER, 'hz'],
    [RULE_VERSION_HEADER, '12'],
    [HOPS_HEADER, '1'],
  ])
  assert.deepEqual(readRouteHeaders(Object.fromEntries(calls)), {
    routeId: 'u 1',
    unit: 'hz',
    ruleVersion: 12,
    hops: 1,
  })
})

test('fields that cannot travel are not written', () => {
  assert.deepEqual(routeHeaders(undefined), {})
  assert.deepEqual(routeHeaders({}), { [HOPS_HEADER]: '0' })
  assert.deepEqual(routeHeaders({ routeId: '', unit: 'x'.repeat(257), ruleVersion: -1, hops: 300 }), {})
  assert.deepEqual(routeHeaders({ routeId: 'a\uD800b', ruleVersion: 1.5, hops: 2 }), { [HOPS_HEADER]: '2' })
})

test('assignRouteHeaders writes into an existing record, keeps its other headers, and agrees with the setter form', () => {
  const route = { routeId: 'a b', unit: 'sh', ruleVersion: 7, hops: 1 }
  const target: Record<string, string> = { host: 'x', [UNIT_HEADER]: 'stale' }
  assert.equal(assignRouteHeaders(target, route), target)
  assert.deepEqual(target, { host: 'x', ...routeHeaders(route) })
  const set: Record<string, string> = {}
  writeRouteHeaders(route, (name, value) => {
    set[name] = value
  })
  assert.deepEqual(set, routeHeaders(route))
  assert.deepEqual(assignRouteHeaders({ host: 'y' }, undefined), { host: 'y' })
})

test('reads from a node headers record, a fetch Headers and undici flat arrays (strings and Buffers)', () => {
  const expected = { routeId: 'a,b', unit: 'sh', ruleVersion: 3, hops: 1 }
  const record = routeHeaders(expected)
  assert.deepEqual(readRouteHeaders(record), expected)
  assert.deepEqual(readRouteHeaders(new Headers(record)), expected)
  // Raw arrays keep the sender's case.
  const flat = Object.entries(record).flatMap(([n, v]) => [n.toUpperCase(), v])
  assert.deepEqual(readRouteHeaders(flat), expected)
  assert.deepEqual(readRouteHeaders(flat.map((s) => Buffer.from(s, 'latin1'))), expected)
  assert.deepEqual(readRouteHeaders(new Map(Object.entries(record))), expected)
  assert.deepEqual(readRouteHeaders({}), { hops: 0 })
  assert.deepEqual(readRouteHeaders([]), { hops: 0 })
})

test('a route id over 256 UTF-8 bytes reads as absent; exactly 256 bytes is kept', () => {
  const ascii = 'x'.repeat(256)
  assert.equal(readRouteHeaders({ [ROUTE_ID_HEADER]: ascii }).routeId, ascii)
  assert.equal(readRouteHeaders({ [ROUTE_ID_HEADER]: `${ascii}x` }).routeId, undefined)
  const wide = '中'.repeat(85) // 255 bytes
  assert.equal(readRouteHeaders(routeHeaders({ routeId: wide })).routeId, wide)
  assert.equal(readRouteHeaders({ [ROUTE_ID_HEADER]: encodeURIComponent(`${wide}中`) }).routeId, undefined)
  assert.equal(readRouteHeaders({ [ROUTE_ID_HEADER]: 'x'.repeat(100_000) }).routeId, undefined)
  assert.deepEqual(routeHeaders({ routeId: `${wide}中` }), { [HOPS_HEADER]: '0' })
})

test('malformed route ids read as absent', () => {
  for (const bad of ['', '   ', 'a b', 'é', '%', '%ZZ', '%E0%A4%A', 'a\tb', '\x7F']) {
    assert.equal(readRouteHeaders({ [ROUTE_ID_HEADER]: bad }).routeId, undefined, JSON.stringify(bad))
  }
  // Surrounding optional whitespace is not part of the value.
  assert.equal(readRouteHeaders({ [ROUTE_ID_HEADER]: ' \tu1 ' }).routeId, 'u1')
})

test('a repeated header with different values is ambiguous and reads as absent', () => {
  assert.equal(readRouteHeaders({ [ROUTE_ID_HEADER]: ['a', 'b'] }).routeId, undefined)
  assert.equal(readRouteHeaders({ [ROUTE_ID_HEADER]: ['a', 'a'] }).routeId, 'a')
  assert.equal(readRouteHeaders([ROUTE_ID_HEADER, 'a', ROUTE_ID_HEADER, 'b']).routeId, undefined)
  const joined = new Headers()
  joined.append(ROUTE_ID_HEADER, 'a')
  joined.append(ROUTE_ID_HEADER, 'b')
  joined.append(HOPS_HEADER, '1')
  joined.append(HOPS_HEADER, '1')
  assert.deepEqual(readRouteHeaders(joined), { hops: 0 })
})

test('bad hop counts read as 0 and bad rule versions as absent', () => {
  for (const bad of ['-1', '256', '1.5', '01', '+1', '1e2', '0x10', 'abc', '', '1 1', '٣']) {
    assert.equal(readRouteHeaders({ [HOPS_HEADER]: bad }).hops, 0, bad)
  }
  assert.equal(readRouteHeaders({ [HOPS_HEADER]: '255' }).hops, 255)
  assert.equal(readRouteHeaders({ [HOPS_HEADER]: ' 2 ' }).hops, 2)
  for (const bad of ['-1', '1.0', '+1', '007', '9007199254740992', '1e3', '', 'v1']) {
    assert.equal(readRouteHeaders({ [RULE_VERSION_HEADER]: bad }).ruleVersion, undefined, bad)
  }
  assert.equal(readRouteHeaders({ [RULE_VERSION_HEADER]: '9007199254740991' }).ruleVersion, 2 ** 53 - 1)
  assert.equal(readRouteHeaders({ [RULE_VERSION_HEADER]: '0' }).ruleVersion, 0)
})

test('isRouteHeader matches every x-appactive-* name in any case, and nothing else', () => {
  for (const name of ['x-appactive-route-id', 'X-AppActive-Unit', 'X-APPACTIVE-HOPS', 'x-appactive-future']) {
    assert.equal(isRouteHeader(name), true, name)
  }
  for (const name of [
    'x-appactive-',
    'x-appactive',
    'x-appactivex-unit',
    'appactive-route-id',
    'baggage',
    '',
  ]) {
    assert.equal(isRouteHeader(name), false, name)
  }
})

test('stripRouteHeaders removes every client copy, in any case, and the baggage members, in place', () => {
  const headers: Record<string, unknown> = {
    host: 'shop.example',
    'X-AppActive-Route-Id': 'spoof',
    'x-appactive-unit': 'center',
    'X-APPACTIVE-HOPS': '9',
    'x-appactive-rule-version': ['1', '2'],
    'x-appactive-anything': 'x',
    'x-appactivex': 'kept',
    baggage: 'a=1, appactive.route-id=7;p, AppActive.Unit=hz,b=2;q=r',
  }
  assert.equal(stripRouteHeaders(headers), 7)
  assert.deepEqual(headers, { host: 'shop.example', 'x-appactivex': 'kept', baggage: 'a=1,b=2;q=r' })
  assert.equal(stripRouteHeaders(headers), 0)
  const onlyOurs: Record<string, unknown> = { baggage: ['appactive.route-id=1'] }
  assert.equal(stripRouteHeaders(onlyOurs), 1)
  assert.deepEqual(onlyOurs, {})
})

test('stripRouteHeaders also cleans an undici flat array, including Buffer entries', () => {
  const flat: (string | Uint8Array)[] = [
    'Host',
    'a',
    'X-AppActive-Route-Id',
    'spoof',
    Buffer.from('x-appactive-hops'),
    Buffer.from('3'),
    'Baggage',
    'k=v,appactive.route-id=9',
    'accept',
    '*/*',
  ]
  assert.equal(stripRouteHeaders(flat), 3)
  assert.deepEqual(flat, ['Host', 'a', 'Baggage', 'k=v', 'accept', '*/*'])
  assert.deepEqual(readRouteHeaders(flat), { hops: 0 })
})
