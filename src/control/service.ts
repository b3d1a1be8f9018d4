import type { Logger } from 'pino'
import type { NodeView, RuleServer } from '../channels/index.js'
import { RuleInvalidError, type RuleIssue } from '../errors/index.js'
import { diffRuleSets, type RuleDiff, type RuleSet, validateRuleSet } from '../rules/index.js'
import type { Principal } from './auth.js'
import { ControlError } from './errors.js'
import type { OperationEvents } from './events.js'
import type { NodeRecord, RuleSetRecord, Topology, TopologyRecord } from './model.js'
import { NodeRecorder } from './node-recorder.js'
import { OperationService } from './operations.js'
import type { Orchestrator, OrchestratorContext, OrchestratorFactory } from './orchestrator-types.js'
import type { Store } from './store/types.js'
import { ruleSetTopologyIssues, validateTopology } from './topology.js'

export interface ControlServiceOptions {
  readonly store: Store
  readonly rules: RuleServer
  readonly events: OperationEvents
  readonly orchestrator?: OrchestratorFactory | undefined
  readonly logger?: Logger | undefined
  readonly now?: () => number
}

/** A rule set sent to the API: its version may be left out (the next one is taken). */
export interface PublishRequest {
  readonly ruleSet: unknown
  readonly reason: string
  /** Compare-and-set: refuse unless this is still the latest version. */
  readonly expectedVersion?: number | undefined
  /** Publish even though keys change owner without a cut-over (admin only). */
  readonly force?: boolean | undefined
}

/** What a publish would do: the problems, or what moves against the rule set in force. */
export interface PublishCheck {
  readonly ruleSet: RuleSet
  readonly latest: RuleSetRecord | undefined
  /** undefined when nothing is published yet; `null` when the transform changes (every id may move). */
  readonly diff: RuleDiff | null | undefined
}

function invalid(code: string, message: string, issues: readonly RuleIssue[]): ControlError {
  return new ControlError(
    400,
    code,
    message,
    issues.map((i) => ({ path: i.path, message: i.message })),
  )
}

export class ControlService {
  readonly store: Store
  readonly rules: RuleServer
  readonly events: OperationEvents
  readonly #log: Logger | undefined
  readonly #now: () => number
  readonly #orchestrator: Orchestrator | undefined
  readonly #nodes: NodeRecorder
  readonly operations: OperationService

  constructor(options: ControlServiceOptions) {
    this.store = options.store
    this.rules = options.rules
    this.events = options.events
    this.#log = options.logger
    this.#now = options.now ?? Date.now
    this.#nodes = new NodeRecorder(this.rules, this.store, this.#log)
    this.operations = new OperationService({
      ...options,
      now: this.#now,
      orchestrator: () => this.#orchestrator,
    })
    this.#orchestrator = options.orchestrator?.(this.#orchestratorContext())
  }

  get hasOrchestrator(): boolean {
    return this.#orchestrator !== undefined
  }

