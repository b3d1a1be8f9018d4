/**
 * Upstream instances of one unit, and how the gateway picks among them.
 *
 * A set knows ONLY the instances of its own (app, unit): when every one of them is down, `pick()`
 * returns undefined and the caller answers 502/503. Traffic never silently crosses units.
 *
 * Health comes from two sources. Passively, the proxy brackets each forwarded request with
 * `begin()`/`end()`: `unhealthyAfter` consecutive connection-level failures eject the instance. Actively
 * (when the app has a health check), a GET probe runs on every instance each `intervalMs`; probe
 * failures count the same way, and `healthyAfter` consecutive good probes restore an ejected instance.
 * Without active checks, an ejected instance gets one trial request after a backoff (1 s doubling to
 * 30 s); a success restores it (half-open, as in a circuit breaker).
 */
import { EventEmitter } from 'node:events'
import { Pool } from 'undici'
import type { AppConfig, HealthCheckConfig, TimeoutsConfig } from './types.js'

/** Consecutive failures before ejection when the app has no active health check. */
export const DEFAULT_UNHEALTHY_AFTER = 3
/** First half-open backoff (passive mode); doubles after each failed trial. */
export const DEFAULT_EJECT_BACKOFF_MS = 1_000
/** Longest half-open backoff. */
export const DEFAULT_MAX_EJECT_BACKOFF_MS = 30_000

/** Failures before or while a request reached an instance: another instance may well serve it. */
export const CONNECTION_FAILURE_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
])

/**
 * Error codes that mean the upstream itself failed before answering: the connection was refused,
 * reset or closed, or it accepted the request and sent no response headers in time.
 */
const FAILURE_CODES: ReadonlySet<string> = new Set([...CONNECTION_FAILURE_CODES, 'UND_ERR_HEADERS_TIMEOUT'])

/** The `code` of a network error (of the first address's, for happy-eyeballs `AggregateError`s). */
export function errorCodeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') return code
  // Happy-eyeballs connects (autoSelectFamily) fail with an AggregateError of per-address errors.
  if (err instanceof AggregateError) return errorCodeOf(err.errors[0])
  return undefined
}

/**
 * True when `err` is the upstream's fault at the connection level (refused, reset, closed, connect or
 * headers timeout). False for everything else, notably a request aborted by the client or a pool
 * closed by the gateway: those say nothing about the instance's health.
 */
export function isUpstreamFailure(err: unknown): boolean {
  const code = errorCodeOf(err)
  return code !== undefined && FAILURE_CODES.has(code)
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = errorCodeOf(err)
    return code !== undefined && !err.message.includes(code) ? `${code}: ${err.message}` : err.message
  }
  return String(err)
}

/** A point-in-time view of one instance, for /readyz and metrics. */
export interface InstanceSnapshot {
  readonly url: string
  readonly healthy: boolean
  readonly inflight: number
  /** Consecutive failures (proxied requests or probes) since the last success. */
  readonly failures: number
  readonly lastError: string | undefined
}

/** The health policy an instance applies; resolved once per set. */
export interface HealthPolicy {
  readonly unhealthyAfter: number
  readonly healthyAfter: number
  /** True when active probes decide recovery (no half-open trials). */
  readonly active: boolean
  readonly backoffMs: number
  readonly maxBackoffMs: number
}

type State = 'healthy' | 'ejected' | 'half-open'

/** One upstream instance: a base URL, its connection pool, and its health. */
export class Instance {
  /** The base URL as configured. */
  readonly url: string
  /** `scheme://host:port` of `url`: what the pool connects to. */
  readonly origin: string
  readonly pool: Pool
  #inflight = 0
  #state: State = 'healthy'
  #failures = 0
  #goodProbes = 0
  #lastError: string | undefined
  #backoffMs: number
  /** Passive mode: when the next half-open trial may go out (performance.now() ms). */
  #retryAt = 0
  readonly #policy: HealthPolicy
  readonly #onChange: (instance: Instance, healthy: boolean) => void

