/**
 * A unit-aware HTTP client for calls between services (DESIGN §3, "RPC to unit/center/normal service").
 * Per call it reads the route context, lets the rule set in force pick the unit (`unit` service: the
 * route id's owner only; `center`: the center only; `normal`: the caller's unit first, then any), asks
 * the registry for that unit's instances, and sends the request to one of them with the route headers.
 *
 * Instance choice is round-robin over the healthy instances. An instance that fails at the connection
 * level (refused, reset, unreachable) is skipped for a short window (passive ejection); an idempotent
 * request that failed so is retried on another instance of the SAME allowed units. A call never crosses
 * into a unit its service type does not allow: when the owner unit has nothing, the call fails.
 */
import { Agent, type Dispatcher } from 'undici'
import {
  resolveInstances,
  type ServiceInstance,
  type ServiceRegistry,
  type ServiceType,
  type TargetQuery,
} from '../../agent/registry.js'
import { currentRoute } from '../../context/index.js'
import { InvalidArgumentError, LeaseExpiredError, NoRouteIdError } from '../../errors/index.js'
import { CONNECTION_FAILURE_CODES, errorCodeOf } from '../../gateway/upstreams.js'
import type { Router } from '../../rules/index.js'
import { routeInterceptor } from './undici.js'

/** How one service is called. */
export interface ServiceConfig {
  readonly type: ServiceType
}

/** What the client needs of the agent: the rule set in force and its own unit (a `RoutingAgent` fits). */
export interface RouterSource {
  readonly router: Router | undefined
  readonly identity: { readonly unit: string }
}

/** Options of {@link createServiceClient}. */
export interface ServiceClientOptions {
  /** Where each service's instances are: `StaticRegistry`, `TemplateRegistry`, `ControlPlaneRegistry`. */
  readonly registry: ServiceRegistry
  /** This process's agent: its rule set decides owner units and its unit is the local unit. */
  readonly agent?: RouterSource
  /** Without an agent: the router, or a getter of the one in force (needed by unit and center services). */
  readonly router?: Router | (() => Router | undefined)
  /** Without an agent: the caller's own unit. */
  readonly localUnit?: string
  /** Every service this client calls, by name (the name the registry knows it by). */
  readonly services: Readonly<Record<string, ServiceConfig>>
  /** undici dispatcher to send through; default: an `Agent` of the client's own (closed by `close()`). */
  readonly dispatcher?: Dispatcher
  /** Further attempts, on other instances, after a connection failure of an idempotent request; default 2. */
  readonly retries?: number
  /** How long an instance is skipped after a connection failure; default 3000 ms. */
  readonly ejectMs?: number
  /** Connect timeout (own dispatcher only; default 3000 ms), and headers and body timeouts per request. */
  readonly timeouts?: {
    readonly connectMs?: number
    readonly headersMs?: number
    readonly bodyMs?: number
  }
}

/** undici `request` options, less the target (the client picks it); `method` defaults to GET. */
export type ServiceRequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & {
  readonly method?: Dispatcher.HttpMethod
}

// RFC 9110 §9.2.2. POST and PATCH are retried only when the caller sets `idempotent: true`.
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

/** True when `err` says the instance could not be reached (not an abort, not an HTTP answer). */
export function isConnectionFailure(err: unknown): boolean {
  const code = errorCodeOf(err)
  return code !== undefined && CONNECTION_FAILURE_CODES.has(code)
}

/** A body that can be sent twice (a stream is consumed by the first attempt). */
function replayable(body: ServiceRequestOptions['body']): boolean {
  return body == null || typeof body === 'string' || body instanceof Uint8Array
}

/**
 * Creates a unit-aware service client.
 * @example
 * const client = createServiceClient({
 *   agent,
 *   registry: new TemplateRegistry('http://{service}.{unit}.svc:8080', ['center', 'hz', 'sh']),
 *   services: { product: { type: 'unit' }, stock: { type: 'center' }, search: { type: 'normal' } },
 * })
 * const res = await client.request('product', '/products/7')
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) on a bad option.
 */
export function createServiceClient(options: ServiceClientOptions): ServiceClient {
  return new ServiceClient(options)
}

interface Target {
  readonly origin: string
  /** The instance URL's path without its trailing slash, prefixed to every request path. */
  readonly base: string
}

