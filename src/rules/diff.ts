/**
 * The planner: what a change of mapping moves, and the fence that protects it (DESIGN §4 step 1).
 * `diffRuleSets(from, to)` returns the moved key ranges (merged to the fewest), the moved labels and the
 * fence; `applyDiff(from, diff)` reproduces `to`'s ownership exactly.
 */
import { RuleInvalidError } from '../errors/index.js'
import { formatRange, type KeyRange, parseRange } from './key.js'
import type { Fence, MappingEntry, RuleSet, Unit } from './schema.js'
import { assertRuleSet } from './validate.js'

/** Keys `lo..hi` change owner from `from` to `to` (null: no unit owns them on that side). */
export interface MovedRange extends KeyRange {
  readonly from: string | null
  readonly to: string | null
}

/** A label changes owner. */
export interface MovedLabel {
  readonly label: string
  readonly from: string | null
  readonly to: string | null
}

/** The result of `diffRuleSets`. */
export interface RuleDiff {
  readonly fromVersion: number
  readonly toVersion: number
  readonly moved: readonly MovedRange[]
  readonly labels: readonly MovedLabel[]
  /** Units `to` has and `from` has not. */
  readonly addedUnits: readonly Unit[]
  /** Units `from` has and `to` has not. */
  readonly removedUnits: readonly string[]
  /** Every unit of `to`, in its order, with its center flag. */
  readonly toUnits: readonly Unit[]
  /** Set when the center moves to another unit. */
  readonly center: { readonly from: string; readonly to: string } | undefined
  /** The fence for the cut-over window: every moved key and label, merged. */
  readonly fence: Required<Fence>
  /** Number of keys that change owner. */
  readonly movedKeys: number
}

/** An owned range. */
interface Owned extends KeyRange {
  readonly unit: string
}

/** Sorted, merged ownership of a rule set's mapping (ranges only). */
export function ownershipOf(ruleSet: RuleSet): Owned[] {
  const all: Owned[] = []
  for (const e of ruleSet.mapping) {
    for (const t of e.ranges ?? []) {
      const r = parseRange(t)
      if (typeof r !== 'string') all.push({ ...r, unit: e.unit })
    }
  }
  all.sort((a, b) => a.lo - b.lo)
  const out: Owned[] = []
  for (const r of all) {
    const last = out[out.length - 1]
    if (last !== undefined && last.unit === r.unit && last.hi + 1 === r.lo)
      out[out.length - 1] = { ...last, hi: r.hi }
    else out.push(r)
  }
  return out
}

function labelsOf(ruleSet: RuleSet): Map<string, string> {
  const m = new Map<string, string>()
  for (const e of ruleSet.mapping) for (const l of e.labels ?? []) m.set(l, e.unit)
  return m
}

function sameTransform(a: RuleSet, b: RuleSet): boolean {
  const norm = (rs: RuleSet) => JSON.stringify(rs.transform.filter((s) => s.type !== 'identity'))
  return norm(a) === norm(b)
}

/**
 * Computes what moves from `from` to `to`.
 * @throws RuleInvalidError when either rule set is invalid, or when the transforms differ (keys of two
 * different key spaces cannot be compared: every id may move).
 */
