/**
 * Property tests: the compiled router against a naive reference evaluator, and the diff planner against
 * ownership computed key by key. Both dense (key space < 10^6) and sparse paths are generated.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  applyDiff,
  compileRouter,
  diffRuleSets,
  type Fallback,
  MAX_KEY,
  type RouteDecision,
  type RuleSet,
  type Transform,
  validateRuleSet,
} from '../../src/rules/index.js'
import { referenceFnv1a32 } from '../helpers/rules.js'

// ---------------------------------------------------------------------------------------------------------
// The naive reference: BigInt arithmetic on the string, linear scans, explicit fallback.

interface Options {
  localUnit?: string
  fallback?: Fallback
}

const NUMERIC = /^[+-]?[0-9]+$/

function rangeOf(text: string): { lo: number; hi: number } {
  const [lo, hi] = text.split('~').map(Number)
  return { lo: lo!, hi: hi! }
}

function naiveKey(rs: RuleSet, id: string): { key: number | null; numeric: boolean; inSpace: boolean } {
  const steps = rs.transform.filter((s) => s.type !== 'identity')
  const first = steps[0]
  let value: bigint
  if (first === undefined) {
    if (!NUMERIC.test(id)) return { key: null, numeric: false, inSpace: false }
    const v = BigInt(id)
    const abs = v < 0n ? -v : v
    const key = abs <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) + 0 : null
    return { key, numeric: true, inSpace: v >= 0n && v <= BigInt(MAX_KEY) }
  }
  if (first.type === 'hash') value = BigInt(referenceFnv1a32(id))
  else if (!NUMERIC.test(id)) return { key: null, numeric: false, inSpace: false }
  else value = BigInt(id)
  for (const s of steps) {
    if (s.type !== 'mod') continue
    const m = BigInt(s.divisor)
    value = ((value % m) + m) % m
  }
  return { key: Number(value), numeric: true, inSpace: true }
}

function naiveRoute(rs: RuleSet, id: string | null | undefined, opts: Options): RouteDecision {
  const fb = opts.fallback ?? rs.fallback ?? 'reject'
  const fallbackUnit = fb === 'reject' ? null : fb === 'local' ? (opts.localUnit ?? null) : fb.unit
  if (id === undefined || id === null || id === '')
    return { unit: fallbackUnit, key: null, fenced: false, reason: 'missing' }
  const fencedLabel = (rs.fence?.labels ?? []).includes(id)
  for (const entry of rs.mapping) {
    if ((entry.labels ?? []).includes(id))
      return { unit: entry.unit, key: null, fenced: fencedLabel, reason: 'label' }
  }
  const { key, numeric, inSpace } = naiveKey(rs, id)
  if (!numeric) return { unit: fallbackUnit, key: null, fenced: fencedLabel, reason: 'not_numeric' }
  if (!inSpace || key === null) return { unit: fallbackUnit, key, fenced: fencedLabel, reason: 'uncovered' }
  const fenced =
    fencedLabel || (rs.fence?.ranges ?? []).some((t) => rangeOf(t).lo <= key && key <= rangeOf(t).hi)
  for (const entry of rs.mapping) {
    for (const t of entry.ranges ?? []) {
      const r = rangeOf(t)
      if (r.lo <= key && key <= r.hi) return { unit: entry.unit, key, fenced, reason: 'range' }
    }
  }
  return { unit: fallbackUnit, key, fenced, reason: 'uncovered' }
}

// ---------------------------------------------------------------------------------------------------------
// Generators.

const LABEL_POOL = ['vip', 'crawler', '12345', '007', '-5', 'alice@example.com', '0', 'ünï', '😀', 'tenant-a']

interface Segment {
  lo: number
  hi: number
  unit: string | null
}

interface Case {
  rs: RuleSet
  segments: Segment[]
  opts: Options
  divisor: number
}

const divisorArb = fc.oneof(
  fc.constantFrom(100, 1000, 10_000, 999_999, 1_000_000, 1_000_001, 10_000_000),
  fc.integer({ min: 100, max: 10_000_000 }),
)

const transformArb = fc.tuple(
  fc.oneof(
    { weight: 4, arbitrary: fc.constant('mod' as const) },
    { weight: 1, arbitrary: fc.constant('hash' as const) },
    { weight: 1, arbitrary: fc.constant('identity' as const) },
  ),
  divisorArb,
)

function transformOf(kind: 'mod' | 'hash' | 'identity', divisor: number): Transform[] {
  if (kind === 'mod') return [{ type: 'mod', divisor }]
  if (kind === 'hash') return [{ type: 'hash' }, { type: 'mod', divisor }]
  return []
}

/** Segments covering [0, maxKey]: cut points, then an owner (or none) per segment. */
function segmentsArb(units: readonly string[], maxKey: number, cutMax: number, full: boolean) {
  return fc
    .tuple(
      fc.uniqueArray(fc.integer({ min: 1, max: cutMax }), { maxLength: 10 }),
      fc.array(fc.integer({ min: -1, max: units.length - 1 }), { minLength: 11, maxLength: 11 }),
    )
    .map(([cuts, owners]): Segment[] => {
      const points = [0, ...cuts.sort((a, b) => a - b), maxKey + 1]
      const out: Segment[] = []
      for (let i = 0; i + 1 < points.length; i++) {
        const o = owners[i]!
        const unit = o >= 0 ? units[o]! : full ? units[i % units.length]! : null
        out.push({ lo: points[i]!, hi: points[i + 1]! - 1, unit })
      }
      return out
    })
}

