import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import mysql from 'mysql2'
import mysqlp from 'mysql2/promise'
import type { RoutingAgent } from '../../../src/agent/index.js'
import { guard, guardMysql2, isGuarded } from '../../../src/bridges/db/index.js'
import { currentRouteId, runWithRoute } from '../../../src/context/index.js'
import { type AppActiveError, FencedError, WrongUnitError } from '../../../src/errors/index.js'
import { rules } from '../../helpers/agents.js'
import { MARIADB, MARIADB_CONFIG, needs } from '../../helpers/services.js'
import {
  agentFor,
  asyncMatrix,
  CENTER_ID,
  caught,
  FENCE,
  type MatrixRow,
  recordingLogger,
  tableName,
  UNIT_ID,
} from './helpers.js'

const skip = await needs(MARIADB)
const T = tableName('mysql2')
const PROC = `${T}_proc`

/** A callback call as a promise. */
function cb<R = unknown>(call: (done: (err: unknown, result?: R) => void) => unknown): Promise<R> {
  return new Promise((resolve, reject) => {
    call((err, result) => (err ? reject(err) : resolve(result as R)))
  })
}

describe('mysql2 write guard', { skip, timeout: 60_000 }, () => {
  let admin: mysqlp.Connection
  let rawPool: mysql.Pool
  let rawPromisePool: mysqlp.Pool
  let rawConnection: mysql.Connection

  before(async () => {
    admin = await mysqlp.createConnection(MARIADB_CONFIG)
    await admin.query(`DROP TABLE IF EXISTS ${T}`)
    await admin.query(
      `CREATE TABLE ${T} (id INT AUTO_INCREMENT PRIMARY KEY, route_id VARCHAR(32), tag VARCHAR(64)) ENGINE=InnoDB`,
    )
    await admin.query(`DROP PROCEDURE IF EXISTS ${PROC}`)
    await admin.query(`CREATE PROCEDURE ${PROC}() SELECT 1 AS one`)
    rawPool = mysql.createPool({ ...MARIADB_CONFIG, connectionLimit: 2 })
    rawPromisePool = mysqlp.createPool({ ...MARIADB_CONFIG, connectionLimit: 2, multipleStatements: true })
    rawConnection = mysql.createConnection(MARIADB_CONFIG)
  })

  after(async () => {
    await new Promise((r) => rawPool.end(r))
    await rawPromisePool.end()
    await new Promise((r) => rawConnection.end(r))
    await admin.query(`DROP TABLE IF EXISTS ${T}`)
    await admin.query(`DROP PROCEDURE IF EXISTS ${PROC}`)
    await admin.end()
  })

  const count = async (tag: string): Promise<number> => {
    const [rows] = await admin.query(`SELECT COUNT(*) AS n FROM ${T} WHERE tag = ?`, [tag])
    return Number((rows as Array<{ n: number }>)[0]!.n)
  }
  const insert = `INSERT INTO ${T} (route_id, tag) VALUES (?, ?)`

  /** Every way to send a write through mysql2; each resolves, or rejects with the guard's refusal. */
  const surfaces: Record<string, (agent: RoutingAgent, row: MatrixRow, tag: string) => Promise<unknown>> = {
    'callback pool.query': (agent, row, tag) => {
      const pool = guardMysql2(rawPool, { agent, scope: row.scope })
      return cb((done) => pool.query(insert, [row.routeId ?? null, tag], done))
    },
    'callback pool.execute': (agent, row, tag) => {
      const pool = guardMysql2(rawPool, { agent, scope: row.scope })
      return cb((done) => pool.execute(insert, [row.routeId ?? null, tag], done))
    },
    'callback pool.getConnection + connection.query': async (agent, row, tag) => {
      const pool = guardMysql2(rawPool, { agent, scope: row.scope })
      const conn = await cb<mysql.PoolConnection>((done) => pool.getConnection(done))
      try {
        return await cb((done) => conn.query(insert, [row.routeId ?? null, tag], done))
      } finally {
        conn.release()
      }
    },
    'callback connection.execute': (agent, row, tag) => {
      const conn = guardMysql2(rawConnection, { agent, scope: row.scope })
      return cb((done) => conn.execute(insert, [row.routeId ?? null, tag], done))
    },
    'promise pool.query': (agent, row, tag) =>
      guardMysql2(rawPromisePool, { agent, scope: row.scope }).query(insert, [row.routeId ?? null, tag]),
    'promise pool.getConnection + connection.execute': async (agent, row, tag) => {
      const conn = await guardMysql2(rawPromisePool, { agent, scope: row.scope }).getConnection()
      try {
        return await conn.execute(insert, [row.routeId ?? null, tag])
      } finally {
        conn.release()
      }
    },
    'promise prepared statement': async (agent, row, tag) => {
      const conn = await guardMysql2(rawPromisePool, { agent, scope: row.scope }).getConnection()
      try {
        const statement = await conn.prepare(insert)
        try {
          return await statement.execute([row.routeId ?? null, tag])
        } finally {
          // Not statement.close(): mysql2 caches prepared statements per text, and execute() reuses them.
          conn.unprepare(insert)
        }
      } finally {
        conn.release()
      }
    },
    'callback pool .promise()': (agent, row, tag) =>
      guardMysql2(rawPool, { agent, scope: row.scope })
        .promise()
        .query(insert, [row.routeId ?? null, tag]),
  }

  asyncMatrix('m', surfaces, count)

  test('reads pass in any situation unless strict; a strict read needs what a write needs', async () => {
    const agent = await agentFor({ unit: 'unit' })
    const lax = guardMysql2(rawPromisePool, { agent, scope: 'unit' })
    const strict = guardMysql2(rawPromisePool, { agent, scope: 'unit', strict: true })
    const read = `SELECT COUNT(*) AS n FROM ${T}`
    await runWithRoute({ routeId: CENTER_ID }, () => lax.query(read))
    await lax.query(read) // no route id at all
    const err = await runWithRoute({ routeId: CENTER_ID }, () => caught(() => strict.query(read)))
    assert.ok(err instanceof WrongUnitError)
    await runWithRoute({ routeId: UNIT_ID }, () => strict.query(read))
    // A locking read is a write, strict or not.
    const lock = await runWithRoute({ routeId: CENTER_ID }, () =>
      caught(() => lax.query(`SELECT * FROM ${T} WHERE id = 1 FOR UPDATE`)),
    )
    assert.ok(lock instanceof WrongUnitError)
  })

  test('CALL is a write unless callIsWrite is false', async () => {
    const agent = await agentFor({ unit: 'unit' })
    const byDefault = guardMysql2(rawPromisePool, { agent, scope: 'unit' })
    const err = await caught(() => byDefault.query(`CALL ${PROC}()`))
    assert.equal((err as AppActiveError).code, 'APPACTIVE_NO_ROUTE_ID')
    const [results] = await guardMysql2(rawPromisePool, { agent, scope: 'unit', callIsWrite: false }).query(
      `CALL ${PROC}()`,
    )
    assert.equal((results as unknown as Array<Array<{ one: number }>>)[0]![0]!.one, 1)
  })

  test('a statement it cannot classify is a write, and is logged once per shape', async () => {
    const agent = await agentFor({ unit: 'unit' })
    const logger = recordingLogger()
    const pool = guardMysql2(rawPromisePool, { agent, scope: 'unit', logger })
    for (let i = 0; i < 3; i++) {
      const err = await caught(() => pool.query("SIGNAL SQLSTATE '45000'"))
      assert.equal((err as AppActiveError).code, 'APPACTIVE_NO_ROUTE_ID')
    }
    assert.equal(logger.warnings.length, 1)
    assert.match(logger.warnings[0]!, /SIGNAL/)
  })

  describe('transactions', () => {
    test('one in-flight handle from the first guarded write until the COMMIT completes', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardMysql2(rawPromisePool, { agent, scope: 'unit' })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        const conn = await pool.getConnection()
        try {
          await conn.beginTransaction()
          await conn.query(`SELECT COUNT(*) FROM ${T}`)
          assert.equal(agent.state().inflight, 0, 'BEGIN and reads hold nothing')
          await conn.execute(insert, [UNIT_ID, 'tx-commit'])
          await conn.execute(insert, [UNIT_ID, 'tx-commit'])
          assert.equal(agent.state().inflight, 1, 'one handle per route id per transaction')
          const commit = conn.commit()
          assert.equal(agent.state().inflight, 1, 'held while the COMMIT is on its way')
          await commit
          assert.equal(agent.state().inflight, 0)
        } finally {
          conn.release()
        }
      })
      assert.equal(await count('tx-commit'), 2)
    })

    test('a transaction spanning a fence change: later writes are refused, the drain sees it until ROLLBACK', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardMysql2(rawPromisePool, { agent, scope: 'unit' })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        const conn = await pool.getConnection()
        try {
          await conn.query('START TRANSACTION')
          await conn.query(insert, [UNIT_ID, 'tx-fence'])
          assert.equal(agent.inflightFenced(), 0)
          assert.equal(agent.apply(rules(2, 1999, FENCE)).status, 'applied')
          assert.equal(agent.inflightFenced(), 1, 'the drain step waits for this transaction')
          const err = await caught(() => conn.query(insert, [UNIT_ID, 'tx-fence']))
          assert.ok(err instanceof FencedError)
          assert.equal(err.details.version, 2)
          assert.equal(agent.inflightFenced(), 1)
          await conn.rollback()
          assert.equal(agent.inflightFenced(), 0)
        } finally {
          conn.release()
        }
      })
      assert.equal(await count('tx-fence'), 0)
    })

    test('with autocommit off, writes are held until COMMIT; switching it on commits', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardMysql2(rawPromisePool, { agent, scope: 'unit' })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        const conn = await pool.getConnection()
        try {
          await conn.query('SET autocommit = 0')
          await conn.query(insert, [UNIT_ID, 'tx-autocommit'])
          assert.equal(agent.state().inflight, 1)
          await conn.query('COMMIT')
          assert.equal(agent.state().inflight, 0)
          await conn.query(insert, [UNIT_ID, 'tx-autocommit'])
          assert.equal(agent.state().inflight, 1, 'a new transaction began with the next write')
          await conn.query('SET @@session.autocommit = 1')
          assert.equal(agent.state().inflight, 0)
          await conn.query(insert, [UNIT_ID, 'tx-autocommit'])
          assert.equal(agent.state().inflight, 0, 'autocommit again: a write is over when it returns')
        } finally {
          conn.release()
        }
      })
      assert.equal(await count('tx-autocommit'), 3)
    })

    test('a multi-statement text is checked as a whole (the strictest wins) and tracked to its COMMIT', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardMysql2(rawPromisePool, { agent, scope: 'unit' })
      const text = `START TRANSACTION; SELECT 1; INSERT INTO ${T} (route_id, tag) VALUES ('5', 'multi'); COMMIT`
      await runWithRoute({ routeId: UNIT_ID }, () => pool.query(text))
      assert.equal(agent.state().inflight, 0)
      const err = await runWithRoute({ routeId: CENTER_ID }, () => caught(() => pool.query(text)))
      assert.ok(err instanceof WrongUnitError)
      assert.equal(await count('multi'), 1)
    })

    test('the callback API tracks beginTransaction / commit the same way', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardMysql2(rawPool, { agent, scope: 'unit' })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        const conn = await cb<mysql.PoolConnection>((done) => pool.getConnection(done))
        try {
          await cb((done) => conn.beginTransaction(done))
          await cb((done) => conn.query(insert, [UNIT_ID, 'tx-callback'], done))
          assert.equal(agent.state().inflight, 1)
          await cb((done) => conn.commit(done))
          assert.equal(agent.state().inflight, 0)
        } finally {
          conn.release()
        }
      })
      assert.equal(await count('tx-callback'), 1)
    })

    test('releasing a connection inside a transaction ends its tracking, warns, and leaks nothing to the next user', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const logger = recordingLogger()
      const raw = mysqlp.createPool({ ...MARIADB_CONFIG, connectionLimit: 1 })
      after(() => raw.end())
      const pool = guardMysql2(raw, { agent, scope: 'unit', logger })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        const conn = await pool.getConnection()
        try {
          await conn.beginTransaction()
          await conn.execute(insert, [UNIT_ID, 'tx-leak'])
          assert.equal(agent.state().inflight, 1)
        } catch (err) {
          conn.destroy() // so a failure here cannot leave the pool waiting on a lock
          throw err
        }
        conn.release()
        assert.equal(agent.state().inflight, 0)
        assert.equal(logger.warnings.length, 1)
        assert.match(logger.warnings[0]!, /released inside a transaction/)
        // The same physical connection, checked out again: a fresh session (the app rolls back its leak).
        const again = await pool.getConnection()
        await again.rollback()
        await again.execute(insert, [UNIT_ID, 'tx-leak-next'])
        assert.equal(
          agent.state().inflight,
          0,
          'an autocommit write, not a continuation of the old transaction',
        )
        again.release()
      })
      assert.equal(await count('tx-leak'), 0)
      assert.equal(await count('tx-leak-next'), 1)
    })
  })

  describe('route context', () => {
    test('a queued getConnection callback runs in its caller context, not in the releaser one', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const raw = mysql.createPool({ ...MARIADB_CONFIG, connectionLimit: 1 })
      after(() => new Promise((r) => raw.end(r)))
      const pool = guardMysql2(raw, { agent, scope: 'unit' })
      const first = await runWithRoute({ routeId: UNIT_ID }, () =>
        cb<mysql.PoolConnection>((done) => pool.getConnection(done)),
      )
      // B asks while A holds the only connection: B's callback is queued, and A's release runs it.
      const second = runWithRoute({ routeId: CENTER_ID }, () =>
        cb<{ id: string | undefined; err: unknown }>((done) =>
          pool.getConnection((err, conn) => {
            if (err) return done(err)
            const id = currentRouteId()
            conn.query(insert, [CENTER_ID, 'ctx-queued'], (queryErr) => {
              conn.release()
              done(null, { id, err: queryErr })
            })
          }),
        ),
      )
      runWithRoute({ routeId: UNIT_ID }, () => first.release())
      const seen = await second
      assert.equal(seen.id, CENTER_ID)
      assert.ok(
        seen.err instanceof WrongUnitError,
        'checked against the caller route id, not the releaser one',
      )
      assert.equal(await count('ctx-queued'), 0)
    })

    test('query callbacks run in the context of the query, not of the connection opening', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const raw = runWithRoute({ routeId: 'opener' }, () => mysql.createConnection(MARIADB_CONFIG))
      after(() => new Promise((r) => raw.end(r)))
      const conn = guardMysql2(raw, { agent, scope: 'unit' })
      const ids = await Promise.all(
        ['1', '2', '3'].map((id) =>
          runWithRoute({ routeId: id }, () =>
            cb<string | undefined>((done) => conn.query('SELECT 1', () => done(null, currentRouteId()))),
          ),
        ),
      )
      assert.deepEqual(ids, ['1', '2', '3'])
    })
  })

  describe('driver surface', () => {
    test('the guarded objects are the driver classes, with their other methods', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardMysql2(rawPool, { agent, scope: 'unit' })
      assert.ok(pool instanceof (Object.getPrototypeOf(rawPool).constructor as typeof Object))
      assert.equal(pool.escape("it's"), rawPool.escape("it's"))
      assert.equal(pool.format('SELECT ?', [1]), 'SELECT 1')
      const listener = () => {}
      assert.equal(pool.on('acquire', listener), pool, 'chaining returns the guarded object')
      pool.off('acquire', listener)
      const promisePool = guardMysql2(rawPromisePool, { agent, scope: 'unit' })
      assert.ok(promisePool instanceof (Object.getPrototypeOf(rawPromisePool).constructor as typeof Object))
      assert.ok(isGuarded(promisePool.pool), 'the promise pool reaches its callback pool through the guard')
      assert.ok(!isGuarded(rawPromisePool.pool))
    })

    test('a refused command without a callback emits error, then end', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardMysql2(rawPool, { agent, scope: 'unit' })
      const events: string[] = []
      const err = await new Promise((resolve) => {
        const command = pool.query(insert, [null, 'event'])
        command.on('error', (e) => {
          events.push('error')
          resolve(e)
        })
        command.on('end', () => events.push('end'))
      })
      await new Promise((r) => setImmediate(r))
      assert.equal((err as AppActiveError).code, 'APPACTIVE_NO_ROUTE_ID')
      assert.deepEqual(events, ['error', 'end'])
    })

    test('guard() detects mysql2 objects; guarding twice and bad options are refused', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guard(rawPromisePool, { agent, scope: 'unit' })
      await runWithRoute({ routeId: UNIT_ID }, () => pool.query(insert, [UNIT_ID, 'detected']))
      assert.equal(await count('detected'), 1)
      assert.throws(() => guard(pool, { agent, scope: 'unit' }), /already guarded/)
      assert.throws(() => guardMysql2(rawPool, { agent, scope: 'region' as 'unit' }), /options.scope must be/)
      assert.throws(
        () => guardMysql2(rawPool, { scope: 'unit' } as unknown as Parameters<typeof guard>[1]),
        /options.agent/,
      )
      assert.throws(() => guardMysql2({} as mysql.Pool, { agent, scope: 'unit' }), /needs a mysql2 Pool/)
    })
  })
})
