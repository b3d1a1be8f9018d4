// MariaDB GTID replication: the source's position is @@gtid_binlog_pos (one GTID per replication
// domain), and the target waits server-side with MASTER_GTID_WAIT, which knows about every domain.
import { InvalidArgumentError } from '../../../errors/index.js'
import { ReplicationTimeoutError } from './errors.js'
import {
  ask,
  caughtUp,
  checkPosition,
  checkTimeout,
  type ProbeEndpoint,
  pollUntil,
  type Row,
  unreachable,
} from './sql.js'
import type { CatchUp, ReplicationPosition, ReplicationProbe } from './types.js'

export interface MariadbProbeOptions {
  /** The primary the source unit writes to (binary log on). */
  readonly source: ProbeEndpoint
  /** A replica of it that the target unit reads, replicating with GTID (`MASTER_USE_GTID`). */
  readonly target: ProbeEndpoint
}

const KIND = 'mariadb-gtid'
// MASTER_GTID_WAIT blocks a connection; waiting in slices keeps an abort (or a closed probe)
// answered within a second while still letting the server wake us the moment the GTID applies.
const SLICE_MS = 1000

/**
 * Parses a MariaDB GTID list (`domain-server-seq,...`, as in @@gtid_binlog_pos) into the sequence
 * number per replication domain. An empty string is an empty list.
 * @throws InvalidArgumentError on anything else
 */
export function parseGtidList(list: string): Map<number, bigint> {
  const domains = new Map<number, bigint>()
  for (const item of list.split(',')) {
    const gtid = item.trim()
    if (gtid === '') continue
    const m = /^(\d+)-(\d+)-(\d+)$/.exec(gtid)
    if (!m) throw new InvalidArgumentError(`not a MariaDB GTID list: ${JSON.stringify(list)}`, { list })
    const domain = Number(m[1])
    if (domains.has(domain)) {
      throw new InvalidArgumentError(`GTID list names domain ${domain} twice: ${list}`, { list })
    }
    domains.set(domain, BigInt(m[3]!))
  }
  return domains
}

/** The domains where `applied` is behind `wanted`, as `domain: applied seq < wanted seq`. */
export function gtidBehind(wanted: string, applied: string): string[] {
  const have = parseGtidList(applied)
  const behind: string[] = []
  for (const [domain, seq] of parseGtidList(wanted)) {
    const got = have.get(domain) ?? 0n
    if (got < seq) behind.push(`domain ${domain}: ${got} < ${seq}`)
  }
  return behind
}

/** A probe for MariaDB primary → replica GTID replication. */
export function mariadbProbe(options: MariadbProbeOptions): ReplicationProbe {
  const { source, target } = options

  async function position(): Promise<ReplicationPosition> {
    const [row] = await ask(source, 'SELECT @@GLOBAL.gtid_binlog_pos AS pos, @@GLOBAL.log_bin AS logBin')
    // With the binary log off the position is always '' and every wait would pass at once: refuse.
    if (!row || Number(row.logBin) !== 1) {
      throw new InvalidArgumentError(
        `the binary log is off at unit ${source.unit} (${source.client.label}): it is not a replication source`,
        { unit: source.unit },
      )
    }
    return { kind: KIND, value: String(row.pos ?? ''), unit: source.unit, takenAt: Date.now() }
  }

  async function waitApplied(
    pos: ReplicationPosition,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<CatchUp> {
    checkPosition(pos, KIND, source.unit)
    checkTimeout(timeoutMs)
    // Nothing was ever written at the source: there is nothing to wait for.
    if (parseGtidList(pos.value).size === 0) return caughtUp(pos, target.unit, 0)
    const poll = await pollUntil(
      async (remainingMs) => {
        const seconds = Math.min(remainingMs, SLICE_MS) / 1000
        const [row] = await ask(target, 'SELECT MASTER_GTID_WAIT(?, ?) AS r', [pos.value, seconds])
        const r = Number(row?.r)
        if (r === 0) return true
        if (r === -1) return false
        throw unreachable(target, new Error(`MASTER_GTID_WAIT returned ${String(row?.r)}`))
      },
      timeoutMs,
      signal,
      { minMs: 0, maxMs: 0 },
    )
    if (poll.done) return caughtUp(pos, target.unit, poll.waitedMs)
    throw new ReplicationTimeoutError(source.unit, target.unit, timeoutMs, {
      kind: KIND,
      position: pos.value,
      ...(await replicaState(pos.value)),
    })
  }

  /** What the replica says about itself, for a timeout's details; best effort. */
  async function replicaState(wanted: string): Promise<Record<string, unknown>> {
    try {
      const [row] = await ask(target, 'SELECT @@GLOBAL.gtid_slave_pos AS applied')
      const applied = String(row?.applied ?? '')
      const status = await slaveStatus()
      return {
        applied,
        behind: gtidBehind(wanted, applied),
        replicating: status ? status.Slave_SQL_Running === 'Yes' : false,
        lastError: status?.Last_SQL_Error || status?.Last_IO_Error || undefined,
      }
    } catch {
      return {}
    }
  }

  async function slaveStatus(): Promise<Row | undefined> {
    return (await ask(target, 'SHOW SLAVE STATUS'))[0]
  }

  async function lag(): Promise<number | undefined> {
    const status = await slaveStatus()
    // Seconds_Behind_Master is NULL while the SQL thread is stopped; whole seconds only.
    const seconds = status?.Seconds_Behind_Master
    if (status?.Slave_SQL_Running !== 'Yes' || seconds === null || seconds === undefined) return undefined
    return Number(seconds) * 1000
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
