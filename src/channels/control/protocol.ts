/**
 * The agent <-> control-plane protocol (both sides import it). HTTP/1.1 + JSON, under a prefix
 * (default `/v1/agent`):
 *
 * | call | auth | body | answer |
 * |---|---|---|---|
 * | `POST /register` | shared bearer token | `RegisterRequest` | `RegisterResponse` (a session token) |
 * | `GET /stream` | session | `Last-Event-ID: <version held>` | SSE: `id: V`, `event: rules`, `data: <rule set>` |
 * | `GET /rules?since=V&waitMs=N` | session | — | 200 `RulesResponse`, or 204 after N ms (long-poll) |
 * | `POST /ack` | session | `AckRequest` | 204 |
 * | `POST /acks` | session | `AckRequest` per line (NDJSON), streamed for the session's life | 204 when the body ends |
 * | `POST /heartbeat` | session | `HeartbeatRequest` | `HeartbeatResponse` (renews the lease) |
 * | `POST /inflight` | session | `{ fenced }` | 204 |
 * | `POST /mq` | session | `MqDrainReport` (topics, consumer groups, barriers passed) | 204 |
 * | `POST /report` | session | `ReportRequest` (a refused rule set) | 204 |
 * | `DELETE /session` | session | — | 204 (graceful leave) |
 * | `GET /registry?app=NAME` | shared bearer token or any session | — | `RegistryResponse` (who serves `app`) |
 *
 * Versions are delivered in order, none skipped, while the server still holds them (the last
 * `historySize` versions); an agent further behind receives the latest whole rule set.
 */
import type { RuleIssue } from '../../errors/index.js'

export const DEFAULT_PREFIX = '/v1/agent'
/** Largest request body an agent sends (rule sets travel the other way). */
export const MAX_AGENT_BODY_BYTES = 64 * 1024

export interface RegisterRequest {
  readonly nodeId: string
  readonly app: string
  readonly unit: string
  readonly address?: string | undefined
  readonly pid?: number | undefined
  /** The version the agent holds (-1: none). */
  readonly version: number
}

export interface RegisterResponse {
  /** Bearer token for every later call of this node; bound to its nodeId. */
  readonly session: string
  readonly leaseMs: number
  readonly heartbeatMs: number
  readonly latestVersion: number
}

export interface AckRequest {
  readonly version: number
  readonly inflightFenced?: number | undefined
}

export interface HeartbeatRequest {
  readonly version: number
  readonly inflightFenced: number
}

export interface HeartbeatResponse {
  readonly leaseMs: number
  readonly latestVersion: number
}

export interface RulesResponse {
  readonly version: number
  readonly ruleSet: unknown
}

export interface ReportRequest {
  readonly version?: number | undefined
  readonly issues: readonly RuleIssue[]
}

/** The server's error body. */
export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string }
}

/** One node of an app, as `GET /registry` lists it for service clients. */
export interface RegistryNode {
  readonly nodeId: string
  readonly app: string
  readonly unit: string
  /** Where the node serves (its `address` at registration); absent when it registered none. */
  readonly address?: string
  /** The highest rule-set version it acknowledged (-1: none). */
  readonly version: number
  /** True while its lease runs (it heartbeats) and its session is alive (it has not left). */
  readonly healthy: boolean
}

/** The answer of `GET /registry?app=NAME`. */
export interface RegistryResponse {
  readonly nodes: readonly RegistryNode[]
}
