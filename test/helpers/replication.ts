// Real replication for the replication-probe tests: throwaway database servers in a temp dir, on free
// ports, next to (never touching) the machine's own services on 3306/5432.
//
//   startReplication() both of these, side by side
//   startMariadb()   a MariaDB primary and a replica replicating from it with GTID
//   startPostgres()  a PostgreSQL primary (wal_level=logical), a subscriber cluster with a logical
//                    subscription to it, and a physical standby made with pg_basebackup -R
//
// Each data directory is made once and copied (cp -a is ten times faster than a second initdb), the
// servers skip fsync, and MariaDB and PostgreSQL come up side by side. Servers are stopped and the temp
// dirs removed by stop(), and, as a fallback, when the test process exits.

import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import {
  accessSync,
  constants,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import type { PoolOptions } from 'mysql2/promise'
import type { PoolConfig } from 'pg'
import { installDbArgs, MARIADB_BIN, serverArgs } from '../../demo/lib/mariadb-server.js'
import { MARKER_TABLE, markerTableSql } from '../../src/bridges/db/replication/index.js'
import { freePorts } from './ports.js'

const run = promisify(execFile)
const READY_TIMEOUT_MS = 20_000
const isRoot = process.getuid?.() === 0

export type Row = Record<string, unknown>

/** One running server, as the tests see it. */
export interface DbServer<C> {
  readonly port: number
  /** Driver options for its test database (mysql2 `PoolOptions` or pg `PoolConfig`). */
  readonly config: C
  /** Runs one statement on the test database through a pool the harness owns. */
  query(sql: string, params?: unknown[]): Promise<Row[]>
}

export interface MariadbPair {
  readonly primary: DbServer<PoolOptions>
  readonly replica: DbServer<PoolOptions>
  stop(): Promise<void>
}

export interface PostgresSet {
  /** wal_level=logical; database `shop` with tables `items`, `unpublished` and the marker table. */
  readonly primary: DbServer<PoolConfig>
  /** Subscription `sub` to publication `pub` (tables `items` and the marker table). */
  readonly subscriber: DbServer<PoolConfig>
  /** A streaming standby of the primary. */
  readonly standby: DbServer<PoolConfig>
  stop(): Promise<void>
}

// ---------------------------------------------------------------------------------------------------
// Binaries and the skip policy (the same as needs() in services.ts)

export { MARIADB_BIN } from '../../demo/lib/mariadb-server.js'

function postgresBinDir(): string {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)) : []
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0]
  return newest ? join(root, newest, 'bin') : '/usr/local/bin'
}
const PG_BIN_DIR = postgresBinDir()
export const POSTGRES_BIN = {
  initdb: join(PG_BIN_DIR, 'initdb'),
  server: join(PG_BIN_DIR, 'postgres'),
  basebackup: join(PG_BIN_DIR, 'pg_basebackup'),
}

/**
 * `undefined` when every binary is there, else a skip reason (printed); under CI=true a missing
 * binary throws instead, so the suite fails loudly.
 */
export function needsBinaries(what: string, paths: readonly string[]): string | undefined {
  const missing = paths.filter((p) => {
    try {
      accessSync(p, constants.X_OK)
      return false
    } catch {
      return true
    }
  })
  if (missing.length === 0) return undefined
  const reason = `${what} replication tests need ${missing.join(', ')}`
  if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`${reason}; CI must install it`)
  console.log(`# skipped: ${reason}`)
  return reason
}

// ---------------------------------------------------------------------------------------------------
// Processes, temp dirs and their cleanup

interface Proc {
  readonly child: ChildProcess
  readonly signal: NodeJS.Signals
  readonly log: string
}

/** Everything one start*() made, so stop() (or a failed start, or process exit) can undo it. */
class Sandbox {
  readonly dir: string
  readonly #procs: Proc[] = []
  readonly #closers: (() => Promise<unknown>)[] = []
  #stopped = false

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix))
    live.add(this)
  }

  /** Starts a long-running server; `signal` is the fastest clean stop for it. */
  spawn(cmd: string, args: string[], log: string, signal: NodeJS.Signals, asPostgres = false): Proc {
    const out = openSync(log, 'a')
    const child = spawn(cmd, args, { stdio: ['ignore', out, out], ...(asPostgres ? postgresIds() : {}) })
    const proc = { child, signal, log }
    this.#procs.push(proc)
    return proc
  }

  onStop(close: () => Promise<unknown>): void {
    this.#closers.push(close)
  }

  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    await Promise.allSettled(this.#closers.map((close) => close()))
    await Promise.all(
      this.#procs.map(async ({ child, signal }) => {
        if (child.exitCode !== null || child.signalCode !== null) return
        const exited = once(child, 'exit')
        child.kill(signal)
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
        await exited
        clearTimeout(timer)
      }),
    )
    rmSync(this.dir, { recursive: true, force: true })
    live.delete(this)
  }

  /** Synchronous last resort at process exit: signal the servers and remove what can be removed. */
  kill(): void {
    for (const { child, signal } of this.#procs) if (child.exitCode === null) child.kill(signal)
    try {
      rmSync(this.dir, { recursive: true, force: true })
    } catch {}
  }
}

