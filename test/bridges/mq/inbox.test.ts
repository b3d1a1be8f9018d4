import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import Database from 'better-sqlite3'
import mysqlp from 'mysql2/promise'
import pg from 'pg'
import { guardSqlite } from '../../../src/bridges/db/index.js'
import {
  claimMessage,
  claimMessageSync,
  type InboxDialect,
  type InboxExecutor,
  inboxClaimSql,
  inboxMysql2,
  inboxPg,
  inboxSqlite,
  inboxTableSql,
} from '../../../src/bridges/mq/index.js'
import { runWithRoute } from '../../../src/context/index.js'
import { type AppActiveError, FencedError } from '../../../src/errors/index.js'
import { MARIADB, MARIADB_CONFIG, needs, PG_CONFIG, POSTGRES } from '../../helpers/services.js'
import { agentFor, caught } from '../db/helpers.js'

const RUN = `${process.pid}_${Date.now().toString(36)}`
const CONSUMER = 'orders-hz'

/** One connection of a driver, with its own transactions. */
interface Session {
  readonly inbox: InboxExecutor
  begin(): Promise<void>
  commit(): Promise<void>
  rollback(): Promise<void>
  /** The handler's effect: one row per application (no key, so a double application shows). */
  effect(msgId: string): Promise<void>
  close(): Promise<void>
}

/** A handler: claim, then the effect, in one transaction; returns whether the effect ran. */
async function handle(s: Session, dialect: InboxDialect, table: string, msgId: string): Promise<boolean> {
  await s.begin()
  try {
    const first = await claimMessage(s.inbox, msgId, { dialect, consumer: CONSUMER, table })
    if (first) await s.effect(msgId)
    await s.commit()
    return first
  } catch (err) {
    await s.rollback()
    throw err
  }
}

/** Whether a promise is still pending after `ms`. */
async function pendingAfter(p: Promise<unknown>, ms: number): Promise<boolean> {
  const marker = Symbol('pending')
  const winner = await Promise.race([p.then(() => null), new Promise((r) => setTimeout(() => r(marker), ms))])
  return winner === marker
}

/** The scenarios every server database runs. */
function serverScenarios(
  dialect: InboxDialect,
  table: string,
  open: () => Promise<Session>,
  count: (msgId: string) => Promise<number>,
): void {
  test('the first claim is true and the effect commits once; a redelivery is false', async () => {
    const s = await open()
    try {
      assert.equal(await handle(s, dialect, table, 'm-1'), true)
      assert.equal(await handle(s, dialect, table, 'm-1'), false)
      assert.equal(await handle(s, dialect, table, 'm-1'), false)
      assert.equal(await count('m-1'), 1)
    } finally {
      await s.close()
    }
  })

  test('a rolled-back transaction leaves the id unclaimed; the next delivery does the effect', async () => {
    const s = await open()
    try {
      await s.begin()
      assert.equal(await claimMessage(s.inbox, 'm-2', { dialect, consumer: CONSUMER, table }), true)
      await s.effect('m-2')
      await s.rollback()
      assert.equal(await count('m-2'), 0)
      assert.equal(await handle(s, dialect, table, 'm-2'), true)
      assert.equal(await count('m-2'), 1)
    } finally {
      await s.close()
    }
  })

  for (const ending of ['commit', 'rollback'] as const) {
    test(`two concurrent claims of one id: the second waits, then sees the first's ${ending}`, async () => {
      const a = await open()
      const b = await open()
      const msgId = `m-3-${ending}`
      try {
        await a.begin()
        assert.equal(await claimMessage(a.inbox, msgId, { dialect, consumer: CONSUMER, table }), true)
        await a.effect(msgId)
        await b.begin()
        const second = claimMessage(b.inbox, msgId, { dialect, consumer: CONSUMER, table })
        assert.equal(
          await pendingAfter(second, 300),
          true,
          'the second claim waits for the first transaction',
        )
        await (ending === 'commit' ? a.commit() : a.rollback())
        const won = await second
        assert.equal(won, ending === 'rollback')
        if (won) await b.effect(msgId)
        await b.commit()
        assert.equal(await count(msgId), 1)
      } finally {
        await a.close()
        await b.close()
      }
    })
  }
}

