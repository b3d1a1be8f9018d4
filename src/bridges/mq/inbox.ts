/**
 * The consumer inbox (reference §A.3, "Guarantees"): effectively-once effects on top of at-least-once
 * delivery. The handler records the message id in the same database transaction as its effects; a
 * redelivered message finds its id already there and skips them. The bridges never import each other,
 * so the database is reached through a tiny structural {@link InboxExecutor}; {@link inboxPg},
 * {@link inboxMysql2} and {@link inboxSqlite} adapt the driver objects (no driver is loaded here).
 */
import { InvalidArgumentError } from '../../errors/index.js'

/** SQL dialect of the inbox table. */
export type InboxDialect = 'postgres' | 'mysql' | 'sqlite'

/** What an executor returns: the number of rows the statement inserted. */
export interface InboxResult {
  readonly affected: number
}

/** Runs one parameterised statement on the caller's open transaction (its connection). */
export interface InboxExecutor {
  query(sql: string, params: readonly unknown[]): InboxResult | Promise<InboxResult>
}

export interface ClaimOptions {
  readonly dialect: InboxDialect
  /** The consumer (handler) name, stored with the id. */
  readonly consumer: string
  /** Inbox table; default `appactive_inbox`. A plain or schema-qualified identifier. */
  readonly table?: string
}

export const DEFAULT_INBOX_TABLE = 'appactive_inbox'
/** Longest message id and consumer name the table holds (ids are UUIDv7, 36 characters). */
export const MAX_INBOX_ID_LENGTH = 255

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/
const DIALECTS: readonly InboxDialect[] = ['postgres', 'mysql', 'sqlite']

function checkTable(dialect: InboxDialect, table: string): void {
  if (!DIALECTS.includes(dialect)) {
    throw new InvalidArgumentError(`unknown inbox dialect ${JSON.stringify(dialect)}`, { dialect })
  }
  if (typeof table !== 'string' || !IDENTIFIER.test(table)) {
    throw new InvalidArgumentError(`invalid inbox table name ${JSON.stringify(table)}`, { table })
  }
}

/** `CREATE TABLE IF NOT EXISTS` for the inbox: `msg_id` (primary key), `consumer`, `received_at`. */
export function inboxTableSql(dialect: InboxDialect, table: string = DEFAULT_INBOX_TABLE): string {
  checkTable(dialect, table)
  switch (dialect) {
    case 'postgres':
      return (
        `CREATE TABLE IF NOT EXISTS ${table} (msg_id VARCHAR(255) PRIMARY KEY, ` +
        'consumer VARCHAR(255) NOT NULL, received_at TIMESTAMPTZ NOT NULL DEFAULT now())'
      )
    case 'mysql':
      return (
        `CREATE TABLE IF NOT EXISTS ${table} (msg_id VARCHAR(255) NOT NULL PRIMARY KEY, ` +
        'consumer VARCHAR(255) NOT NULL, received_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ' +
        'ENGINE=InnoDB'
      )
    case 'sqlite':
      return (
        `CREATE TABLE IF NOT EXISTS ${table} (msg_id TEXT NOT NULL PRIMARY KEY, consumer TEXT NOT NULL, ` +
        "received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
      )
  }
}

/** The claim statement: an insert that does nothing when the id is already there. */
export function inboxClaimSql(dialect: InboxDialect, table: string = DEFAULT_INBOX_TABLE): string {
  checkTable(dialect, table)
  switch (dialect) {
    case 'postgres':
      return `INSERT INTO ${table} (msg_id, consumer) VALUES ($1, $2) ON CONFLICT (msg_id) DO NOTHING`
    case 'mysql':
      return `INSERT IGNORE INTO ${table} (msg_id, consumer) VALUES (?, ?)`
    case 'sqlite':
      return `INSERT OR IGNORE INTO ${table} (msg_id, consumer) VALUES (?, ?)`
  }
}

function prepareClaim(msgId: string, options: ClaimOptions): { sql: string; params: string[] } {
  const problems: string[] = []
  for (const [name, value] of [
    ['msgId', msgId],
    ['consumer', options?.consumer],
  ] as const) {
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_INBOX_ID_LENGTH) {
      problems.push(`${name} must be a string of 1 to ${MAX_INBOX_ID_LENGTH} characters`)
    }
  }
  if (problems.length > 0) {
    throw new InvalidArgumentError(`invalid inbox claim: ${problems.join('; ')}`, { problems })
  }
  return { sql: inboxClaimSql(options.dialect, options.table), params: [msgId, options.consumer] }
}

