/**
 * The orchestrator of DESIGN §4: runs a stored cut-over or failover step by step, each step persisted
 * before it runs, so that a control plane killed at any point resumes or rolls back on restart and
 * never leaves a fence in place.
 *
 * Cut-over from vN (mapping M, no fence) to M':
 *   fence    publish (M, F); every agent acks or is waited out until its lease lapses (self-fenced)
 *   drain    no agent reports an in-flight guarded write on a fenced key
 *   catch-up only now record each source unit's DB position; wait until the target applied it
 *   switch   publish (M', F); wait for every ack          <- from here on the run only goes forward
 *   unfence  publish (M', no fence); wait for every ack
 * Any failure, timeout or abort before the switch is published rolls back to (M, no fence).
 *
 * Failover of unit X: wait out X's agents' leases (unless forced), estimate the RPO from the last
 * replication lag a probe can report, publish (M', no fence), wait for the survivors' acks; the RTO is
 * measured from the start of the run to the last ack.
 */
import type { NodeView } from '../channels/index.js'
import { compileRouter, type RuleSet } from '../rules/index.js'
import { StoreConflictError } from './errors.js'
import type { Operation, OperationPatch, PhaseRecord, ReplicationProbeConfig } from './model.js'
import type {
  AbortRequest,
  Orchestrator,
  OrchestratorContext,
  OrchestratorFactory,
} from './orchestrator-types.js'

/**
 * A replication probe as the orchestrator uses it; `appactive/replication` probes fit it. Positions are
 * plain JSON (they are stored in the phase record).
 */
export interface CatchUpProbe {
  position(): Promise<unknown>
  waitApplied(position: never, timeoutMs: number, signal?: AbortSignal): Promise<unknown>
  lag?(): Promise<number | undefined>
  close(): Promise<void>
}

/** Builds the probe a topology declares for one source -> target pair (the composition root knows how). */
export type ProbeFactory = (config: ReplicationProbeConfig) => CatchUpProbe | Promise<CatchUpProbe>

export interface OrchestratorOptions {
  /** Probes for the catch-up step; without a factory, any pair with a probe other than `none` fails. */
  readonly probes?: ProbeFactory
  /** Longest wait for every ack, on top of the lease (a silent agent is waited out); default lease + 2 s. */
  readonly ackTimeoutMs?: number
  /** Longest wait for in-flight fenced writes to drain; default 10 s. */
  readonly drainTimeoutMs?: number
  /** Longest wait for a target to apply a source position; default 30 s. */
  readonly catchUpTimeoutMs?: number
  /**
   * DELIBERATELY UNSAFE, for the dual-write checker's own test only: skip a step the invariant needs, to
   * prove the checker notices. Never set it anywhere else.
   */
  readonly unsafeSkip?: { readonly ackWait?: boolean; readonly drain?: boolean }
}

/** A step failed: the run rolls back (before the switch) or stops for a person (after it). */
class StepError extends Error {
  readonly code: string
  readonly detail: Record<string, unknown>
  constructor(code: string, message: string, detail: Record<string, unknown> = {}) {
    super(message)
    this.code = code
    this.detail = detail
  }
}

interface Run {
  op: Operation
  readonly controller: AbortController
  /** True once the switch rule set may have been published: from then on, only forward. */
  switched: boolean
  done: Promise<void>
}

/** The orchestrator factory to plug into `createControlPlane({ orchestrator })`. */
export function createOrchestrator(options: OrchestratorOptions = {}): OrchestratorFactory {
  return (context) => new CutoverOrchestrator(context, options)
}

export class CutoverOrchestrator implements Orchestrator {
  readonly #ctx: OrchestratorContext
  readonly #options: OrchestratorOptions
  readonly #runs = new Map<string, Run>()
  /** Monotonic time this orchestrator (and so its channel server's node table) started. */
  readonly #startedAt = performance.now()
  /** Aborted by close(): stops even the steps after the switch (the next process resumes them). */
  readonly #shutdown = new AbortController()
  #closed = false

