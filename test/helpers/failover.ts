/**
 * Shared by the message failover tests: the failover rule set, a gate that lets a consumer process a
 * set number of messages, and the application database (inbox + effects + checkpoint table).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import {
  type CheckpointStore,
  checkpointSqlite,
  checkpointTableSql,
  claimMessageSync,
  inboxSqlite,
  inboxTableSql,
  SqlCheckpointStore,
} from '../../src/bridges/mq/index.js'
import type { RuleSet } from '../../src/rules/index.js'
import { threeUnits } from './topology.js'

/** v`version`: hz lost, its range 3333~6665 evacuated to sh (center keeps 0~3332). */
export function hzFailedOver(version: number): RuleSet {
  return {
    ...threeUnits(version),
    mapping: [
      { unit: 'center', ranges: ['0~3332'] },
      { unit: 'sh', ranges: ['3333~9999'] },
    ],
  }
}

/** Lets handlers through while fewer than `allow` have passed; the rest wait (none is ever failed). */
export class Gate {
  allow: number
  passed = 0
  readonly #waiting: (() => void)[] = []

  constructor(allow: number) {
    this.allow = allow
  }

  async pass(): Promise<void> {
    while (this.passed >= this.allow) await new Promise<void>((r) => this.#waiting.push(r))
    this.passed++
  }

  open(allow: number): void {
    this.allow = allow
    for (const w of this.#waiting.splice(0)) w()
  }
}

/**
 * The application's database, one SQLite file standing for the database replicated from the lost
 * unit to the failover target (its replication is tested elsewhere): the inbox, one effect row per
 * applied message, and the checkpoint table (in the failover target's database, outside the lost unit).
 */
export class AppDb {
  readonly db: Database.Database
  readonly checkpoints: CheckpointStore
  readonly dir: string
  duplicates = 0

  private constructor(dir: string) {
    this.dir = dir
    this.db = new Database(join(dir, 'app.db'))
    this.db.pragma('journal_mode = WAL')
    this.db.exec(inboxTableSql('sqlite'))
    this.db.exec('CREATE TABLE effects (msg_id TEXT NOT NULL, unit TEXT NOT NULL, route_id TEXT)')
    this.db.exec(checkpointTableSql('sqlite'))
    this.checkpoints = new SqlCheckpointStore({ executor: checkpointSqlite(this.db), dialect: 'sqlite' })
  }

  static async open(): Promise<AppDb> {
    return new AppDb(await mkdtemp(join(tmpdir(), 'appactive-failover-')))
  }

  /** The handler's effect, once per message id through the inbox; false for a suppressed duplicate. */
  apply(msgId: string | undefined, unit: string, routeId: string | undefined): boolean {
    if (msgId === undefined) throw new Error('a message without an id')
    const applied = this.db.transaction(() => {
      if (!claimMessageSync(inboxSqlite(this.db), msgId, { dialect: 'sqlite', consumer: 'points' }))
        return false
      this.db
        .prepare('INSERT INTO effects (msg_id, unit, route_id) VALUES (?, ?, ?)')
        .run(msgId, unit, routeId)
      return true
    })()
    if (!applied) this.duplicates++
    return applied
  }

  effects(): { msg_id: string; unit: string; route_id: string }[] {
    return this.db.prepare('SELECT msg_id, unit, route_id FROM effects ORDER BY rowid').all() as {
      msg_id: string
      unit: string
      route_id: string
    }[]
  }

  count(unit?: string): number {
    const row = (
      unit === undefined
        ? this.db.prepare('SELECT count(*) AS n FROM effects').get()
        : this.db.prepare('SELECT count(*) AS n FROM effects WHERE unit = ?').get(unit)
    ) as { n: number }
    return row.n
  }

  async close(): Promise<void> {
    this.db.close()
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** Cleanup steps run in reverse order, each bounded: one stuck on a broken connection must not block the rest. */
export class Cleanup {
  readonly #steps: (() => unknown)[] = []

  push(step: () => unknown): void {
    this.#steps.push(step)
  }

  async run(stepTimeoutMs = 5000): Promise<void> {
    for (const step of this.#steps.splice(0).reverse()) {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise((r) => {
        timer = setTimeout(r, stepTimeoutMs)
      })
      await Promise.race([Promise.resolve().then(step), timeout]).catch(() => undefined)
      clearTimeout(timer)
    }
  }
}
