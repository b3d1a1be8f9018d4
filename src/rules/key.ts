/**
 * From route id to key: the number grammar, exact decimal modulo, FNV-1a, the key space, and the
 * `lo~hi` range grammar. Every function here is allocation-free on its hot path.
 *
 * Number grammar (DESIGN §2): an optional `+`/`-` sign, then one or more decimal digits, of any length.
 * `007` and `+7` are 7; `-5 mod 10000` is 9995 (floor modulus). Anything else (`12.5`, `0x10`, `1e3`,
 * `" 42"`, `""`, `-`) is not numeric.
 */
import type { Transform } from './schema.js'

const PLUS = 43
const MINUS = 45
const ZERO = 48
/** From this value on, `r * 10 + 9` could pass 2^53 - 1; reduce first. floor((2^53 - 1) / 10). */
const REDUCE_ABOVE = 900_719_925_474_099

/** Largest key of the identity key space (and the largest range bound anywhere). */
export const MAX_KEY = Number.MAX_SAFE_INTEGER
/** Size of the FNV-1a 32-bit key space. */
export const HASH_SPACE = 2 ** 32

/**
 * `id mod m`, floor modulus, computed exactly on the decimal string. NaN when `id` is not numeric.
 * Precondition: 1 <= m <= 10^14.
 */
export function decimalMod(id: string, m: number): number {
  const n = id.length
  const first = id.charCodeAt(0)
  const negative = first === MINUS
  let i = negative || first === PLUS ? 1 : 0
  if (i >= n) return Number.NaN
  let r = 0
  for (; i < n; i++) {
    const d = id.charCodeAt(i) - ZERO
    if (d < 0 || d > 9) return Number.NaN
    r = r * 10 + d
    if (r >= REDUCE_ABOVE) r %= m
  }
  r %= m
  return negative && r !== 0 ? m - r : r
}

/**
 * `decimalMod(id, 10^k)` for k <= 9: the key is the last k digits, so the leading digits are only checked,
 * never multiplied, and the arithmetic stays in int32.
 */
export function decimalModPow10(id: string, m: number, k: number): number {
  const n = id.length
  const first = id.charCodeAt(0)
  const negative = first === MINUS
  let i = negative || first === PLUS ? 1 : 0
  if (i >= n) return Number.NaN
  const tail = Math.max(n - k, i)
  for (; i < tail; i++) {
    const d = id.charCodeAt(i) - ZERO
    if (d < 0 || d > 9) return Number.NaN
  }
  let r = 0
  for (; i < n; i++) {
    const d = id.charCodeAt(i) - ZERO
    if (d < 0 || d > 9) return Number.NaN
    r = r * 10 + d
  }
  return negative && r !== 0 ? m - r : r
}

/**
 * The id as an integer (identity transform). NaN when not numeric; +-Infinity when its magnitude passes
 * 2^53 - 1 (such an id is outside every range).
 */
export function decimalValue(id: string): number {
  const n = id.length
  const first = id.charCodeAt(0)
  const sign = first === MINUS ? -1 : 1
  let i = first === MINUS || first === PLUS ? 1 : 0
  if (i >= n) return Number.NaN
  let r = 0
  for (; i < n; i++) {
    const d = id.charCodeAt(i) - ZERO
    if (d < 0 || d > 9) return Number.NaN
    if (r <= REDUCE_ABOVE) r = r * 10 + d
    else r = Number.POSITIVE_INFINITY // keep scanning: the rest must still be digits
  }
  if (r > MAX_KEY) r = Number.POSITIVE_INFINITY
  return r === 0 ? 0 : sign * r
}

/** True when `id` follows the number grammar. */
export function isNumericId(id: string): boolean {
  return !Number.isNaN(decimalValue(id))
}

/** FNV-1a 32-bit over the UTF-8 bytes of `id`, as an unsigned integer. Seedless and stable across ports. */
export function fnv1a32(id: string): number {
  return fnv1a32Int(id) >>> 0
}

