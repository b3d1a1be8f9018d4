// PostgreSQL replication, measured in WAL positions (LSNs). The source's position is
// pg_current_wal_lsn(). What "applied at the target" means depends on the kind of replication:
//
// - physical standby: the standby's pg_last_wal_replay_lsn() has reached the position.
// - logical subscription: the confirmed_flush_lsn of the subscription's slot at the source has reached
//   it. The subscriber confirms a position only once every transaction before it is committed and
//   flushed locally, and it confirms positions past WAL that holds nothing for it (the publisher's
//   keepalives carry them), so an idle subscription still catches up. pg_stat_subscription is not
//   used for this: received_lsn moves before a change is applied, and latest_end_lsn reflects only
//   keepalives, neither is documented as "applied". The target's pg_subscription names the slot, and
//   pg_subscription_rel must show every table synchronised: while a table's initial copy runs, the
//   slot moves on without it.
import { InvalidArgumentError } from '../../../errors/index.js'
import { ReplicationTimeoutError } from './errors.js'
import { ask, caughtUp, checkPosition, checkTimeout, type ProbeEndpoint, pollUntil } from './sql.js'
import type { CatchUp, ReplicationPosition, ReplicationProbe } from './types.js'

export interface PostgresProbeOptions {
  /** The primary the source unit writes to. */
  readonly source: ProbeEndpoint
  /** The database the target unit reads: a standby of the source, or a subscriber to it. */
  readonly target: ProbeEndpoint
  /** `physical`: streaming standby (e.g. made with pg_basebackup -R); `logical`: CREATE SUBSCRIPTION. */
  readonly mode: 'physical' | 'logical'
  /** Logical only: the subscription's name at the target (default: the only one in its database). */
  readonly subscription?: string
}

const KIND = 'postgres-lsn'

