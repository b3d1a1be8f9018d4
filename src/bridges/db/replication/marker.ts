// A probe for any replication that copies rows: write a unique marker row at the source, and wait until
// it can be read at the target. It knows nothing of the replication itself, so it fits trigger-based,
// vendor and cloud replication, or a database the GTID/LSN probes do not cover (MySQL, for one).
import { randomUUID } from 'node:crypto'
import { InvalidArgumentError } from '../../../errors/index.js'
import { ReplicationTimeoutError } from './errors.js'
import {
  ask,
  caughtUp,
  checkPosition,
  checkTimeout,
  type ProbeEndpoint,
  pollUntil,
  unreachable,
} from './sql.js'
import type { CatchUp, ReplicationPosition, ReplicationProbe } from './types.js'

export const MARKER_TABLE = 'appactive_replication_marker'

export interface MarkerProbeOptions {
  readonly source: ProbeEndpoint
  readonly target: ProbeEndpoint
  /** Table holding the markers (default `appactive_replication_marker`). */
  readonly table?: string
  /** Markers older than this are deleted at the source when a new one is written (default one day). */
  readonly keepMs?: number
}

/**
 * The marker table's DDL, valid in MariaDB, MySQL and PostgreSQL. The probe runs it at the source.
 * Replication that does not carry DDL (PostgreSQL logical replication) needs it run at the target too,
 * and the table added to the publication.
 */
export function markerTableSql(table = MARKER_TABLE): string {
  return `CREATE TABLE IF NOT EXISTS ${identifier(table)} (id VARCHAR(64) PRIMARY KEY, created_at BIGINT NOT NULL)`
}

function identifier(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)) {
    throw new InvalidArgumentError(`marker table must be a plain SQL identifier, got ${JSON.stringify(name)}`)
  }
  return name
}

// Marker ids are UUIDs made here and checked on the way back in, so they are inlined into the SQL:
// the adapter is driver-agnostic and placeholder syntax is not (`?` for mysql2, `$1` for pg).
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

// "No such table" at the target means the table itself has not replicated yet: not an error, not yet.
function isMissingTable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return code === 'ER_NO_SUCH_TABLE' || code === '42P01'
}

const KIND = 'marker'
const DAY_MS = 24 * 60 * 60 * 1000

/** A probe that writes a marker row at the source and waits for it at the target. */
export function markerProbe(options: MarkerProbeOptions): ReplicationProbe {
  const { source, target } = options
  const table = identifier(options.table ?? MARKER_TABLE)
  const keepMs = options.keepMs ?? DAY_MS
  let ready: Promise<unknown> | undefined

  async function position(): Promise<ReplicationPosition> {
    ready ??= ask(source, markerTableSql(table)).catch((err: unknown) => {
      ready = undefined // try again on the next call
      throw err
    })
    await ready
    const id = randomUUID()
    const now = Date.now()
    await ask(source, `INSERT INTO ${table} (id, created_at) VALUES ('${id}', ${now})`)
    await ask(source, `DELETE FROM ${table} WHERE created_at < ${now - keepMs}`)
    return { kind: KIND, value: id, unit: source.unit, takenAt: now }
  }

  async function waitApplied(
    pos: ReplicationPosition,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<CatchUp> {
    checkPosition(pos, KIND, source.unit)
    checkTimeout(timeoutMs)
    if (!UUID.test(pos.value)) throw new InvalidArgumentError(`not a marker id: ${JSON.stringify(pos.value)}`)
    let tableMissing = false
    const poll = await pollUntil(
      async () => {
        try {
          const rows = await target.client.query(`SELECT id FROM ${table} WHERE id = '${pos.value}'`)
          tableMissing = false
          return rows.length > 0
        } catch (err) {
          if (!isMissingTable(err)) throw unreachable(target, err)
          tableMissing = true
          return false
        }
      },
      timeoutMs,
      signal,
    )
    if (poll.done) return caughtUp(pos, target.unit, poll.waitedMs)
    throw new ReplicationTimeoutError(source.unit, target.unit, timeoutMs, {
      kind: KIND,
      position: pos.value,
      ...(tableMissing
        ? { hint: `table ${table} does not exist at unit ${target.unit}: create it there` }
        : {}),
    })
  }

  return {
    kind: KIND,
    source: source.unit,
    target: target.unit,
    position,
    waitApplied,
    close: async () => {
      await Promise.all([source.client.close?.(), target.client.close?.()])
    },
  }
}
