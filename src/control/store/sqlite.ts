/**
 * The SQLite store (the default): one file, WAL journal, `synchronous = FULL` so a committed step of a
 * cut-over survives a power cut, not only a crash. better-sqlite3 is synchronous; the driver runs one
 * statement or transaction at a time through a queue, so an async caller can never slip a statement
 * into another caller's open transaction.
 */
import type BetterSqlite3 from 'better-sqlite3'
import { StoreUnavailableError } from '../errors.js'
import type { Row, SqlConn, SqlDriver } from './sql.js'
import { SqlStore, type StoreOptions } from './sql-store.js'

class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite'
  readonly #db: BetterSqlite3.Database
  readonly #statements = new Map<string, BetterSqlite3.Statement>()
  #tail: Promise<unknown> = Promise.resolve()
  readonly #conn: SqlConn = {
    all: async <T extends Row>(sql: string, params: readonly unknown[] = []) =>
      this.#prepare(sql).all(...params) as T[],
    run: async (sql: string, params: readonly unknown[] = []) => this.#prepare(sql).run(...params).changes,
    // BEGIN IMMEDIATE already holds the database's write lock for the whole transaction.
    lock: async () => {},
  }

  constructor(db: BetterSqlite3.Database) {
    this.#db = db
  }

  #prepare(sql: string): BetterSqlite3.Statement {
    let s = this.#statements.get(sql)
    if (s === undefined) {
      s = this.#db.prepare(sql)
      // Migrations are one-off statements; caching them would only hold memory.
      if (!/^\s*CREATE\b/i.test(sql)) this.#statements.set(sql, s)
    }
    return s
  }

  /** Runs `fn` after everything queued before it. */
  #queued<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn)
    this.#tail = run.catch(() => {})
    return run
  }

  all<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<T[]> {
    return this.#queued(() => this.#conn.all<T>(sql, params))
  }

  run(sql: string, params?: readonly unknown[]): Promise<number> {
    return this.#queued(() => this.#conn.run(sql, params))
  }

  lock(): Promise<void> {
    return Promise.resolve()
  }

  transaction<T>(fn: (conn: SqlConn) => Promise<T>): Promise<T> {
    return this.#queued(async () => {
      this.#db.exec('BEGIN IMMEDIATE')
      try {
        const result = await fn(this.#conn)
        this.#db.exec('COMMIT')
        return result
      } catch (err) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK')
        throw err
      }
    })
  }

  isUniqueViolation(err: unknown): boolean {
    const code = (err as { code?: unknown } | null)?.code
    return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
  }

  close(): Promise<void> {
    return this.#queued(async () => {
      if (this.#db.open) this.#db.close()
    })
  }
}

/** The file path of a `sqlite:` URL: `sqlite:./a.db`, `sqlite:/abs/a.db`, `sqlite:///abs/a.db`, `sqlite::memory:`. */
export function sqlitePath(url: string): string {
  const rest = url.replace(/^sqlite:/, '')
  const path = rest.startsWith('//') ? rest.slice(2) : rest
  if (path === '')
    throw new StoreUnavailableError(`store URL ${url} names no file (e.g. sqlite:./appactive.db)`)
  return path
}

/**
 * Opens (creating it if needed) a SQLite store. Does not migrate.
 * @throws StoreUnavailableError when better-sqlite3 is missing or the file cannot be opened.
 */
export async function openSqliteStore(url: string, options: StoreOptions = {}): Promise<SqlStore> {
  const path = sqlitePath(url)
  let Database: typeof BetterSqlite3
  try {
    Database = (await import('better-sqlite3')).default
  } catch (err) {
    throw new StoreUnavailableError('the SQLite store needs better-sqlite3: npm install better-sqlite3', {
      cause: err,
    })
  }
  let db: BetterSqlite3.Database
  try {
    db = new Database(path)
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    // Another process (a second control plane, a backup) may hold the lock briefly.
    db.pragma('busy_timeout = 5000')
  } catch (err) {
    throw new StoreUnavailableError(
      `cannot open the SQLite store ${path}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    )
  }
  return new SqlStore(new SqliteDriver(db), `sqlite:${path}`, options)
}