describe('inbox SQL', () => {
  test('the table and claim statements per dialect', () => {
    assert.match(
      inboxTableSql('postgres'),
      /^CREATE TABLE IF NOT EXISTS appactive_inbox \(msg_id VARCHAR\(255\) PRIMARY KEY/,
    )
    assert.match(inboxTableSql('mysql', 'app.inbox'), /ENGINE=InnoDB$/)
    assert.match(inboxTableSql('sqlite'), /msg_id TEXT NOT NULL PRIMARY KEY/)
    assert.match(inboxClaimSql('postgres'), /ON CONFLICT \(msg_id\) DO NOTHING$/)
    assert.match(inboxClaimSql('mysql'), /^INSERT IGNORE INTO/)
    assert.match(inboxClaimSql('sqlite'), /^INSERT OR IGNORE INTO/)
  })

  test('bad table names, dialects, ids and consumers are refused', async () => {
    for (const table of ['x; DROP TABLE y', '1abc', 'a.b.c', '']) {
      assert.throws(() => inboxTableSql('postgres', table), { code: 'APPACTIVE_INVALID_ARGUMENT' })
    }
    assert.throws(() => inboxTableSql('oracle' as InboxDialect), { code: 'APPACTIVE_INVALID_ARGUMENT' })
    const tx: InboxExecutor = { query: () => ({ affected: 1 }) }
    for (const [msgId, consumer] of [
      ['', 'c'],
      ['x'.repeat(256), 'c'],
      ['m', ''],
    ]) {
      await assert.rejects(
        claimMessage(tx, msgId as string, { dialect: 'sqlite', consumer: consumer as string }),
        {
          code: 'APPACTIVE_INVALID_ARGUMENT',
        },
      )
    }
  })

  test('a unique-key violation is a duplicate; other errors propagate', async () => {
    const failing = (err: object): InboxExecutor => ({
      query: () => {
        throw err
      },
    })
    const opts = { dialect: 'postgres', consumer: CONSUMER } as const
    assert.equal(await claimMessage(failing({ code: '23505' }), 'm', opts), false)
    assert.equal(await claimMessage(failing({ code: 'ER_DUP_ENTRY', errno: 1062 }), 'm', opts), false)
    assert.equal(claimMessageSync(failing({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }), 'm', opts), false)
    await assert.rejects(claimMessage(failing({ code: '40001' }), 'm', opts), { code: '40001' })
    assert.throws(() => claimMessageSync({ query: async () => ({ affected: 1 }) }, 'm', opts), {
      code: 'APPACTIVE_INVALID_ARGUMENT',
    })
  })
})

describe('inbox on PostgreSQL', { skip: await needs(POSTGRES), timeout: 60_000 }, () => {
  const table = `aa_inbox_pg_${RUN}`
  const effects = `${table}_fx`
  let admin: pg.Client

  before(async () => {
    admin = new pg.Client(PG_CONFIG)
    await admin.connect()
    await admin.query(inboxTableSql('postgres', table))
    await admin.query(`CREATE TABLE ${effects} (msg_id TEXT NOT NULL)`)
  })

  after(async () => {
    await admin.query(`DROP TABLE IF EXISTS ${table}`)
    await admin.query(`DROP TABLE IF EXISTS ${effects}`)
    await admin.end()
  })

  serverScenarios(
    'postgres',
    table,
    async () => {
      const client = new pg.Client(PG_CONFIG)
      await client.connect()
      return {
        inbox: inboxPg(client),
        begin: async () => void (await client.query('BEGIN')),
        commit: async () => void (await client.query('COMMIT')),
        rollback: async () => void (await client.query('ROLLBACK')),
        effect: async (msgId) =>
          void (await client.query(`INSERT INTO ${effects} (msg_id) VALUES ($1)`, [msgId])),
        close: () => client.end(),
      }
    },
    async (msgId) =>
      Number(
        (await admin.query(`SELECT COUNT(*) AS n FROM ${effects} WHERE msg_id = $1`, [msgId])).rows[0].n,
      ),
  )
})

describe('inbox on MariaDB', { skip: await needs(MARIADB), timeout: 60_000 }, () => {
  const table = `aa_inbox_my_${RUN}`
  const effects = `${table}_fx`
  let admin: mysqlp.Connection

  before(async () => {
    admin = await mysqlp.createConnection(MARIADB_CONFIG)
    await admin.query(inboxTableSql('mysql', table))
    await admin.query(`CREATE TABLE ${effects} (msg_id VARCHAR(255) NOT NULL) ENGINE=InnoDB`)
  })

  after(async () => {
    await admin.query(`DROP TABLE IF EXISTS ${table}`)
    await admin.query(`DROP TABLE IF EXISTS ${effects}`)
    await admin.end()
  })

  serverScenarios(
    'mysql',
    table,
    async () => {
      const conn = await mysqlp.createConnection(MARIADB_CONFIG)
      return {
        inbox: inboxMysql2(conn),
        begin: () => conn.beginTransaction(),
        commit: () => conn.commit(),
        rollback: () => conn.rollback(),
        effect: async (msgId) =>
          void (await conn.query(`INSERT INTO ${effects} (msg_id) VALUES (?)`, [msgId])),
        close: () => conn.end(),
      }
    },
    async (msgId) => {
      const [rows] = await admin.query(`SELECT COUNT(*) AS n FROM ${effects} WHERE msg_id = ?`, [msgId])
      return Number((rows as Array<{ n: number }>)[0]?.n)
    },
  )
})

describe('inbox on better-sqlite3', () => {
  const table = `aa_inbox_sqlite_${RUN}`
  let db: Database.Database

  before(() => {
    db = new Database(':memory:')
    db.exec(inboxTableSql('sqlite', table))
    db.exec('CREATE TABLE fx (msg_id TEXT NOT NULL)')
  })

  after(() => db.close())

  const count = (msgId: string): number =>
    (db.prepare('SELECT COUNT(*) AS n FROM fx WHERE msg_id = ?').get(msgId) as { n: number }).n
  const opts = { dialect: 'sqlite', consumer: CONSUMER, table } as const

  test('inside db.transaction(): first true, redelivery false, effect once', () => {
    const inbox = inboxSqlite(db)
    const handler = db.transaction((msgId: string) => {
      const first = claimMessageSync(inbox, msgId, opts)
      if (first) db.prepare('INSERT INTO fx (msg_id) VALUES (?)').run(msgId)
      return first
    })
    assert.equal(handler('s-1'), true)
    assert.equal(handler('s-1'), false)
    assert.equal(count('s-1'), 1)
    const [row] = db
      .prepare(`SELECT consumer, received_at FROM ${table} WHERE msg_id = ?`)
      .all('s-1') as Array<{
      consumer: string
      received_at: string
    }>
    assert.equal(row?.consumer, CONSUMER)
    assert.match(row?.received_at ?? '', /^\d{4}-\d\d-\d\dT/)
  })

  test('async claim across BEGIN/COMMIT; a rollback leaves the id unclaimed', async () => {
    const inbox = inboxSqlite(db)
    db.exec('BEGIN')
    assert.equal(await claimMessage(inbox, 's-2', opts), true)
    db.prepare('INSERT INTO fx (msg_id) VALUES (?)').run('s-2')
    db.exec('ROLLBACK')
    assert.equal(count('s-2'), 0)
    db.exec('BEGIN')
    assert.equal(await claimMessage(inbox, 's-2', opts), true)
    db.prepare('INSERT INTO fx (msg_id) VALUES (?)').run('s-2')
    db.exec('COMMIT')
    db.exec('BEGIN')
    assert.equal(await claimMessage(inbox, 's-2', opts), false)
    db.exec('COMMIT')
    assert.equal(count('s-2'), 1)
  })

  test('through a guarded database the claim is a guarded write: refused for a fenced id', async () => {
    const fenced = guardSqlite(db, { agent: await agentFor({ unit: 'unit', fenced: true }), scope: 'unit' })
    const err = (await caught(() =>
      runWithRoute({ routeId: '5' }, () => claimMessageSync(inboxSqlite(fenced), 's-3', opts)),
    )) as AppActiveError
    assert.ok(err instanceof FencedError, String(err))
    const open = guardSqlite(db, { agent: await agentFor({ unit: 'unit' }), scope: 'unit' })
    assert.equal(
      runWithRoute({ routeId: '5' }, () => claimMessageSync(inboxSqlite(open), 's-3', opts)),
      true,
    )
  })
})
