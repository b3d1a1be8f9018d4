/**
 * Service types per route pattern (AppActive's `unit` / `center` / `normal`, §1.7), with Ant-style
 * patterns as Spring users know them: `*` matches within one path segment, `**` any number of segments.
 * The most specific pattern wins: more literal characters, then fewer wildcards, then declaration order.
 */
import { InvalidArgumentError } from '../../errors/index.js'

/** How a service is served: by the unit owning the route id, only by the center, or anywhere. */
export type ServiceType = 'unit' | 'center' | 'normal'

const TYPES = new Set<ServiceType>(['unit', 'center', 'normal'])

interface Compiled {
  readonly pattern: string
  readonly type: ServiceType
  readonly re: RegExp
  readonly literal: number
  readonly wildcards: number
  readonly order: number
}

export class ServicePatterns {
  readonly #rules: readonly Compiled[]
  readonly #fallback: ServiceType
  readonly #cache = new Map<string, ServiceType>()

  /**
   * @param services pattern -> type, e.g. `{ '/orders/**': 'unit', '/stock/*': 'center' }`
   * @param fallback type of paths no pattern matches; default `normal` (as AppActive's implicit `/**`)
   * @throws InvalidArgumentError for a pattern not starting with `/` or an unknown type
   */
  constructor(services: Readonly<Record<string, ServiceType>>, fallback: ServiceType = 'normal') {
    const rules: Compiled[] = []
    let order = 0
    for (const [pattern, type] of Object.entries(services)) {
      if (!pattern.startsWith('/'))
        throw new InvalidArgumentError(`service pattern ${JSON.stringify(pattern)} must start with /`)
      if (!TYPES.has(type)) {
        throw new InvalidArgumentError(
          `service type of ${pattern} must be unit, center or normal, got ${JSON.stringify(type)}`,
        )
      }
      rules.push({ pattern, type, re: compile(pattern), ...specificity(pattern), order: order++ })
    }
    rules.sort((a, b) => b.literal - a.literal || a.wildcards - b.wildcards || a.order - b.order)
    this.#rules = rules
    if (!TYPES.has(fallback))
      throw new InvalidArgumentError(`default service type must be unit, center or normal`)
    this.#fallback = fallback
  }

  /** The service type of a request path (query string ignored). Results are memoized (bounded). */
  typeOf(url: string): ServiceType {
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    const hit = this.#cache.get(path)
    if (hit !== undefined) return hit
    let type = this.#fallback
    for (const r of this.#rules) {
      if (r.re.test(path)) {
        type = r.type
        break
      }
    }
    if (this.#cache.size >= 10_000) this.#cache.clear()
    this.#cache.set(path, type)
    return type
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
