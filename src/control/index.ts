/**
 * The control plane (`appactive/control`): the REST API and agent channel server, the store (SQLite or
 * PostgreSQL), auth, planning, and the orchestrator contract.
 */
export type { Principal, Role, TokenConfig, TokenEntry } from './auth.js'
export { Authenticator, checkTokenConfig, loadTokenConfig, roleAllows } from './auth.js'
export {
  ControlConfigError,
  ControlError,
  StoreConflictError,
  StoreNotFoundError,
  StoreUnavailableError,
} from './errors.js'
export type { OperationEvent } from './events.js'
export { OperationEvents } from './events.js'
export type {
  AppSpec,
  AuditEntry,
  AuditInput,
  DbScope,
  NodeRecord,
  Operation,
  OperationError,
  OperationKind,
  OperationPatch,
  OperationState,
  PhaseOutcome,
  PhaseRecord,
  Plan,
  PlanCheck,
  PlanIssue,
  PlanStep,
  ReplicationProbeConfig,
  RuleSetRecord,
  RuleSetSummary,
  ServiceType,
  Topology,
  TopologyRecord,
  TopologyUnit,
} from './model.js'
export { canTransition, TERMINAL_STATES } from './model.js'
export type { CatchUpProbe, OrchestratorOptions, ProbeFactory } from './orchestrator.js'
export { CutoverOrchestrator, createOrchestrator } from './orchestrator.js'
export type {
  AbortRequest,
  Orchestrator,
  OrchestratorContext,
  OrchestratorFactory,
} from './orchestrator-types.js'
export type { CutoverRequest, FailoverRequest, Move, PlanContext, PlanResult } from './plan.js'
export { planCutover, planFailover } from './plan.js'
export type { ControlPlane, ControlPlaneOptions } from './server.js'
export { createControlPlane, DEFAULT_BODY_LIMIT } from './server.js'
export type { PublishCheck, PublishRequest } from './service.js'
export { ControlService } from './service.js'
export { MIGRATIONS, SCHEMA_VERSION } from './store/migrations.js'
export type { OpenStoreOptions } from './store/open.js'
export { DEFAULT_STORE_URL, openStore } from './store/open.js'
export type {
  AuditQuery,
  MigrationResult,
  NewOperation,
  NewRuleSet,
  NodeSighting,
  OperationQuery,
  Store,
} from './store/types.js'
export type { TopologyValidation } from './topology.js'
export { ruleSetTopologyIssues, validateTopology } from './topology.js'