/** FNV-1a as a signed int32: always a Smi, so returning it never boxes a HeapNumber. */
function fnv1a32Int(id: string): number {
  let h = 0x811c9dc5 | 0
  const n = id.length
  for (let i = 0; i < n; i++) {
    let c = id.charCodeAt(i)
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193)
      continue
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const lo = id.charCodeAt(i + 1)
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00)
        i++
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd // a lone surrogate encodes as U+FFFD, as TextEncoder does
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), 0x01000193)
    } else if (c < 0x10000) {
      h = Math.imul(h ^ (0xe0 | (c >> 12)), 0x01000193)
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193)
    } else {
      h = Math.imul(h ^ (0xf0 | (c >> 18)), 0x01000193)
      h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), 0x01000193)
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), 0x01000193)
    }
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), 0x01000193)
  }
  return h
}

/** Compiled transform chain: raw id -> key (NaN: not numeric; outside [0, maxKey]: uncovered). */
export type KeyFunction = (id: string) => number

/** The largest key a transform chain can produce. */
export function maxKeyOf(transform: readonly Transform[]): number {
  let max = MAX_KEY
  for (const step of transform) {
    if (step.type === 'hash') max = HASH_SPACE - 1
    else if (step.type === 'mod') max = Math.min(max, step.divisor - 1)
  }
  return max
}

/**
 * Compiles a (validated) transform chain. Shapes: [] or [identity]; [mod, ...mods]; [hash, ...mods].
 */
export function compileTransform(transform: readonly Transform[]): KeyFunction {
  const steps = transform.filter((s) => s.type !== 'identity')
  const head = steps[0]
  const tail = steps.slice(1).map((s) => (s.type === 'mod' ? s.divisor : 1))
  if (head === undefined) return decimalValue
  if (head.type === 'hash') {
    if (tail.length === 0) return fnv1a32
    if (tail.length === 1) {
      const m = tail[0]!
      return (id) => (fnv1a32Int(id) >>> 0) % m
    }
    return (id) => reduce(fnv1a32(id), tail)
  }
  const m = head.type === 'mod' ? head.divisor : 1
  const k = Math.round(Math.log10(m))
  if (tail.length === 0 && k <= 9 && 10 ** k === m) return (id) => decimalModPow10(id, m, k)
  if (tail.length === 0) return (id) => decimalMod(id, m)
  return (id) => reduce(decimalMod(id, m), tail)
}

function reduce(k: number, divisors: readonly number[]): number {
  for (let i = 0; i < divisors.length; i++) k %= divisors[i]!
  return k
}

/** A parsed inclusive range. */
export interface KeyRange {
  readonly lo: number
  readonly hi: number
}

const RANGE = /^(\d{1,16})~(\d{1,16})$/

/** Parses `lo~hi`; returns a plain sentence describing the problem instead when it is not well formed. */
export function parseRange(text: string): KeyRange | string {
  const m = RANGE.exec(text)
  if (m === null) {
    if (/^\s|\s$|\s~|~\s/.test(text))
      return `${JSON.stringify(text)} has spaces; write it as lo~hi, e.g. 2000~2999`
    if (/^-|~-/.test(text)) return `${JSON.stringify(text)} has a negative bound; keys are never negative`
    if (/^\d+~\d+$/.test(text)) return `${JSON.stringify(text)} has a bound larger than ${MAX_KEY}`
    return `${JSON.stringify(text)} is not a range; write it as lo~hi with whole numbers, e.g. 2000~2999`
  }
  const lo = Number(m[1])
  const hi = Number(m[2])
  if (lo > MAX_KEY || hi > MAX_KEY) return `${text} has a bound larger than ${MAX_KEY}`
  if (lo > hi) return `${text} has lo greater than hi`
  return { lo, hi }
}

/** Formats a range as `lo~hi`. */
export function formatRange(r: KeyRange): string {
  return `${r.lo}~${r.hi}`
}
