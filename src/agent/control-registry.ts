/**
 * The registry that agents populate: every agent registers with the control plane under its app name,
 * unit and address, and heartbeats. `ControlPlaneRegistry` reads `GET /registry?app=NAME` (see
 * channels/control/protocol.ts) for each service it is asked about, keeps the answer as a snapshot and
 * refreshes it in the background, so `instances()` stays synchronous and costs a map lookup per call.
 *
 * A control plane that is down does not take the callers down with it: the last snapshot stays in
 * force, the outage is logged once, and the fetches back off until it answers again.
 */
import type { Logger } from 'pino'
import { type Dispatcher, Pool } from 'undici'
import { DEFAULT_PREFIX, type RegistryNode } from '../channels/control/protocol.js'
import { InvalidArgumentError } from '../errors/index.js'
import type { ServiceInstance, ServiceRegistry } from './registry.js'

/** Options of {@link ControlPlaneRegistry}. */
export interface ControlPlaneRegistryOptions {
  /** Base URL of the control plane, e.g. `http://127.0.0.1:7070`. */
  readonly url: string
  /** The shared agent token, or a live agent session token. */
  readonly token: string
  /** Services (= the app names their nodes registered with) to fetch from the start. */
  readonly services?: readonly string[]
  /** URL prefix of the agent protocol; default `<url path>/v1/agent`. */
  readonly prefix?: string
  /** How often each snapshot is refreshed; default 2000 ms. */
  readonly refreshMs?: number
  /** Longest wait between attempts while the control plane is unreachable; default 30 s. */
  readonly maxBackoffMs?: number
  /** Timeout of one fetch; default 5 s. */
  readonly requestTimeoutMs?: number
  /** undici dispatcher; default: a Pool of 1 connection to the control plane. */
  readonly dispatcher?: Dispatcher
  readonly logger?: Logger
}

interface Entry {
  instances: readonly ServiceInstance[]
  /** Settles after the first attempt to fetch this service, whatever its outcome. */
  readonly first: Promise<void>
  markFirst: () => void
}

const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/

/** Instances of services as the agents registered them with the control plane. */
export class ControlPlaneRegistry implements ServiceRegistry {
  readonly #origin: string
  readonly #prefix: string
  readonly #token: string
  readonly #refreshMs: number
  readonly #maxBackoffMs: number
  readonly #timeoutMs: number
  readonly #dispatcher: Dispatcher
  readonly #ownsDispatcher: boolean
  readonly #log: Logger | undefined
  readonly #entries = new Map<string, Entry>()
  #delayMs: number
  #timer: NodeJS.Timeout | undefined
  #round: Promise<void> | undefined
  #failing = false
  #closed = false
  /** A service was added during a round, so it has not been fetched yet. */
  #dirty = false
  readonly #abort = new AbortController()

  /** Starts fetching at once. @throws InvalidArgumentError on a malformed URL, empty token or bad name. */
  constructor(options: ControlPlaneRegistryOptions) {
    let url: URL
    try {
      url = new URL(options.url)
    } catch {
      throw new InvalidArgumentError(`control-plane URL ${JSON.stringify(options.url)} is not a URL`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new InvalidArgumentError(`control-plane URL must be http or https, got ${url.protocol}`)
    }
    if (!options.token) throw new InvalidArgumentError('the control-plane registry needs a token')
    this.#origin = url.origin
    this.#prefix = (options.prefix ?? `${url.pathname.replace(/\/$/, '')}${DEFAULT_PREFIX}`).replace(
      /\/$/,
      '',
    )
    this.#token = options.token
    this.#refreshMs = positive(options.refreshMs, 2000, 'refreshMs')
    this.#maxBackoffMs = Math.max(this.#refreshMs, positive(options.maxBackoffMs, 30_000, 'maxBackoffMs'))
    this.#timeoutMs = positive(options.requestTimeoutMs, 5000, 'requestTimeoutMs')
    this.#delayMs = this.#refreshMs
    this.#ownsDispatcher = options.dispatcher === undefined
    this.#dispatcher = options.dispatcher ?? new Pool(this.#origin, { connections: 1 })
    this.#log = options.logger?.child({ registry: `control:${this.#origin}` })
    for (const service of options.services ?? []) this.#entry(service)
  }

  /**
   * The last snapshot of `service`'s instances. A service not asked about before is fetched from now on
   * (right away, in the background): this first call answers `[]`, so await `ready()` after naming every
   * service in `options.services` to start with a full snapshot.
   */
  instances(service: string): readonly ServiceInstance[] {
    return this.#entries.get(service)?.instances ?? this.#entry(service).instances
  }

