/** Small helpers every bench shares: settings from the environment, and the median. */

/** A whole-number setting from the environment (`fallback` when unset); at least `min`. */
export function envInt(name: string, fallback: number, min = 1): number {
  const raw = process.env[name]
  const n = raw === undefined ? fallback : Number(raw)
  if (!Number.isSafeInteger(n) || n < min)
    throw new Error(`${name} must be a whole number >= ${min}, got ${raw}`)
  return n
}

/** The median (mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}
