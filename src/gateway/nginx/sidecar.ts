/**
 * The agent of an nginx edge: a Node process holding a normal agent (file or control-plane channels). For
 * each version the agent applies it writes the state file atomically (nginx restarts from it), PUTs the
 * compiled rule set to the admin endpoint, reads the version back, and only then acknowledges it on the
 * channels. A rule set the shared dict cannot hold is refused before anything is pushed.
 */
import { randomBytes } from 'node:crypto'
import { open, rename } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { RoutingAgent } from '../../agent/index.js'
import type { ApplyOutcome, DeliveryMeta, RuleChannel, RuleSink } from '../../channels/types.js'
import { RuleInvalidError } from '../../errors/index.js'
import type { RuleSet } from '../../rules/index.js'
import type { NginxAdmin } from './admin.js'
import { compileNginxRules } from './compile.js'

/**
 * A channel whose acknowledgements wait for nginx: the agent's `applied(v)` is ignored, and `ack(v)` (the
 * sidecar, once nginx serves v) acknowledges on the wrapped channel. Deliveries go through `gate` first.
 */
export class NginxAckChannel implements RuleChannel {
  readonly inner: RuleChannel
  readonly #gate: (sink: RuleSink, input: unknown, meta: DeliveryMeta) => ApplyOutcome | undefined
  readonly #served: () => number

  /**
   * `served` is the version nginx confirmed serving: the channel reports it as the sink's acknowledged
   * version (`ackedVersion`), so neither a heartbeat, a registration nor a redelivery acknowledges a
   * version nginx does not serve yet.
   */
  constructor(
    inner: RuleChannel,
    gate: (sink: RuleSink, input: unknown, meta: DeliveryMeta) => ApplyOutcome | undefined,
    served: () => number,
  ) {
    this.inner = inner
    this.#gate = gate
    this.#served = served
  }

  get name(): string {
    return this.inner.name
  }

  get leasing(): boolean {
    return this.inner.leasing
  }

  start(sink: RuleSink): Promise<void> {
    const gate = this.#gate
    const apply = (input: unknown, meta: DeliveryMeta) => gate(sink, input, meta) ?? sink.apply(input, meta)
    const served = this.#served
    // Everything else goes to the sink itself (its getters and private fields need it as `this`).
    const gated = new Proxy(sink, {
      get(target, prop) {
        if (prop === 'apply') return apply
        if (prop === 'ackedVersion') return () => Math.min(target.version, served())
        const value = Reflect.get(target, prop, target)
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    return this.inner.start(gated)
  }

  /** The agent applied a version: not yet served by nginx, so nothing is acknowledged here. */
  applied(_version: number): void {}

  /** nginx serves `version`: acknowledge it. */
  ack(version: number): void {
    this.inner.applied?.(version)
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}

/** Options of `NginxSidecar`. */
export interface NginxSidecarOptions {
  readonly agent: RoutingAgent
  readonly channels: readonly NginxAckChannel[]
  readonly admin: () => NginxAdmin
  readonly stateFile: string
  readonly localUnit: string
  readonly maxBytes: number
  readonly logger: Logger
}

/** Pushes every applied version to nginx, then acknowledges it. */
export class NginxSidecar {
  readonly #o: NginxSidecarOptions
  /** The last version nginx confirmed serving (-1: none). */
  #served = -1
  #running: Promise<void> | undefined
  #closed = false
  #wake: (() => void) | undefined
  #lastError: string | undefined

  constructor(options: NginxSidecarOptions) {
    this.#o = options
    options.agent.on('applied', () => this.kick())
  }

  /** The last version nginx confirmed. */
  get served(): number {
    return this.#served
  }

  get lastError(): string | undefined {
    return this.#lastError
  }

  /** Refuses a rule set too large for the shared dict before the agent applies (or anything is pushed). */
  gate(sink: RuleSink, input: unknown, meta: DeliveryMeta): ApplyOutcome | undefined {
    try {
      compileNginxRules(input as RuleSet, { localUnit: this.#o.localUnit, maxBytes: this.#o.maxBytes })
    } catch (err) {
      // Invalid rule sets are the agent's to refuse; only the size is the nginx engine's own limit.
      if (!(err instanceof RuleInvalidError) || err.message.indexOf('shared dict') === -1) return undefined
      const version = (input as { version?: unknown }).version
      const v = typeof version === 'number' ? version : undefined
      sink.reportError(v, err.issues, meta)
      return { status: 'rejected', version: v, issues: err.issues }
    }
    return undefined
  }

  /** Makes nginx serve the agent's version (again, e.g. after nginx restarted without the state file). */
  kick(): void {
    this.#wake?.()
    if (this.#running !== undefined) return
    this.#running = this.#loop().finally(() => {
      this.#running = undefined
    })
  }

  /** Forgets what nginx serves (nginx restarted): the next kick asks it again. */
  reset(): void {
    this.#served = -1
  }

  async #loop(): Promise<void> {
    let delay = 50
    while (!this.#closed) {
      const router = this.#o.agent.router
      if (router === undefined || router.version === this.#served) return
      try {
        await this.#push(router.ruleSet)
        this.#lastError = undefined
        delay = 50
      } catch (err) {
        this.#lastError = (err as Error).message
        this.#o.logger.warn(
          { version: router.version, err: this.#lastError },
          'nginx did not take the rule set; retrying',
        )
        await new Promise<void>((resolve) => {
          this.#wake = resolve
          setTimeout(resolve, delay).unref()
        })
        this.#wake = undefined
        delay = Math.min(delay * 2, 2000)
      }
    }
  }

  /** State file, PUT, read back, ack. */
  async #push(ruleSet: RuleSet): Promise<void> {
    const { rules, text } = compileNginxRules(ruleSet, { localUnit: this.#o.localUnit })
    const started = performance.now()
    await writeAtomic(this.#o.stateFile, text)
    const admin = this.#o.admin()
    const res = await admin.put(text)
    if (res.status !== 200 && res.status !== 409)
      throw new Error(`admin PUT answered ${res.status}: ${res.body}`)
    const state = await admin.state()
    if (state.version > rules.version) {
      // A newer version is already in force (pushed by an earlier run): nothing to acknowledge for this one.
      this.#served = state.version
      return
    }
    if (state.version !== rules.version || state.digest !== rules.digest) {
      throw new Error(
        `nginx serves v${state.version} after the push of v${rules.version} (${res.status}: ${res.body})`,
      )
    }
    this.#served = rules.version
    this.#o.logger.info(
      { version: rules.version, ms: Math.round((performance.now() - started) * 10) / 10 },
      'nginx serves the rule set',
    )
    for (const c of this.#o.channels) c.ack(rules.version)
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#wake?.()
    await this.#running
  }
}

/** Writes `path` through a temporary file, fsync and rename: readers see the old or the new file, whole. */
export async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  const fh = await open(tmp, 'w', 0o600)
  try {
    await fh.writeFile(text)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
}