/** Parses an LSN (`16/B374D848`) into a number that compares correctly. */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i.exec(lsn)
  if (!m) throw new InvalidArgumentError(`not a PostgreSQL LSN: ${JSON.stringify(lsn)}`, { lsn })
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`)
}

function reached(applied: unknown, wanted: bigint): boolean {
  return typeof applied === 'string' && parseLsn(applied) >= wanted
}

/** A probe for PostgreSQL physical (standby) or logical (subscription) replication. */
export function postgresProbe(options: PostgresProbeOptions): ReplicationProbe {
  const { source, target, mode } = options
  if (mode !== 'physical' && mode !== 'logical') {
    throw new InvalidArgumentError(`postgres probe mode must be physical or logical, got ${String(mode)}`)
  }

  async function position(): Promise<ReplicationPosition> {
    const [row] = await ask(source, 'SELECT pg_current_wal_lsn()::text AS lsn')
    return { kind: KIND, value: String(row?.lsn), unit: source.unit, takenAt: Date.now() }
  }

  /** The target's subscription: its name and the slot it streams from at the source. */
  async function subscription(): Promise<{ oid: number; name: string; slot: string; enabled: boolean }> {
    const rows = await ask(
      target,
      `SELECT oid::int AS oid, subname, subslotname, subenabled FROM pg_subscription
       WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    )
    const wanted = options.subscription
    const found = wanted === undefined ? rows : rows.filter((r) => r.subname === wanted)
    const sub = found[0]
    if (found.length !== 1 || !sub || typeof sub.subslotname !== 'string') {
      const names = rows.map((r) => r.subname).join(', ') || 'none'
      throw new InvalidArgumentError(
        wanted === undefined
          ? `unit ${target.unit} (${target.client.label}) needs exactly one subscription with a slot, has: ${names}; name one`
          : `unit ${target.unit} (${target.client.label}) has no subscription ${wanted} with a slot (has: ${names})`,
        { unit: target.unit, subscription: wanted },
      )
    }
    return {
      oid: Number(sub.oid),
      name: String(sub.subname),
      slot: sub.subslotname,
      enabled: sub.subenabled === true,
    }
  }

  async function confirmedFlush(slot: string): Promise<unknown> {
    const [row] = await ask(
      source,
      'SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    )
    if (!row) {
      throw new InvalidArgumentError(`unit ${source.unit} has no replication slot ${slot}`, {
        unit: source.unit,
        slot,
      })
    }
    return row.lsn
  }

  /** Tables of the subscription whose initial copy has not finished, at the target. */
  async function syncing(subscriptionOid: number): Promise<string[]> {
    const rows = await ask(
      target,
      `SELECT srrelid::regclass::text AS rel FROM pg_subscription_rel WHERE srsubid = $1 AND srsubstate <> 'r'`,
      [subscriptionOid],
    )
    return rows.map((r) => String(r.rel))
  }

  async function replayed(): Promise<unknown> {
    const [row] = await ask(
      target,
      'SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS lsn',
    )
    if (row?.standby !== true) {
      throw new InvalidArgumentError(
        `unit ${target.unit} (${target.client.label}) is not a standby: use mode logical or another probe`,
        { unit: target.unit },
      )
    }
    return row.lsn
  }

  async function waitApplied(
    pos: ReplicationPosition,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<CatchUp> {
    checkPosition(pos, KIND, source.unit)
    checkTimeout(timeoutMs)
    const wanted = parseLsn(pos.value)
    const sub = mode === 'logical' ? await subscription() : undefined
    let applied: unknown
    let unsynced: string[] = []
    const poll = await pollUntil(
      async () => {
        applied = sub ? await confirmedFlush(sub.slot) : await replayed()
        if (!reached(applied, wanted)) return false
        if (!sub) return true
        unsynced = await syncing(sub.oid)
        return unsynced.length === 0
      },
      timeoutMs,
      signal,
    )
    if (poll.done) return caughtUp(pos, target.unit, poll.waitedMs)
    throw new ReplicationTimeoutError(source.unit, target.unit, timeoutMs, {
      kind: KIND,
      mode,
      position: pos.value,
      applied,
      ...(unsynced.length > 0 ? { syncing: unsynced } : {}),
      ...(await stallHint()),
    })
  }

  /** Why the target may be stalled, for a timeout's details; best effort. */
  async function stallHint(): Promise<Record<string, unknown>> {
    try {
      if (mode === 'logical') {
        const sub = await subscription()
        return { subscription: sub.name, enabled: sub.enabled }
      }
      const [row] = await ask(target, 'SELECT pg_get_wal_replay_pause_state() AS replay')
      return { replay: row?.replay }
    } catch {
      return {}
    }
  }

  async function lag(): Promise<number | undefined> {
    if (mode === 'physical') {
      // Nothing received is left to replay: caught up with what reached the standby. Otherwise the
      // age of the last replayed transaction. No WAL receiver: disconnected, lag unknown.
      const [row] = await ask(
        target,
        `SELECT (SELECT status FROM pg_stat_wal_receiver) AS receiver,
                pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() AS idle,
                EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000 AS ms`,
      )
      if (!row?.receiver) return undefined
      if (row.idle === true) return 0
      return row.ms === null || row.ms === undefined ? undefined : Math.max(0, Math.round(Number(row.ms)))
    }
    // The publisher measures the subscriber's replay lag. NULL while streaming means caught up and
    // idle; no row means the subscriber is not connected.
    const sub = await subscription()
    const [row] = await ask(
      source,
      `SELECT state, EXTRACT(EPOCH FROM replay_lag) * 1000 AS ms FROM pg_stat_replication
       WHERE application_name = $1`,
      [sub.name],
    )
    if (!row) return undefined
    if (row.ms !== null && row.ms !== undefined) return Math.round(Number(row.ms))
    return row.state === 'streaming' ? 0 : undefined
  }

  return {
    kind: KIND,
    source: source.unit,
    target: target.unit,
    position,
    waitApplied,
    lag,
    close: async () => {
      await Promise.all([source.client.close?.(), target.client.close?.()])
    },
  }
}