  constructor(context: OrchestratorContext, options: OrchestratorOptions) {
    this.#ctx = context
    this.#options = options
  }

  async start(operation: Operation): Promise<void> {
    this.#launch(operation, false)
  }

  async abort(operation: Operation, request: AbortRequest): Promise<void> {
    const run = this.#runs.get(operation.id)
    if (run === undefined) return
    this.#progress(run, `abort requested by ${request.actor}: ${request.reason}`)
    if (!run.switched)
      run.controller.abort(new StepError('ABORTED', `aborted by ${request.actor}: ${request.reason}`))
  }

  async recover(operations: readonly Operation[]): Promise<void> {
    for (const op of operations) this.#launch(op, true)
  }

  async close(): Promise<void> {
    this.#closed = true
    const stopping = new StepError('SHUTTING_DOWN', 'the control plane is stopping')
    this.#shutdown.abort(stopping)
    const runs = [...this.#runs.values()]
    for (const run of runs) run.controller.abort(stopping)
    await Promise.allSettled(runs.map((r) => r.done))
  }

  #launch(op: Operation, recovering: boolean): void {
    if (this.#runs.has(op.id)) return
    const run: Run = { op, controller: new AbortController(), switched: false, done: Promise.resolve() }
    this.#runs.set(op.id, run)
    run.done = this.#drive(run, recovering)
      .catch((err: unknown) => {
        this.#ctx.logger?.error({ operation: op.id, err: (err as Error).message }, 'operation run crashed')
      })
      .finally(() => this.#runs.delete(op.id))
  }

  async #drive(run: Run, recovering: boolean): Promise<void> {
    const { plan } = run.op
    const from = await this.#ctx.store.getRuleSet(plan.fromVersion)
    if (from === undefined) {
      await this.#finish(run, 'failed', {
        code: 'NO_SOURCE_RULES',
        message: `version ${plan.fromVersion} is not stored`,
      })
      return
    }
    const before = from.ruleSet
    const latestRecord = await this.#ctx.store.latestRuleSet()
    if (
      latestRecord !== undefined &&
      latestRecord.version !== plan.fromVersion &&
      latestRecord.operationId !== run.op.id
    ) {
      // Someone else published since the plan was made: it no longer describes the world. Nothing of
      // ours is out yet, so there is nothing to roll back either.
      await this.#finish(run, 'failed', {
        code: 'RULES_CHANGED',
        message: `version ${latestRecord.version} was published after the plan (made on version ${plan.fromVersion}); plan again`,
      })
      return
    }
    if (recovering) {
      // What was published decides: once the new mapping is out, the only way is forward.
      const latest = (await this.#ctx.store.latestRuleSet())?.ruleSet
      run.switched = latest !== undefined && sameMapping(latest, plan.target)
      this.#progress(run, `resuming after a restart (${run.switched ? 'past' : 'before'} the switch)`)
    }
    try {
      if (plan.kind === 'cutover') await this.#cutover(run, before)
      else await this.#failover(run, before)
    } catch (err) {
      if (this.#closed && isShutdown(err)) return // left running: the next process resumes or rolls back
      const step = toStepError(err, run.controller.signal)
      // A publish that failed may still have been stored: the store, not this process, says whether the
      // new mapping is out.
      const latest = await this.#ctx.store.latestRuleSet().catch(() => undefined)
      if (latest !== undefined && sameMapping(latest.ruleSet, plan.target)) run.switched = true
      if (run.switched) {
        // Past the switch nothing is rolled back: the new owners may have accepted writes.
        await this.#finish(run, 'failed', {
          code: step.code,
          message: `${step.message} (after the switch; fix and unfence by publishing)`,
        })
        return
      }
      await this.#rollback(run, before, step)
    }
  }

  async #cutover(run: Run, before: RuleSet): Promise<void> {
    const { plan } = run.op
    const fence = { ranges: [...plan.fence.ranges], labels: [...plan.fence.labels] }
    const fenced = (rs: RuleSet) => withFence(rs, fence)
    if (!run.switched) {
      await this.#phase(run, 'fence', async () => {
        const v = await this.#publishUnlessThere(run, fenced(before), 'fence')
        return { version: v, ...(await this.#acks(run, v)) }
      })
      await this.#phase(run, 'drain', () => this.#drain(run))
      await this.#phase(run, 'catch-up', () => this.#catchUp(run))
      if (run.controller.signal.aborted) throw run.controller.signal.reason
      await this.#phase(run, 'switch', async () => {
        const v = await this.#publishUnlessThere(run, fenced(plan.target), 'switch')
        run.switched = true
        return { version: v, ...(await this.#acks(run, v, true)) }
      })
    } else if (hasFence(await this.#latest()) && !this.#phaseDone(run, 'switch')) {
      await this.#phase(run, 'switch', async () => {
        const v = (await this.#latest()).version
        return { version: v, ...(await this.#acks(run, v, true)) }
      })
    }
    await this.#phase(run, 'unfence', async () => {
      const v = await this.#publishUnlessThere(run, withFence(plan.target, undefined), 'unfence')
      return { version: v, ...(await this.#acks(run, v, true)) }
    })
    await this.#finish(run, 'succeeded', null, (await this.#latest()).version)
  }

  async #failover(run: Run, _before: RuleSet): Promise<void> {
    const { plan } = run.op
    const failed = plan.failedUnit!
    const t0 = Date.parse(run.op.startedAt ?? run.op.createdAt)
    if (!run.switched) {
      await this.#phase(run, 'wait-leases', async () => {
        const rpo = await this.#rpo(failed)
        if (plan.force) return { skipped: true, forced: true, ...rpo }
        // No node can ack this version: the wait ends when every agent of the lost unit lapsed or left.
        const r = await this.#ctx.rules.waitForAcks(Number.MAX_SAFE_INTEGER, {
          timeoutMs: this.#ackTimeout(),
          filter: (n: NodeView) => n.unit === failed,
        })
        if (!r.ok) {
          throw new StepError(
            'LEASES_HELD',
            `agents of unit ${failed} still renew their leases: ${r.pending.slice(0, 5).join(', ')}; the unit is not lost (use force to override)`,
            { pending: r.pending },
          )
        }
        return { lapsed: r.lapsed, ...rpo }
      })
      if (run.controller.signal.aborted) throw run.controller.signal.reason
    }
    await this.#phase(run, 'switch', async () => {
      const v = await this.#publishUnlessThere(run, withFence(plan.target, undefined), 'switch')
      run.switched = true
      const acks = await this.#acks(run, v, true, (n) => n.unit !== failed)
      return { version: v, ...acks, rtoMs: Math.max(0, this.#ctx.now() - t0) }
    })
    await this.#finish(run, 'succeeded', null, (await this.#latest()).version)
  }

  /** The replication lag last measured from the lost unit to each survivor, where a probe can tell. */
  async #rpo(failed: string): Promise<Record<string, unknown>> {
    const topology = await this.#ctx.topology()
    const pairs = (topology?.probes ?? []).filter((p) => p.source === failed && p.kind !== 'none')
    const lags: Record<string, number | null> = {}
    for (const config of pairs) {
      let probe: CatchUpProbe | undefined
      try {
        probe = await this.#options.probes?.(config)
        const lag = await withTimeout(probe?.lag?.() ?? Promise.resolve(undefined), 2000)
        lags[config.target] = lag ?? null
      } catch {
        lags[config.target] = null // the lost unit's database is likely unreachable: unknown
      } finally {
        await probe?.close().catch(() => {})
      }
    }
    const known = Object.values(lags).filter((v): v is number => v !== null)
    return { rpoMs: known.length > 0 ? Math.max(...known) : null, lagByTarget: lags }
  }

  /** Waits for every agent (passing `filter`) to ack `version` or lapse. */
  async #acks(
    run: Run,
    version: number,
    forward = false,
    filter?: (n: NodeView) => boolean,
  ): Promise<Record<string, unknown>> {
    if (this.#options.unsafeSkip?.ackWait) return { acks: 'skipped (unsafe)' }
    // An agent that held a lease from a previous control plane and has not registered with this one
    // is invisible to the node table until its lease lapses: wait that long after a start.
    const grace = this.#startedAt + this.#ctx.rules.leaseMs - performance.now()
    if (grace > 0) {
      this.#progress(
        run,
        `waiting ${Math.ceil(grace)} ms for agents of a previous control plane to re-register or lapse`,
      )
      await sleep(grace, forward ? this.#shutdown.signal : run.controller.signal)
    }
    this.#progress(run, `waiting for every agent to ack version ${version}`)
    const r = await raceAbort(
      this.#ctx.rules.waitForAcks(version, { timeoutMs: this.#ackTimeout(), ...(filter ? { filter } : {}) }),
      forward ? this.#shutdown.signal : run.controller.signal,
    )
    if (!r.ok && forward) {
      // After the switch an agent that has not acked is harmless: every old owner acked the fence (or
      // lapsed, and gets a lease again only once it holds the latest version), so it refuses the moved
      // keys until it applies the new mapping. Go on, and say who was late.
      this.#progress(
        run,
        `${r.pending.length} agent(s) have not acked version ${version} yet: ${r.pending.slice(0, 5).join(', ')}`,
      )
      return { acked: r.satisfied.length, lapsed: r.lapsed, late: r.pending }
    }
    if (!r.ok) {
      throw new StepError(
        'ACK_TIMEOUT',
        `${r.pending.length} agent(s) neither acked version ${version} nor lapsed: ${r.pending.slice(0, 5).join(', ')}`,
        { pending: r.pending },
      )
    }
    return { acked: r.satisfied.length, lapsed: r.lapsed }
  }

  async #drain(run: Run): Promise<Record<string, unknown>> {
    if (this.#options.unsafeSkip?.drain) return { drain: 'skipped (unsafe)' }
    // Messages too: every consumer group of a unit that owns fenced keys must pass the fence's barriers.
    const fence = await this.#latest()
    const messages = { version: fence.version, sourceUnits: compileRouter(fence).fencedUnits() }
    const r = await raceAbort(
      this.#ctx.rules.waitForDrain({ timeoutMs: this.#options.drainTimeoutMs ?? 10_000, messages }),
      run.controller.signal,
    )
    if (!r.ok) {
      const groups = this.#ctx.rules.undrainedMessages(messages)
      throw new StepError(
        'DRAIN_TIMEOUT',
        groups.length > 0
          ? `messages published before the fence are still queued: ${groups.slice(0, 5).join('; ')}`
          : `guarded writes on fenced keys are still in flight on ${r.pending.slice(0, 5).join(', ')}`,
        { pending: r.pending, groups },
      )
    }
    return { drained: r.satisfied.length, lapsed: r.lapsed }
  }

  async #catchUp(run: Run): Promise<Record<string, unknown>> {
    const timeoutMs = this.#options.catchUpTimeoutMs ?? 30_000
    const pairs: Record<string, unknown>[] = []
    for (const pair of run.op.plan.catchUp) {
      for (const config of pair.probes) {
        if (config.kind === 'none') {
          pairs.push({ source: pair.source, target: pair.target, kind: 'none', skipped: true })
          continue
        }
        const factory = this.#options.probes
        if (factory === undefined) {
          throw new StepError(
            'NO_PROBE',
            `no probe factory to check ${config.kind} replication ${pair.source} -> ${pair.target}`,
          )
        }
        const probe = await factory(config)
        try {
          const started = performance.now()
          const position = await probe.position()
          this.#progress(run, `waiting for ${pair.target} to apply ${pair.source}'s position`, { position })
          await probe.waitApplied(position as never, timeoutMs, run.controller.signal)
          pairs.push({
            source: pair.source,
            target: pair.target,
            kind: config.kind,
            position,
            waitedMs: Math.round(performance.now() - started),
          })
        } finally {
          await probe.close().catch(() => {})
        }
      }
    }
    return { pairs }
  }

  /** Publishes `ruleSet` unless the latest stored rule set already is it (a resumed run). */
  async #publishUnlessThere(run: Run, ruleSet: RuleSet, step: string): Promise<number> {
    const latest = await this.#latest()
    if (sameMapping(latest, ruleSet) && sameFence(latest, ruleSet)) return latest.version
    const { version: _v, ...body } = ruleSet
    const record = await this.#ctx.publish({
      ruleSet: body,
      expectedLatest: latest.version,
      operationId: run.op.id,
      actor: `operation:${run.op.id}`,
      reason: `${run.op.kind} ${run.op.id}: ${step}`,
    })
    this.#progress(run, `published version ${record.version} (${step})`)
    return record.version
  }

  async #rollback(run: Run, before: RuleSet, cause: StepError): Promise<void> {
    const aborted = cause.code === 'ABORTED'
    try {
      await this.#phase(
        run,
        'rollback',
        async () => {
          const v = await this.#publishUnlessThere(run, withFence(before, undefined), 'rollback')
          this.#progress(run, `waiting for every agent to ack version ${v}`)
          const r = await raceAbort(
            this.#ctx.rules.waitForAcks(v, { timeoutMs: this.#ackTimeout() }),
            this.#shutdown.signal,
          )
          return {
            version: v,
            cause: cause.message,
            acked: r.satisfied.length,
            lapsed: r.lapsed,
            pending: r.pending,
          }
        },
        true,
      )
      await this.#finish(
        run,
        aborted ? 'aborted' : 'rolled-back',
        { code: cause.code, message: cause.message },
        (await this.#latest()).version,
      )
    } catch (err) {
      if (this.#closed && isShutdown(err)) return
      await this.#finish(run, 'failed', {
        code: 'ROLLBACK_FAILED',
        message: `${cause.message}; then the rollback failed: ${(err as Error).message}`,
      })
    }
  }

  /** Runs one step: stored as running before, with its outcome and facts after. */
  async #phase(
    run: Run,
    name: string,
    body: () => Promise<Record<string, unknown>>,
    compensating = false,
  ): Promise<void> {
    if (!compensating && run.controller.signal.aborted) throw run.controller.signal.reason
    const startedAt = new Date(this.#ctx.now()).toISOString()
    const phases = run.op.phases.filter((p) => !(p.name === name && p.outcome === 'running'))
    await this.#save(run, {
      phase: name,
      phases: [...phases, { name, startedAt, endedAt: null, outcome: 'running' }],
    })
    const t0 = performance.now()
    let detail: Record<string, unknown> = {}
    let outcome: PhaseRecord['outcome'] = compensating ? 'compensated' : 'ok'
    try {
      detail = await body()
      if (detail.skipped === true) outcome = 'skipped'
    } catch (err) {
      const step = toStepError(err, run.controller.signal)
      detail = { error: step.message, ...step.detail }
      outcome = 'failed'
      throw step
    } finally {
      const ended: PhaseRecord = {
        name,
        startedAt,
        endedAt: new Date(this.#ctx.now()).toISOString(),
        outcome,
        detail: { ...detail, ms: Math.round(performance.now() - t0) },
      }
      await this.#save(run, { phases: [...run.op.phases.slice(0, -1), ended] }).catch((err: unknown) =>
        this.#ctx.logger?.error(
          { operation: run.op.id, err: (err as Error).message },
          'cannot store a phase outcome',
        ),
      )
    }
  }

  #phaseDone(run: Run, name: string): boolean {
    return run.op.phases.some((p) => p.name === name && p.outcome === 'ok')
  }

  async #finish(
    run: Run,
    state: 'succeeded' | 'failed' | 'rolled-back' | 'aborted',
    error: Operation['error'],
    toVersion?: number,
  ): Promise<void> {
    await this.#save(run, {
      state,
      error,
      endedAt: new Date(this.#ctx.now()).toISOString(),
      ...(toVersion !== undefined ? { toVersion } : {}),
    })
    this.#progress(run, `operation ${state}${error ? `: ${error.message}` : ''}`)
  }

  /** Stores a change; on a conflict (an abort request arrived), re-reads, honours it, and retries. */
  async #save(run: Run, patch: OperationPatch): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        run.op = await this.#ctx.update(run.op, patch)
        return
      } catch (err) {
        if (!(err instanceof StoreConflictError) || attempt >= 5) throw err
        const fresh = await this.#ctx.store.getOperation(run.op.id)
        if (fresh === undefined) throw err
        run.op = fresh
        if (fresh.abortRequested && !run.switched && !run.controller.signal.aborted) {
          const a = fresh.abortRequested
          run.controller.abort(new StepError('ABORTED', `aborted by ${a.by}: ${a.reason}`))
        }
      }
    }
  }

  async #latest(): Promise<RuleSet> {
    const record = await this.#ctx.store.latestRuleSet()
    if (record === undefined) throw new StepError('NO_RULES', 'no rule set is stored')
    return record.ruleSet
  }

  #ackTimeout(): number {
    return this.#options.ackTimeoutMs ?? this.#ctx.rules.leaseMs + 2000
  }

  #progress(run: Run, message: string, data?: Record<string, unknown>): void {
    this.#ctx.events.progress(run.op.id, message, data)
  }
}

