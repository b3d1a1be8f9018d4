/**
 * `npm start -- --db mariadb`: one throwaway MariaDB server per unit, in a temp dir, on free ports, with
 * real GTID replication between them (the approach of test/helpers/replication.ts, sharing its flags in
 * lib/mariadb-server.ts: one mariadb-install-db, copied; no fsync). The supervisor spawns the servers as
 * its own children and stops them last.
 *
 * Replication runs both ways (each server is a primary for its own unit and a GTID replica of the
 * other's), because in the per-unit model every unit owns data the other must have when it takes over:
 * the center owns the stock and the users it serves, `unit` owns its users' orders and points, and a
 * cut-over can move users either way (2000~2999 to unit, then back). No write ever conflicts: the
 * appactive guards let exactly one unit write a given user at a time, and the center data only in the
 * center. Each server has its own GTID domain (server id = domain id) and no log-slave-updates, so
 * its @@gtid_binlog_pos names only what its own unit wrote: exactly the position the cut-over's GTID
 * probe records at the source and waits for at the target (MASTER_GTID_WAIT). Auto-increment ids
 * interleave (increment = number of units, offset = server id), so ids never collide.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import mysql from 'mysql2/promise'
import { DATABASE, SCHEMA } from './db-mariadb.js'
import { installDbArgs, MARIADB_BIN, serverArgs } from './mariadb-server.js'

const run = promisify(execFile)

const DIR_PREFIX = 'appactive-demo-mariadb-'

/**
 * A fresh temp dir for this run's servers, marked with the supervisor's pid. The dirs of earlier runs
 * whose supervisor was killed (SIGKILL leaves no chance to clean up; its servers died with it) go first.
 */
export function mariadbTempDir(): string {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue
    const dir = join(tmpdir(), name)
    let owner = Number.NaN
    try {
      owner = Number(readFileSync(join(dir, 'supervisor.pid'), 'utf8'))
    } catch {}
    if (Number.isInteger(owner) && !alive(owner)) rmSync(dir, { recursive: true, force: true })
  }
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX))
  writeFileSync(join(dir, 'supervisor.pid'), String(process.pid))
  return dir
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** One unit's server, as the supervisor starts it. */
export interface MariadbServer {
  readonly unit: string
  readonly serverId: number
  readonly port: number
  readonly dataDir: string
  /** The command that runs it (setpriv makes the kernel kill it if the supervisor dies). */
  readonly command: string
  readonly args: readonly string[]
  /** `mysql://root@127.0.0.1:PORT/shop`: what the unit's processes and the probes connect to. */
  readonly url: string
  readonly errorLog: string
}

/** `count` distinct free TCP ports on 127.0.0.1. */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = []
  try {
    for (let i = 0; i < count; i++) {
      const s = createServer()
      servers.push(s)
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject)
        s.listen(0, '127.0.0.1', resolve)
      })
    }
    return servers.map((s) => (s.address() as { port: number }).port)
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  }
}

/** Makes one data directory per unit in `dir` (initialised once, then copied) and the server commands. */
export async function prepareMariadb(dir: string, units: readonly string[]): Promise<MariadbServer[]> {
  const first = join(dir, units[0]!)
  await run(MARIADB_BIN.installDb, installDbArgs(first))
  for (const unit of units.slice(1)) await run('cp', ['-a', first, join(dir, unit)])
  const ports = await freePorts(units.length)
  return units.map((unit, i) => {
    const serverId = i + 1
    const port = ports[i]!
    const dataDir = join(dir, unit)
    const errorLog = join(dir, `${unit}.err`) // serverArgs' error log
    const server = [
      MARIADB_BIN.server,
      ...serverArgs({ dir, name: unit, port, serverId }),
      `--gtid-domain-id=${serverId}`,
      `--auto-increment-increment=${units.length}`,
      `--auto-increment-offset=${serverId}`,
    ]
    return {
      unit,
      serverId,
      port,
      dataDir,
      command: '/usr/bin/setpriv',
      args: ['--pdeathsig', 'SIGKILL', '--', ...server],
      url: `mysql://root@127.0.0.1:${port}/${DATABASE}`,
      errorLog,
    }
  })
}

const adminOf = (s: MariadbServer) => ({ host: '127.0.0.1', port: s.port, user: 'root', password: '' })

/** Runs `statements` on `server` as root, outside any database. */
async function admin(server: MariadbServer, statements: readonly string[]): Promise<mysql.RowDataPacket[]> {
  const conn = await mysql.createConnection({ ...adminOf(server), connectTimeout: 2000 })
  try {
    let last: unknown = []
    for (const sql of statements) [last] = await conn.query(sql)
    return Array.isArray(last) ? (last as mysql.RowDataPacket[]) : []
  } finally {
    await conn.end()
  }
}

/** Resolves once `server` accepts connections; rejects after `ms` or as soon as `exited()` is true. */
export async function untilUp(server: MariadbServer, exited: () => boolean, ms = 30_000): Promise<void> {
  const deadline = performance.now() + ms
  for (;;) {
    try {
      await admin(server, ['SELECT 1'])
      return
    } catch (err) {
      if (exited()) throw new Error(`MariaDB of unit ${server.unit} exited (see ${server.errorLog})`)
      if (performance.now() > deadline)
        throw new Error(
          `MariaDB of unit ${server.unit} was not up in ${ms / 1000} s: ${(err as Error).message}`,
        )
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

/**
 * Makes every server a GTID replica of every other (two units: each of the other), creates the shop's
 * schema and data on the center's server, and waits until every other server has applied it.
 */
export async function replicateAndSeed(servers: readonly MariadbServer[], center: string): Promise<void> {
  for (const s of servers) {
    const others = servers.filter((o) => o !== s)
    // One replication connection per source; with two units, the default (unnamed) one.
    for (const source of others) {
      const name = others.length === 1 ? '' : `'${source.unit}' `
      await admin(s, [
        `CHANGE MASTER ${name}TO MASTER_HOST='127.0.0.1', MASTER_PORT=${source.port}, MASTER_USER='root',
         MASTER_PASSWORD='', MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos`,
        `START SLAVE ${name}`.trim(),
      ])
    }
  }
  const primary = servers.find((s) => s.unit === center)!
  await admin(primary, SCHEMA)
  const [row] = await admin(primary, ['SELECT @@GLOBAL.gtid_binlog_pos AS pos'])
  const pos = String(row?.pos ?? '')
  for (const s of servers) {
    if (s === primary) continue
    const [r] = await admin(s, [`SELECT MASTER_GTID_WAIT(${mysql.escape(pos)}, 30) AS r`])
    if (Number(r?.r) !== 0)
      throw new Error(`MariaDB of unit ${s.unit} did not replicate the schema from ${center} in 30 s`)
  }
}