function mappingOf(
  units: readonly string[],
  segments: readonly Segment[],
  labels: ReadonlyMap<string, string>,
) {
  return units.map((unit) => {
    const ranges = segments.filter((s) => s.unit === unit).map((s) => `${s.lo}~${s.hi}`)
    const ls = [...labels].filter(([, u]) => u === unit).map(([l]) => l)
    return { unit, ranges: ranges.reverse(), ...(ls.length > 0 ? { labels: ls } : {}) }
  })
}

const fallbackArb = (units: readonly string[]) =>
  fc.oneof(
    fc.constant(undefined),
    fc.constantFrom<Fallback>('local', 'reject'),
    fc.constantFrom(...units).map((unit): Fallback => ({ unit })),
  )

const caseArb: fc.Arbitrary<Case> = fc
  .tuple(fc.integer({ min: 1, max: 6 }), transformArb)
  .chain(([n, [kind, divisor]]) => {
    const units = Array.from({ length: n }, (_, i) => `u${i}`)
    const transform = transformOf(kind, divisor)
    const maxKey = kind === 'identity' ? MAX_KEY : divisor - 1
    const cutMax = kind === 'identity' ? 100_000_000 : maxKey
    return fallbackArb(units).chain((fallback) => {
      const rejects = fallback === undefined || fallback === 'reject'
      return fc
        .record({
          center: fc.nat({ max: n - 1 }),
          segments: segmentsArb(units, maxKey, cutMax, fallback === undefined),
          labelOwners: fc.array(fc.integer({ min: -1, max: n - 1 }), {
            minLength: LABEL_POOL.length,
            maxLength: LABEL_POOL.length,
          }),
          fencedLabels: fc.array(fc.boolean(), {
            minLength: LABEL_POOL.length,
            maxLength: LABEL_POOL.length,
          }),
          fenceCuts: fc.array(
            fc.tuple(fc.integer({ min: 0, max: cutMax }), fc.nat({ max: Math.ceil(cutMax / 8) })),
            {
              maxLength: 3,
            },
          ),
          localUnit: fc.option(fc.constantFrom(...units), { nil: undefined }),
          override: fc.option(fallbackArb(units), { nil: undefined }),
        })
        .map(({ center, segments, labelOwners, fencedLabels, fenceCuts, localUnit, override }): Case => {
          const labels = new Map<string, string>()
          LABEL_POOL.forEach((l, i) => {
            if (labelOwners[i]! >= 0) labels.set(l, units[labelOwners[i]!]!)
          })
          // A fenced label no unit maps is left out: it is covered by router.test (it reroutes; see report).
          const fenceLabels = LABEL_POOL.filter((l, i) => fencedLabels[i] && labels.has(l))
          // Fence pieces; with a rejecting fallback, clipped to owned segments (validation requires it).
          const fenceRanges: string[] = []
          for (const [lo, len] of fenceCuts) {
            const hi = Math.min(maxKey, lo + len)
            if (!rejects) fenceRanges.push(`${lo}~${hi}`)
            else
              for (const s of segments) {
                if (s.unit === null || s.hi < lo || s.lo > hi) continue
                fenceRanges.push(`${Math.max(lo, s.lo)}~${Math.min(hi, s.hi)}`)
              }
          }
          const rs: RuleSet = {
            version: 1,
            units: units.map((name, i) => (i === center ? { name, center: true } : { name })),
            idSource: [{ from: 'query', name: 'r_id' }],
            transform,
            mapping: mappingOf(units, segments, labels),
            ...(fenceRanges.length > 0 || fenceLabels.length > 0
              ? { fence: { ranges: fenceRanges, labels: fenceLabels } }
              : {}),
            ...(fallback === undefined ? {} : { fallback }),
          }
          const opts: Options = {
            ...(localUnit === undefined ? {} : { localUnit }),
            ...(override === undefined ? {} : { fallback: override }),
          }
          return { rs, segments, opts, divisor }
        })
    })
  })

