// What every SQL probe shares: a tiny driver-agnostic query adapter, the mysql2 and pg adapters
// (drivers are optional peers, so they are imported only when a probe first opens a pool), error
// wrapping that names the unit and database, and the bounded poll loop.
import { setTimeout as sleep } from 'node:timers/promises'
import type { PoolOptions } from 'mysql2/promise'
import type { PoolConfig } from 'pg'
import { InvalidArgumentError } from '../../../errors/index.js'
import { ProbeUnreachableError } from './errors.js'
import type { CatchUp, ReplicationPosition } from './types.js'

export type Row = Record<string, unknown>

/** The smallest thing a probe needs from a database: run one statement, get its rows. */
export interface SqlClient {
  /** Names the database in error messages, e.g. `shop at 10.0.0.5:3306`. */
  readonly label?: string
  /** Rows of a SELECT; an empty array for other statements. Placeholders are the driver's own. */
  query(sql: string, params?: readonly unknown[]): Promise<Row[]>
  /** Called by the probe's `close()`: present only when the probe owns the connections. */
  close?(): Promise<void>
}

/** One side of a source → target pair. */
export interface ProbeEndpoint {
  readonly unit: string
  readonly client: SqlClient
}

/** A mysql2 promise pool or connection (what `mysql2/promise` returns). */
export interface Mysql2Queryable {
  query(sql: string, params?: unknown): Promise<[unknown, unknown]>
}

/** A pg `Pool` or connected `Client`. */
export interface PgQueryable {
  query(sql: string, params?: unknown[]): Promise<{ rows: Row[] }>
}

// A probe talks to a database once every few ms at most: two connections cover a wait plus a lag read.
const POOL_SIZE = 2
const CONNECT_TIMEOUT_MS = 5000

function isQueryable(value: unknown): value is { query: unknown } {
  return typeof (value as { query?: unknown } | null)?.query === 'function'
}

/**
 * A `SqlClient` over mysql2 (MariaDB, MySQL). Given options or a URI, the probe owns a small pool,
 * opened on first use; given a pool or connection, it only borrows it.
 */
export function mysql2Client(connection: PoolOptions | string | Mysql2Queryable, label?: string): SqlClient {
  if (isQueryable(connection)) {
    return {
      label,
      query: async (sql, params) => rowsOf((await connection.query(sql, params))[0]),
    }
  }
  const options: PoolOptions =
    typeof connection === 'string'
      ? { uri: connection, connectTimeout: CONNECT_TIMEOUT_MS }
      : { connectTimeout: CONNECT_TIMEOUT_MS, ...connection }
  let pool: Promise<import('mysql2/promise').Pool> | undefined
  const open = () => {
    pool ??= import('mysql2/promise').then((mysql) =>
      mysql.createPool({ connectionLimit: POOL_SIZE, ...options }),
    )
    return pool
  }
  return {
    label: label ?? describe(options.database, options.host, options.port ?? 3306, options.uri),
    query: async (sql, params) => rowsOf((await (await open()).query(sql, params as unknown[]))[0]),
    close: async () => {
      if (pool) await (await pool).end()
      pool = undefined
    },
  }
}

/**
 * A `SqlClient` over pg (PostgreSQL). Given a config or connection string, the probe owns a small pool,
 * opened on first use; given a pool or client, it only borrows it.
 */
export function pgClient(connection: PoolConfig | string | PgQueryable, label?: string): SqlClient {
  if (isQueryable(connection)) {
    return { label, query: async (sql, params) => (await connection.query(sql, params as unknown[])).rows }
  }
  const config: PoolConfig =
    typeof connection === 'string'
      ? { connectionString: connection }
      : { connectionTimeoutMillis: CONNECT_TIMEOUT_MS, ...connection }
  let pool: Promise<import('pg').Pool> | undefined
  const open = () => {
    pool ??= import('pg').then(({ default: pg }) => {
      const created = new pg.Pool({ max: POOL_SIZE, ...config })
      // An idle client whose server goes away emits 'error' on the pool, which would crash the process
      // without a listener. The probe's next query reports the problem with the unit's name instead.
      created.on('error', () => {})
      return created
    })
    return pool
  }
  return {
    label: label ?? describe(config.database, config.host, config.port ?? 5432, config.connectionString),
    query: async (sql, params) => (await (await open()).query(sql, params as unknown[])).rows,
    close: async () => {
      if (pool) await (await pool).end()
      pool = undefined
    },
  }
}

