/**
 * The control plane's durable state, behind one async interface with two implementations (SQLite,
 * PostgreSQL) that pass the same test suite. Every method that changes something takes the audit line
 * describing the change and writes both in ONE transaction: the audit log cannot miss a change, and a
 * change cannot exist without its audit line.
 */
import type { RuleSet } from '../../rules/index.js'
import type {
  AuditEntry,
  AuditInput,
  NodeRecord,
  Operation,
  OperationKind,
  OperationPatch,
  OperationState,
  Plan,
  RuleSetRecord,
  RuleSetSummary,
  Topology,
  TopologyRecord,
} from '../model.js'

/** A rule set to append. Without `version` the store takes the next one (latest + 1, the first is 1). */
export interface NewRuleSet {
  readonly ruleSet: Omit<RuleSet, 'version'> & { readonly version?: number | undefined }
  /** Compare-and-set: fail with a conflict unless the latest version is exactly this (-1: none yet). */
  readonly expectedLatest?: number | undefined
  readonly author: string
  readonly reason: string
  readonly operationId?: string | undefined
}

export interface NewOperation {
  readonly id: string
  readonly kind: OperationKind
  readonly plan: Plan
  readonly reason: string
  readonly createdBy: string
}

export interface OperationQuery {
  readonly state?: OperationState | undefined
  readonly kind?: OperationKind | undefined
  readonly limit?: number | undefined
}

export interface AuditQuery {
  /** Only entries with a seq above this (paging forward). */
  readonly after?: number | undefined
  readonly action?: string | undefined
  readonly target?: string | undefined
  readonly limit?: number | undefined
}

/** Facts from the channel server about one node (the store keeps the highest version and time seen). */
export interface NodeSighting {
  readonly nodeId: string
  readonly app: string
  readonly unit: string
  readonly address?: string | undefined
  readonly pid?: number | undefined
  readonly appliedVersion: number
  /** true: it left gracefully; false: it (re)registered; undefined: neither (an ack). */
  readonly left?: boolean | undefined
}

export interface MigrationResult {
  /** Versions applied by this call (empty when the schema was current). */
  readonly applied: readonly number[]
  /** The schema version now. */
  readonly version: number
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres'
  /** Where it is, without credentials: `sqlite:./appactive.db`, `postgres://user@host:5432/db (schema s)`. */
  readonly location: string

  /** Applies pending migrations (each in its own transaction, recorded in schema_migrations). */
  migrate(): Promise<MigrationResult>
  schemaVersion(): Promise<number>

  /** The current topology (highest revision), if one was ever stored. */
  getTopology(): Promise<TopologyRecord | undefined>
  /**
   * Stores a new topology revision.
   * @throws StoreConflictError when `expectedRevision` is given and is not the current one (0: none yet).
   */
  putTopology(
    topology: Topology,
    meta: { readonly author: string; readonly expectedRevision?: number | undefined },
    audit: AuditInput,
  ): Promise<TopologyRecord>

  /**
   * Appends a rule-set version. Versions only grow: two concurrent appends never get the same one.
   * @throws StoreConflictError when the version is not above the latest, or `expectedLatest` differs.
   */
  appendRuleSet(input: NewRuleSet, audit: (version: number) => AuditInput): Promise<RuleSetRecord>
  latestRuleSet(): Promise<RuleSetRecord | undefined>
  getRuleSet(version: number): Promise<RuleSetRecord | undefined>
  /** The newest versions first, at most `limit` (default 100), below `before` when given. */
  listRuleSets(query?: { readonly limit?: number; readonly before?: number }): Promise<RuleSetSummary[]>
  /** The newest `count` versions, whole, oldest first (to replay into the channel server on start). */
  recentRuleSets(count: number): Promise<RuleSetRecord[]>

  /**
   * Records what the channel server saw of nodes, in order, in one transaction (with the audit lines of
   * joins and leaves). An ack never moves a node's version back; a registration sets it.
   */
  recordNodes(sightings: readonly NodeSighting[], audit?: readonly AuditInput[]): Promise<void>
  listNodes(): Promise<NodeRecord[]>

  /** Stores a new operation in state `planned`. */
  createOperation(input: NewOperation, audit: AuditInput): Promise<Operation>
  getOperation(id: string): Promise<Operation | undefined>
  /** Newest first. */
  listOperations(query?: OperationQuery): Promise<Operation[]>
  /**
   * Changes an operation if its revision is still `expectedRevision`.
   * @throws StoreConflictError on a stale revision, a transition the state machine forbids, or a second
   * running operation (at most one runs at a time); StoreNotFoundError for an unknown id.
   */
  updateOperation(
    id: string,
    expectedRevision: number,
    patch: OperationPatch,
    audit: AuditInput,
  ): Promise<Operation>

  /** Appends an audit line on its own (for actions that change nothing else). */
  appendAudit(entry: AuditInput): Promise<AuditEntry>
  /** Oldest first. */
  listAudit(query?: AuditQuery): Promise<AuditEntry[]>

  close(): Promise<void>
}
