/**
 * The little SQL surface the store needs from a database: queries with `?` placeholders, write
 * transactions, a named lock inside a transaction, and the one error it must recognise (a unique
 * violation). SQLite and PostgreSQL each implement it in a few lines, and `SqlStore` is written once
 * against it, so the two stores cannot drift apart.
 */

export type Row = Record<string, unknown>

export interface SqlConn {
  /** Rows of a query (SELECT, or a write with RETURNING). */
  all<T extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<T[]>
  /** Runs a statement; resolves to the number of rows it changed. */
  run(sql: string, params?: readonly unknown[]): Promise<number>
  /**
   * Serialises this transaction with every other one taking the same lock until it ends. SQLite needs
   * nothing (a write transaction holds the database lock); PostgreSQL takes an advisory lock.
   */
  lock(resource: string): Promise<void>
}

export interface SqlDriver extends SqlConn {
  readonly dialect: 'sqlite' | 'postgres'
  /** Runs `fn` in one write transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (conn: SqlConn) => Promise<T>): Promise<T>
  /** True for a unique-constraint violation (a duplicate key, or a second running operation). */
  isUniqueViolation(err: unknown): boolean
  close(): Promise<void>
}