export function diffRuleSets(from: RuleSet, to: RuleSet): RuleDiff {
  assertRuleSet(from)
  assertRuleSet(to)
  if (!sameTransform(from, to)) {
    throw new RuleInvalidError(
      [
        {
          path: 'transform',
          message:
            'the transform differs between the two rule sets, so every id may move; change the transform only with a full migration',
        },
      ],
      'change',
    )
  }
  const a = ownershipOf(from)
  const b = ownershipOf(to)
  const cuts = new Set<number>()
  for (const r of [...a, ...b]) cuts.add(r.lo).add(r.hi + 1)
  const points = [...cuts].sort((x, y) => x - y)
  const moved: MovedRange[] = []
  let ai = 0
  let bi = 0
  let movedKeys = 0
  for (let i = 0; i + 1 < points.length; i++) {
    const lo = points[i]!
    const hi = points[i + 1]! - 1
    while (ai < a.length && a[ai]!.hi < lo) ai++
    while (bi < b.length && b[bi]!.hi < lo) bi++
    const ua = a[ai] !== undefined && a[ai]!.lo <= lo ? a[ai]!.unit : null
    const ub = b[bi] !== undefined && b[bi]!.lo <= lo ? b[bi]!.unit : null
    if (ua === ub) continue
    movedKeys += hi - lo + 1
    const last = moved[moved.length - 1]
    if (last !== undefined && last.from === ua && last.to === ub && last.hi + 1 === lo) {
      moved[moved.length - 1] = { ...last, hi }
    } else {
      moved.push({ lo, hi, from: ua, to: ub })
    }
  }

  const la = labelsOf(from)
  const lb = labelsOf(to)
  const labels: MovedLabel[] = []
  for (const label of new Set([...la.keys(), ...lb.keys()])) {
    const f = la.get(label) ?? null
    const t = lb.get(label) ?? null
    if (f !== t) labels.push({ label, from: f, to: t })
  }
  labels.sort((x, y) => (x.label < y.label ? -1 : x.label > y.label ? 1 : 0))

  const centerFrom = from.units.find((u) => u.center)!.name
  const centerTo = to.units.find((u) => u.center)!.name
  const fromUnits = new Set(from.units.map((u) => u.name))
  const toUnits = new Set(to.units.map((u) => u.name))
  return {
    fromVersion: from.version,
    toVersion: to.version,
    moved,
    labels,
    addedUnits: to.units.filter((u) => !fromUnits.has(u.name)),
    removedUnits: from.units.filter((u) => !toUnits.has(u.name)).map((u) => u.name),
    toUnits: to.units,
    center: centerFrom === centerTo ? undefined : { from: centerFrom, to: centerTo },
    fence: { ranges: mergeRanges(moved).map(formatRange), labels: labels.map((l) => l.label) },
    movedKeys,
  }
}

/** Merges adjacent or overlapping ranges, whatever their units. */
export function mergeRanges(ranges: readonly KeyRange[]): KeyRange[] {
  const sorted = [...ranges].sort((x, y) => x.lo - y.lo)
  const out: KeyRange[] = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && r.lo <= last.hi + 1)
      out[out.length - 1] = { lo: last.lo, hi: Math.max(last.hi, r.hi) }
    else out.push({ lo: r.lo, hi: r.hi })
  }
  return out
}

/**
 * Applies a diff to `from`: the result owns every key and label exactly as the diff's `to` did. The
 * mapping comes out normalized (one entry per unit, merged ranges); units are `to`'s; version, fence
 * and everything else are `from`'s.
 */
export function applyDiff(from: RuleSet, diff: RuleDiff): RuleSet {
  const units = [...diff.toUnits]
  // Ownership of `from`, with every moved range overwritten.
  const owned = ownershipOf(from)
  const cuts = new Set<number>()
  for (const r of [...owned, ...diff.moved]) cuts.add(r.lo).add(r.hi + 1)
  const points = [...cuts].sort((x, y) => x - y)
  const moves = [...diff.moved].sort((x, y) => x.lo - y.lo)
  const result: Owned[] = []
  let oi = 0
  let mi = 0
  for (let i = 0; i + 1 < points.length; i++) {
    const lo = points[i]!
    const hi = points[i + 1]! - 1
    while (oi < owned.length && owned[oi]!.hi < lo) oi++
    while (mi < moves.length && moves[mi]!.hi < lo) mi++
    const mv = moves[mi] !== undefined && moves[mi]!.lo <= lo ? moves[mi] : undefined
    const unit =
      mv !== undefined ? mv.to : owned[oi] !== undefined && owned[oi]!.lo <= lo ? owned[oi]!.unit : null
    if (unit === null) continue
    const last = result[result.length - 1]
    if (last !== undefined && last.unit === unit && last.hi + 1 === lo)
      result[result.length - 1] = { ...last, hi }
    else result.push({ lo, hi, unit })
  }
  const labels = labelsOf(from)
  for (const l of diff.labels) {
    if (l.to === null) labels.delete(l.label)
    else labels.set(l.label, l.to)
  }
  const mapping: MappingEntry[] = units
    .map((u): MappingEntry => {
      const ranges = result.filter((r) => r.unit === u.name).map(formatRange)
      const ls = [...labels].filter(([, unit]) => unit === u.name).map(([label]) => label)
      return { unit: u.name, ...(ranges.length ? { ranges } : {}), ...(ls.length ? { labels: ls } : {}) }
    })
    .filter((e) => e.ranges !== undefined || e.labels !== undefined)
  return { ...from, units, mapping }
}