/** A unique-key violation of PostgreSQL, MySQL/MariaDB or SQLite: another claim got there first. */
function isUniqueViolation(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const { code, errno } = err as { code?: unknown; errno?: unknown }
  return (
    code === '23505' ||
    code === 'ER_DUP_ENTRY' ||
    errno === 1062 ||
    code === 'SQLITE_CONSTRAINT_PRIMARYKEY' ||
    code === 'SQLITE_CONSTRAINT_UNIQUE'
  )
}

function claimed(result: InboxResult): boolean {
  if (typeof result?.affected !== 'number') {
    throw new InvalidArgumentError('the inbox executor must resolve to { affected: number }')
  }
  return result.affected > 0
}

/**
 * Claims a message id inside the caller's **open** transaction: `true` the first time (do the effects
 * on the same transaction, then commit), `false` for a duplicate (skip the effects). A rolled-back
 * transaction leaves the id unclaimed, so the next delivery does the effects. A concurrent claim of the
 * same id on another connection waits for this transaction and then returns `false` (or `true` if this
 * one rolled back); a unique-key violation is read as `false`.
 *
 * With a guarded connection (`appactive/db`) the insert is itself a guarded write under the message's
 * route id (the consumer bridges run handlers in its route context): a fenced or foreign id is refused
 * like any write, and the consumer holds the message.
 */
export async function claimMessage(
  tx: InboxExecutor,
  msgId: string,
  options: ClaimOptions,
): Promise<boolean> {
  const { sql, params } = prepareClaim(msgId, options)
  try {
    return claimed(await tx.query(sql, params))
  } catch (err) {
    if (isUniqueViolation(err)) return false
    throw err
  }
}

/**
 * {@link claimMessage} for a synchronous executor (better-sqlite3 inside a `db.transaction()` function,
 * which cannot await). Throws `APPACTIVE_INVALID_ARGUMENT` when the executor returns a promise.
 */
export function claimMessageSync(tx: InboxExecutor, msgId: string, options: ClaimOptions): boolean {
  const { sql, params } = prepareClaim(msgId, options)
  let result: InboxResult | Promise<InboxResult>
  try {
    result = tx.query(sql, params)
  } catch (err) {
    if (isUniqueViolation(err)) return false
    throw err
  }
  if (typeof (result as Promise<InboxResult>)?.then === 'function') {
    throw new InvalidArgumentError('claimMessageSync needs a synchronous executor; use claimMessage')
  }
  return claimed(result as InboxResult)
}

/** The slice of a pg `Client` / `PoolClient` the inbox uses (guarded or not). */
export interface PgQueryable {
  query(text: string, values: unknown[]): Promise<{ rowCount: number | null }>
}

/** An executor on a pg client: pass the client that holds the transaction (not the pool). */
export function inboxPg(client: PgQueryable): InboxExecutor {
  return {
    async query(sql, params) {
      const result = await client.query(sql, [...params])
      return { affected: result.rowCount ?? 0 }
    },
  }
}

/** The slice of a mysql2 **promise** `Connection` / `PoolConnection` the inbox uses (guarded or not). */
export interface Mysql2Queryable {
  query(sql: string, values: unknown[]): Promise<unknown>
}

/** An executor on a mysql2 promise connection (`mysql2/promise`, or `connection.promise()`). */
export function inboxMysql2(connection: Mysql2Queryable): InboxExecutor {
  return {
    async query(sql, params) {
      const result = await connection.query(sql, [...params])
      const header = (Array.isArray(result) ? result[0] : result) as { affectedRows?: unknown } | undefined
      if (typeof header?.affectedRows !== 'number') {
        throw new InvalidArgumentError('inboxMysql2 needs a mysql2 promise connection (no affectedRows)')
      }
      return { affected: header.affectedRows }
    },
  }
}

/** The slice of a better-sqlite3 `Database` the inbox uses (guarded or not). */
export interface SqliteQueryable {
  prepare(sql: string): { run(...params: unknown[]): { changes: number } }
}

/** A synchronous executor on a better-sqlite3 database (usable with both claim functions). */
export function inboxSqlite(db: SqliteQueryable): InboxExecutor {
  return {
    query(sql, params) {
      return { affected: db.prepare(sql).run(...params).changes }
    },
  }
}
