/**
 * A value per Ant-style path pattern, shared by the server bridges: HTTP paths (`/orders/**`) and gRPC
 * method paths (`/shop.Orders/Create*`) are both `/`-separated. `*` matches within one segment, `**` any
 * number of segments. The most specific pattern wins: more literal characters, then fewer wildcards,
 * then declaration order.
 */
import { InvalidArgumentError } from '../errors/index.js'

interface Compiled<T> {
  readonly value: T
  readonly re: RegExp
  readonly literal: number
  readonly wildcards: number
  readonly order: number
}

// Lookups are memoized per path; a server sees few distinct paths, but a scanner can send many.
const CACHE_LIMIT = 10_000

export class PatternTable<T> {
  readonly #rules: readonly Compiled<T>[]
  readonly #fallback: T
  readonly #cache = new Map<string, T>()

  /**
   * @param entries pattern -> value, e.g. `{ '/orders/**': 'unit' }`
   * @param fallback the value of paths no pattern matches
   * @throws InvalidArgumentError for a pattern not starting with `/`
   */
  constructor(entries: Readonly<Record<string, T>>, fallback: T) {
    const rules: Compiled<T>[] = []
    let order = 0
    for (const [pattern, value] of Object.entries(entries)) {
      if (!pattern.startsWith('/')) {
        throw new InvalidArgumentError(`pattern ${JSON.stringify(pattern)} must start with /`, { pattern })
      }
      rules.push({ value, re: compile(pattern), ...specificity(pattern), order: order++ })
    }
    rules.sort((a, b) => b.literal - a.literal || a.wildcards - b.wildcards || a.order - b.order)
    this.#rules = rules
    this.#fallback = fallback
  }

  /** The value of the most specific pattern matching `path` (no query string), else the fallback. */
  lookup(path: string): T {
    const hit = this.#cache.get(path)
    if (hit !== undefined) return hit
    let value = this.#fallback
    for (const r of this.#rules) {
      if (r.re.test(path)) {
        value = r.value
        break
      }
    }
    if (this.#cache.size >= CACHE_LIMIT) this.#cache.clear()
    this.#cache.set(path, value)
    return value
  }
}

function compile(pattern: string): RegExp {
  let re = '^'
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!
    if (c === '*' && pattern[i + 1] === '*') {
      // `/**` also matches the bare prefix (`/orders/**` matches `/orders`).
      if (re.endsWith('/')) re = `${re.slice(0, -1)}(?:/.*)?`
      else re += '.*'
      i++
    } else if (c === '*') re += '[^/]*'
    else re += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&')
  }
  return new RegExp(`${re}/?$`)
}

function specificity(pattern: string): { literal: number; wildcards: number } {
  const wildcards = (pattern.match(/\*/g) ?? []).length
  return { literal: pattern.length - wildcards, wildcards }
}
