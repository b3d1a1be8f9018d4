/**
 * Validation of a rule set: the zod schema first (types, unknown fields), then the semantic pass
 * (units, key space, range grammar, overlaps, fence, coverage). Returns EVERY problem found, each with
 * its path and a plain sentence, e.g. `mapping[1].ranges[0]: 3000~2000 has lo greater than hi`.
 */
import type { z } from 'zod'
import { RuleInvalidError, type RuleIssue } from '../errors/index.js'
import { formatRange, type KeyRange, maxKeyOf, parseRange } from './key.js'
import { type RuleSet, RuleSetSchema } from './schema.js'
import { zodIssues } from './zod-issues.js'

/** The outcome of `validateRuleSet`. */
export type Validation = { ok: true; ruleSet: RuleSet } | { ok: false; issues: RuleIssue[] }

/** Checks any value as a rule set and lists every problem. Never throws. */
export function validateRuleSet(input: unknown): Validation {
  const parsed = RuleSetSchema.safeParse(input, { reportInput: true })
  if (parsed.success) {
    const issues = checkSemantics(parsed.data)
    return issues.length === 0 ? { ok: true, ruleSet: parsed.data } : { ok: false, issues }
  }
  const issues = zodIssues(parsed.error)
  // When the only structural problems are unknown fields (typos, mostly), the rest is well formed:
  // check it too, so one run lists every problem.
  if (parsed.error.issues.every((i) => i.code === 'unrecognized_keys')) {
    const stripped = RuleSetSchema.safeParse(withoutKeys(input, parsed.error.issues))
    if (stripped.success) issues.push(...checkSemantics(stripped.data))
  }
  return { ok: false, issues }
}

/** A deep copy of `input` without the unknown keys the schema reported. */
function withoutKeys(input: unknown, found: readonly z.core.$ZodIssue[]): unknown {
  const copy = structuredClone(input)
  for (const issue of found) {
    if (issue.code !== 'unrecognized_keys') continue
    let node: unknown = copy
    for (const part of issue.path) node = (node as Record<PropertyKey, unknown>)?.[part]
    if (typeof node === 'object' && node !== null) {
      for (const key of issue.keys) delete (node as Record<string, unknown>)[key]
    }
  }
  return copy
}

/**
 * Checks a value as a rule set and returns it typed.
 * @throws RuleInvalidError (APPACTIVE_RULE_INVALID) listing every problem.
 */
export function assertRuleSet(input: unknown): RuleSet {
  const v = validateRuleSet(input)
  if (!v.ok) throw new RuleInvalidError(v.issues)
  return v.ruleSet
}

/** A range with where it came from, for overlap messages. */
interface Placed extends KeyRange {
  readonly path: string
  readonly unit: string
}

