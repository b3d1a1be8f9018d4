// The dual-write check demo:load prints (demo/lib/dual-write.ts): it must pass a clean cut-over history
// and catch each way a history can break the invariant of DESIGN §4.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compileRouter, type Router } from 'appactive/rules'
import { dualWriteViolations, type OrderRow } from '../../demo/lib/dual-write.js'

function rules(version: number, unitRanges: string[], centerRanges: string[], fence: string[] = []): Router {
  return compileRouter({
    version,
    units: [{ name: 'center', center: true }, { name: 'unit' }],
    idSource: [{ from: 'query', name: 'r_id' }],
    transform: [{ type: 'mod', divisor: 10000 }],
    mapping: [
      { unit: 'unit', ranges: unitRanges },
      { unit: 'center', ranges: centerRanges },
    ],
    fence: { ranges: fence, labels: [] },
  })
}

// A cut-over of 2000~2999 from center to unit: fence (v2), switch (v3), unfence (v4).
const routers = new Map([
  [1, rules(1, ['0~1999'], ['2000~9999'])],
  [2, rules(2, ['0~1999'], ['2000~9999'], ['2000~2999'])],
  [3, rules(3, ['0~2999'], ['3000~9999'], ['2000~2999'])],
  [4, rules(4, ['0~2999'], ['3000~9999'])],
])
let nextId = 1
const row = (r_id: string, unit: string, rule_version: number): OrderRow => ({
  id: nextId++,
  r_id,
  unit,
  node: `orders-${unit}`,
  rule_version,
})

test('a clean cut-over history has no violation', () => {
  const rows = [
    row('2000', 'center', 1),
    row('1000', 'unit', 1),
    row('2000', 'unit', 4),
    row('5000', 'center', 4),
  ]
  assert.deepEqual(dualWriteViolations(rows, routers, [{ id: rows[2]!.id, rId: '2000', unit: 'unit' }]), [])
})

test('a write by a unit that does not own the user under its version is caught', () => {
  const v = dualWriteViolations([row('2000', 'center', 4)], routers)
  assert.equal(v.length, 1)
  assert.match(v[0]!, /written by orders-center in center, but v4 gives it to unit/)
})

test('a write while fenced is caught', () => {
  const v = dualWriteViolations([row('2500', 'unit', 3)], routers)
  assert.deepEqual(v.length, 1)
  assert.match(v[0]!, /while fenced \(v3\)/)
})

test('two units writing one user in overlapping time is caught, even when each looked right to itself', () => {
  // center, still on v1, accepts 2000 after unit already wrote it under v4: each row alone is "owned".
  const rows = [row('2000', 'unit', 4), row('2000', 'center', 1)]
  const v = dualWriteViolations(rows, routers)
  assert.equal(v.length, 1)
  assert.match(v[0]!, /r_id 2000: center wrote order \d+ under v1 after unit wrote under v4/)
})

test('a version never published and a confirmed order missing from the database are caught', () => {
  const v = dualWriteViolations([row('1000', 'unit', 9)], routers, [{ id: 999, rId: '1000', unit: 'unit' }])
  assert.equal(v.length, 2)
  assert.match(v[0]!, /v9, which was never published/)
  assert.match(v[1]!, /order 999 of r_id 1000 was confirmed by unit unit but is not in the database/)
})
