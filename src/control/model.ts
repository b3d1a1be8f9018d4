/**
 * The control plane's durable model: topology, immutable rule-set history, nodes, operations (cut-overs
 * and failovers as state machines) and the append-only audit log. Every record is plain JSON, so the
 * same shapes travel through the store, the REST API and the event stream.
 */
import type { MovedLabel, MovedRange, RuleSet, Unit } from '../rules/index.js'

export type ServiceType = 'unit' | 'center' | 'normal'

/** A unit of the topology (the rule set's units must be among them). */
export interface TopologyUnit extends Unit {
  /** Where it runs (region, zone, cloud), for people. */
  readonly region?: string | undefined
}

/** An application and its services, each with its type (DESIGN §1). */
export interface AppSpec {
  readonly name: string
  readonly services: readonly { readonly name: string; readonly type: ServiceType }[]
}

/** A set of tables (a database, a schema) whose rows belong to route ids and replicate between units. */
export interface DbScope {
  readonly name: string
  readonly app?: string | undefined
  readonly engine: 'postgres' | 'mysql' | 'mariadb' | 'sqlite' | 'other'
  readonly description?: string | undefined
}

/**
 * How to tell that `target` has applied everything `source` wrote (the catch-up step of a cut-over):
 * the declaration the composition root turns into a replication probe (src/bridges/db/replication uses
 * the same kinds). `kind: 'none'` declares that the pair shares no replicated data, so catch-up is
 * skipped on purpose. `options` hold endpoints by reference (`env:NAME`), never secrets.
 */
export interface ReplicationProbeConfig {
  readonly source: string
  readonly target: string
  readonly scope?: string | undefined
  readonly kind: 'postgres' | 'mariadb' | 'marker' | 'none'
  readonly options?: Readonly<Record<string, string | number | boolean>> | undefined
}

export interface Topology {
  readonly units: readonly TopologyUnit[]
  readonly apps: readonly AppSpec[]
  readonly dbScopes: readonly DbScope[]
  readonly probes: readonly ReplicationProbeConfig[]
}

/** One stored topology revision (immutable; the highest is current). */
export interface TopologyRecord {
  readonly revision: number
  readonly topology: Topology
  readonly author: string
  readonly createdAt: string
}

/** One published rule-set version: immutable once stored. */
export interface RuleSetRecord {
  readonly version: number
  readonly ruleSet: RuleSet
  /** sha256 (hex) of the stored JSON: what agents applied can be compared byte for byte. */
  readonly digest: string
  readonly author: string
  readonly reason: string
  /** The operation that published it, when an orchestrator did. */
  readonly operationId: string | null
  readonly createdAt: string
}

/** A rule-set version without its document, for history listings. */
export type RuleSetSummary = Omit<RuleSetRecord, 'ruleSet'>

/** What the store remembers of an agent (the live view is the RuleServer's node table). */
export interface NodeRecord {
  readonly nodeId: string
  readonly app: string
  readonly unit: string
  readonly address: string | null
  readonly pid: number | null
  readonly appliedVersion: number
  readonly firstSeenAt: string
  readonly lastSeenAt: string
  /** Set when the node left gracefully (DELETE /session); cleared when it registers again. */
  readonly leftAt: string | null
}

export type OperationKind = 'cutover' | 'failover'

/**
 * planned -> running -> succeeded | failed | rolled-back | aborted; planned -> aborted.
 * `failed` means the run stopped in a state that needs a person (rollback itself failed);
 * `rolled-back` means it failed or was aborted and (M, no fence) is in force again.
 */
export type OperationState = 'planned' | 'running' | 'succeeded' | 'failed' | 'rolled-back' | 'aborted'

export const TERMINAL_STATES: ReadonlySet<OperationState> = new Set([
  'succeeded',
  'failed',
  'rolled-back',
  'aborted',
])

const TRANSITIONS: Readonly<Record<OperationState, readonly OperationState[]>> = {
  planned: ['planned', 'running', 'aborted'],
  running: ['running', 'succeeded', 'failed', 'rolled-back', 'aborted'],
  succeeded: [],
  failed: [],
  'rolled-back': [],
  aborted: [],
}

