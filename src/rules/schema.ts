/**
 * The rule set: ONE versioned document holding id source, transform, units, mapping, fence and fallback
 * (DESIGN §2). This zod schema is the single source of the TypeScript types and of the structural check;
 * `validate.ts` adds the semantic checks (overlaps, key space, unknown units...).
 */
import { z } from 'zod'

/** Largest `mod` divisor: keeps the exact decimal-string modulo inside 2^53 (see key.ts). */
export const MAX_DIVISOR = 1e14
/** Most units one rule set may name. */
export const MAX_UNITS = 250

const unitName = z
  .string()
  .regex(
    /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/,
    'a unit name is a letter then up to 62 letters, digits, "_", "." or "-"',
  )

export const UnitSchema = z.strictObject({
  name: unitName,
  /** Exactly one unit is the center: it serves `center` services (stock, money). */
  center: z.boolean().optional(),
  description: z.string().max(500).optional(),
})

const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const sourceName = (what: string) =>
  z.string().min(1).max(128).regex(token, `a ${what} name is a token (letters, digits and !#$%&'*+-.^_\`|~)`)

/**
 * Where the route id comes from, tried in order; the first non-empty value wins. A discriminated union on
 * `from`, so body and JWT-claim sources can be added without changing the others.
 */
export const IdSourceSchema = z.discriminatedUnion('from', [
  z.strictObject({ from: z.literal('query'), name: z.string().min(1).max(128) }),
  z.strictObject({ from: z.literal('header'), name: sourceName('header') }),
  z.strictObject({ from: z.literal('cookie'), name: sourceName('cookie') }),
])

/** One step of the transform chain from route id to key. */
export const TransformSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('mod'),
    divisor: z
      .number()
      .int('divisor must be a whole number')
      .positive('divisor must be greater than 0')
      .max(MAX_DIVISOR, `divisor must be at most ${MAX_DIVISOR} (10^14)`),
  }),
  z.strictObject({ type: z.literal('hash') }),
  z.strictObject({ type: z.literal('identity') }),
])

const label = z.string().min(1, 'a label cannot be empty').max(256)

/** Keys `lo~hi` (inclusive) and exact labels owned by one unit. */
export const MappingEntrySchema = z.strictObject({
  unit: z.string().min(1),
  ranges: z.array(z.string()).max(100_000).optional(),
  labels: z.array(label).max(100_000).optional(),
})

/** Keys and labels whose writes are forbidden everywhere during a cut-over. */
export const FenceSchema = z.strictObject({
  ranges: z.array(z.string()).max(100_000).optional(),
  labels: z.array(label).max(100_000).optional(),
})

/**
 * What happens to a missing id, a non-numeric id or an uncovered key: `local` (the entry unit), a named
 * unit, or `reject` (400 at the edge, an error in the SDK).
 */
export const FallbackSchema = z.union([
  z.literal('local'),
  z.literal('reject'),
  z.strictObject({ unit: z.string().min(1) }),
])

export const RuleSetSchema = z.strictObject({
  $schema: z.string().optional(),
  version: z
    .number()
    .int('version must be a whole number')
    .nonnegative('version cannot be negative')
    .max(Number.MAX_SAFE_INTEGER, 'version is too large'),
  description: z.string().max(2000).optional(),
  units: z.array(UnitSchema).min(1, 'at least one unit is needed').max(MAX_UNITS),
  idSource: z.array(IdSourceSchema).min(1, 'at least one id source is needed').max(8),
  transform: z.array(TransformSchema).max(8),
  mapping: z.array(MappingEntrySchema).max(MAX_UNITS * 4),
  fence: FenceSchema.optional(),
  fallback: FallbackSchema.optional(),
})

export type Unit = z.infer<typeof UnitSchema>
export type IdSource = z.infer<typeof IdSourceSchema>
export type Transform = z.infer<typeof TransformSchema>
export type MappingEntry = z.infer<typeof MappingEntrySchema>
export type Fence = z.infer<typeof FenceSchema>
export type Fallback = z.infer<typeof FallbackSchema>
/** A rule set document. Produce one with `parseRuleSet` or `validateRuleSet`, which check it fully. */
export type RuleSet = z.infer<typeof RuleSetSchema>