function checkSemantics(rs: RuleSet): RuleIssue[] {
  const issues: RuleIssue[] = []
  const add = (path: string, message: string) => issues.push({ path, message })

  // Units: unique names (ignoring case: AppActive compared them so), exactly one center.
  const units = new Map<string, number>()
  rs.units.forEach((u, i) => {
    const prev = units.get(u.name.toLowerCase())
    if (prev !== undefined) add(`units[${i}].name`, `unit "${u.name}" is already defined at units[${prev}]`)
    else units.set(u.name.toLowerCase(), i)
  })
  const known = new Set(rs.units.map((u) => u.name))
  const centers = rs.units.filter((u) => u.center === true)
  if (centers.length === 0) add('units', 'no unit is the center; mark exactly one with center: true')
  if (centers.length > 1) add('units', `more than one center: ${centers.map((u) => u.name).join(', ')}`)

  // Transform shape: hash only first; identity only alone.
  rs.transform.forEach((step, i) => {
    if (step.type === 'hash' && i > 0) add(`transform[${i}]`, 'hash must be the first step of the transform')
    if (step.type === 'identity' && rs.transform.length > 1) {
      add(
        `transform[${i}]`,
        'identity cannot be combined with other steps (an empty transform is identity too)',
      )
    }
  })
  const maxKey = maxKeyOf(rs.transform)
  /** A well-formed range inside the key space, or undefined (the problem is recorded). */
  const range = (path: string, text: string): KeyRange | undefined => {
    const r = parseRange(text)
    if (typeof r === 'string') add(path, r)
    else if (r.hi > maxKey) add(path, `${text} is outside the key space 0~${maxKey} of the transform`)
    else return r
    return undefined
  }

  // Id sources: no duplicates.
  const seen = new Set<string>()
  rs.idSource.forEach((s, i) => {
    const k = `${s.from}:${s.from === 'query' ? s.name : s.name.toLowerCase()}`
    if (seen.has(k)) add(`idSource[${i}]`, `${s.from} "${s.name}" is listed twice`)
    seen.add(k)
  })

  // Mapping: known units, range grammar, key space, overlaps, labels.
  const ranges: Placed[] = []
  const labels = new Map<string, string>()
  rs.mapping.forEach((entry, i) => {
    if (!known.has(entry.unit))
      add(`mapping[${i}].unit`, `unknown unit "${entry.unit}"${suggest(entry.unit, known)}`)
    entry.ranges?.forEach((text, j) => {
      const path = `mapping[${i}].ranges[${j}]`
      const r = range(path, text)
      if (r) ranges.push({ ...r, path, unit: entry.unit })
    })
    entry.labels?.forEach((text, j) => {
      const path = `mapping[${i}].labels[${j}]`
      const prev = labels.get(text)
      if (prev !== undefined) add(path, `label ${JSON.stringify(text)} is already mapped at ${prev}`)
      else labels.set(text, path)
    })
  })
  ranges.sort((a, b) => a.lo - b.lo || a.hi - b.hi)
  let reach: Placed | undefined
  for (const r of ranges) {
    if (reach !== undefined && r.lo <= reach.hi) {
      add(r.path, `${formatRange(r)} overlaps ${formatRange(reach)} at ${reach.path} (unit ${reach.unit})`)
    }
    if (reach === undefined || r.hi > reach.hi) reach = r
  }

  // Fallback: a named unit must exist.
  const fb = rs.fallback
  if (typeof fb === 'object' && !known.has(fb.unit)) {
    add('fallback.unit', `unknown unit "${fb.unit}"${suggest(fb.unit, known)}`)
  }
  const rejects = fb === undefined || fb === 'reject'

  // Coverage gaps are allowed only with an explicit fallback.
  const gaps = rejects ? gapsOf(ranges, maxKey) : []
  if (fb === undefined && gaps.length > 0) {
    const shown =
      gaps.slice(0, 3).map(formatRange).join(', ') + (gaps.length > 3 ? `, ... (${gaps.length} gaps)` : '')
    add('mapping', `keys ${shown} are owned by no unit; cover them or set an explicit fallback`)
  }

  // Fence: grammar, key space, and never on keys no unit owns while the fallback rejects them.
  rs.fence?.ranges?.forEach((text, j) => {
    const path = `fence.ranges[${j}]`
    const r = range(path, text)
    if (r && rejects) {
      const hole = gaps.find((g) => g.lo <= r.hi && r.lo <= g.hi)
      if (hole) add(path, `${text} fences keys no unit owns (${formatRange(clip(hole, r))})`)
    }
  })
  rs.fence?.labels?.forEach((text, j) => {
    if (!labels.has(text) && rejects)
      add(`fence.labels[${j}]`, `label ${JSON.stringify(text)} is not mapped to a unit`)
  })
  return issues
}

function clip(a: KeyRange, b: KeyRange): KeyRange {
  return { lo: Math.max(a.lo, b.lo), hi: Math.min(a.hi, b.hi) }
}

/** Uncovered stretches of [0, maxKey], given ranges sorted by lo. */
function gapsOf(sorted: readonly KeyRange[], maxKey: number): KeyRange[] {
  const gaps: KeyRange[] = []
  let next = 0
  for (const r of sorted) {
    if (r.lo > next) gaps.push({ lo: next, hi: r.lo - 1 })
    if (r.hi + 1 > next) next = r.hi + 1
  }
  if (next <= maxKey) gaps.push({ lo: next, hi: maxKey })
  return gaps
}

function suggest(name: string, known: ReadonlySet<string>): string {
  const lower = name.toLowerCase()
  for (const k of known) if (k.toLowerCase() === lower) return ` (did you mean "${k}"?)`
  return ` (units: ${[...known].join(', ')})`
}
