/**
 * A rule set in the form nginx/appactive.lua executes: the compiled router's tables (labels, sorted
 * segments with packed unit + fence values, the transform chain, the fallback), as one JSON text. The same
 * text is the state file, the body of the admin PUT and the value in the shared dict.
 */
import { createHash } from 'node:crypto'
import { RuleInvalidError } from '../../errors/index.js'
import {
  compileRouter,
  FENCED_FLAG as FENCED,
  type KeyRange,
  maxKeyOf,
  parseRange,
  type RuleSet,
  segmentsOf,
} from '../../rules/index.js'

/** Version of the compiled format; appactive.lua refuses any other. */
export const NGINX_RULES_FORMAT = 1

/** The compiled rule set, as appactive.lua reads it. */
export interface NginxRules {
  readonly format: typeof NGINX_RULES_FORMAT
  readonly version: number
  /** sha256 of the canonical rule set: a re-push of the same version must carry the same digest. */
  readonly digest: string
  readonly units: readonly string[]
  readonly sources: ReadonlyArray<{ readonly from: string; readonly name: string }>
  readonly head: 'identity' | 'mod' | 'hash'
  /** The head `mod` divisor (0 for identity and hash). */
  readonly m: number
  /** Divisors applied after the head, in order. */
  readonly tail: readonly number[]
  readonly maxKey: number
  /** Label -> unit index + 1, with bit 15 set when fenced. */
  readonly labels: Readonly<Record<string, number>>
  /** Fenced labels no unit maps: they route as without the fence, only flagged fenced. */
  readonly fenceOnly: readonly string[]
  /** Flat `[lo, hi, value, ...]`, sorted, not overlapping; value = unit index + 1 | fenced bit. */
  readonly segs: readonly number[]
  readonly fallback: RuleSet['fallback'] | 'reject'
}

/** A compiled rule set and its JSON text. */
export interface CompiledNginxRules {
  readonly rules: NginxRules
  readonly text: string
  readonly bytes: number
}

/**
 * Compiles a rule set for the nginx engine. Validates it with the one TypeScript compiler first (and, with
 * `localUnit`, checks that unit is one of its units, as the gateway's agent does).
 * @throws RuleInvalidError when the rule set is invalid, or larger than `maxBytes` once compiled.
 */
export function compileNginxRules(
  ruleSet: RuleSet,
  options: { readonly localUnit?: string; readonly maxBytes?: number } = {},
): CompiledNginxRules {
  const router = compileRouter(
    ruleSet,
    options.localUnit === undefined ? {} : { localUnit: options.localUnit },
  )
  const valid = router.ruleSet
  const units = [...router.units]
  const index = new Map(units.map((u, i) => [u, i + 1]))
  const steps = valid.transform.filter((s) => s.type !== 'identity')
  const head = steps[0]
  const tail = steps.slice(1).map((s) => (s.type === 'mod' ? s.divisor : 1))
  const fenceRanges = (valid.fence?.ranges ?? []).map((t) => parseRange(t) as KeyRange)
  const fenceLabels = new Set(valid.fence?.labels ?? [])
  const labels: Record<string, number> = {}
  const owned: Array<KeyRange & { slot: number }> = []
  for (const entry of valid.mapping) {
    const slot = index.get(entry.unit)!
    for (const t of entry.ranges ?? []) owned.push({ ...(parseRange(t) as KeyRange), slot })
    for (const label of entry.labels ?? []) labels[label] = slot | (fenceLabels.has(label) ? FENCED : 0)
  }
  const fenceOnly = [...fenceLabels].filter((l) => !Object.hasOwn(labels, l))
  const segs: number[] = []
  for (const s of segmentsOf(owned, fenceRanges)) segs.push(s.lo, s.hi, s.val)
  const rules: NginxRules = {
    format: NGINX_RULES_FORMAT,
    version: valid.version,
    digest: createHash('sha256').update(JSON.stringify(valid)).digest('hex'),
    units,
    sources: valid.idSource.map((s) => ({ from: s.from, name: s.name })),
    head: head === undefined ? 'identity' : head.type === 'hash' ? 'hash' : 'mod',
    m: head?.type === 'mod' ? head.divisor : 0,
    tail,
    maxKey: maxKeyOf(valid.transform),
    labels,
    fenceOnly,
    segs,
    fallback: valid.fallback ?? 'reject',
  }
  // `{}` and `[]` must stay objects and arrays for cjson: an empty labels table is written as `{}`.
  const text = JSON.stringify(rules)
  const bytes = Buffer.byteLength(text)
  if (options.maxBytes !== undefined && bytes > options.maxBytes) {
    throw new RuleInvalidError(
      [
        {
          path: '',
          message:
            `rule set v${valid.version} compiles to ${bytes} bytes for nginx, more than the ${options.maxBytes} ` +
            'the shared dict can hold: raise sharedDictMb',
        },
      ],
      'nginx rule set',
    )
  }
  return { rules, text, bytes }
}