  /**
   * Loads the newest stored versions into the channel server (so reconnecting agents resume in order)
   * and hands operations left running to the orchestrator.
   */
  async init(replay: number): Promise<void> {
    const recent = await this.store.recentRuleSets(Math.max(1, replay))
    recent.forEach((r, i) => {
      try {
        this.rules.publish(r.ruleSet)
      } catch (err) {
        // Only the latest version must load: agents behind it receive it whole.
        if (i === recent.length - 1) {
          throw new ControlError(
            500,
            'STORE_INVALID',
            `stored rule set version ${r.version} cannot be published: ${(err as Error).message}`,
          )
        }
        this.#log?.warn(
          { version: r.version, err: (err as Error).message },
          'stored rule set skipped on replay',
        )
      }
    })
    const running = await this.store.listOperations({ state: 'running' })
    if (running.length === 0) return
    if (this.#orchestrator) await this.#orchestrator.recover(running)
    else
      this.#log?.warn(
        { operations: running.map((o) => o.id) },
        'operations were left running and no orchestrator is plugged in to resume or roll them back',
      )
  }

  // ---- rule sets -------------------------------------------------------------------------------

  /**
   * Validates a rule set as a publish would (against the topology too) and diffs it with the latest.
   * @throws ControlError 400 RULE_INVALID listing every problem.
   */
  async checkRuleSet(input: unknown): Promise<PublishCheck> {
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      throw invalid('RULE_INVALID', 'invalid rule set: not an object', [
        { path: '', message: 'must be an object' },
      ])
    const latest = await this.store.latestRuleSet()
    const doc = input as Record<string, unknown>
    // Without a version the next one is taken; validate with it so the version rule still applies.
    const v = validateRuleSet(
      doc.version === undefined ? { ...doc, version: Math.max(latest?.version ?? 0, 0) + 1 } : doc,
    )
    const topology = (await this.store.getTopology())?.topology
    const issues: RuleIssue[] = v.ok ? [] : [...v.issues]
    if (v.ok && topology) issues.push(...ruleSetTopologyIssues(v.ruleSet, topology))
    if (!v.ok || issues.length > 0) {
      throw invalid('RULE_INVALID', `invalid rule set: ${issues.length} problem(s)`, issues)
    }
    let diff: RuleDiff | null | undefined
    if (latest) {
      try {
        diff = diffRuleSets(latest.ruleSet, v.ruleSet)
      } catch (err) {
        if (!(err instanceof RuleInvalidError)) throw err
        diff = null
      }
    }
    return { ruleSet: v.ruleSet, latest, diff }
  }

  /**
   * Publishes a rule set sent to the API. Refused while an operation runs, and when keys would change
   * owner (a direct publish has no fence: two units could accept the same id) unless an admin forces it.
   * @throws ControlError 400 / 403 / 409
   */
  async publish(request: PublishRequest, who: Principal): Promise<RuleSetRecord> {
    const [running] = await this.store.listOperations({ state: 'running', limit: 1 })
    if (running) {
      throw new ControlError(
        409,
        'OPERATION_RUNNING',
        `operation ${running.id} (${running.kind}) is running: abort it or wait before publishing`,
      )
    }
    const { ruleSet, latest, diff } = await this.checkRuleSet(request.ruleSet)
    const moves = diff === null || (diff !== undefined && (diff.movedKeys > 0 || diff.labels.length > 0))
    if (moves && request.force !== true) {
      const what =
        diff === null
          ? 'changes the transform, so every id may change owner'
          : `moves ${diff!.movedKeys} key(s) and ${diff!.labels.length} label(s) to other units`
      throw new ControlError(
        409,
        'OWNERSHIP_CHANGE',
        `this rule set ${what} without a fence; plan a cut-over (POST /v1/cutovers) or, as an admin, publish with force: true`,
      )
    }
    if (moves && who.role !== 'admin')
      throw new ControlError(403, 'FORBIDDEN', 'only an admin may force a publish that moves keys')
    if (request.expectedVersion !== undefined && request.expectedVersion !== (latest?.version ?? -1)) {
      throw new ControlError(
        409,
        'CONFLICT',
        `the latest rule set is version ${latest?.version ?? -1}, not ${request.expectedVersion}`,
      )
    }
    return this.#append({
      ruleSet,
      // The checks above were made against `latest`: the store refuses if anything was published since.
      expectedLatest: latest?.version ?? -1,
      actor: who.name,
      reason: request.reason,
      details: moves ? { force: true, movedKeys: diff?.movedKeys ?? null } : {},
    })
  }

  async #append(input: {
    ruleSet: Omit<RuleSet, 'version'> & { version?: number | undefined }
    expectedLatest: number
    actor: string
    reason: string
    operationId?: string | undefined
    details?: Record<string, unknown>
  }): Promise<RuleSetRecord> {
    const record = await this.store.appendRuleSet(
      {
        ruleSet: input.ruleSet,
        expectedLatest: input.expectedLatest,
        author: input.actor,
        reason: input.reason,
        operationId: input.operationId,
      },
      (version) => ({
        actor: input.actor,
        action: 'ruleset.publish',
        target: `ruleset:${version}`,
        details: { reason: input.reason, operationId: input.operationId ?? null, ...input.details },
      }),
    )
    // Stored first, pushed second: a crash in between is healed by the replay at the next start.
    this.rules.publish(record.ruleSet)
    return record
  }

  // ---- topology --------------------------------------------------------------------------------

  /**
   * Stores a new topology revision. It must still cover the rule set in force.
   * @throws ControlError 400 TOPOLOGY_INVALID listing every problem; 409 on a stale expectedRevision.
   */
  async putTopology(
    input: unknown,
    meta: { readonly reason: string; readonly expectedRevision?: number | undefined },
    who: Principal,
  ): Promise<TopologyRecord> {
    const v = validateTopology(input)
    const issues: RuleIssue[] = v.ok ? [] : [...v.issues]
    const latest = await this.store.latestRuleSet()
    if (v.ok && latest) {
      for (const i of ruleSetTopologyIssues(latest.ruleSet, v.topology)) {
        issues.push({
          path: 'units',
          message: `the rule set in force (version ${latest.version}) does not fit: ${i.message}`,
        })
      }
    }
    if (!v.ok || issues.length > 0)
      throw invalid('TOPOLOGY_INVALID', `invalid topology: ${issues.length} problem(s)`, issues)
    return this.store.putTopology(
      v.topology,
      { author: who.name, expectedRevision: meta.expectedRevision },
      { actor: who.name, action: 'topology.update', target: 'topology', details: { reason: meta.reason } },
    )
  }

  // ---- nodes -----------------------------------------------------------------------------------

  /** The live node table, and the stored nodes it no longer holds. */
  async nodes(): Promise<{ live: NodeView[]; stored: NodeRecord[] }> {
    await this.flushNodes()
    return { live: this.rules.nodes(), stored: await this.store.listNodes() }
  }

  /** Resolves when every node sighting so far is stored. */
  flushNodes(): Promise<void> {
    return this.#nodes.flush()
  }

  #orchestratorContext(): OrchestratorContext {
    return {
      store: this.store,
      rules: this.rules,
      events: this.events,
      logger: this.#log,
      now: this.#now,
      publish: (input) =>
        this.#append({
          ruleSet: validated(input.ruleSet, input.expectedLatest + 1),
          expectedLatest: input.expectedLatest,
          actor: input.actor,
          reason: input.reason,
          operationId: input.operationId,
        }),
      update: (op, patch, meta) => this.operations.update(op, patch, meta),
      topology: async (): Promise<Topology | undefined> => (await this.store.getTopology())?.topology,
    }
  }

  async close(): Promise<void> {
    await this.#orchestrator?.close()
    await this.flushNodes()
  }
}

/** Validates a rule set an orchestrator publishes (with its version, or the next one). @throws RuleInvalidError */
function validated(
  ruleSet: Omit<RuleSet, 'version'> & { version?: number | undefined },
  next: number,
): RuleSet {
  const v = validateRuleSet({ ...ruleSet, version: ruleSet.version ?? next })
  if (!v.ok) throw new RuleInvalidError(v.issues)
  return v.ruleSet
}
