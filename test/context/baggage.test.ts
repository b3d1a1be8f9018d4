import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  type BaggageEntry,
  getBaggageRouteId,
  MAX_BAGGAGE_BYTES,
  MAX_BAGGAGE_MEMBERS,
  parseBaggage,
  ROUTE_ID_BAGGAGE_KEY,
  serializeBaggage,
  withBaggageRouteId,
} from '../../src/context/index.js'

test('parses the W3C specification examples', () => {
  assert.deepEqual(parseBaggage('key1=value1,key2=value2'), [
    { key: 'key1', value: 'value1' },
    { key: 'key2', value: 'value2' },
  ])
  assert.deepEqual(parseBaggage('key1 = value1, key2 = value2'), [
    { key: 'key1', value: 'value1' },
    { key: 'key2', value: 'value2' },
  ])
  assert.deepEqual(parseBaggage('userId=alice,serverNode=DF%2028,isProduction=false'), [
    { key: 'userId', value: 'alice' },
    { key: 'serverNode', value: 'DF 28' },
    { key: 'isProduction', value: 'false' },
  ])
  assert.deepEqual(
    parseBaggage('key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue'),
    [
      { key: 'key1', value: 'value1', metadata: 'property1;property2' },
      { key: 'key2', value: 'value2' },
      { key: 'key3', value: 'value3', metadata: 'propertyKey=propertyValue' },
    ],
  )
})

test('tabs and spaces around members, keys, values and properties are optional whitespace', () => {
  assert.deepEqual(parseBaggage(' \tk \t= \tv \t; p = 1 ;q\t, \tk2=\t'), [
    { key: 'k', value: 'v', metadata: 'p = 1 ;q' },
    { key: 'k2', value: '' },
  ])
})

test('values are percent-decoded as UTF-8, and a value may contain "="', () => {
  assert.deepEqual(parseBaggage('name=%E5%BC%A0%E4%B8%89,pct=100%25,eq=a=b'), [
    { key: 'name', value: '张三' },
    { key: 'pct', value: '100%' },
    { key: 'eq', value: 'a=b' },
  ])
})

test('several header values are joined with ","', () => {
  assert.deepEqual(parseBaggage(['a=1', 'b=2,c=3']), [
    { key: 'a', value: '1' },
    { key: 'b', value: '2' },
    { key: 'c', value: '3' },
  ])
  assert.deepEqual(parseBaggage(undefined), [])
  assert.deepEqual(parseBaggage([]), [])
})

test('malformed members are skipped, never thrown, and their neighbours survive', () => {
  const malformed = [
    'novalue',
    '=v',
    'k e=v',
    'k=a b',
    'k="q"',
    'k=a\\b',
    'k=%ZZ',
    'k=%E0%A4%A',
    'k=%C3',
    'k=é',
    'k=v;',
    'k=v;;p',
    'k=v;bad prop',
    'k=v;p="x"',
    'k(=v',
    '',
  ]
  for (const member of malformed) {
    assert.deepEqual(
      parseBaggage(`a=1,${member},z=2`),
      [
        { key: 'a', value: '1' },
        { key: 'z', value: '2' },
      ],
      JSON.stringify(member),
    )
  }
  assert.deepEqual(parseBaggage(',,, ,'), [])
})

test(`keeps at most ${MAX_BAGGAGE_MEMBERS} members when parsing, the first ones`, () => {
  const header = Array.from({ length: 200 }, (_, i) => `k${i}=${i}`).join(',')
  const entries = parseBaggage(header)
  assert.equal(entries.length, MAX_BAGGAGE_MEMBERS)
  assert.equal(entries.at(-1)!.key, `k${MAX_BAGGAGE_MEMBERS - 1}`)
})

test(`keeps at most ${MAX_BAGGAGE_BYTES} bytes when parsing, skipping a member that does not fit`, () => {
  const big = (i: number) => `k${i}=${'v'.repeat(1000)}`
  const header = [...Array.from({ length: 9 }, (_, i) => big(i)), 'small=1'].join(',')
  const entries = parseBaggage(header)
  // 8 members of 1003 bytes plus commas fit (8031 bytes); the 9th does not, the small one after it does.
  assert.deepEqual(
    entries.map((e) => e.key),
    ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'small'],
  )
  assert.ok(serializeBaggage(entries).length <= MAX_BAGGAGE_BYTES)
})

test('serializeBaggage percent-encodes values and writes metadata after ";"', () => {
  assert.equal(
    serializeBaggage([
      { key: 'a', value: 'x y,z;%' },
      { key: 'b', value: '张', metadata: 'p;q=1' },
      { key: 'c', value: '' },
    ]),
    'a=x%20y%2Cz%3B%25,b=%E5%BC%A0;p;q=1,c=',
  )
})

