/**
 * Where a service's instances are, per unit, and which unit a call must go to (DESIGN §3). The HTTP
 * service client and the gRPC bridge both resolve targets here, so they cannot disagree: a `unit`
 * service goes to the route id's owner unit only, a `center` service to the center only, a `normal`
 * service to the caller's own unit first, then any other.
 */
import { InvalidArgumentError, NoProviderError } from '../errors/index.js'

export type ServiceType = 'unit' | 'center' | 'normal'

/** One instance of a service. `url` is a base URL for HTTP or a `host:port` target for gRPC. */
export interface ServiceInstance {
  readonly url: string
  readonly unit: string
  readonly nodeId?: string
  /** `false` takes the instance out of choice (registry health, or the caller's passive ejection). */
  readonly healthy?: boolean
}

/**
 * A source of instances. `instances` is synchronous because it runs per call: registries that read a
 * remote source keep a snapshot and refresh it in the background.
 */
export interface ServiceRegistry {
  /** Every known instance of `service`, in every unit. */
  instances(service: string): readonly ServiceInstance[]
  close?(): void | Promise<void>
}

/** What the caller knows when it picks a target. */
export interface TargetQuery {
  readonly service: string
  readonly type: ServiceType
  /** The unit that owns the call's route id (`null`: no id, or it maps to no unit). */
  readonly owner: string | null
  /** The caller's own unit. */
  readonly localUnit: string
  /** The center unit of the rule set in force. */
  readonly centerUnit: string
}

/**
 * The units to try, in order. `unit` and `center` services have exactly one; a `normal` service has
 * the local unit first and then every other unit that has an instance.
 */
export function targetUnits(query: TargetQuery, known: readonly string[] = []): readonly string[] {
  switch (query.type) {
    case 'unit':
      return query.owner === null ? [] : [query.owner]
    case 'center':
      return [query.centerUnit]
    case 'normal':
      return [query.localUnit, ...known.filter((u) => u !== query.localUnit)]
  }
}

/**
 * The healthy instances a call may use, in unit preference order (first unit's instances first).
 * @throws NoProviderError naming the service and the unit when the required unit has none.
 */
export function resolveInstances(registry: ServiceRegistry, query: TargetQuery): ServiceInstance[] {
  const all = registry.instances(query.service)
  const known = [...new Set(all.map((i) => i.unit))]
  const units = targetUnits(query, known)
  const out: ServiceInstance[] = []
  for (const unit of units) {
    for (const instance of all) if (instance.unit === unit && instance.healthy !== false) out.push(instance)
    if (out.length > 0 && query.type !== 'normal') break
  }
  if (out.length === 0) {
    const unit = query.type === 'normal' ? query.localUnit : (units[0] ?? '(no owner)')
    throw new NoProviderError(query.service, unit)
  }
  return out
}

const PLACEHOLDER = /\{unit\}|\{service\}/g

/** A fixed map `service → unit → instance URLs`. */
export class StaticRegistry implements ServiceRegistry {
  readonly #byService = new Map<string, ServiceInstance[]>()

  constructor(services: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>>) {
    for (const [service, units] of Object.entries(services)) {
      if (typeof units !== 'object' || units === null) {
        throw new InvalidArgumentError(`registry entry ${service} must map units to lists of URLs`, {
          service,
        })
      }
      const list: ServiceInstance[] = []
      for (const [unit, urls] of Object.entries(units)) {
        // Checked here, at start-up, rather than failing on the first call that picks the bad entry.
        if (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string' && u !== '')) {
          throw new InvalidArgumentError(`registry entry ${service}.${unit} must be a list of URLs`, {
            service,
            unit,
          })
        }
        for (const url of urls) list.push(Object.freeze({ url, unit }))
      }
      this.#byService.set(service, Object.freeze(list) as ServiceInstance[])
    }
  }

  instances(service: string): readonly ServiceInstance[] {
    return this.#byService.get(service) ?? []
  }
}

/**
 * One instance per unit from a URL template such as `http://product.{unit}.svc:8080` or
 * `http://{service}.{unit}.svc:8080` (DNS does the rest).
 */
export class TemplateRegistry implements ServiceRegistry {
  readonly #template: string
  readonly #units: readonly string[]
  /** Per service, built once: `instances()` runs on every call. */
  readonly #byService = new Map<string, readonly ServiceInstance[]>()

  constructor(template: string, units: readonly string[]) {
    if (typeof template !== 'string' || !template.includes('{unit}')) {
      throw new InvalidArgumentError(`registry template ${template} has no {unit} placeholder`, { template })
    }
    if (!Array.isArray(units) || !units.every((u) => typeof u === 'string' && u !== '')) {
      throw new InvalidArgumentError('registry template units must be a list of unit names', { template })
    }
    this.#template = template
    this.#units = [...units]
  }

  instances(service: string): readonly ServiceInstance[] {
    let list = this.#byService.get(service)
    if (list === undefined) {
      list = Object.freeze(
        this.#units.map((unit) =>
          // One pass: a name that happens to contain `{unit}` or `{service}` is inserted as is.
          Object.freeze({
            url: this.#template.replace(PLACEHOLDER, (p) => (p === '{unit}' ? unit : service)),
            unit,
          }),
        ),
      )
      this.#byService.set(service, list)
    }
    return list
  }
}
