/**
 * The PostgreSQL store: the same `SqlStore` over a pg Pool. Its tables live in one schema (default
 * `appactive`, or `?schema=NAME` in the URL), set as the search_path of every connection; the schema
 * is created when missing. Locks are transaction-scoped advisory locks keyed by schema and resource.
 */
import type pg from 'pg'
import { StoreUnavailableError } from '../errors.js'
import type { Row, SqlConn, SqlDriver } from './sql.js'
import { SqlStore, type StoreOptions } from './sql-store.js'

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/

/** `?` placeholders to `$1, $2...` (our SQL has no `?` inside literals). */
function numbered(sql: string, params: readonly unknown[]): string {
  if (params.length === 0) return sql
  let n = 0
  return sql.replace(/\?/g, () => `$${++n}`)
}

function connOf(client: pg.Pool | pg.PoolClient, schema: string): SqlConn {
  return {
    all: async <T extends Row>(sql: string, params: readonly unknown[] = []) =>
      (await client.query(numbered(sql, params), [...params])).rows as T[],
    run: async (sql: string, params: readonly unknown[] = []) =>
      (await client.query(numbered(sql, params), [...params])).rowCount ?? 0,
    lock: async (resource: string) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${schema}:${resource}`])
    },
  }
}

class PostgresDriver implements SqlDriver {
  readonly dialect = 'postgres'
  readonly #pool: pg.Pool
  readonly #schema: string
  readonly #conn: SqlConn
  #closed: Promise<void> | undefined

  constructor(pool: pg.Pool, schema: string) {
    this.#pool = pool
    this.#schema = schema
    this.#conn = connOf(pool, schema)
  }

  all<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    return this.#conn.all<T>(sql, params)
  }

  run(sql: string, params?: readonly unknown[]): Promise<number> {
    return this.#conn.run(sql, params)
  }

  async lock(): Promise<void> {
    // Outside a transaction an advisory xact lock would end at once: locking needs transaction().
  }

  async transaction<T>(fn: (conn: SqlConn) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect()
    try {
      await client.query('BEGIN')
      const result = await fn(connOf(client, this.#schema))
      await client.query('COMMIT')
      return result
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.release()
    }
  }

  isUniqueViolation(err: unknown): boolean {
    return (err as { code?: unknown } | null)?.code === '23505'
  }

  close(): Promise<void> {
    this.#closed ??= this.#pool.end()
    return this.#closed
  }
}

/** The connection string without `schema`, the schema, and a printable location without the password. */
export function parsePostgresUrl(url: string): {
  connectionString: string
  schema: string
  location: string
} {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new StoreUnavailableError(`store URL ${JSON.stringify(url)} is not a URL`)
  }
  const schema = u.searchParams.get('schema') ?? 'appactive'
  if (!SCHEMA.test(schema)) {
    throw new StoreUnavailableError(
      `schema ${JSON.stringify(schema)} must be lower-case letters, digits and _ (starting with a letter or _)`,
    )
  }
  u.searchParams.delete('schema')
  const shown = new URL(u.href)
  shown.password = ''
  shown.search = ''
  return { connectionString: u.href, schema, location: `${shown.href} (schema ${schema})` }
}

function reason(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) return reason(err.errors[0])
  if (err instanceof Error) return err.message || (err as NodeJS.ErrnoException).code || err.name
  return String(err)
}

/**
 * Connects to PostgreSQL (checking the server answers) and creates the schema when missing. Does not
 * migrate.
 * @throws StoreUnavailableError when pg is missing or the server cannot be reached.
 */
export async function openPostgresStore(
  url: string,
  options: StoreOptions & { readonly connectTimeoutMs?: number } = {},
): Promise<SqlStore> {
  const { connectionString, schema, location } = parsePostgresUrl(url)
  let Pool: typeof pg.Pool
  try {
    Pool = (await import('pg')).default.Pool
  } catch (err) {
    throw new StoreUnavailableError('the PostgreSQL store needs pg: npm install pg', { cause: err })
  }
  const pool = new Pool({
    connectionString,
    options: `-c search_path=${schema}`,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    max: 10,
  })
  // An idle connection dropped by the server must not crash the process: the next query reconnects,
  // or fails and reports.
  pool.on('error', () => {})
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
  } catch (err) {
    await pool.end().catch(() => {})
    throw new StoreUnavailableError(`cannot reach the PostgreSQL store at ${location}: ${reason(err)}`, {
      cause: err,
    })
  }
  return new SqlStore(new PostgresDriver(pool, schema), location, options)
}