const live = new Set<Sandbox>()
process.on('exit', () => {
  for (const sandbox of live) sandbox.kill()
})

/** Runs `body` in a fresh sandbox; if it throws, the sandbox is stopped before the error propagates. */
async function inSandbox<T>(prefix: string, body: (box: Sandbox) => Promise<T>): Promise<T> {
  const box = new Sandbox(prefix)
  try {
    return await body(box)
  } catch (err) {
    await box.stop()
    throw err
  }
}

let pgIds: { uid: number; gid: number } | undefined
// PostgreSQL refuses to run as root: when we are root, its processes run as the `postgres` user.
function postgresIds(): { uid?: number; gid?: number } {
  if (!isRoot) return {}
  if (!pgIds) {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('postgres:'))
    const [, , uid, gid] = line?.split(':') ?? []
    if (!uid || !gid) throw new Error('running as root, and there is no postgres user to run PostgreSQL as')
    pgIds = { uid: Number(uid), gid: Number(gid) }
  }
  return pgIds
}

/** Retries `attempt` until it succeeds; fails early with the log's tail when the server has exited. */
async function untilReady<T>(proc: Proc, name: string, attempt: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    try {
      return await attempt()
    } catch (err) {
      const exited = proc.child.exitCode !== null || proc.child.signalCode !== null
      if (exited || Date.now() > deadline) {
        const tail = readFileSync(proc.log, 'utf8').split('\n').slice(-15).join('\n')
        throw new Error(`${name} did not start (${exited ? 'exited' : 'timed out'}): ${err}\n${tail}`)
      }
      await sleep(50)
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// MariaDB: primary → replica, GTID

/** Starts a MariaDB primary and a GTID replica of it, with database `appactive` and table `items`. */
export function startMariadb(): Promise<MariadbPair> {
  return inSandbox('appactive-mariadb-', async (box) => {
    const mysql = await import('mysql2/promise')
    const primaryDir = join(box.dir, 'primary')
    await run(MARIADB_BIN.installDb, installDbArgs(primaryDir))
    await run('cp', ['-a', primaryDir, join(box.dir, 'replica')])
    const [primaryPort, replicaPort] = (await freePorts(2)) as [number, number]

    const server = (name: string, port: number, serverId: number) => {
      const proc = box.spawn(
        MARIADB_BIN.server,
        [...serverArgs({ dir: box.dir, name, port, serverId }), '--log-slave-updates'],
        join(box.dir, `${name}.out`),
        'SIGKILL', // a throwaway server: nothing to flush
      )
      const base = { host: '127.0.0.1', port, user: 'root', password: '' }
      return { proc, port, base }
    }
    const primary = server('primary', primaryPort, 1)
    const replica = server('replica', replicaPort, 2)
    const ping = (s: typeof primary, name: string) =>
      untilReady(s.proc, name, async () => (await mysql.createConnection(s.base)).end())
    await Promise.all([ping(primary, 'MariaDB primary'), ping(replica, 'MariaDB replica')])

    const admin = async (s: typeof primary, statements: string[]) => {
      const conn = await mysql.createConnection(s.base)
      try {
        for (const sql of statements) await conn.query(sql)
      } finally {
        await conn.end()
      }
    }
    await admin(replica, [
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primaryPort}, MASTER_USER='root',
       MASTER_PASSWORD='', MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos`,
      'START SLAVE',
    ])
    await admin(primary, [
      'CREATE DATABASE appactive',
      'CREATE TABLE appactive.items (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL)',
    ])
    const serve = (s: typeof primary): DbServer<PoolOptions> => {
      const config: PoolOptions = { ...s.base, database: 'appactive' }
      const pool = mysql.createPool({ ...config, connectionLimit: 4 })
      box.onStop(() => pool.end())
      return {
        port: s.port,
        config,
        query: async (sql, params) => {
          const [rows] = await pool.query(sql, params)
          return Array.isArray(rows) ? (rows as Row[]) : []
        },
      }
    }
    const pair = { primary: serve(primary), replica: serve(replica), stop: () => box.stop() }
    await untilReady(replica.proc, 'MariaDB replication', async () => {
      await pair.replica.query('SELECT 1 FROM items LIMIT 1')
    })
    return pair
  })
}

// ---------------------------------------------------------------------------------------------------
// PostgreSQL: primary → logical subscriber, primary → physical standby

const PG_SETTINGS = [
  'listen_addresses=127.0.0.1',
  'wal_level=logical',
  'max_wal_senders=10',
  'max_replication_slots=10',
  'fsync=off', // throwaway clusters: durability buys nothing here
  'full_page_writes=off',
  'shared_buffers=16MB',
  'max_connections=30',
  // A re-enabled subscription's worker restarts after this (default 5 s): the stall tests re-enable one.
  'wal_retrieve_retry_interval=100ms',
]

/** Starts a PostgreSQL primary with a logical subscriber and a physical standby (see `PostgresSet`). */
export function startPostgres(): Promise<PostgresSet> {
  return inSandbox('appactive-postgres-', async (box) => {
    const { default: pg } = await import('pg')
    const ids = postgresIds()
    if (ids.uid !== undefined) await run('chown', [`${ids.uid}:${ids.gid}`, box.dir])
    const asPg = { ...ids, env: { ...process.env, LC_ALL: 'C' } }
    const primaryDir = join(box.dir, 'primary')
    await run(
      POSTGRES_BIN.initdb,
      ['-D', primaryDir, '-A', 'trust', '-U', 'postgres', '-N', '-E', 'UTF8', '--locale=C'],
      asPg,
    )
    await run('cp', ['-a', primaryDir, join(box.dir, 'subscriber')])
    const [primaryPort, subscriberPort, standbyPort] = (await freePorts(3)) as [number, number, number]

    const server = async (name: string, port: number) => {
      const settings = [...PG_SETTINGS, `port=${port}`, `unix_socket_directories=${box.dir}`]
      const proc = box.spawn(
        POSTGRES_BIN.server,
        ['-D', join(box.dir, name), ...settings.flatMap((s) => ['-c', s])],
        join(box.dir, `${name}.log`),
        'SIGQUIT', // immediate shutdown
        true,
      )
      const connect = (database: string) => ({ host: '127.0.0.1', port, user: 'postgres', database })
      const admin = async (database: string, statements: string[]) => {
        const client = new pg.Client(connect(database))
        await client.connect()
        try {
          for (const sql of statements) await client.query(sql)
        } finally {
          await client.end()
        }
      }
      await untilReady(proc, `PostgreSQL ${name}`, () => admin('postgres', ['SELECT 1']))
      const config: PoolConfig = connect('shop')
      const pool = new pg.Pool({ ...config, max: 4 })
      pool.on('error', () => {}) // idle clients lose their server at stop()
      box.onStop(() => pool.end())
      const db: DbServer<PoolConfig> = {
        port,
        config,
        query: async (sql, params) => (await pool.query(sql, params)).rows,
      }
      return { proc, db, admin }
    }

    const tables = [
      'CREATE TABLE items (id serial PRIMARY KEY, v text NOT NULL)',
      'CREATE TABLE unpublished (id serial PRIMARY KEY, v text NOT NULL)',
      markerTableSql(),
    ]
    const [primary, subscriber] = await Promise.all([
      server('primary', primaryPort),
      server('subscriber', subscriberPort),
    ])
    await Promise.all([
      primary.admin('postgres', ['CREATE DATABASE shop']),
      subscriber.admin('postgres', ['CREATE DATABASE shop']),
    ])
    await Promise.all([
      primary.admin('shop', [...tables, `CREATE PUBLICATION pub FOR TABLE items, ${MARKER_TABLE}`]),
      subscriber.admin('shop', tables),
    ])

    const subscribe = async () => {
      await subscriber.admin('shop', [
        `CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port=${primaryPort} user=postgres dbname=shop' PUBLICATION pub`,
      ])
      // Until the initial table copies finish, the subscriber is not a faithful copy: wait for it.
      await untilReady(subscriber.proc, 'PostgreSQL subscription', async () => {
        const [row] = await subscriber.db.query(
          "SELECT count(*)::int AS n FROM pg_subscription_rel WHERE srsubstate <> 'r'",
        )
        if (row?.n !== 0) throw new Error(`${row?.n} tables still synchronising`)
      })
    }
    const standby = async () => {
      const dir = join(box.dir, 'standby')
      await run(
        POSTGRES_BIN.basebackup,
        ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', dir, '-R', '-c', 'fast'],
        asPg,
      )
      return server('standby', standbyPort)
    }
    const [, standbyServer] = await Promise.all([subscribe(), standby()])
    return {
      primary: primary.db,
      subscriber: subscriber.db,
      standby: standbyServer.db,
      stop: () => box.stop(),
    }
  })
}

/**
 * Starts the chosen sets side by side. If one fails to start, the others are stopped before the error
 * surfaces, so a failed start leaves no server behind.
 */
export async function startReplication(which: { mariadb: boolean; postgres: boolean }): Promise<{
  mariadb?: MariadbPair
  postgres?: PostgresSet
  stop(): Promise<void>
}> {
  const [m, p] = await Promise.allSettled([
    which.mariadb ? startMariadb() : undefined,
    which.postgres ? startPostgres() : undefined,
  ])
  const mariadb = m.status === 'fulfilled' ? m.value : undefined
  const postgres = p.status === 'fulfilled' ? p.value : undefined
  const stop = async () => {
    await Promise.all([mariadb?.stop(), postgres?.stop()])
  }
  const failed = [m, p].find((r) => r.status === 'rejected')
  if (failed) {
    await stop()
    throw failed.reason
  }
  return { mariadb, postgres, stop }
}
