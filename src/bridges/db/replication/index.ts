import type { PoolOptions } from 'mysql2/promise'
import type { PoolConfig } from 'pg'
import { InvalidArgumentError } from '../../../errors/index.js'
import { mariadbProbe } from './mariadb.js'
import { markerProbe } from './marker.js'
import { noneProbe } from './none.js'
import { postgresProbe } from './postgres.js'
import { mysql2Client, pgClient } from './sql.js'
import type { ReplicationProbe } from './types.js'

export { ProbeUnreachableError, ReplicationTimeoutError } from './errors.js'
export { gtidBehind, type MariadbProbeOptions, mariadbProbe, parseGtidList } from './mariadb.js'
export { MARKER_TABLE, type MarkerProbeOptions, markerProbe, markerTableSql } from './marker.js'
export { noneProbe } from './none.js'
export { type PostgresProbeOptions, parseLsn, postgresProbe } from './postgres.js'
export {
  type Mysql2Queryable,
  mysql2Client,
  type PgQueryable,
  type ProbeEndpoint,
  pgClient,
  type Row,
  type SqlClient,
} from './sql.js'
export type { CatchUp, ReplicationPosition, ReplicationProbe } from './types.js'

/** One side of a probe in a topology file: the unit and how to reach its database (URI or options). */
export interface EndpointSpec<C> {
  readonly unit: string
  readonly connection: string | C
}

/** A probe described as plain JSON, as a topology file or the control plane stores it. */
export type ReplicationProbeSpec =
  | { readonly kind: 'none'; readonly source: string; readonly target: string }
  | {
      readonly kind: 'mariadb'
      readonly source: EndpointSpec<PoolOptions>
      readonly target: EndpointSpec<PoolOptions>
    }
  | {
      readonly kind: 'postgres'
      readonly mode: 'physical' | 'logical'
      readonly subscription?: string
      readonly source: EndpointSpec<PoolConfig>
      readonly target: EndpointSpec<PoolConfig>
    }
  | {
      readonly kind: 'marker'
      readonly driver: 'mysql2' | 'pg'
      readonly table?: string
      readonly source: EndpointSpec<PoolOptions | PoolConfig>
      readonly target: EndpointSpec<PoolOptions | PoolConfig>
    }

/**
 * Builds a probe from its JSON description. The probe owns the pools it opens (lazily, on first use);
 * `close()` ends them.
 * @example
 * const probe = createReplicationProbe({
 *   kind: 'postgres', mode: 'logical',
 *   source: { unit: 'hz', connection: 'postgres://app@db-hz/shop' },
 *   target: { unit: 'sh', connection: 'postgres://app@db-sh/shop' },
 * })
 * const at = await probe.position()
 * await probe.waitApplied(at, 30_000)
 */
export function createReplicationProbe(spec: ReplicationProbeSpec): ReplicationProbe {
  switch (spec.kind) {
    case 'none':
      return noneProbe(spec)
    case 'mariadb':
      return mariadbProbe({
        source: { unit: spec.source.unit, client: mysql2Client(spec.source.connection) },
        target: { unit: spec.target.unit, client: mysql2Client(spec.target.connection) },
      })
    case 'postgres':
      return postgresProbe({
        mode: spec.mode,
        subscription: spec.subscription,
        source: { unit: spec.source.unit, client: pgClient(spec.source.connection) },
        target: { unit: spec.target.unit, client: pgClient(spec.target.connection) },
      })
    case 'marker': {
      const client = spec.driver === 'pg' ? pgClient : mysql2Client
      return markerProbe({
        table: spec.table,
        source: {
          unit: spec.source.unit,
          client: client(spec.source.connection as PoolOptions & PoolConfig),
        },
        target: {
          unit: spec.target.unit,
          client: client(spec.target.connection as PoolOptions & PoolConfig),
        },
      })
    }
    default:
      throw new InvalidArgumentError(
        `unknown replication probe kind ${JSON.stringify((spec as { kind?: unknown }).kind)}`,
      )
  }
}
