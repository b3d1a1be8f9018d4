/**
 * The lifecycle of operations as the control plane owns it: plan (validated, stored as `planned`),
 * start (only with an orchestrator, from a fresh plan, one at a time), abort (at once when planned; a
 * stored request when running), and every later change, stored with compare-and-set, audited and
 * emitted on the event stream. What happens while an operation runs is the orchestrator's.
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { RuleServer } from '../channels/index.js'
import type { Principal } from './auth.js'
import { ControlError } from './errors.js'
import type { OperationEvents } from './events.js'
import {
  type Operation,
  type OperationKind,
  type OperationPatch,
  type Plan,
  TERMINAL_STATES,
} from './model.js'
import type { AbortRequest, Orchestrator } from './orchestrator-types.js'
import { type CutoverRequest, type FailoverRequest, planCutover, planFailover } from './plan.js'
import type { Store } from './store/types.js'

/** The actor of changes no person asked for. */
const SYSTEM = 'control-plane'

export interface OperationServiceOptions {
  readonly store: Store
  readonly rules: RuleServer
  readonly events: OperationEvents
  /** The orchestrator, once built (it is built with a context that needs this service). */
  readonly orchestrator: () => Orchestrator | undefined
  readonly logger?: Logger | undefined
  readonly now: () => number
}

export class OperationService {
  readonly store: Store
  readonly rules: RuleServer
  readonly events: OperationEvents
  readonly #orchestrator: () => Orchestrator | undefined
  readonly #log: Logger | undefined
  readonly #now: () => number

  constructor(options: OperationServiceOptions) {
    this.store = options.store
    this.rules = options.rules
    this.events = options.events
    this.#orchestrator = options.orchestrator
    this.#log = options.logger
    this.#now = options.now
  }

  /**
   * Plans an operation. With `dryRun` only the plan is returned; otherwise it is stored as `planned`.
   * @throws ControlError 400 PLAN_INVALID listing every problem; 409 NO_RULE_SET.
   */
  async plan(
    kind: OperationKind,
    request: CutoverRequest | FailoverRequest,
    meta: { readonly reason: string; readonly dryRun?: boolean | undefined },
    who: Principal,
  ): Promise<{ plan: Plan; operation?: Operation }> {
    const latest = await this.store.latestRuleSet()
    if (!latest) {
      throw new ControlError(
        409,
        'NO_RULE_SET',
        'nothing is published yet: publish a first rule set (POST /v1/rules)',
      )
    }
    const ctx = {
      current: latest.ruleSet,
      topology: (await this.store.getTopology())?.topology,
      nodes: this.rules.nodes(),
    }
    const result =
      kind === 'cutover' ? planCutover(request, ctx) : planFailover(request as FailoverRequest, ctx)
    if (!result.ok)
      throw new ControlError(
        400,
        'PLAN_INVALID',
        `the ${kind} cannot be planned: ${result.issues.length} problem(s)`,
        result.issues,
      )
    if (meta.dryRun) return { plan: result.plan }
    const id = randomUUID()
    const operation = await this.store.createOperation(
      { id, kind, plan: result.plan, reason: meta.reason, createdBy: who.name },
      {
        actor: who.name,
        action: 'operation.create',
        target: `operation:${id}`,
        details: { kind, reason: meta.reason, fromVersion: latest.version, movedKeys: result.plan.movedKeys },
      },
    )
    this.events.changed(operation)
    return { plan: result.plan, operation }
  }

  async getOperation(id: string): Promise<Operation> {
    const op = await this.store.getOperation(id)
    if (!op) throw new ControlError(404, 'NOT_FOUND', `no operation ${id}`)
    return op
  }

  /**
   * Starts a planned operation: only with an orchestrator, only from a plan made on the rule set still
   * in force, and only one at a time.
   * @throws ControlError 404 / 409 / 501 ORCHESTRATOR_UNAVAILABLE
   */
  async start(id: string, who: Principal): Promise<Operation> {
    const op = await this.getOperation(id)
    const orchestrator = this.#orchestrator()
    if (!orchestrator) {
      throw new ControlError(
        501,
        'ORCHESTRATOR_UNAVAILABLE',
        'orchestrator not available: this control plane has no orchestrator plugged in, so operations cannot run',
      )
    }
    if (op.state !== 'planned')
      throw new ControlError(
        409,
        'CONFLICT',
        `operation ${id} is ${op.state}; only a planned operation starts`,
      )
    const latest = await this.store.latestRuleSet()
    if (latest?.version !== op.fromVersion) {
      throw new ControlError(
        409,
        'PLAN_STALE',
        `the plan was made from version ${op.fromVersion} but version ${latest?.version} is in force now: plan again`,
      )
    }
    const now = new Date(this.#now()).toISOString()
    const running = await this.update(
      op,
      { state: 'running', startedBy: who.name, startedAt: now },
      { actor: who.name, action: 'operation.start' },
    )
    orchestrator.start(running).catch((err: unknown) => this.#runFailed(id, err))
    return running
  }

  /**
   * Aborts an operation: a planned one at once; a running one by a stored request the orchestrator
   * honours (it rolls back first).
   * @throws ControlError 404 / 409 / 501
   */
  async abort(id: string, reason: string, who: Principal): Promise<Operation> {
    const op = await this.getOperation(id)
    const request = { by: who.name, at: new Date(this.#now()).toISOString(), reason }
    if (op.state === 'planned') {
      return this.update(
        op,
        { state: 'aborted', abortRequested: request, endedAt: request.at },
        { actor: who.name, action: 'operation.abort', details: { reason } },
      )
    }
    if (TERMINAL_STATES.has(op.state))
      throw new ControlError(409, 'CONFLICT', `operation ${id} already ended: ${op.state}`)
    if (op.abortRequested) return op
    const orchestrator = this.#orchestrator()
    if (!orchestrator) {
      throw new ControlError(
        501,
        'ORCHESTRATOR_UNAVAILABLE',
        'orchestrator not available: nothing can roll this operation back; start the control plane with its orchestrator',
      )
    }
    const asked = await this.update(
      op,
      { abortRequested: request },
      { actor: who.name, action: 'operation.abort-request', details: { reason } },
    )
    await orchestrator.abort(asked, { actor: who.name, reason } satisfies AbortRequest)
    return asked
  }

  /** Stores a change of an operation, audits and emits it. */
  async update(
    op: Operation,
    patch: OperationPatch,
    meta: {
      readonly actor?: string
      readonly action?: string
      readonly details?: Record<string, unknown>
    } = {},
  ): Promise<Operation> {
    const actor = meta.actor ?? SYSTEM
    const changed = Object.keys(patch)
    const next = await this.store.updateOperation(op.id, op.revision, patch, {
      actor,
      action: meta.action ?? 'operation.update',
      target: `operation:${op.id}`,
      details: {
        ...(patch.state !== undefined && patch.state !== op.state ? { from: op.state, to: patch.state } : {}),
        ...(patch.phase !== undefined ? { phase: patch.phase } : {}),
        changed,
        ...meta.details,
      },
    })
    this.events.changed(next)
    return next
  }

  async #runFailed(id: string, err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err)
    this.#log?.error({ operation: id, err: message }, 'the orchestrator failed to run an operation')
    try {
      const op = await this.getOperation(id)
      if (op.state !== 'running') return
      await this.update(op, {
        state: 'failed',
        error: { code: 'ORCHESTRATOR_ERROR', message },
        endedAt: new Date(this.#now()).toISOString(),
      })
    } catch (e) {
      this.#log?.error({ operation: id, err: (e as Error).message }, 'could not record the failed run')
    }
  }
}
