/**
 * The compiled router: one per rule-set version, used by every layer (gateway, bridges, DB guard, CLI).
 *
 * Compilation turns the mapping and the fence into one lookup structure: a dense Uint16Array indexed by
 * key when the key space has at most 10^6 keys (O(1)), otherwise sorted segments searched by bisection
 * (O(log n)). Each slot packs `unit index + 1` (0 = no owner) and a fenced bit. Labels are a Map
 * consulted before the transform. Lookups allocate nothing; `route()` allocates only its result, and
 * not even that for key spaces of up to 65,536 keys, where each key's decision is one frozen object.
 */
import { InvalidArgumentError } from '../errors/index.js'
import { compileExtractor, type Extractor, type RequestLike } from './extract.js'
import { compileTransform, type KeyFunction, type KeyRange, maxKeyOf, parseRange } from './key.js'
import type { Fallback, RuleSet } from './schema.js'
import { assertRuleSet } from './validate.js'

/** Why a route id went where it did. */
export type RouteReason = 'label' | 'range' | 'missing' | 'not_numeric' | 'uncovered'

/** The answer for one route id. `unit` is null when the fallback is `reject` (or `local` with no local unit). */
export interface RouteDecision {
  readonly unit: string | null
  /** The key after the transform; null when there is none (missing or non-numeric id, label match). */
  readonly key: number | null
  /** True when writes for this id are forbidden (a cut-over is moving it). */
  readonly fenced: boolean
  readonly reason: RouteReason
}

/** Options of `compileRouter`. */
export interface RouterOptions {
  /** The unit this process stands in; `local` fallbacks resolve to it. */
  readonly localUnit?: string
  /** Overrides the rule set's fallback for one app. */
  readonly fallback?: Fallback
}

/** Largest key space compiled into a dense table. */
export const DENSE_LIMIT = 1_000_000
/** Largest key space whose range decisions `route()` interns (one frozen object per key, made lazily). */
const INTERN_LIMIT = 65_536

const FENCED = 0x8000
/** @internal The fenced bit of a packed slot (the nginx engine packs its tables the same way). */
export const FENCED_FLAG = FENCED
const UNIT_MASK = 0x7fff
// Packed result of `lookup()`: bits 0-14 unit index + 1 (0 = none), bit 15 fenced, bits 16-18 reason.
const REASONS: readonly RouteReason[] = ['range', 'label', 'missing', 'not_numeric', 'uncovered']
const R_RANGE = 0 << 16
const R_LABEL = 1 << 16
const R_MISSING = 2 << 16
const R_NOT_NUMERIC = 3 << 16
const R_UNCOVERED = 4 << 16
/** The key the last #lookup() computed (NaN when none), so route() need not run the transform twice. */
const lastKey = new Float64Array(1)

/**
 * Compiles a rule set into a router. Validates it first.
 * @throws RuleInvalidError (APPACTIVE_RULE_INVALID) when the rule set is invalid.
 * @throws InvalidArgumentError when `localUnit` or the fallback override names an unknown unit.
 */
export function compileRouter(ruleSet: RuleSet, options: RouterOptions = {}): Router {
  return new Router(assertRuleSet(ruleSet), options)
}

/**
 * `compileRouter` for a rule set that `validateRuleSet` just returned (validation is half the cost of a
 * compile; the agent validates once per delivery). Passing anything else is undefined behaviour.
 * @internal
 */
export function compileValidatedRouter(ruleSet: RuleSet, options: RouterOptions = {}): Router {
  return new Router(ruleSet, options)
}

/** A compiled, immutable rule set. Create it with `compileRouter`. */
export class Router {
  /** The validated rule set this router was compiled from. */
  readonly ruleSet: RuleSet
  readonly version: number
  readonly units: readonly string[]
  readonly centerUnit: string
  readonly localUnit: string | undefined
  /** Largest key of the transform's key space (keys are 0..maxKey). */
  readonly maxKey: number
  /** The fallback in force (the override, else the rule set's; `reject` when neither sets one). */
  readonly fallback: Fallback

