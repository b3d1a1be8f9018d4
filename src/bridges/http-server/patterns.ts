/**
 * Service types per route pattern (AppActive's `unit` / `center` / `normal`, §1.7), with Ant-style
 * patterns as Spring users know them: `*` matches within one path segment, `**` any number of segments.
 * The most specific pattern wins: more literal characters, then fewer wildcards, then declaration order.
 * The matching itself is the agent's `PatternTable`, shared with the gRPC bridge.
 */
import { PatternTable } from '../../agent/service-patterns.js'
import { InvalidArgumentError } from '../../errors/index.js'

/** How a service is served: by the unit owning the route id, only by the center, or anywhere. */
export type { ServiceType } from '../../agent/registry.js'

import type { ServiceType } from '../../agent/registry.js'

const TYPES = new Set<ServiceType>(['unit', 'center', 'normal'])

export class ServicePatterns extends PatternTable<ServiceType> {
  /**
   * @param services pattern -> type, e.g. `{ '/orders/**': 'unit', '/stock/*': 'center' }`
   * @param fallback type of paths no pattern matches; default `normal` (as AppActive's implicit `/**`)
   * @throws InvalidArgumentError for a pattern not starting with `/` or an unknown type
   */
  constructor(services: Readonly<Record<string, ServiceType>>, fallback: ServiceType = 'normal') {
    for (const [pattern, type] of Object.entries(services)) {
      if (!TYPES.has(type)) {
        throw new InvalidArgumentError(
          `service type of ${pattern} must be unit, center or normal, got ${JSON.stringify(type)}`,
        )
      }
    }
    if (!TYPES.has(fallback))
      throw new InvalidArgumentError(`default service type must be unit, center or normal`)
    super(services, fallback)
  }

  /** The service type of a request path (query string ignored). Results are memoized (bounded). */
  typeOf(url: string): ServiceType {
    const q = url.indexOf('?')
    return this.lookup(q === -1 ? url : url.slice(0, q))
  }
}