/** Ids that hit the interesting keys of a case: boundaries +-1 in several spellings, plus noise. */
function idsArb(c: Case): fc.Arbitrary<Array<string | null | undefined>> {
  const identity = c.rs.transform.length === 0
  const points = new Set<number>()
  for (const s of c.segments)
    for (const k of [s.lo - 1, s.lo, s.lo + 1, s.hi - 1, s.hi, s.hi + 1]) points.add(k)
  for (const t of c.rs.fence?.ranges ?? []) {
    const r = rangeOf(t)
    for (const k of [r.lo - 1, r.lo, r.hi, r.hi + 1]) points.add(k)
  }
  const keys = [...points].filter((k) => k >= -1 && k <= (identity ? 100_000_001 : c.divisor))
  const d = BigInt(c.divisor)
  const spelled = fc
    .tuple(fc.constantFrom(...keys), fc.nat({ max: 5 }), fc.bigInt({ min: 0n, max: 10n ** 25n }))
    .map(([k, style, big]) => {
      const key = BigInt(k)
      switch (style) {
        case 0:
          return String(k)
        case 1:
          return `+00${k}`
        case 2:
          return identity ? String(key) : String(key + d * big)
        case 3:
          return identity ? `-${k}` : `-${d - key}` // floor modulus brings it back to k
        case 4:
          return identity ? `0${k}` : `-${d * big + d - key}`
        default:
          return identity ? String(key + big) : String(key + d * (big % 1000n))
      }
    })
  const randomNumeric = fc
    .tuple(fc.constantFrom('', '+', '-'), fc.stringMatching(/^[0-9]{1,40}$/))
    .map(([s, digits]) => s + digits)
  const labelish = fc.constantFrom(...LABEL_POOL, 'VIP', ' vip', 'crawler ', '12345 ', '+12345', '0012345')
  const junk = fc.oneof(
    fc.string({ maxLength: 8 }),
    fc.constantFrom('12.5', '0x10', '1e3', '-', '+', '--5', '٤٢'),
  )
  const missing = fc.constantFrom(undefined, null, '')
  return fc.array(
    fc.oneof(
      { weight: 6, arbitrary: spelled },
      { weight: 3, arbitrary: randomNumeric },
      { weight: 2, arbitrary: labelish },
      { weight: 2, arbitrary: junk },
      { weight: 1, arbitrary: missing },
    ),
    { minLength: 20, maxLength: 60 },
  )
}

// ---------------------------------------------------------------------------------------------------------