  /** @internal Built by `UpstreamSet`. */
  constructor(
    url: string,
    pool: Pool.Options,
    policy: HealthPolicy,
    onChange: (instance: Instance, healthy: boolean) => void,
  ) {
    this.url = url
    this.origin = new URL(url).origin
    this.pool = new Pool(this.origin, pool)
    this.#policy = policy
    this.#backoffMs = policy.backoffMs
    this.#onChange = onChange
  }

  /** False once ejected, until restored (a half-open instance is not healthy yet). */
  get healthy(): boolean {
    return this.#state === 'healthy'
  }

  /** Requests between `begin()` and `end()`. */
  get inflight(): number {
    return this.#inflight
  }

  /** Consecutive failures since the last success. */
  get consecutiveFailures(): number {
    return this.#failures
  }

  get lastError(): string | undefined {
    return this.#lastError
  }

  /** Call just before forwarding a request to this instance. */
  begin(): void {
    this.#inflight++
  }

  /**
   * Call once the forwarded request is over. `ok` is true when the upstream answered (response headers
   * arrived, whatever the status, even if the body later broke). With `ok` false, `err` is classified:
   * only connection-level failures (see `isUpstreamFailure`) count; other errors (client aborts) are
   * neutral. `end(false)` without an error always counts as a failure.
   */
  end(ok: boolean, err?: unknown): void {
    this.#inflight--
    if (ok) this.#succeeded()
    else if (err === undefined || isUpstreamFailure(err)) this.#failed(err ?? 'request failed')
  }

  /**
   * Passive mode: true when this ejected instance is due a half-open trial; reserves the trial (the next
   * one becomes due after another backoff, in case this one never reports back).
   * @internal Used by `UpstreamSet.pick()`.
   */
  takeTrial(now: number): boolean {
    if (this.#policy.active || this.#state === 'healthy' || now < this.#retryAt) return false
    this.#state = 'half-open'
    this.#retryAt = now + this.#backoffMs
    return true
  }

  /** @internal Records an active probe's outcome. */
  probed(ok: boolean, err?: unknown): void {
    if (!ok) {
      this.#goodProbes = 0
      this.#failed(err ?? 'probe failed')
    } else if (this.#state === 'healthy') {
      this.#failures = 0
    } else if (++this.#goodProbes >= this.#policy.healthyAfter) {
      this.#restore()
    }
  }

  snapshot(): InstanceSnapshot {
    return {
      url: this.url,
      healthy: this.healthy,
      inflight: this.#inflight,
      failures: this.#failures,
      lastError: this.#lastError,
    }
  }

  #succeeded(): void {
    this.#failures = 0
    // Only a half-open trial restores from traffic; a late answer to a request sent before the
    // ejection does not, and in active mode only probes do.
    if (this.#state === 'half-open') this.#restore()
  }

  #failed(err: unknown): void {
    this.#failures++
    this.#lastError = errorText(err)
    if (this.#state === 'half-open') {
      this.#state = 'ejected'
      this.#backoffMs = Math.min(this.#backoffMs * 2, this.#policy.maxBackoffMs)
      this.#retryAt = performance.now() + this.#backoffMs
    } else if (this.#state === 'healthy' && this.#failures >= this.#policy.unhealthyAfter) {
      this.#state = 'ejected'
      this.#goodProbes = 0
      this.#retryAt = performance.now() + this.#backoffMs
      this.#onChange(this, false)
    }
  }

  #restore(): void {
    this.#state = 'healthy'
    this.#failures = 0
    this.#goodProbes = 0
    this.#backoffMs = this.#policy.backoffMs
    this.#onChange(this, true)
  }
}

export interface UpstreamSetOptions {
  readonly balance: AppConfig['balance']
  /** Active health checks; undefined: passive ejection with half-open trials. */
  readonly healthCheck?: HealthCheckConfig | undefined
  readonly timeouts: TimeoutsConfig
  /** For logs and metrics, e.g. `shop/center`. */
  readonly name: string
  /** Most connections per instance (default 128). */
  readonly connections?: number
  /** First half-open backoff in passive mode (default 1000 ms; doubles per failed trial). */
  readonly ejectBackoffMs?: number
  /** Longest half-open backoff (default 30000 ms). */
  readonly maxEjectBackoffMs?: number
}

