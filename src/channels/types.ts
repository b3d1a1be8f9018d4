/**
 * The contract between rule channels and the agent that consumes them. Channels sit below the agent
 * (DESIGN §5), so the agent implements `RuleSink` and hands itself to each channel.
 */
import type { Logger } from 'pino'
import type { RuleIssue } from '../errors/index.js'

/** What `RuleSink.apply` did with a delivered rule set. */
export type ApplyOutcome =
  | { readonly status: 'applied'; readonly version: number }
  /** Same version and same content as the current one: nothing to do (a duplicate delivery). */
  | { readonly status: 'duplicate'; readonly version: number }
  /** Older than the current version: ignored (an out-of-order delivery). */
  | { readonly status: 'stale'; readonly version: number; readonly current: number }
  /** Malformed or invalid: refused; the last good rule set stays in force. */
  | {
      readonly status: 'rejected'
      readonly version: number | undefined
      readonly issues: readonly RuleIssue[]
    }

/** Where a delivery came from, for logs and the agent's state. */
export interface DeliveryMeta {
  readonly source: string
}

/** The receiving side of a channel: the agent. */
export interface RuleSink {
  /** Applied version, or -1 before the first rule set. */
  readonly version: number
  /**
   * The version a channel may report as applied (registration, heartbeats, redeliveries); default
   * `version`. Lower while something downstream has not taken it yet (an nginx edge's sidecar).
   */
  ackedVersion?(): number
  /** The sink's logger; channels log through it unless given their own. */
  readonly logger?: Logger
  /** Validates, compiles and atomically swaps in a rule set, or refuses it. Never throws. */
  apply(ruleSet: unknown, meta: DeliveryMeta): ApplyOutcome
  /**
   * Records a delivery that could not even be read (unreadable file, malformed JSON or YAML): logged,
   * counted and kept as the sink's last error, exactly like a rejected rule set.
   */
  reportError(version: number | undefined, issues: readonly RuleIssue[], meta: DeliveryMeta): void
  /** In-flight guarded writes whose route id is fenced under the current rule set. */
  inflightFenced(): number
  /**
   * Called by a leasing channel after a successful heartbeat that was SENT at `sentAt` (ms, `now()`'s
   * clock): the lease runs until `sentAt + leaseMs`. A lapsed lease is granted again only once the sink
   * has applied `latestVersion`.
   */
  renewLease(sentAt: number, leaseMs: number, latestVersion: number): void
  /** The sink's monotonic clock in ms (channels time heartbeats with it). */
  now(): number
  /** True while the sink holds a running lease (a channel renews a lapsed one at once). */
  leaseValid(): boolean
  /** Calls `listener` when in-flight guarded writes end; returns the unsubscribe function. */
  onInflightChange?(listener: () => void): () => void
  /** The message layer's drain state (topics, consumer groups, barriers passed); undefined: none. */
  mqState?(): MqDrainReport | undefined
  /** Calls `listener` when the message drain state changes; returns the unsubscribe function. */
  onMqChange?(listener: () => void): () => void
}

/** The message layer's drain state, as an agent reports it (`POST /mq`). */
export interface MqDrainReport {
  readonly produces: readonly string[]
  readonly consumes: ReadonlyArray<{ readonly topic: string; readonly group: string }>
  readonly barriers: ReadonlyArray<{
    readonly topic: string
    readonly group: string
    readonly origin: string
    readonly version: number
    readonly partition: number
    readonly partitions: number
  }>
}

/** A way rule sets reach an agent. */
export interface RuleChannel {
  /** A short description for logs: `file:/etc/appactive/rules.yaml`. */
  readonly name: string
  /** Starts delivering to `sink`; resolves once the first attempt to load or connect has finished. */
  start(sink: RuleSink): Promise<void>
  /** Tells the channel that `version` was applied (the control channel acknowledges it). */
  applied?(version: number): void
  /** True when this channel holds a lease for the agent (the control-plane channel does). */
  readonly leasing: boolean
  close(): Promise<void>
}