/** Most instance URLs whose parsed form is kept; registries churn, so the cache is bounded. */
const MAX_TARGETS = 1024

export class ServiceClient {
  readonly #registry: ServiceRegistry
  readonly #router: () => Router | undefined
  readonly #localUnit: string
  readonly #services: ReadonlyMap<string, ServiceType>
  readonly #dispatcher: Dispatcher
  readonly #owned: Dispatcher | undefined
  readonly #retries: number
  readonly #ejectMs: number
  readonly #headersMs: number | undefined
  readonly #bodyMs: number | undefined
  /** Round-robin turn per service. */
  readonly #turns = new Map<string, number>()
  /** Instance URL -> when its ejection ends (performance.now() ms). */
  readonly #ejected = new Map<string, number>()
  readonly #targets = new Map<string, Target>()

  constructor(options: ServiceClientOptions) {
    if (typeof options?.registry?.instances !== 'function') {
      throw new InvalidArgumentError('the service client needs a registry with an instances(service) method')
    }
    this.#registry = options.registry
    const { agent, router } = options
    this.#router = agent ? () => agent.router : typeof router === 'function' ? router : () => router
    const localUnit = agent?.identity.unit ?? options.localUnit
    if (typeof localUnit !== 'string' || localUnit === '') {
      throw new InvalidArgumentError('the service client needs { agent } or { localUnit } to know its unit')
    }
    this.#localUnit = localUnit
    const services = new Map<string, ServiceType>()
    for (const [name, config] of Object.entries(options.services ?? {})) {
      const type = config?.type
      if (type !== 'unit' && type !== 'center' && type !== 'normal') {
        throw new InvalidArgumentError(
          `service ${name} needs a type of unit, center or normal, got ${JSON.stringify(type)}`,
          { service: name },
        )
      }
      services.set(name, type)
    }
    if (services.size === 0) throw new InvalidArgumentError('the service client needs at least one service')
    this.#services = services
    this.#retries = Math.floor(count(options.retries, 2, 'retries'))
    this.#ejectMs = count(options.ejectMs, 3000, 'ejectMs')
    const t = options.timeouts ?? {}
    this.#headersMs = t.headersMs === undefined ? undefined : count(t.headersMs, 0, 'timeouts.headersMs')
    this.#bodyMs = t.bodyMs === undefined ? undefined : count(t.bodyMs, 0, 'timeouts.bodyMs')
    this.#owned =
      options.dispatcher === undefined
        ? new Agent({ connect: { timeout: count(t.connectMs, 3000, 'timeouts.connectMs') } })
        : undefined
    // Route headers and baggage come from the one propagation code path of this bridge.
    this.#dispatcher = (options.dispatcher ?? this.#owned!).compose(routeInterceptor())
  }