test('serializeBaggage skips entries it cannot write, never throwing', () => {
  const bad = [
    { key: 'bad key', value: 'v' },
    { key: '', value: 'v' },
    { key: 'k', value: 'lone \uD800' },
    { key: 'k', value: 'v', metadata: 'has "quotes"' },
    { key: 'k', value: 7 },
    null,
  ] as unknown as BaggageEntry[]
  assert.equal(serializeBaggage([...bad, { key: 'ok', value: '1' }]), 'ok=1')
})

test('parse(serialize(entries)) gives the entries back', () => {
  const entries: BaggageEntry[] = [
    { key: 'tenant', value: 'acme, inc; "east"' },
    { key: ROUTE_ID_BAGGAGE_KEY, value: '用户-1' },
    { key: 'flag', value: '', metadata: 'ttl=30;internal' },
  ]
  assert.deepEqual(parseBaggage(serializeBaggage(entries)), entries)
})

test('serializeBaggage drops other members before the route-id member when over the limits', () => {
  const many: BaggageEntry[] = Array.from({ length: 200 }, (_, i) => ({ key: `k${i}`, value: `${i}` }))
  const byCount = parseBaggage(serializeBaggage([...many, { key: ROUTE_ID_BAGGAGE_KEY, value: 'u1' }]))
  assert.equal(byCount.length, MAX_BAGGAGE_MEMBERS)
  assert.deepEqual(byCount.at(-1), { key: ROUTE_ID_BAGGAGE_KEY, value: 'u1' })
  assert.equal(byCount.at(-2)!.key, `k${MAX_BAGGAGE_MEMBERS - 2}`)

  const huge: BaggageEntry[] = Array.from({ length: 3 }, (_, i) => ({
    key: `h${i}`,
    value: 'v'.repeat(4000),
  }))
  const bySize = serializeBaggage([...huge, { key: ROUTE_ID_BAGGAGE_KEY, value: 'u1' }])
  assert.ok(bySize.length <= MAX_BAGGAGE_BYTES)
  assert.deepEqual(
    parseBaggage(bySize).map((e) => e.key),
    ['h0', 'h1', ROUTE_ID_BAGGAGE_KEY],
  )
})

test('getBaggageRouteId reads the member and rejects missing, ambiguous, oversized or bad values', () => {
  assert.equal(getBaggageRouteId('a=1, appactive.route-id = u%201 ;p'), 'u 1')
  assert.equal(getBaggageRouteId(['a=1', 'appactive.route-id=7']), '7')
  assert.equal(getBaggageRouteId('appactive.route-id=7,appactive.route-id=7'), '7')
  assert.equal(getBaggageRouteId('appactive.route-id=7,appactive.route-id=8'), undefined)
  assert.equal(getBaggageRouteId('appactive.route-id='), undefined)
  assert.equal(getBaggageRouteId('appactive.route-id=%FF'), undefined)
  assert.equal(getBaggageRouteId(`appactive.route-id=${'x'.repeat(257)}`), undefined)
  assert.equal(getBaggageRouteId('AppActive.Route-Id=7'), undefined)
  assert.equal(getBaggageRouteId(undefined), undefined)
})

test('withBaggageRouteId replaces only our member, in place, keeping the others verbatim', () => {
  const header =
    'key1=value1;property1;property2, appactive.route-id=old;p, key3=value3; propertyKey=propertyValue'
  assert.equal(
    withBaggageRouteId(header, 'new id'),
    'key1=value1;property1;property2,appactive.route-id=new%20id,key3=value3; propertyKey=propertyValue',
  )
  assert.equal(withBaggageRouteId('a=1', 'u1'), 'a=1,appactive.route-id=u1')
  assert.equal(withBaggageRouteId(undefined, '张三'), 'appactive.route-id=%E5%BC%A0%E4%B8%89')
  assert.equal(
    withBaggageRouteId('appactive.route-id=1,a=2,appactive.route-id=3', 'x'),
    'appactive.route-id=x,a=2',
  )
})

test('withBaggageRouteId removes our member when the id cannot travel', () => {
  assert.equal(withBaggageRouteId('a=1,appactive.route-id=old', ''), 'a=1')
  assert.equal(withBaggageRouteId('a=1,appactive.route-id=old', 'x'.repeat(257)), 'a=1')
  assert.equal(withBaggageRouteId('appactive.route-id=old', 'a\uDC00'), '')
})

test('withBaggageRouteId keeps our member when a full baggage header leaves no room', () => {
  // 8 members of 1023 bytes plus 7 commas: 8191 bytes, one short of the limit.
  const full = Array.from({ length: 8 }, (_, i) => `k${i}=${'v'.repeat(1020)}`).join(',')
  assert.equal(parseBaggage(full).length, 8)
  const merged = withBaggageRouteId(full, 'u1')
  assert.ok(merged.length <= MAX_BAGGAGE_BYTES)
  assert.equal(getBaggageRouteId(merged), 'u1')
  // The last other member made room.
  assert.deepEqual(
    parseBaggage(merged).map((e) => e.key),
    ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', ROUTE_ID_BAGGAGE_KEY],
  )
})
