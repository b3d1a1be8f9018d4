/**
 * `appactive/db`: write guards for mysql2, pg and better-sqlite3 (DESIGN §3, "DB (guarded)"). Each guard
 * returns the driver's own object with every statement checked by the agent before it is sent: a write
 * to a fenced id, an id owned by another unit, a center database outside the center, or any write after
 * the lease lapsed is refused with the typed errors of `appactive/errors`. The drivers are optional peer
 * dependencies: this module imports none of them.
 */
import { InvalidArgumentError } from '../../errors/index.js'
import { guardSqlite, isSqlite } from './better-sqlite3.js'
import type { DbGuardOptions } from './guard.js'
import { guardMysql2, isMysql2 } from './mysql2.js'
import { guardPg, isPg } from './pg.js'

export { guardSqlite } from './better-sqlite3.js'
export type { Classification, Dialect, StatementKind } from './classify.js'
export { classify, classifyUncached } from './classify.js'
export type { DbGuardOptions, GuardLogger } from './guard.js'
export { isGuarded } from './guard.js'
export type { Mysql2Guardable } from './mysql2.js'
export { guardMysql2 } from './mysql2.js'
export type { PgGuardable } from './pg.js'
export { guardPg } from './pg.js'
// Replication probes (src/bridges/db/replication/) are exported here by their own change.

/**
 * Guards a mysql2 pool or connection (callback or promise API), a pg pool or client, or a better-sqlite3
 * database, whichever `db` is; see `guardMysql2`, `guardPg` and `guardSqlite`.
 * @example
 * const pool = guard(mysql.createPool(config).promise(), { agent, scope: 'unit' })
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) for bad options, an unknown object, or an
 *   object already guarded.
 */
export function guard<T extends object>(db: T, options: DbGuardOptions): T {
  if (isMysql2(db)) return guardMysql2(db as never, options)
  if (isPg(db)) return guardPg(db as never, options)
  if (isSqlite(db)) return guardSqlite(db as never, options)
  const name = (db as { constructor?: { name?: string } } | null)?.constructor?.name
  throw new InvalidArgumentError(
    `guard() needs a mysql2 pool or connection, a pg pool or client, or a better-sqlite3 database; got ${
      name ? `a ${name}` : typeof db
    }`,
  )
}