  /**
   * Sends a request to an instance of `service` that the call's route allows, with undici `request`
   * semantics (any HTTP status is an answer; only failures to reach an instance are retried, and only
   * for idempotent requests with a replayable body).
   * @throws NoRouteIdError (APPACTIVE_NO_ROUTE_ID) for a unit service outside a route id, or one the
   *   rule set maps to no unit.
   * @throws NoProviderError (APPACTIVE_NO_PROVIDER) when the allowed unit has no healthy instance.
   * @throws LeaseExpiredError (APPACTIVE_LEASE_EXPIRED) for a unit or center service before any rule set.
   * @throws the undici error of the last attempt when no instance could be reached.
   */
  async request(
    service: string,
    path: string,
    options: ServiceRequestOptions = {},
  ): Promise<Dispatcher.ResponseData> {
    if (typeof path !== 'string' || !path.startsWith('/')) {
      throw new InvalidArgumentError(`request path must start with /, got ${JSON.stringify(path)}`)
    }
    const candidates = this.resolve(service)
    const method = options.method ?? 'GET'
    const retry = (options.idempotent ?? IDEMPOTENT.has(method)) && replayable(options.body)
    const attempts = retry ? Math.min(candidates.length, this.#retries + 1) : 1
    let failure: unknown
    for (let i = 0; i < attempts; i++) {
      const instance = candidates[i]!
      const target = this.#target(service, instance.url)
      try {
        const res = await this.#dispatcher.request({
          ...(this.#headersMs === undefined ? {} : { headersTimeout: this.#headersMs }),
          ...(this.#bodyMs === undefined ? {} : { bodyTimeout: this.#bodyMs }),
          ...options,
          method,
          origin: target.origin,
          path: target.base + path,
        })
        this.#ejected.delete(instance.url)
        return res
      } catch (err) {
        if (!isConnectionFailure(err)) throw err
        this.#ejected.set(instance.url, performance.now() + this.#ejectMs)
        failure = err
      }
    }
    throw failure
  }

  /**
   * The instances a call made now (in this route context) would try, in order: live ones round-robin,
   * unit by unit in preference order, then passively ejected ones, soonest back first.
   * @throws like {@link ServiceClient.request}, before any request is sent.
   */
  resolve(service: string): ServiceInstance[] {
    const healthy = resolveInstances(this.#registry, this.#query(service))
    const turn = this.#turns.get(service) ?? 0
    this.#turns.set(service, (turn + 1) % 0x40000000)
    const now = performance.now()
    const out: ServiceInstance[] = []
    const ejected: ServiceInstance[] = []
    // resolveInstances lists the instances unit by unit; rotate the live ones of each unit.
    let start = 0
    while (start < healthy.length) {
      const unit = healthy[start]!.unit
      const live: ServiceInstance[] = []
      let end = start
      for (; end < healthy.length && healthy[end]!.unit === unit; end++) {
        const instance = healthy[end]!
        if (this.#isEjected(instance.url, now)) ejected.push(instance)
        else live.push(instance)
      }
      for (let k = 0; k < live.length; k++) out.push(live[(turn + k) % live.length]!)
      start = end
    }
    // Ejection is a guess from one failure: when nothing else is left, an ejected instance is still
    // worth a try, and a success clears it sooner than the window would.
    ejected.sort((a, b) => this.#ejected.get(a.url)! - this.#ejected.get(b.url)!)
    for (const instance of ejected) out.push(instance)
    return out
  }

  /** Closes the client's own dispatcher (not one passed in). */
  async close(): Promise<void> {
    await this.#owned?.close()
  }

  #query(service: string): TargetQuery {
    const type = this.#services.get(service)
    if (type === undefined) {
      throw new InvalidArgumentError(`service ${service} is not configured in this service client`, {
        service,
      })
    }
    const localUnit = this.#localUnit
    if (type === 'normal') return { service, type, owner: null, localUnit, centerUnit: '' }
    const router = this.#router()
    if (router === undefined) {
      throw new LeaseExpiredError({ reason: 'no rule set applied yet', service })
    }
    if (type === 'center') return { service, type, owner: null, localUnit, centerUnit: router.centerUnit }
    const routeId = currentRoute()?.routeId
    if (routeId === undefined) {
      throw new NoRouteIdError(
        `${service} is a unit service: call it inside a route context that has a route id (runWithRoute)`,
        { service },
      )
    }
    const owner = router.unitOf(routeId)
    if (owner === null) {
      throw new NoRouteIdError(`route id ${routeId} maps to no unit and the fallback rejects it`, {
        service,
        routeId,
      })
    }
    return { service, type, owner, localUnit, centerUnit: router.centerUnit }
  }

  #isEjected(url: string, now: number): boolean {
    const until = this.#ejected.get(url)
    if (until === undefined) return false
    if (until > now) return true
    this.#ejected.delete(url)
    return false
  }

  #target(service: string, url: string): Target {
    let target = this.#targets.get(url)
    if (target !== undefined) return target
    let parsed: URL
    try {
      // A registered address may be a bare `host:port` (the gRPC form): HTTP calls it over http.
      parsed = new URL(url.includes('://') ? url : `http://${url}`)
    } catch {
      throw new InvalidArgumentError(`instance ${JSON.stringify(url)} of service ${service} is not a URL`, {
        service,
        url,
      })
    }
    if (this.#targets.size >= MAX_TARGETS) this.#targets.clear()
    target = { origin: parsed.origin, base: parsed.pathname.replace(/\/+$/, '') }
    this.#targets.set(url, target)
    return target
  }
}

function count(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new InvalidArgumentError(`${name} must be a number >= 0, got ${value}`)
  }
  return value
}
