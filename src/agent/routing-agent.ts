/**
 * The data-plane runtime inside every gateway and application process: it holds the current compiled
 * rule set, takes new ones from its channels (validated and compiled off the hot path, then swapped in
 * with one assignment), refuses invalid or older versions while keeping the last good one, holds the
 * lease, tracks in-flight guarded writes, and decides whether a write may proceed.
 */
import { EventEmitter } from 'node:events'
import { join } from 'node:path'
import pino, { type Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { ApplyOutcome, DeliveryMeta, RuleChannel, RuleSink } from '../channels/types.js'
import {
  AppActiveError,
  FencedError,
  LeaseExpiredError,
  NoRouteIdError,
  NotCenterError,
  type RuleIssue,
  WrongUnitError,
} from '../errors/index.js'
import { type RouteDecision, type Router, validateRuleSet } from '../rules/index.js'
import { compileValidatedRouter } from '../rules/router.js'
import { RuleCache } from './cache.js'
import { type ChannelSettings, defaultChannels } from './default-channels.js'
import { InflightWrites, type WriteHandle } from './inflight.js'
import { type Clock, Lease, type LeaseState, systemClock } from './lease.js'
import { hasDrainPermit, MessageDrain, type MessageDrainState } from './message-drain.js'
import { AgentMetrics } from './metrics.js'
import { type AgentOptions, type ResolvedAgentOptions, resolveAgentOptions } from './options.js'

/** Options of `createAgent`. */
export interface CreateAgentOptions extends AgentOptions, ChannelSettings {
  /**
   * Channels that deliver rule sets (file, control plane); started by `start()`. Default: the ones
   * `rules` / `controlUrl` / `token` (or APPACTIVE_RULES / APPACTIVE_CONTROL_URL / APPACTIVE_TOKEN) name.
   */
  readonly channels?: readonly RuleChannel[]
  /** prom-client registry for the agent's metrics; default: a registry of its own. */
  readonly registry?: Registry
  /**
   * Where the last good rule set is kept on disk [APPACTIVE_CACHE], or false for no cache.
   * Default: `.appactive/<app>-<unit>.rules.json` under the working directory.
   */
  readonly cache?: string | false
}

/** Which data a guarded write touches: rows owned by route ids (`unit`) or the center's (`center`). */
export type WriteScope = 'unit' | 'center'

/** A snapshot of the agent for health endpoints and logs. */
export interface AgentState {
  readonly nodeId: string
  readonly app: string
  readonly unit: string
  readonly version: number
  readonly lease: LeaseState
  readonly leaseRemainingMs: number
  readonly inflight: number
  /** The last refused delivery, kept until a later version applies. */
  readonly lastError:
    | { readonly version: number | undefined; readonly issues: readonly RuleIssue[]; readonly source: string }
    | undefined
}

/**
 * Events: `applied` (version, source), `rejected` (outcome, source), `inflight` (a guarded write ended),
 * `mq` (the message drain state changed).
 */
export interface AgentEvents {
  applied: [version: number, source: string]
  rejected: [outcome: Extract<ApplyOutcome, { status: 'rejected' }>, source: string]
  inflight: []
  mq: []
}

/**
 * Creates an agent. Call `start()` to start its channels.
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) when the unit is missing or malformed.
 */
export function createAgent(options: CreateAgentOptions = {}): RoutingAgent {
  return new RoutingAgent(options)
}

export class RoutingAgent extends EventEmitter<AgentEvents> implements RuleSink {
  readonly identity: ResolvedAgentOptions
  readonly logger: Logger
  readonly metrics: AgentMetrics
  /** What the message layer reports for the cut-over's drain step (topics, groups, barriers passed). */
  readonly messages: MessageDrain
  readonly #clock: Clock
  readonly #lease: Lease
  readonly #inflight: InflightWrites
  readonly #channels: readonly RuleChannel[]
  readonly #cache: RuleCache | undefined
  #router: Router | undefined
  #canonical = ''
  #lastError: AgentState['lastError']
  #started = false

  constructor(options: CreateAgentOptions = {}) {
    super()
    this.identity = resolveAgentOptions(options)
    this.#clock = options.clock ?? systemClock
    this.#lease = new Lease(this.#clock)
    this.#channels = options.channels ?? defaultChannels(options, this.identity)
    // With a leasing channel, writes wait for the first grant, even before start().
    if (this.#channels.some((c) => c.leasing)) this.#lease.enable()
    this.logger = (options.logger ?? defaultLogger()).child({
      nodeId: this.identity.nodeId,
      app: this.identity.app,
      unit: this.identity.unit,
    })
    this.#inflight = new InflightWrites(() => {
      if (this.listenerCount('inflight') > 0) this.emit('inflight')
    })
    this.messages = new MessageDrain(() => {
      if (this.listenerCount('mq') > 0) this.emit('mq')
    })
    const cachePath = cacheFile(options.cache, this.identity)
    this.#cache = cachePath === undefined ? undefined : new RuleCache(cachePath, this.logger)
    this.metrics = new AgentMetrics(options.registry, {
      inflight: () => this.#inflight.total,
      leaseValid: () => (this.#lease.allowsWrites() ? 1 : 0),
    })
  }

  /**
   * Applies the cached rule set (if any), then starts every channel; resolves when each made its first
   * attempt (see `state()` for the result).
   */
  async start(): Promise<void> {
    if (this.#started) return
    this.#started = true
    const cached = await this.#cache?.read()
    if (cached !== undefined) {
      const outcome = this.apply(cached.ruleSet, { source: 'cache' })
      if (outcome.status === 'applied') {
        this.logger.warn(
          { version: outcome.version, savedAt: cached.savedAt, from: cached.source, path: this.#cache!.path },
          `starting with cached rule set v${outcome.version} until a channel delivers`,
        )
      }
    }
    await Promise.all(this.#channels.map((c) => c.start(this)))
  }

  /** Stops every channel and flushes the cache. */
  async close(): Promise<void> {
    await Promise.all(this.#channels.map((c) => c.close()))
    await this.#cache?.flush()
  }

  /** The compiled rule set in force, or undefined before the first one. */
  get router(): Router | undefined {
    return this.#router
  }

  /** Version in force, or -1 before the first rule set. */
  get version(): number {
    return this.#router?.version ?? -1
  }

  now(): number {
    return this.#clock.now()
  }

  /** Validates and compiles a rule set, then swaps it in. Never throws; see `ApplyOutcome`. */
  apply(input: unknown, meta: DeliveryMeta = { source: 'api' }): ApplyOutcome {
    const outcome = this.#apply(input)
    this.metrics.applied(outcome.status, this.#router)
    if (outcome.status === 'applied') {
      this.#lastError = undefined
      if (meta.source !== 'cache') this.#cache?.write(this.#router!.ruleSet, meta.source)
      this.logger.info({ version: outcome.version, source: meta.source }, 'rule set applied')
      this.emit('applied', outcome.version, meta.source)
      for (const c of this.#channels) c.applied?.(outcome.version)
    } else if (outcome.status === 'rejected') {
      this.#rejected(outcome, meta)
    } else if (outcome.status === 'stale') {
      // Refused, like an invalid one: the error state says so (an operator wrote an older file, say).
      const message = `version ${outcome.version} is older than version ${outcome.current} in force`
      this.#lastError = {
        version: outcome.version,
        issues: [{ path: 'version', message }],
        source: meta.source,
      }
      this.logger.warn(
        { version: outcome.version, current: outcome.current, source: meta.source },
        'stale rule set ignored',
      )
    }
    return outcome
  }

  reportError(version: number | undefined, issues: readonly RuleIssue[], meta: DeliveryMeta): void {
    this.metrics.applied('rejected', undefined)
    this.#rejected({ status: 'rejected', version, issues }, meta)
  }

  #rejected(outcome: Extract<ApplyOutcome, { status: 'rejected' }>, meta: DeliveryMeta): void {
    this.#lastError = { version: outcome.version, issues: outcome.issues, source: meta.source }
    this.logger.error(
      { version: outcome.version, source: meta.source, issues: outcome.issues.slice(0, 20) },
      `rule set from ${meta.source} rejected; keeping v${this.version}`,
    )
    this.emit('rejected', outcome, meta.source)
  }

  #apply(input: unknown): ApplyOutcome {
    const claimed = versionOf(input)
    let v: ReturnType<typeof validateRuleSet>
    try {
      v = validateRuleSet(input)
    } catch (err) {
      // Values JSON cannot hold (bigint, functions, throwing getters) never come off the wire, but a
      // caller in code can pass them: refuse, never throw.
      const message = `not a rule set: ${err instanceof Error ? err.message : String(err)}`.slice(0, 200)
      return { status: 'rejected', version: claimed, issues: [{ path: '', message }] }
    }
    if (!v.ok) return { status: 'rejected', version: claimed, issues: v.issues }
    const current = this.version
    const version = v.ruleSet.version
    if (version < current) return { status: 'stale', version, current }
    const canonical = JSON.stringify(v.ruleSet)
    if (version === current) {
      if (canonical === this.#canonical) return { status: 'duplicate', version }
      return {
        status: 'rejected',
        version,
        issues: [
          { path: 'version', message: `version ${version} is already in force with different content` },
        ],
      }
    }
    let router: Router
    try {
      router = compileValidatedRouter(v.ruleSet, { localUnit: this.identity.unit })
    } catch (err) {
      const message = err instanceof AppActiveError ? err.message : String(err)
      return { status: 'rejected', version, issues: [{ path: '', message }] }
    }
    this.#router = router
    this.#canonical = canonical
    return { status: 'applied', version }
  }

  /** Routes a raw id with the rule set in force, counting the decision in the metrics. */
  route(rawId: string | null | undefined): RouteDecision {
    const router = this.#requireRouter()
    this.metrics.decision(router.lookup(rawId))
    return router.route(rawId)
  }

  #requireRouter(): Router {
    const router = this.#router
    if (router === undefined) throw new LeaseExpiredError({ reason: 'no rule set applied yet' })
    return router
  }

  /**
   * Decides whether a guarded write for `routeId` may proceed here; throws the typed error if not.
   * `unit` scope: the id must be owned by this unit, not fenced. `center` scope: this must be the center.
   * Both need a valid lease (when leasing is on).
   * @throws LeaseExpiredError, NoRouteIdError, FencedError, WrongUnitError, NotCenterError
   */
  checkWrite(routeId: string | null | undefined, scope: WriteScope = 'unit'): void {
    try {
      this.#check(routeId, scope)
    } catch (err) {
      if (err instanceof AppActiveError) this.metrics.rejected(err.code)
      throw err
    }
  }

  /**
   * Throws when the lease does not allow guarded writes now. The DB guard calls it before the COMMIT of
   * a transaction that holds guarded writes: a write may not commit after its agent lost its lease (the
   * control plane then counts the agent as self-fenced and no longer waits for its in-flight writes).
   * @throws LeaseExpiredError
   */
  assertLease(): void {
    if (!this.#lease.allowsWrites()) {
      throw new LeaseExpiredError({
        nodeId: this.identity.nodeId,
        version: this.version,
        lease: this.#lease.state(),
      })
    }
  }

  #check(routeId: string | null | undefined, scope: WriteScope): void {
    this.assertLease()
    const router = this.#requireRouter()
    const unit = this.identity.unit
    if (scope === 'center') {
      if (router.centerUnit !== unit) throw new NotCenterError(router.centerUnit, unit)
      return
    }
    if (routeId == null || routeId === '') throw new NoRouteIdError('a guarded write needs a route id')
    const code = router.lookup(routeId)
    const owner = router.unitAt(code)
    // A fenced key is refused, except to its current owner draining a message published before the fence.
    if (router.fencedAt(code) && !(owner === unit && hasDrainPermit(routeId, router.version)))
      throw new FencedError(routeId, { version: router.version, unit })
    if (owner === null) {
      throw new NoRouteIdError(`route id ${routeId} maps to no unit and the fallback rejects it`, {
        routeId,
        reason: router.reasonAt(code),
      })
    }
    if (owner !== unit) throw new WrongUnitError(routeId, owner, unit, { version: router.version })
  }

  /**
   * Checks a write (see `checkWrite`) and registers it as in flight until `end()` is called: after the
   * commit, rollback or connection release.
   */
  beginWrite(routeId: string | null | undefined, scope: WriteScope = 'unit'): WriteHandle {
    this.checkWrite(routeId, scope)
    return this.#inflight.begin(routeId ?? '')
  }

  /** In-flight guarded writes whose route id is fenced by the rule set in force. */
  inflightFenced(): number {
    const router = this.#router
    if (router === undefined || this.#inflight.total === 0) return 0
    return this.#inflight.count((id) => id !== '' && router.isFenced(id))
  }

  onInflightChange(listener: () => void): () => void {
    this.on('inflight', listener)
    return () => this.off('inflight', listener)
  }

  /** The message drain state the control channel reports; undefined when this process has none. */
  mqState(): MessageDrainState | undefined {
    return this.messages.empty ? undefined : this.messages.state()
  }

  onMqChange(listener: () => void): () => void {
    this.on('mq', listener)
    return () => this.off('mq', listener)
  }

  leaseValid(): boolean {
    return this.#lease.state() === 'valid'
  }

  renewLease(sentAt: number, leaseMs: number, latestVersion: number): void {
    const before = this.#lease.allowsWrites()
    this.#lease.renew(sentAt, leaseMs, latestVersion, this.version)
    if (!before && this.#lease.allowsWrites()) this.logger.info({ version: this.version }, 'lease granted')
  }

  /** A snapshot for health endpoints. */
  state(): AgentState {
    return {
      nodeId: this.identity.nodeId,
      app: this.identity.app,
      unit: this.identity.unit,
      version: this.version,
      lease: this.#lease.state(),
      leaseRemainingMs: this.#lease.remainingMs(),
      inflight: this.#inflight.total,
      lastError: this.#lastError,
    }
  }
}

function cacheFile(option: string | false | undefined, id: ResolvedAgentOptions): string | undefined {
  if (option === false) return undefined
  const value = option ?? process.env.APPACTIVE_CACHE
  if (value === 'off' || value === 'false') return undefined
  return value || join(process.cwd(), '.appactive', `${id.app}-${id.unit}.rules.json`)
}

function versionOf(input: unknown): number | undefined {
  if (typeof input !== 'object' || input === null) return undefined
  const v = (input as { version?: unknown }).version
  return typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined
}

function defaultLogger(): Logger {
  return pino({ name: 'appactive', level: process.env.APPACTIVE_LOG_LEVEL ?? 'info' }, pino.destination(2))
}