/** True when an operation may go from `from` to `to` (a same-state update of a live one included). */
export function canTransition(from: OperationState, to: OperationState): boolean {
  return TRANSITIONS[from].includes(to)
}

export type PhaseOutcome = 'running' | 'ok' | 'failed' | 'skipped' | 'compensated'

/** One step of a run, as the orchestrator recorded it. */
export interface PhaseRecord {
  readonly name: string
  readonly startedAt: string
  readonly endedAt: string | null
  readonly outcome: PhaseOutcome
  /** Facts of the step: version published, acks, lapsed nodes, replication position, lag... */
  readonly detail?: Readonly<Record<string, unknown>> | undefined
}

/** One problem of a plan (or of a request), with where it is. */
export interface PlanIssue {
  readonly path: string
  readonly message: string
}

/** A precondition looked at while planning. Failing checks that block are also listed as problems. */
export interface PlanCheck {
  readonly name: string
  readonly ok: boolean
  readonly message: string
}

/** A rule set the run will publish, by purpose. Versions are those expected if nothing else publishes. */
export interface PlanStep {
  readonly name: string
  readonly description: string
  readonly version?: number | undefined
}

/** What a cut-over or failover will do. Pure data: the orchestrator runs it, people read it. */
export interface Plan {
  readonly kind: OperationKind
  readonly fromVersion: number
  /** The final rule set (M', no fence) at its expected version. */
  readonly target: RuleSet
  readonly moved: readonly MovedRange[]
  readonly labels: readonly MovedLabel[]
  readonly movedKeys: number
  /** The keys fenced during the window (empty for a failover: the failed unit is waited out instead). */
  readonly fence: { readonly ranges: readonly string[]; readonly labels: readonly string[] }
  /** Source -> target unit pairs whose data must catch up (cut-over), with the probe to use. */
  readonly catchUp: readonly {
    readonly source: string
    readonly target: string
    readonly probes: readonly ReplicationProbeConfig[]
  }[]
  /** Failover only: the lost unit, and whether its agents' leases are NOT waited out. */
  readonly failedUnit?: string | undefined
  readonly force?: boolean | undefined
  readonly steps: readonly PlanStep[]
  readonly checks: readonly PlanCheck[]
  readonly warnings: readonly string[]
  /** A readable account of the whole run, the `--dry-run` output. */
  readonly transcript: readonly string[]
}

export interface OperationError {
  readonly code: string
  readonly message: string
}

/** A durable cut-over or failover. `revision` increases with every stored change (compare-and-set). */
export interface Operation {
  readonly id: string
  readonly kind: OperationKind
  readonly state: OperationState
  /** The phase running now, or the last one. */
  readonly phase: string | null
  readonly plan: Plan
  readonly fromVersion: number
  /** The version in force when the run ended (or the expected one while it runs). */
  readonly toVersion: number | null
  readonly phases: readonly PhaseRecord[]
  readonly error: OperationError | null
  readonly reason: string
  readonly createdBy: string
  readonly createdAt: string
  readonly updatedAt: string
  readonly startedBy: string | null
  readonly startedAt: string | null
  readonly endedAt: string | null
  /** A durable abort request: an orchestrator that restarts still sees it. */
  readonly abortRequested: { readonly by: string; readonly at: string; readonly reason: string } | null
  readonly revision: number
}

/** The fields a change of an operation may set. */
export type OperationPatch = Partial<
  Pick<
    Operation,
    | 'state'
    | 'phase'
    | 'toVersion'
    | 'phases'
    | 'error'
    | 'startedBy'
    | 'startedAt'
    | 'endedAt'
    | 'abortRequested'
  >
>

/** One line of the audit log: who did what to which thing, when and why. */
export interface AuditEntry {
  /** Position in the log, increasing. */
  readonly seq: number
  readonly at: string
  readonly actor: string
  /** `topology.update`, `ruleset.publish`, `operation.create`, `operation.start`, `node.joined`... */
  readonly action: string
  /** What it was done to: `ruleset:7`, `operation:<id>`, `node:<id>`, `topology:3`. */
  readonly target: string
  readonly details: Readonly<Record<string, unknown>>
}

/** An audit line to append (the store assigns seq and time). */
export type AuditInput = Omit<AuditEntry, 'seq' | 'at'>
