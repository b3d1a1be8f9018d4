import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import Database from 'better-sqlite3'
import { guard, guardSqlite } from '../../../src/bridges/db/index.js'
import { runWithRoute } from '../../../src/context/index.js'
import { type AppActiveError, FencedError, WrongUnitError } from '../../../src/errors/index.js'
import { rules } from '../../helpers/agents.js'
import {
  agentFor,
  assertOutcome,
  CENTER_ID,
  caught,
  FENCE,
  MATRIX,
  type MatrixRow,
  recordingLogger,
  rowName,
  tableName,
  UNIT_ID,
} from './helpers.js'

const T = tableName('sqlite')

describe('better-sqlite3 write guard', { timeout: 60_000 }, () => {
  let dir: string
  let raw: Database.Database

  before(() => {
    // A file, not :memory:, so a second connection can check what was committed.
    dir = mkdtempSync(join(tmpdir(), 'appactive-sqlite-'))
    raw = new Database(join(dir, 'guard.db'))
    raw.exec(`CREATE TABLE ${T} (id INTEGER PRIMARY KEY, route_id TEXT, tag TEXT)`)
  })

  after(() => {
    raw.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const count = (tag: string): number =>
    (raw.prepare(`SELECT COUNT(*) AS n FROM ${T} WHERE tag = ?`).get(tag) as { n: number }).n
  const insert = `INSERT INTO ${T} (route_id, tag) VALUES (?, ?)`
  const returning = `${insert} RETURNING id`

  /** Every way to send a write through better-sqlite3; each returns, or throws the guard's refusal. */
  const surfaces: Record<string, (db: Database.Database, row: MatrixRow, tag: string) => unknown> = {
    'prepare().run': (db, row, tag) => db.prepare(insert).run(row.routeId ?? null, tag),
    'prepare().get, RETURNING': (db, row, tag) => db.prepare(returning).get(row.routeId ?? null, tag),
    'prepare().all, RETURNING': (db, row, tag) => db.prepare(returning).all(row.routeId ?? null, tag),
    'prepare().iterate, RETURNING': (db, row, tag) => [
      ...db.prepare(returning).iterate(row.routeId ?? null, tag),
    ],
    'prepare().pluck().get, chained': (db, row, tag) =>
      db
        .prepare(returning)
        .pluck()
        .get(row.routeId ?? null, tag),
    exec: (db, row, tag) =>
      db.exec(`INSERT INTO ${T} (route_id, tag) VALUES ('${row.routeId ?? ''}', '${tag}')`),
    'transaction()': (db, row, tag) => {
      const statement = db.prepare(insert)
      return db.transaction(() => statement.run(row.routeId ?? null, tag))()
    },
    'transaction().immediate': (db, row, tag) => {
      const statement = db.prepare(insert)
      return db.transaction(() => statement.run(row.routeId ?? null, tag)).immediate()
    },
  }

  describe('every scope x every outcome, on every API', () => {
    MATRIX.forEach((row, r) => {
      test(rowName(row), async () => {
        const agent = await agentFor(row)
        const db = guardSqlite(raw, { agent, scope: row.scope })
        for (const [name, send] of Object.entries(surfaces)) {
          const tag = `s${r}-${name}`
          let err: unknown
          runWithRoute({ routeId: row.routeId }, () => {
            try {
              send(db, row, tag)
            } catch (e) {
              err = e // synchronous: better-sqlite3 throws where it would have run the statement
            }
          })
          await assertOutcome(name, row, agent, err, count(tag))
          assert.equal(raw.inTransaction, false)
        }
      })
    })
  })

  test('reads pass in any situation unless strict; a strict read needs what a write needs', async () => {
    const agent = await agentFor({ unit: 'unit' })
    const read = `SELECT COUNT(*) AS n FROM ${T}`
    const lax = guardSqlite(raw, { agent, scope: 'unit' }).prepare(read)
    const strict = guardSqlite(raw, { agent, scope: 'unit', strict: true }).prepare(read)
    runWithRoute({ routeId: CENTER_ID }, () => lax.get())
    lax.get()
    assert.throws(() => runWithRoute({ routeId: CENTER_ID }, () => strict.get()), WrongUnitError)
    runWithRoute({ routeId: UNIT_ID }, () => strict.get())
  })

  test('statements are checked in the route context they run in, not the one they were prepared in', async () => {
    const agent = await agentFor({ unit: 'unit' })
    const db = guardSqlite(raw, { agent, scope: 'unit' })
    const statement = runWithRoute({ routeId: UNIT_ID }, () => db.prepare(insert))
    assert.throws(
      () => runWithRoute({ routeId: CENTER_ID }, () => statement.run(CENTER_ID, 'ctx')),
      WrongUnitError,
    )
    runWithRoute({ routeId: UNIT_ID }, () => statement.run(UNIT_ID, 'ctx'))
    assert.equal(count('ctx'), 1)
  })

  test('a statement it cannot classify is a write, and is logged once per shape', async () => {
    const agent = await agentFor({ unit: 'unit' })
    const logger = recordingLogger()
    const db = guardSqlite(raw, { agent, scope: 'unit', logger })
    for (let i = 0; i < 3; i++) {
      const err = await caught(() => db.exec("SELECT 'unterminated"))
      assert.equal((err as AppActiveError).code, 'APPACTIVE_NO_ROUTE_ID')
    }
    assert.equal(logger.warnings.length, 1)
    assert.match(logger.warnings[0]!, /unterminated/)
  })

  describe('transactions', () => {
    test('a transaction() function holds one handle while it runs; a fence change inside it rolls it back', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const db = guardSqlite(raw, { agent, scope: 'unit' })
      const statement = db.prepare(insert)
      const seen: number[] = []
      const write = db.transaction((fence: boolean) => {
        statement.run(UNIT_ID, 'tx-fn')
        statement.run(UNIT_ID, 'tx-fn')
        seen.push(agent.state().inflight)
        if (fence) {
          agent.apply(rules(2, 1999, FENCE))
          seen.push(agent.inflightFenced())
          statement.run(UNIT_ID, 'tx-fn') // refused: the whole transaction rolls back
        }
      })
      runWithRoute({ routeId: UNIT_ID }, () => write(false))
      assert.equal(agent.state().inflight, 0)
      assert.equal(count('tx-fn'), 2)
      assert.throws(() => runWithRoute({ routeId: UNIT_ID }, () => write(true)), FencedError)
      assert.deepEqual(seen, [1, 1, 1])
      assert.equal(agent.state().inflight, 0)
      assert.equal(count('tx-fn'), 2, 'the fenced transaction left nothing behind')
      assert.equal((write as unknown as { database: unknown }).database, db)
    })

    test('BEGIN ... COMMIT across awaits: held until COMMIT; a fence change in between refuses later writes', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const db = guardSqlite(raw, { agent, scope: 'unit' })
      const statement = db.prepare(insert)
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        db.exec('BEGIN IMMEDIATE')
        statement.run(UNIT_ID, 'tx-exec')
        await new Promise((r) => setImmediate(r))
        assert.equal(agent.state().inflight, 1)
        agent.apply(rules(2, 1999, FENCE))
        assert.equal(agent.inflightFenced(), 1, 'the drain step waits for this transaction')
        assert.throws(() => statement.run(UNIT_ID, 'tx-exec'), FencedError)
        assert.equal(raw.inTransaction, true, 'a refusal does not end the transaction')
        db.exec('ROLLBACK')
        assert.equal(agent.inflightFenced(), 0)
      })
      assert.equal(count('tx-exec'), 0)
    })

    test('an early-closed iterator ends its statement, and its write', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const db = guardSqlite(raw, { agent, scope: 'unit' })
      runWithRoute({ routeId: UNIT_ID }, () => {
        const rows = db.prepare(`${insert}, (?, ?) RETURNING id`).iterate(UNIT_ID, 'iter', UNIT_ID, 'iter')
        for (const _ of rows) {
          assert.equal(agent.state().inflight, 1)
          break
        }
      })
      assert.equal(agent.state().inflight, 0)
    })
  })

  describe('driver surface', () => {
    test('the guarded objects are the driver classes, with their other methods', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const db = guardSqlite(raw, { agent, scope: 'unit' })
      assert.ok(db instanceof Database)
      assert.equal(db.open, true)
      assert.equal(db.name, raw.name)
      const statement = db.prepare(`SELECT 1 AS one`)
      assert.equal(statement.database, db)
      assert.equal(statement.reader, true)
      assert.equal(statement.source, 'SELECT 1 AS one')
      assert.equal(statement.pluck().get(), 1)
      assert.equal(db.pragma('user_version', { simple: true }), 0)
      assert.equal(
        db.function('twice', (x: number) => 2 * x),
        db,
        'chaining returns the guarded object',
      )
      assert.equal(db.prepare('SELECT twice(21)').pluck().get(), 42)
    })

    test('guard() detects a better-sqlite3 database; guarding twice is refused; :memory: works', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const memory = new Database(':memory:')
      after(() => memory.close())
      memory.exec('CREATE TABLE t (x)')
      const db = guard(memory, { agent, scope: 'unit' })
      assert.throws(() => db.exec('DROP TABLE t'), /needs a route id/, 'DDL is a write')
      assert.throws(() => db.prepare('INSERT INTO t VALUES (1)').run(), /needs a route id/)
      runWithRoute({ routeId: UNIT_ID }, () => db.prepare('INSERT INTO t VALUES (1)').run())
      assert.throws(() => guard(db, { agent, scope: 'unit' }), /already guarded/)
    })
  })
})