export interface UpstreamSetEvents {
  ejected: [instance: Instance]
  restored: [instance: Instance]
}

/** The instances of one (app, unit), with load balancing and health checks. */
export class UpstreamSet extends EventEmitter<UpstreamSetEvents> {
  readonly name: string
  readonly instances: readonly Instance[]
  readonly #leastBusy: boolean
  readonly #healthCheck: HealthCheckConfig | undefined
  /** Index where the next round-robin scan starts. */
  #next = 0
  #healthy: number
  /** Per instance: the timer of the next probe, and the probe in progress. */
  readonly #timers: (NodeJS.Timeout | undefined)[] = []
  readonly #probes: (AbortController | undefined)[] = []
  #started = false
  #closing: Promise<void> | undefined

  constructor(urls: readonly string[], options: UpstreamSetOptions) {
    super()
    this.name = options.name
    this.#leastBusy = options.balance === 'least-busy'
    this.#healthCheck = options.healthCheck
    const hc = options.healthCheck
    const backoffMs = options.ejectBackoffMs ?? DEFAULT_EJECT_BACKOFF_MS
    const policy: HealthPolicy = {
      unhealthyAfter: hc?.unhealthyAfter ?? DEFAULT_UNHEALTHY_AFTER,
      healthyAfter: hc?.healthyAfter ?? 1,
      active: hc !== undefined,
      backoffMs,
      maxBackoffMs: Math.max(backoffMs, options.maxEjectBackoffMs ?? DEFAULT_MAX_EJECT_BACKOFF_MS),
    }
    const { connectMs, headersMs, bodyMs } = options.timeouts
    const pool: Pool.Options = {
      connections: options.connections ?? 128,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      connect: { timeout: connectMs },
      headersTimeout: headersMs,
      bodyTimeout: bodyMs,
    }
    const onChange = (instance: Instance, healthy: boolean) => {
      this.#healthy += healthy ? 1 : -1
      this.emit(healthy ? 'restored' : 'ejected', instance)
    }
    this.instances = urls.map((url) => new Instance(url, pool, policy, onChange))
    this.#healthy = this.instances.length
  }

  /** How many instances are healthy now. */
  get healthy(): number {
    return this.#healthy
  }

  /**
   * The instance for the next request: round-robin over healthy instances, or the one with the fewest
   * requests in flight (ties in round-robin order). In passive mode, an ejected instance whose backoff
   * has passed is returned once as a half-open trial. Undefined when none can take the request.
   */
  pick(): Instance | undefined {
    const list = this.instances
    const n = list.length
    if (n === 0) return undefined
    if (this.#healthy < n && this.#healthCheck === undefined) {
      const trial = this.#dueTrial()
      if (trial !== undefined) return trial
    }
    let best: Instance | undefined
    let bestIndex = 0
    for (let i = 0, at = this.#next; i < n; i++, at = at + 1 === n ? 0 : at + 1) {
      const instance = list[at]!
      if (!instance.healthy) continue
      if (!this.#leastBusy) {
        best = instance
        bestIndex = at
        break
      }
      if (best === undefined || instance.inflight < best.inflight) {
        best = instance
        bestIndex = at
        if (instance.inflight === 0) break
      }
    }
    if (best !== undefined) this.#next = bestIndex + 1 === n ? 0 : bestIndex + 1
    return best
  }