  readonly #toKey: KeyFunction
  readonly #extract: Extractor
  readonly #labels: Map<string, number> | null
  readonly #fenceOnly: Set<string> | null
  /** Slot per key for key spaces below DENSE_LIMIT, built at the first lookup (undefined until then). */
  #dense: Uint16Array | null | undefined
  readonly #los: Float64Array
  readonly #his: Float64Array
  readonly #vals: Uint16Array
  readonly #fallbackSlot: number
  /** One frozen decision per key in small key spaces, allocated at the first `route()`. */
  #interned: Array<RouteDecision | undefined> | null | undefined

  /** @internal use compileRouter */
  constructor(ruleSet: RuleSet, options: RouterOptions) {
    this.ruleSet = ruleSet
    this.version = ruleSet.version
    this.units = Object.freeze(ruleSet.units.map((u) => u.name))
    this.centerUnit = ruleSet.units.find((u) => u.center)!.name
    const index = new Map(this.units.map((name, i) => [name, i]))
    if (options.localUnit !== undefined && !index.has(options.localUnit)) {
      throw new InvalidArgumentError(
        `localUnit "${options.localUnit}" is not a unit of rule set v${ruleSet.version}`,
        {
          units: this.units,
        },
      )
    }
    this.localUnit = options.localUnit
    this.fallback = options.fallback ?? ruleSet.fallback ?? 'reject'
    this.#fallbackSlot = this.#resolveFallback(index)
    this.maxKey = maxKeyOf(ruleSet.transform)
    this.#toKey = compileTransform(ruleSet.transform)
    this.#extract = compileExtractor(ruleSet.idSource)

    const fenceRanges = (ruleSet.fence?.ranges ?? []).map((t) => parseRange(t) as KeyRange)
    const fenceLabels = new Set(ruleSet.fence?.labels ?? [])
    const owned: Array<KeyRange & { slot: number }> = []
    let labels: Map<string, number> | null = null
    for (const entry of ruleSet.mapping) {
      const slot = index.get(entry.unit)! + 1
      for (const t of entry.ranges ?? []) owned.push({ ...(parseRange(t) as KeyRange), slot })
      for (const label of entry.labels ?? []) {
        labels ??= new Map()
        labels.set(label, slot | (fenceLabels.has(label) ? FENCED : 0))
      }
    }
    // A fenced label no unit maps routes as it would without the fence; only its fenced flag changes.
    let fenceOnly: Set<string> | null = null
    for (const label of fenceLabels) {
      if (labels?.has(label)) continue
      fenceOnly ??= new Set()
      fenceOnly.add(label)
    }
    this.#labels = labels
    this.#fenceOnly = fenceOnly

    // The segments always; the per-key tables only once the router is used. A process compiles each
    // version once, but one hosting many agents (or per-app routers) should not pay for tables it never reads.
    const segments = segmentsOf(owned, fenceRanges)
    this.#los = Float64Array.from(segments, (s) => s.lo)
    this.#his = Float64Array.from(segments, (s) => s.hi)
    this.#vals = Uint16Array.from(segments, (s) => s.val)
    this.#dense = this.maxKey < DENSE_LIMIT ? undefined : null
    this.#interned = this.maxKey < INTERN_LIMIT ? undefined : null
    Object.freeze(this)
  }