/** The rule set with fence `fence` (or none). */
function withFence(rs: RuleSet, fence: { ranges: string[]; labels: string[] } | undefined): RuleSet {
  const { fence: _old, ...rest } = rs
  if (fence === undefined || (fence.ranges.length === 0 && fence.labels.length === 0)) return rest as RuleSet
  return {
    ...rest,
    fence: {
      ...(fence.ranges.length > 0 ? { ranges: fence.ranges } : {}),
      ...(fence.labels.length > 0 ? { labels: fence.labels } : {}),
    },
  } as RuleSet
}

function hasFence(rs: RuleSet): boolean {
  return (rs.fence?.ranges?.length ?? 0) + (rs.fence?.labels?.length ?? 0) > 0
}

/** Same routing (units, id sources, transform, mapping, fallback), whatever the version and fence. */
function sameMapping(a: RuleSet, b: RuleSet): boolean {
  const strip = ({ version: _v, fence: _f, description: _d, ...rest }: RuleSet & { description?: unknown }) =>
    JSON.stringify(rest)
  return strip(a) === strip(b)
}

function sameFence(a: RuleSet, b: RuleSet): boolean {
  return JSON.stringify(a.fence ?? null) === JSON.stringify(b.fence ?? null) || (!hasFence(a) && !hasFence(b))
}

function toStepError(err: unknown, signal: AbortSignal): StepError {
  if (err instanceof StepError) return err
  if (signal.aborted && signal.reason instanceof StepError) return signal.reason
  const code = (err as { code?: unknown }).code
  return new StepError(
    typeof code === 'string' ? code : 'STEP_FAILED',
    err instanceof Error ? err.message : String(err),
  )
}

function isShutdown(err: unknown): boolean {
  return err instanceof StepError && err.code === 'SHUTTING_DOWN'
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal!.reason)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** `promise`, or the signal's reason as soon as it aborts (the promise keeps running). */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise
  if (signal.aborted) return Promise.reject(signal.reason)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([promise, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())])
}