  /**
   * Resolves once every service known now was fetched once (or the attempt failed: the outage is
   * logged, and the registry keeps trying in the background).
   */
  async ready(): Promise<void> {
    await Promise.all([...this.#entries.values()].map((e) => e.first))
  }

  /** Stops refreshing; the snapshot stays readable. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#timer)
    this.#abort.abort()
    for (const e of this.#entries.values()) e.markFirst()
    await this.#round
    if (this.#ownsDispatcher) await this.#dispatcher.close()
  }

  #entry(service: string): Entry {
    if (typeof service !== 'string' || !NAME.test(service)) {
      throw new InvalidArgumentError(`service ${JSON.stringify(service)} is not a valid app name`)
    }
    let markFirst = () => {}
    const first = new Promise<void>((resolve) => {
      markFirst = resolve
    })
    const entry: Entry = { instances: [], first, markFirst }
    this.#entries.set(service, entry)
    if (this.#closed) markFirst()
    // A new name is fetched now rather than at the next tick, so a caller waits one round trip at most;
    // during a round, right after it.
    else if (this.#round === undefined) this.#schedule(0)
    else this.#dirty = true
    return entry
  }

  #schedule(inMs: number): void {
    if (this.#closed) return
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => void this.#refresh(), inMs)
    this.#timer.unref()
  }

  /** One round: every service fetched in parallel; then the next round, sooner or later. */
  async #refresh(): Promise<void> {
    this.#timer = undefined
    const services = [...this.#entries.keys()]
    this.#round = Promise.all(services.map((s) => this.#fetchOne(s))).then((errors) => {
      this.#round = undefined
      this.#settle(errors.find((e) => e !== undefined))
    })
    await this.#round
  }

  /** Fetches one service into its entry; returns the error, or undefined on success. */
  async #fetchOne(service: string): Promise<unknown> {
    const entry = this.#entries.get(service)!
    try {
      entry.instances = await this.#fetch(service)
      return undefined
    } catch (err) {
      return err
    } finally {
      entry.markFirst()
    }
  }

  /** Logs an outage once and its end once; backs off while it lasts. */
  #settle(err: unknown): void {
    if (this.#closed) return
    if (err === undefined) {
      if (this.#failing) this.#log?.info('control-plane registry reachable again')
      this.#failing = false
      this.#delayMs = this.#refreshMs
    } else {
      if (!this.#failing) {
        this.#log?.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'control-plane registry unreachable; keeping the last snapshot and retrying with backoff',
        )
      }
      this.#failing = true
      this.#delayMs = Math.min(this.#maxBackoffMs, this.#delayMs * 2)
    }
    const dirty = this.#dirty
    this.#dirty = false
    this.#schedule(dirty ? 0 : this.#delayMs)
  }

  async #fetch(service: string): Promise<ServiceInstance[]> {
    const res = await this.#dispatcher.request({
      origin: this.#origin,
      path: `${this.#prefix}/registry?app=${encodeURIComponent(service)}`,
      method: 'GET',
      headers: { authorization: `Bearer ${this.#token}`, accept: 'application/json' },
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
      signal: this.#abort.signal,
    })
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new Error(`GET ${this.#prefix}/registry: HTTP ${res.statusCode}`)
    }
    const body = (await res.body.json()) as { nodes?: unknown }
    if (!Array.isArray(body?.nodes)) throw new Error(`GET ${this.#prefix}/registry: no nodes list`)
    return toInstances(body.nodes as unknown[])
  }
}

/** The nodes that can be called (they registered an address), as frozen instances. */
function toInstances(nodes: readonly unknown[]): ServiceInstance[] {
  const out: ServiceInstance[] = []
  for (const raw of nodes) {
    const n = raw as Partial<RegistryNode> | null
    if (typeof n?.address !== 'string' || typeof n.unit !== 'string') continue
    out.push(
      Object.freeze({
        url: n.address,
        unit: n.unit,
        ...(typeof n.nodeId === 'string' ? { nodeId: n.nodeId } : {}),
        healthy: n.healthy === true,
      }),
    )
  }
  return out
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback
  if (!(Number.isFinite(value) && value > 0)) {
    throw new InvalidArgumentError(`${name} must be a positive number of ms, got ${value}`)
  }
  return value
}