  #resolveFallback(index: Map<string, number>): number {
    const fb = this.fallback
    if (fb === 'reject') return 0
    if (fb === 'local') return this.localUnit === undefined ? 0 : index.get(this.localUnit)! + 1
    const i = index.get(fb.unit)
    if (i === undefined)
      throw new InvalidArgumentError(`fallback unit "${fb.unit}" is not a unit of this rule set`)
    return i + 1
  }

  /** The key of `rawId` after the transform: NaN when not numeric (labels are not consulted). */
  keyOf(rawId: string): number {
    return this.#toKey(rawId)
  }

  /** The slot (unit + 1 | fenced) of a key, 0 when no unit owns it. */
  #slotOfKey(key: number): number {
    let dense = this.#dense
    if (dense === undefined) dense = this.#dense = this.#denseTable()
    if (dense !== null) return dense[key]!
    const los = this.#los
    let lo = 0
    let hi = los.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      if (los[mid]! <= key) lo = mid + 1
      else hi = mid - 1
    }
    return hi >= 0 && key <= this.#his[hi]! ? this.#vals[hi]! : 0
  }

  #denseTable(): Uint16Array {
    const table = new Uint16Array(this.maxKey + 1)
    const los = this.#los
    for (let i = 0; i < los.length; i++) table.fill(this.#vals[i]!, los[i]!, this.#his[i]! + 1)
    return table
  }

  /**
   * The allocation-free form of `route()` for hot paths: a packed number. Decode it with `unitAt`,
   * `fencedAt` and `reasonAt`.
   */
  lookup(rawId: string | null | undefined): number {
    const code = this.#lookup(rawId)
    const fenceOnly = this.#fenceOnly
    return fenceOnly !== null && rawId != null && fenceOnly.has(rawId) ? code | FENCED : code
  }

  #lookup(rawId: string | null | undefined): number {
    lastKey[0] = Number.NaN
    if (rawId == null || rawId === '') return R_MISSING | this.#fallbackSlot
    const labels = this.#labels
    if (labels !== null) {
      const slot = labels.get(rawId)
      if (slot !== undefined) return R_LABEL | slot
    }
    const key = this.#toKey(rawId)
    lastKey[0] = key
    if (Number.isNaN(key)) return R_NOT_NUMERIC | this.#fallbackSlot
    if (key < 0 || key > this.maxKey) return R_UNCOVERED | this.#fallbackSlot
    const slot = this.#slotOfKey(key)
    if ((slot & UNIT_MASK) === 0) return R_UNCOVERED | (slot & FENCED) | this.#fallbackSlot
    return R_RANGE | slot
  }

  /** Unit name of a packed lookup result, or null (reject). */
  unitAt(code: number): string | null {
    const i = code & UNIT_MASK
    return i === 0 ? null : this.units[i - 1]!
  }

  /** Whether a packed lookup result is fenced. */
  fencedAt(code: number): boolean {
    return (code & FENCED) !== 0
  }

  /**
   * The units that own at least one fenced key or label under this rule set's mapping: the sources of
   * the cut-over the fence belongs to (their queued work must drain before the switch). Fenced keys no
   * unit owns count for the fallback unit, where they are routed. Empty when nothing is fenced.
   */
  fencedUnits(): readonly string[] {
    const slots = new Set<number>()
    const vals = this.#vals
    for (let i = 0; i < vals.length; i++) {
      const v = vals[i]!
      if ((v & FENCED) !== 0) slots.add(v & UNIT_MASK || this.#fallbackSlot)
    }
    if (this.#labels !== null)
      for (const v of this.#labels.values()) if ((v & FENCED) !== 0) slots.add(v & UNIT_MASK)
    if (this.#fenceOnly !== null) slots.add(this.#fallbackSlot)
    slots.delete(0)
    return [...slots].sort((a, b) => a - b).map((slot) => this.units[slot - 1]!)
  }

  /** Reason of a packed lookup result. */
  reasonAt(code: number): RouteReason {
    return REASONS[code >>> 16]!
  }

  /** Decides where `rawId` goes. O(1) for key spaces up to 10^6, O(log n) otherwise. */
  route(rawId: string | null | undefined): RouteDecision {
    const code = this.#fenceOnly === null ? this.#lookup(rawId) : this.lookup(rawId)
    let interned = this.#interned
    if (interned === undefined) interned = this.#interned = new Array(this.maxKey + 1)
    // Decisions are immutable values: in small key spaces one frozen object per key is reused.
    if (interned !== null && code >>> 16 === 0) {
      const hit = interned[lastKey[0]! | 0] // a range hit: an integer key below 65,536
      if (hit !== undefined && hit.fenced === ((code & FENCED) !== 0)) return hit
    }
    return this.#decide(code)
  }

  #decide(code: number): RouteDecision {
    const reason = REASONS[code >>> 16]!
    const fenced = (code & FENCED) !== 0
    let key: number | null = null
    if (reason === 'range' || reason === 'uncovered') {
      const k = lastKey[0]!
      // `k | 0` keeps a small key a Smi: a double here boxes a 16-byte HeapNumber into every decision.
      key = Number.isFinite(k) ? ((k | 0) === k ? k | 0 : k) : null
    }
    const decision: RouteDecision = { unit: this.unitAt(code), key, fenced, reason }
    const interned = this.#interned
    if (interned != null && reason === 'range') interned[key!] = Object.freeze(decision)
    return decision
  }

  /** The unit owning `rawId` (after labels and fallback), or null when it must be rejected. */
  unitOf(rawId: string | null | undefined): string | null {
    return this.unitAt(this.lookup(rawId))
  }

  /** True when writes for `rawId` are forbidden now. */
  isFenced(rawId: string | null | undefined): boolean {
    return (this.lookup(rawId) & FENCED) !== 0
  }

  /** The owner of a key (no labels, no fallback), or null when no unit owns it. */
  ownerOfKey(key: number): string | null {
    if (!Number.isInteger(key) || key < 0 || key > this.maxKey) return null
    return this.unitAt(this.#slotOfKey(key) & UNIT_MASK)
  }

  /** Reads the raw route id from a request, per the rule set's id sources, in order. */
  extract(request: RequestLike): string | undefined {
    return this.#extract(request)
  }

  /** `extract` then `route`. */
  routeRequest(request: RequestLike): RouteDecision {
    return this.route(this.#extract(request))
  }
}

/** @internal A run of keys with one packed value (`slot | FENCED_FLAG`). */
export interface Segment extends KeyRange {
  readonly val: number
}

/**
 * @internal Non-overlapping sorted segments with a packed value: owned ranges split at fence boundaries. Fenced
 * keys that no unit owns become segments of their own (value FENCED), so they stay fenced.
 */
export function segmentsOf(
  owned: ReadonlyArray<KeyRange & { slot: number }>,
  fence: readonly KeyRange[],
): Segment[] {
  const points = new Set<number>()
  for (const r of owned) points.add(r.lo).add(r.hi + 1)
  for (const r of fence) points.add(r.lo).add(r.hi + 1)
  const cuts = [...points].sort((a, b) => a - b)
  const byLo = [...owned].sort((a, b) => a.lo - b.lo)
  const fences = [...fence].sort((a, b) => a.lo - b.lo)
  const out: Segment[] = []
  let oi = 0
  let fi = 0
  for (let c = 0; c + 1 < cuts.length; c++) {
    const lo = cuts[c]!
    const hi = cuts[c + 1]! - 1
    while (oi < byLo.length && byLo[oi]!.hi < lo) oi++
    while (fi < fences.length && fences[fi]!.hi < lo) fi++
    const o = byLo[oi]
    const f = fences[fi]
    const slot = o !== undefined && o.lo <= lo ? o.slot : 0
    const fenced = f !== undefined && f.lo <= lo ? FENCED : 0
    const val = slot | fenced
    if (val === 0) continue
    const last = out[out.length - 1]
    if (last !== undefined && last.val === val && last.hi + 1 === lo)
      out[out.length - 1] = { lo: last.lo, hi, val }
    else out.push({ lo, hi, val })
  }
  return out
}