  #dueTrial(): Instance | undefined {
    const now = performance.now()
    const list = this.instances
    for (let i = 0; i < list.length; i++) if (list[i]!.takeTrial(now)) return list[i]
    return undefined
  }

  /** Per-instance state, for /readyz and metrics. */
  snapshot(): InstanceSnapshot[] {
    return this.instances.map((instance) => instance.snapshot())
  }

  /** Starts active health checks (no-op without a health check config, or when already started). */
  start(): void {
    const hc = this.#healthCheck
    if (hc === undefined || this.#started || this.#closing !== undefined) return
    this.#started = true
    this.instances.forEach((instance, i) => {
      void this.#probeLoop(instance, i, hc)
    })
  }

  /** Probes now, then again `intervalMs` after each probe ends (so probes never overlap). */
  async #probeLoop(instance: Instance, i: number, hc: HealthCheckConfig): Promise<void> {
    const probe = new AbortController()
    this.#probes[i] = probe
    const deadline = setTimeout(
      () => probe.abort(new Error(`health check timed out after ${hc.timeoutMs} ms`)),
      hc.timeoutMs,
    )
    deadline.unref()
    let ok = false
    let failure: unknown
    try {
      const { statusCode, body } = await instance.pool.request({
        method: 'GET',
        path: hc.path,
        headers: { 'user-agent': 'appactive-health-check' },
        signal: probe.signal,
      })
      await body.dump()
      ok = statusCode >= 200 && statusCode < 400
      if (!ok) failure = `health check answered ${statusCode}`
    } catch (err) {
      failure = probe.signal.aborted ? probe.signal.reason : err
    } finally {
      clearTimeout(deadline)
    }
    if (this.#closing !== undefined) return
    instance.probed(ok, failure)
    const timer = setTimeout(() => void this.#probeLoop(instance, i, hc), hc.intervalMs)
    timer.unref()
    this.#timers[i] = timer
  }

  /** Stops health checks and closes every pool (waiting for requests in flight). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const timer of this.#timers) clearTimeout(timer)
      for (const probe of this.#probes) probe?.abort(new Error('upstream set closed'))
      await Promise.all(this.instances.map((instance) => instance.pool.close()))
    })()
    return this.#closing
  }
}

/** One unit's set within a registry snapshot. */
export interface UpstreamSetSnapshot {
  readonly app: string
  readonly unit: string
  readonly healthy: number
  readonly instances: InstanceSnapshot[]
}

export interface UpstreamRegistryOptions {
  readonly connections?: number
  readonly ejectBackoffMs?: number
  readonly maxEjectBackoffMs?: number
}

export interface UpstreamRegistryEvents {
  ejected: [instance: Instance, set: UpstreamSet]
  restored: [instance: Instance, set: UpstreamSet]
}

/** Every app's upstream sets, one per unit; re-emits their `ejected`/`restored` events with the set. */
export class UpstreamRegistry extends EventEmitter<UpstreamRegistryEvents> {
  readonly #sets = new Map<string, Map<string, UpstreamSet>>()

  constructor(apps: readonly AppConfig[], timeouts: TimeoutsConfig, options: UpstreamRegistryOptions = {}) {
    super()
    for (const app of apps) {
      const units = new Map<string, UpstreamSet>()
      for (const [unit, urls] of Object.entries(app.upstreams)) {
        const set = new UpstreamSet(urls, {
          ...options,
          balance: app.balance,
          healthCheck: app.healthCheck,
          timeouts,
          name: `${app.name}/${unit}`,
        })
        set.on('ejected', (instance) => this.emit('ejected', instance, set))
        set.on('restored', (instance) => this.emit('restored', instance, set))
        units.set(unit, set)
      }
      this.#sets.set(app.name, units)
    }
  }

  /** The set for `unit` of `app`; undefined when the app has no upstreams in that unit. */
  get(app: string, unit: string): UpstreamSet | undefined {
    return this.#sets.get(app)?.get(unit)
  }

  start(): void {
    for (const units of this.#sets.values()) for (const set of units.values()) set.start()
  }

  async close(): Promise<void> {
    const closing: Promise<void>[] = []
    for (const units of this.#sets.values()) for (const set of units.values()) closing.push(set.close())
    await Promise.all(closing)
  }

  snapshot(): UpstreamSetSnapshot[] {
    const out: UpstreamSetSnapshot[] = []
    for (const [app, units] of this.#sets) {
      for (const [unit, set] of units) {
        out.push({ app, unit, healthy: set.healthy, instances: set.snapshot() })
      }
    }
    return out
  }
}
