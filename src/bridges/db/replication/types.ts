/**
 * The replication probe contract (DESIGN §4, step 4 "catch up"). A probe is built for one
 * source → target unit pair: the orchestrator records the source's position only after the drain,
 * then waits until the target's database has applied it. Nothing here names a driver, so the control
 * plane can accept any implementation structurally.
 */

/**
 * A point in the source's replication stream. Plain JSON: the control plane persists it with the
 * cut-over journal and may hand it back to `waitApplied` after a restart.
 */
export interface ReplicationPosition {
  /** The probe kind that took it (`mariadb-gtid`, `postgres-lsn`, `marker`, `none`). */
  readonly kind: string
  /** The position: a GTID list, an LSN, a marker id, or `''` for `none`. */
  readonly value: string
  /** The source unit it was taken at. */
  readonly unit: string
  /** When it was taken, in epoch ms. */
  readonly takenAt: number
}

/** A successful wait. */
export interface CatchUp {
  readonly position: ReplicationPosition
  /** The unit whose database applied the position. */
  readonly target: string
  /** How long `waitApplied` took, in ms. */
  readonly waitedMs: number
}

/** Measures and waits on replication from one source unit's database to one target unit's database. */
export interface ReplicationProbe {
  /** Same as the `kind` of the positions it takes. */
  readonly kind: string
  /** Source unit name. */
  readonly source: string
  /** Target unit name. */
  readonly target: string
  /**
   * The source's current position: everything committed at the source before this call is at or
   * before it.
   * @throws ProbeUnreachableError (`APPACTIVE_PROBE_UNREACHABLE`) when the source cannot be queried.
   */
  position(): Promise<ReplicationPosition>
  /**
   * Resolves once the target has applied `position`.
   * @throws ReplicationTimeoutError (`APPACTIVE_REPLICATION_TIMEOUT`) after `timeoutMs`.
   * @throws ProbeUnreachableError (`APPACTIVE_PROBE_UNREACHABLE`) when a database cannot be queried.
   * @throws InvalidArgumentError when `position` was taken by another kind of probe or another source.
   * Rejects with `signal.reason` when `signal` aborts.
   */
  waitApplied(position: ReplicationPosition, timeoutMs: number, signal?: AbortSignal): Promise<CatchUp>
  /**
   * Current replication lag in ms as the database reports it, or `undefined` when it cannot say
   * (replication stopped, kind without a lag measure). Failover reports RPO from the last value.
   */
  lag?(): Promise<number | undefined>
  /** Releases the probe's connections (never ones the caller passed in). */
  close(): Promise<void>
}