function rowsOf(result: unknown): Row[] {
  return Array.isArray(result) ? (result as Row[]) : []
}

function describe(
  database: string | undefined,
  host: string | undefined,
  port: number,
  url?: string,
): string {
  if (url && !host) {
    try {
      const u = new URL(url)
      return `${u.pathname.slice(1) || '(default)'} at ${u.hostname}:${u.port || port}`
    } catch {
      return '(unparsable connection string)'
    }
  }
  return `${database ?? '(default)'} at ${host ?? 'localhost'}:${port}`
}

/** The error for a failed query at `endpoint`, naming its unit and database. */
export function unreachable(endpoint: ProbeEndpoint, err: unknown): ProbeUnreachableError {
  if (err instanceof ProbeUnreachableError) return err
  const e = err as { message?: string; code?: unknown }
  // Some network errors (an AggregateError of IPv4/IPv6 attempts) have an empty message but a code.
  const reason = e?.message || (typeof e?.code === 'string' ? e.code : String(err))
  return new ProbeUnreachableError(endpoint.unit, endpoint.client.label ?? '(unnamed)', reason, {
    cause: err,
  })
}

/** Runs one statement at `endpoint`; any failure becomes a `ProbeUnreachableError`. */
export async function ask(endpoint: ProbeEndpoint, sql: string, params?: readonly unknown[]): Promise<Row[]> {
  try {
    return await endpoint.client.query(sql, params)
  } catch (err) {
    throw unreachable(endpoint, err)
  }
}

/** Throws unless `position` was taken by a probe of `kind` at unit `source`. */
export function checkPosition(position: ReplicationPosition, kind: string, source: string): void {
  if (position?.kind !== kind || position.unit !== source || typeof position.value !== 'string') {
    throw new InvalidArgumentError(
      `a ${kind} probe for unit ${source} cannot wait on a ${position?.kind} position of unit ${position?.unit}`,
      { position },
    )
  }
}

export function checkTimeout(timeoutMs: number): void {
  if (!(Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
    throw new InvalidArgumentError(`timeoutMs must be a finite number >= 0, got ${timeoutMs}`, { timeoutMs })
  }
}

export function caughtUp(position: ReplicationPosition, target: string, waitedMs: number): CatchUp {
  return { position, target, waitedMs: Math.round(waitedMs) }
}

export interface Poll {
  readonly done: boolean
  readonly waitedMs: number
}

/**
 * Calls `check` until it resolves true, sleeping between calls with exponential backoff from `minMs`
 * to `maxMs`. Never runs past the deadline: a check still running at the deadline is abandoned
 * (its result ignored) so a hung connection cannot stretch the timeout. A rejected check rejects the
 * poll; an aborted `signal` rejects it with `signal.reason`.
 */
export async function pollUntil(
  check: (remainingMs: number) => Promise<boolean>,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  backoff: { minMs: number; maxMs: number } = { minMs: 10, maxMs: 250 },
): Promise<Poll> {
  const start = performance.now()
  const deadline = start + timeoutMs
  const elapsed = () => performance.now() - start
  let delay = backoff.minMs
  for (;;) {
    signal?.throwIfAborted()
    const remaining = deadline - performance.now()
    if (remaining <= 0) return { done: false, waitedMs: elapsed() }
    if (await within(check(remaining), remaining, signal)) return { done: true, waitedMs: elapsed() }
    const left = deadline - performance.now()
    if (left > 0 && delay > 0) await pause(Math.min(delay, left), signal)
    delay = Math.min(delay * 2, backoff.maxMs)
  }
}

async function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await sleep(ms, undefined, { signal })
  } catch (err) {
    signal?.throwIfAborted() // the caller's reason, not the timer's AbortError
    throw err
  }
}

/** `work`'s result, or false when `ms` pass first. */
async function within(work: Promise<boolean>, ms: number, signal: AbortSignal | undefined): Promise<boolean> {
  const timer = new AbortController()
  const stop = signal ? AbortSignal.any([timer.signal, signal]) : timer.signal
  try {
    return await Promise.race([work, sleep(ms, false, { signal: stop })])
  } catch (err) {
    signal?.throwIfAborted()
    throw err
  } finally {
    timer.abort()
  }
}
