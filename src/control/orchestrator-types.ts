/**
 * The contract between the control plane and the orchestrator that runs cut-overs and failovers
 * (DESIGN §4). The control plane owns the durable records and the API: it validates and stores plans,
 * moves an operation from `planned` to `running` (one at a time, only from a fresh plan), records abort
 * requests, and hands the operation to the orchestrator. The orchestrator owns everything after that:
 * each phase, persisted BEFORE it runs (`update`), and the end state (succeeded, failed, rolled-back,
 * aborted). It is plugged in by the composition root (`createControlPlane({ orchestrator })`); without
 * one, starting an operation answers 501.
 */
import type { Logger } from 'pino'
import type { RuleServer } from '../channels/index.js'
import type { RuleSet } from '../rules/index.js'
import type { OperationEvents } from './events.js'
import type { Operation, OperationPatch, RuleSetRecord, Topology } from './model.js'
import type { Store } from './store/types.js'

/** What the control plane gives an orchestrator. */
export interface OrchestratorContext {
  readonly store: Store
  /** The agent channel: `waitForAcks`, `waitForDrain`, `nodes()`, `leaseMs`. */
  readonly rules: RuleServer
  readonly events: OperationEvents
  readonly logger: Logger | undefined
  /** Wall clock, epoch ms (injected in tests). */
  readonly now: () => number
  /**
   * Publishes a rule set as an operation step: validated, stored (immutable, audited, attributed to the
   * operation) and pushed to every agent. Pass `expectedLatest` so a publish that raced the run fails
   * with a conflict (StoreConflictError) instead of overwriting it. No ownership-change policy applies:
   * the orchestrator is the one allowed to move keys.
   * @throws RuleInvalidError, StoreConflictError
   */
  publish(input: {
    readonly ruleSet: Omit<RuleSet, 'version'> & { readonly version?: number | undefined }
    readonly expectedLatest: number
    readonly operationId: string
    readonly actor: string
    readonly reason: string
  }): Promise<RuleSetRecord>
  /**
   * Stores a change of an operation (compare-and-set on `operation.revision`), appends the audit line
   * `action` (default `operation.update`), and emits it on the event stream.
   * @throws StoreConflictError when the record changed meanwhile (e.g. an abort request arrived: re-read
   * it and honour `abortRequested`).
   */
  update(
    operation: Operation,
    patch: OperationPatch,
    meta?: { readonly actor?: string; readonly action?: string; readonly details?: Record<string, unknown> },
  ): Promise<Operation>
  topology(): Promise<Topology | undefined>
}

/** Why and by whom an abort was asked. */
export interface AbortRequest {
  readonly actor: string
  readonly reason: string
}

export interface Orchestrator {
  /**
   * Runs an operation the control plane has just stored as `running`. Resolve once the run is under
   * way; it continues in the background and records its own outcome. A rejection marks the operation
   * `failed` with the error's message.
   */
  start(operation: Operation): Promise<void>
  /**
   * Asks a running operation to stop. `operation.abortRequested` is already stored; the run rolls back
   * and ends `aborted` (or `rolled-back` / `failed` if it could not stop cleanly).
   */
  abort(operation: Operation, request: AbortRequest): Promise<void>
  /** Called once at start-up with every operation left `running` by a previous process: resume or roll back. */
  recover(operations: readonly Operation[]): Promise<void>
  /** Stops every run (without changing their stored state: `recover` takes them up again). */
  close(): Promise<void>
}

/** Builds the orchestrator once the control plane has its store, channel server and event bus. */
export type OrchestratorFactory = (context: OrchestratorContext) => Orchestrator
