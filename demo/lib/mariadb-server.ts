/**
 * How to run a throwaway MariaDB server (Debian's mariadb-server binaries): a data directory made by
 * mariadb-install-db, and the mariadbd flags every copy shares (binary log with GTID, no fsync, small
 * buffers). Shared by the demo's `--db mariadb` (lib/mariadb.ts) and the replication tests' harness
 * (test/helpers/replication.ts); it imports no package, so the tests can use it without the built one.
 */
import { accessSync, constants } from 'node:fs'
import { join } from 'node:path'

export const MARIADB_BIN = { installDb: '/usr/bin/mariadb-install-db', server: '/usr/sbin/mariadbd' }

const isRoot = process.getuid?.() === 0
/** mariadbd refuses to run as root unless told to. */
const asUser = (): string[] => (isRoot ? ['--user=root'] : [])
const INNODB = ['--innodb-buffer-pool-size=16M', '--innodb-log-file-size=4M']

/** Arguments of mariadb-install-db for a fresh data directory: root without a password, no test db. */
export function installDbArgs(dataDir: string): string[] {
  return [
    '--no-defaults',
    `--datadir=${dataDir}`,
    ...asUser(),
    '--auth-root-authentication-method=normal', // root without a password, from 127.0.0.1 too
    '--skip-test-db',
    ...INNODB,
  ]
}

/**
 * Arguments of mariadbd for the server `name` whose data directory is `<dir>/<name>`: on 127.0.0.1:port,
 * its socket, pid file and error log (`<name>.err`) in `dir`, binary log with GTID in strict mode, row
 * format, durability traded for speed. Add the topology's own flags after these.
 */
export function serverArgs(options: { dir: string; name: string; port: number; serverId: number }): string[] {
  const { dir, name, port, serverId } = options
  return [
    '--no-defaults',
    `--datadir=${join(dir, name)}`,
    `--port=${port}`,
    '--bind-address=127.0.0.1',
    '--skip-name-resolve',
    `--socket=${join(dir, `${name}.sock`)}`,
    `--pid-file=${join(dir, `${name}.pid`)}`,
    `--log-error=${join(dir, `${name}.err`)}`,
    ...asUser(),
    `--server-id=${serverId}`,
    '--log-bin=mariadb-bin',
    '--binlog-format=ROW',
    '--gtid-strict-mode=1',
    ...INNODB,
    '--skip-innodb-doublewrite',
    '--innodb-flush-log-at-trx-commit=2',
    '--sync-binlog=0',
  ]
}

/** Why MariaDB cannot run here (a missing binary), or undefined. */
export function mariadbMissing(): string | undefined {
  const missing = Object.values(MARIADB_BIN).filter((p) => {
    try {
      accessSync(p, constants.X_OK)
      return false
    } catch {
      return true
    }
  })
  return missing.length === 0
    ? undefined
    : `--db mariadb needs ${missing.join(' and ')} (Debian: apt-get install mariadb-server)`
}