describe('property: router agrees with the naive reference evaluator', () => {
  it('generates only valid rule sets (sanity of the generator)', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const v = validateRuleSet(c.rs)
        assert.ok(v.ok, JSON.stringify(v.ok ? [] : v.issues))
      }),
      { numRuns: 200 },
    )
  })

  it('route(), lookup() and unitOf() give the reference answer for every id', () => {
    let dense = 0
    let sparse = 0
    fc.assert(
      fc.property(
        caseArb.chain((c) => fc.tuple(fc.constant(c), idsArb(c))),
        ([c, ids]) => {
          const router = compileRouter(c.rs, c.opts)
          if (router.maxKey < 1_000_000) dense++
          else sparse++
          for (const id of ids) {
            const expected = naiveRoute(c.rs, id, c.opts)
            const got = router.route(id)
            assert.deepEqual(
              { ...got, key: got.key === null ? null : got.key + 0 },
              expected,
              `id ${JSON.stringify(id)}`,
            )
            const code = router.lookup(id)
            assert.equal(router.unitAt(code), expected.unit)
            assert.equal(router.fencedAt(code), expected.fenced)
            assert.equal(router.reasonAt(code), expected.reason)
          }
        },
      ),
      { numRuns: 300 },
    )
    assert.ok(dense > 20 && sparse > 20, `both paths must run (dense ${dense}, sparse ${sparse})`)
  })
})

// ---------------------------------------------------------------------------------------------------------
// Diff: pairs of rule sets over the same units, transform and fallback.

interface Pair {
  from: RuleSet
  to: RuleSet
  maxKey: number
}

const pairArb: fc.Arbitrary<Pair> = fc
  .tuple(fc.integer({ min: 1, max: 6 }), transformArb)
  .chain(([n, [kind, divisor]]) => {
    const units = Array.from({ length: n }, (_, i) => `u${i}`)
    const transform = transformOf(kind, divisor)
    const maxKey = kind === 'identity' ? MAX_KEY : divisor - 1
    const cutMax = kind === 'identity' ? 100_000_000 : maxKey
    const labelsArb = fc
      .array(fc.integer({ min: -1, max: n - 1 }), {
        minLength: LABEL_POOL.length,
        maxLength: LABEL_POOL.length,
      })
      .map((owners) => {
        const m = new Map<string, string>()
        LABEL_POOL.forEach((l, i) => {
          if (owners[i]! >= 0) m.set(l, units[owners[i]!]!)
        })
        return m
      })
    return fc
      .record({
        fallback: fallbackArb(units),
        center: fc.nat({ max: n - 1 }),
        seed: fc.boolean(),
      })
      .chain(({ fallback, center, seed }) => {
        const full = fallback === undefined
        const side = fc.tuple(segmentsArb(units, maxKey, cutMax, full), labelsArb)
        // Half the time `to` is `from` with a few segments reassigned (a realistic cut), else independent.
        return fc
          .tuple(side, side, fc.array(fc.nat({ max: n - 1 }), { minLength: 11, maxLength: 11 }))
          .map(([[fs, fl], [ts, tl], reassign]): Pair => {
            const toSegments = seed
              ? fs.map((s, i) => (i % 3 === 0 ? { ...s, unit: units[reassign[i]!]! } : s))
              : ts
            const make = (version: number, segments: Segment[], labels: Map<string, string>): RuleSet => ({
              version,
              units: units.map((name, i) => (i === center ? { name, center: true } : { name })),
              idSource: [{ from: 'query', name: 'r_id' }],
              transform,
              mapping: mappingOf(units, segments, labels),
              ...(fallback === undefined ? {} : { fallback }),
            })
            return { from: make(1, fs, fl), to: make(2, toSegments, seed ? fl : tl), maxKey }
          })
      })
  })

