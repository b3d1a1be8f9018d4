import assert from 'node:assert/strict'
import { Buffer } from 'node:buffer'
import { test } from 'node:test'
import fc from 'fast-check'
import {
  type BaggageEntry,
  extractRoute,
  getBaggageRouteId,
  injectRoute,
  MAX_ROUTE_ID_BYTES,
  parseBaggage,
  readRouteHeaders,
  routeHeaders,
  serializeBaggage,
  withBaggageRouteId,
} from '../../src/context/index.js'

// Any code point, plus UTF-16 units alone, so ill-formed strings (lone surrogates) come up too.
const anyId = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 300 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
)

function travels(id: string): boolean {
  let wellFormed = true
  try {
    encodeURIComponent(id)
  } catch {
    wellFormed = false
  }
  return wellFormed && id !== '' && Buffer.byteLength(id, 'utf8') <= MAX_ROUTE_ID_BYTES
}

test('property: any id that can travel round-trips through the headers; any other reads as absent', () => {
  fc.assert(
    fc.property(anyId, (id) => {
      const headers = routeHeaders({ routeId: id })
      assert.equal(readRouteHeaders(headers).routeId, travels(id) ? id : undefined)
      // Every written value is a legal header value: visible ASCII only.
      for (const value of Object.values(headers)) assert.match(value, /^[\x21-\x7E]+$/)
    }),
    { numRuns: 2000 },
  )
})

test('property: any id set in baggage is read back, and the other members stay as they were', () => {
  const others = fc.array(
    fc.record(
      {
        key: fc.stringMatching(/^[a-z][a-z0-9_.-]{0,15}$/).filter((k) => k !== 'appactive.route-id'),
        value: fc.string({ unit: 'binary', maxLength: 20 }),
      },
      { noNullPrototype: true },
    ),
    { maxLength: 5 },
  )
  fc.assert(
    fc.property(anyId, others, (id, entries) => {
      const header = withBaggageRouteId(serializeBaggage(entries), id)
      assert.equal(getBaggageRouteId(header), travels(id) ? id : undefined)
      assert.deepEqual(
        parseBaggage(header).filter((e) => e.key !== 'appactive.route-id'),
        entries,
      )
    }),
    { numRuns: 1000 },
  )
})

test('property: serialize then parse gives back any well-formed entries', () => {
  const entry: fc.Arbitrary<BaggageEntry> = fc.record(
    {
      key: fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}$/),
      value: fc.string({ unit: 'binary', maxLength: 30 }),
      metadata: fc.stringMatching(/^[a-z]{1,5}(=[a-z0-9]{0,5})?(;[a-z]{1,5})?$/),
    },
    { requiredKeys: ['key', 'value'], noNullPrototype: true },
  )
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 10 }), (entries) => {
      assert.deepEqual(parseBaggage(serializeBaggage(entries)), entries)
    }),
    { numRuns: 1000 },
  )
})

test('property: no input makes the readers throw', () => {
  const text = fc.string({ unit: 'binary-ascii', maxLength: 200 })
  fc.assert(
    fc.property(text, text, text, (a, b, c) => {
      parseBaggage([a, b])
      getBaggageRouteId(c)
      withBaggageRouteId(a, b)
      const route = extractRoute({ 'x-appactive-route-id': a, 'x-appactive-hops': b, baggage: c })
      assert.ok(route.hops >= 0 && route.hops <= 255)
      injectRoute({ routeId: a }, () => undefined, c)
    }),
    { numRuns: 2000 },
  )
})