function probeKeys(p: Pair, extra: readonly number[]): number[] {
  const keys = new Set<number>(extra)
  for (const rs of [p.from, p.to])
    for (const e of rs.mapping)
      for (const t of e.ranges ?? []) {
        const r = rangeOf(t)
        for (const k of [r.lo - 1, r.lo, r.lo + 1, r.hi - 1, r.hi, r.hi + 1]) keys.add(k)
      }
  return [...keys].filter((k) => k >= 0 && k <= p.maxKey)
}

function labelOwner(rs: RuleSet, label: string): string | null {
  for (const e of rs.mapping) if ((e.labels ?? []).includes(label)) return e.unit
  return null
}

const sampleArb = fc.array(fc.nat({ max: 100_000_000 }), { minLength: 50, maxLength: 50 })

describe('property: diff then apply', () => {
  it('applyDiff(from, diffRuleSets(from, to)) owns every key and label like to', () => {
    fc.assert(
      fc.property(pairArb, sampleArb, (p, sample) => {
        const applied = applyDiff(p.from, diffRuleSets(p.from, p.to))
        const a = compileRouter(applied)
        const t = compileRouter(p.to)
        for (const k of probeKeys(
          p,
          sample.map((s) => s % (Math.min(p.maxKey, 100_000_000) + 1)),
        ))
          assert.equal(a.ownerOfKey(k), t.ownerOfKey(k), `key ${k}`)
        for (const label of LABEL_POOL) {
          assert.equal(labelOwner(applied, label), labelOwner(p.to, label), `label ${label}`)
          assert.deepEqual(a.route(label), t.route(label), `route(${label})`)
        }
      }),
      { numRuns: 250 },
    )
  })

  it('the fence covers exactly the keys and labels whose owner differs', () => {
    fc.assert(
      fc.property(pairArb, sampleArb, (p, sample) => {
        const d = diffRuleSets(p.from, p.to)
        const f = compileRouter(p.from)
        const t = compileRouter(p.to)
        const fence = d.fence.ranges.map(rangeOf)
        for (const k of probeKeys(
          p,
          sample.map((s) => s % (Math.min(p.maxKey, 100_000_000) + 1)),
        )) {
          const inFence = fence.some((r) => r.lo <= k && k <= r.hi)
          assert.equal(inFence, f.ownerOfKey(k) !== t.ownerOfKey(k), `key ${k}`)
        }
        for (const m of d.moved) {
          for (const k of [m.lo, m.hi]) {
            assert.equal(f.ownerOfKey(k), m.from)
            assert.equal(t.ownerOfKey(k), m.to)
          }
        }
        const changed = LABEL_POOL.filter((l) => labelOwner(p.from, l) !== labelOwner(p.to, l)).sort()
        assert.deepEqual([...d.fence.labels].sort(), changed)
        assert.deepEqual(
          d.labels.map((l) => [l.label, l.from, l.to]),
          [...d.labels].map((l) => [l.label, labelOwner(p.from, l.label), labelOwner(p.to, l.label)]),
        )
      }),
      { numRuns: 250 },
    )
  })

  it('moved ranges are sorted, disjoint, merged, and count movedKeys', () => {
    fc.assert(
      fc.property(pairArb, (p) => {
        const d = diffRuleSets(p.from, p.to)
        let total = 0
        d.moved.forEach((m, i) => {
          assert.ok(m.lo <= m.hi)
          assert.notEqual(m.from, m.to)
          total += m.hi - m.lo + 1
          const next = d.moved[i + 1]
          if (next === undefined) return
          assert.ok(m.hi < next.lo, 'sorted and disjoint')
          assert.ok(
            !(m.hi + 1 === next.lo && m.from === next.from && m.to === next.to),
            `adjacent moves ${m.lo}~${m.hi} and ${next.lo}~${next.hi} share from/to`,
          )
        })
        assert.equal(d.movedKeys, total)
        const fence = d.fence.ranges.map(rangeOf)
        fence.forEach((r, i) => {
          const next = fence[i + 1]
          if (next) assert.ok(r.hi + 1 < next.lo, 'fence ranges are merged')
        })
      }),
      { numRuns: 250 },
    )
  })
})
