import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import pg from 'pg'
import { createAgent, type RoutingAgent } from '../../../src/agent/index.js'
import { guard, guardPg } from '../../../src/bridges/db/index.js'
import { currentRouteId, runWithRoute } from '../../../src/context/index.js'
import {
  type AppActiveError,
  FencedError,
  LeaseExpiredError,
  NotCenterError,
  WrongUnitError,
} from '../../../src/errors/index.js'
import { rules, silent } from '../../helpers/agents.js'
import { needs, PG_CONFIG, POSTGRES } from '../../helpers/services.js'
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

const skip = await needs(POSTGRES)
const T = tableName('pg')

/** A callback call as a promise. */
function cb<R = unknown>(call: (done: (err: unknown, result?: R) => void) => unknown): Promise<R> {
  return new Promise((resolve, reject) => {
    call((err, result) => (err ? reject(err) : resolve(result as R)))
  })
}

describe('pg write guard', { skip, timeout: 60_000 }, () => {
  let admin: pg.Client
  let rawPool: pg.Pool
  let rawClient: pg.Client

  before(async () => {
    admin = new pg.Client(PG_CONFIG)
    await admin.connect()
    await admin.query(`DROP TABLE IF EXISTS ${T}`)
    await admin.query(`CREATE TABLE ${T} (id SERIAL PRIMARY KEY, route_id TEXT, tag TEXT)`)
    rawPool = new pg.Pool({ ...PG_CONFIG, max: 2 })
    rawClient = new pg.Client(PG_CONFIG)
    await rawClient.connect()
  })

  after(async () => {
    await rawPool.end()
    await rawClient.end()
    await admin.query(`DROP TABLE IF EXISTS ${T}`)
    await admin.end()
  })

  const count = async (tag: string): Promise<number> =>
    Number((await admin.query(`SELECT COUNT(*) AS n FROM ${T} WHERE tag = $1`, [tag])).rows[0].n)
  const insert = `INSERT INTO ${T} (route_id, tag) VALUES ($1, $2)`

  /** Every way to send a write through pg; each resolves, or rejects with the guard's refusal. */
  const surfaces: Record<string, (agent: RoutingAgent, row: MatrixRow, tag: string) => Promise<unknown>> = {
    'pool.query, promise': (agent, row, tag) =>
      guardPg(rawPool, { agent, scope: row.scope }).query(insert, [row.routeId ?? null, tag]),
    'pool.query, callback': (agent, row, tag) => {
      const pool = guardPg(rawPool, { agent, scope: row.scope })
      return cb((done) => pool.query(insert, [row.routeId ?? null, tag], done))
    },
    'pool.connect + client.query, promise': async (agent, row, tag) => {
      const client = await guardPg(rawPool, { agent, scope: row.scope }).connect()
      try {
        return await client.query(insert, [row.routeId ?? null, tag])
      } finally {
        client.release()
      }
    },
    'pool.connect(callback) + client.query(callback)': (agent, row, tag) => {
      const pool = guardPg(rawPool, { agent, scope: row.scope })
      return cb((done) =>
        pool.connect((err, client, release) => {
          if (err || client === undefined) return done(err)
          client.query(insert, [row.routeId ?? null, tag], (queryErr: Error) => {
            release()
            done(queryErr)
          })
        }),
      )
    },
    'client.query({ text, values, callback })': (agent, row, tag) => {
      const client = guardPg(rawClient, { agent, scope: row.scope })
      return cb((done) =>
        client.query({ text: insert, values: [row.routeId ?? null, tag], callback: done } as pg.QueryConfig),
      )
    },
    'client.query, named prepared statement': (agent, row, tag) =>
      guardPg(rawClient, { agent, scope: row.scope }).query({
        name: 'guarded-insert',
        text: insert,
        values: [row.routeId ?? null, tag],
      }),
    'client.query(new pg.Query(...)), a submittable': (agent, row, tag) => {
      const client = guardPg(rawClient, { agent, scope: row.scope })
      const query = client.query(new pg.Query(insert, [row.routeId ?? null, tag]))
      return new Promise((resolve, reject) => {
        query.on('end', resolve)
        query.on('error', reject)
      })
    },
  }

  asyncMatrix('p', surfaces, count)

  test('reads pass in any situation unless strict; a strict read needs what a write needs', async () => {
    const agent = await agentFor({ unit: 'unit' })
    const lax = guardPg(rawPool, { agent, scope: 'unit' })
    const strict = guardPg(rawPool, { agent, scope: 'unit', strict: true })
    const read = `SELECT COUNT(*) FROM ${T}`
    await runWithRoute({ routeId: CENTER_ID }, () => lax.query(read))
    await lax.query(read)
    assert.ok(
      (await runWithRoute({ routeId: CENTER_ID }, () => caught(() => strict.query(read)))) instanceof
        WrongUnitError,
    )
    await runWithRoute({ routeId: UNIT_ID }, () => strict.query(read))
    const writableCte = `WITH gone AS (DELETE FROM ${T} WHERE tag = 'none' RETURNING id) SELECT count(*) FROM gone`
    assert.ok(
      (await runWithRoute({ routeId: CENTER_ID }, () => caught(() => lax.query(writableCte)))) instanceof
        WrongUnitError,
    )
    // A center database refuses even strict reads outside the center.
    const center = guardPg(rawPool, { agent, scope: 'center', strict: true })
    assert.ok((await caught(() => center.query(read))) instanceof NotCenterError)
  })

  test('a statement it cannot classify is a write, and is logged once per shape', async () => {
    const agent = await agentFor({ unit: 'unit' })
    const logger = recordingLogger()
    const pool = guardPg(rawPool, { agent, scope: 'unit', logger })
    for (const text of [
      'SECURITY LABEL ON TABLE x IS NULL',
      'IMPORT FOREIGN SCHEMA s FROM SERVER x INTO y',
    ]) {
      const err = await caught(() => pool.query(text))
      assert.equal(
        (err as AppActiveError).code,
        'APPACTIVE_NO_ROUTE_ID',
        'known writes, refused without an id',
      )
    }
    assert.equal(logger.warnings.length, 0)
    for (let i = 0; i < 3; i++) {
      const err = await caught(() => pool.query('SELECT 1 /* unterminated'))
      assert.equal((err as AppActiveError).code, 'APPACTIVE_NO_ROUTE_ID')
    }
    assert.equal(logger.warnings.length, 1)
    assert.match(logger.warnings[0]!, /unterminated comment/)
  })

  describe('transactions', () => {
    test('one in-flight handle from the first guarded write until the COMMIT completes', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardPg(rawPool, { agent, scope: 'unit' })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          await client.query(`SELECT COUNT(*) FROM ${T}`)
          assert.equal(agent.state().inflight, 0, 'BEGIN and reads hold nothing')
          await client.query(insert, [UNIT_ID, 'tx-commit'])
          await client.query(insert, [UNIT_ID, 'tx-commit'])
          assert.equal(agent.state().inflight, 1, 'one handle per route id per transaction')
          const commit = client.query('COMMIT')
          assert.equal(agent.state().inflight, 1, 'held while the COMMIT is on its way')
          await commit
          assert.equal(agent.state().inflight, 0)
        } finally {
          client.release()
        }
      })
      assert.equal(await count('tx-commit'), 2)
    })

    test('a transaction spanning a fence change: later writes are refused, the drain sees it until ROLLBACK', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardPg(rawPool, { agent, scope: 'unit' })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          await client.query(insert, [UNIT_ID, 'tx-fence'])
          assert.equal(agent.apply(rules(2, 1999, FENCE)).status, 'applied')
          assert.equal(agent.inflightFenced(), 1, 'the drain step waits for this transaction')
          const err = await caught(() => client.query(insert, [UNIT_ID, 'tx-fence']))
          assert.ok(err instanceof FencedError)
          assert.equal(err.details.version, 2)
          // The refused statement never reached the server: the transaction is still usable.
          await client.query(`SELECT COUNT(*) FROM ${T}`)
          assert.equal(agent.inflightFenced(), 1)
          await client.query('ROLLBACK')
          assert.equal(agent.inflightFenced(), 0)
        } finally {
          client.release()
        }
      })
      assert.equal(await count('tx-fence'), 0)
    })

    test('a lease that lapses inside a transaction refuses its COMMIT; the write never lands', async () => {
      let now = 0
      const channel = { name: 'test-control', leasing: true, async start() {}, async close() {} }
      const agent = createAgent({
        unit: 'unit',
        app: 'shop',
        logger: silent,
        cache: false,
        channels: [channel],
        clock: { now: () => now },
      })
      await agent.start()
      agent.apply(rules(1))
      agent.renewLease(0, 100, 1)
      const client = guardPg(rawClient, { agent, scope: 'unit' })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        await client.query('BEGIN')
        await client.query(insert, [UNIT_ID, 'tx-lease'])
        now = 1000 // the control plane no longer hears this agent: it counts it as self-fenced
        const err = await caught(() => client.query('COMMIT'))
        assert.ok(err instanceof LeaseExpiredError, String(err))
        assert.equal(agent.state().inflight, 1, 'still in flight until the app rolls back')
        await client.query('ROLLBACK')
        assert.equal(agent.state().inflight, 0)
      })
      assert.equal(await count('tx-lease'), 0)
    })

    test('ROLLBACK TO SAVEPOINT keeps the transaction (and its handle); END commits it', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const client = guardPg(rawClient, { agent, scope: 'unit' })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        await client.query('BEGIN')
        await client.query(insert, [UNIT_ID, 'tx-savepoint'])
        await client.query('SAVEPOINT s1')
        await client.query(insert, [UNIT_ID, 'tx-savepoint'])
        await client.query('ROLLBACK TO SAVEPOINT s1')
        assert.equal(agent.state().inflight, 1)
        await client.query('END')
        assert.equal(agent.state().inflight, 0)
      })
      assert.equal(await count('tx-savepoint'), 1)
    })

    test('a multi-statement text is checked as a whole (the strictest wins) and tracked to its COMMIT', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardPg(rawPool, { agent, scope: 'unit' })
      const text = `BEGIN; SELECT 1; INSERT INTO ${T} (route_id, tag) VALUES ('5', 'multi'); COMMIT`
      await runWithRoute({ routeId: UNIT_ID }, () => pool.query(text))
      assert.equal(agent.state().inflight, 0)
      const err = await runWithRoute({ routeId: CENTER_ID }, () => caught(() => pool.query(text)))
      assert.ok(err instanceof WrongUnitError)
      assert.equal(await count('multi'), 1)
    })

    test('releasing a client inside a transaction ends its tracking, warns, and leaks nothing to the next user', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const logger = recordingLogger()
      const raw = new pg.Pool({ ...PG_CONFIG, max: 1 })
      after(() => raw.end())
      const pool = guardPg(raw, { agent, scope: 'unit', logger })
      await runWithRoute({ routeId: UNIT_ID }, async () => {
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          await client.query(insert, [UNIT_ID, 'tx-leak'])
          assert.equal(agent.state().inflight, 1)
        } catch (err) {
          client.release(true) // destroyed, so a failure here cannot leave the pool waiting on a lock
          throw err
        }
        client.release()
        assert.equal(agent.state().inflight, 0)
        assert.equal(logger.warnings.length, 1)
        const again = await pool.connect()
        await again.query('ROLLBACK')
        await again.query(insert, [UNIT_ID, 'tx-leak-next'])
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
    test('a waiting pool.connect callback runs in its caller context, not in the releaser one', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const raw = new pg.Pool({ ...PG_CONFIG, max: 1 })
      after(() => raw.end())
      const pool = guardPg(raw, { agent, scope: 'unit' })
      const first = await runWithRoute({ routeId: UNIT_ID }, () => pool.connect())
      const second = runWithRoute({ routeId: CENTER_ID }, () =>
        cb<{ id: string | undefined; err: unknown }>((done) =>
          pool.connect((err, client, release) => {
            if (err || client === undefined) return done(err)
            const id = currentRouteId()
            client.query(insert, [CENTER_ID, 'ctx-queued'], (queryErr: Error) => {
              release()
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

    test('query callbacks run in the context of the query, not of the client connecting', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const raw = new pg.Client(PG_CONFIG)
      await runWithRoute({ routeId: 'opener' }, () => raw.connect())
      after(() => raw.end())
      const client = guardPg(raw, { agent, scope: 'unit' })
      const ids = await Promise.all(
        ['1', '2', '3'].map((id) =>
          runWithRoute({ routeId: id }, () =>
            cb<string | undefined>((done) => client.query('SELECT 1', () => done(null, currentRouteId()))),
          ),
        ),
      )
      assert.deepEqual(ids, ['1', '2', '3'])
    })
  })

  describe('driver surface', () => {
    test('the guarded objects are the driver classes, with their other methods', async () => {
      const agent = await agentFor({ unit: 'unit' })
      const pool = guardPg(rawPool, { agent, scope: 'unit' })
      assert.ok(pool instanceof pg.Pool)
      assert.equal(pool.totalCount, rawPool.totalCount)
      const client = guardPg(rawClient, { agent, scope: 'unit' })
      assert.ok(client instanceof pg.Client)
      assert.equal(client.escapeLiteral("it's"), "'it''s'")
      const listener = () => {}
      assert.equal(client.on('notice', listener), client, 'chaining returns the guarded object')
      client.off('notice', listener)
      const pooled = await pool.connect()
      assert.ok(pooled instanceof pg.Client)
      pooled.release()
    })

    test('guard() detects pg objects; guarding twice and bad options are refused', async () => {
      const agent = await agentFor({ unit: 'center' })
      const pool = guard(rawPool, { agent, scope: 'center' })
      await pool.query(insert, [null, 'detected'])
      assert.equal(await count('detected'), 1)
      assert.throws(() => guard(pool, { agent, scope: 'center' }), /already guarded/)
      assert.throws(
        () => guardPg(rawPool, { agent, scope: undefined as unknown as 'unit' }),
        /options.scope must be/,
      )
      assert.throws(() => guard({ query() {} }, { agent, scope: 'unit' }), /guard\(\) needs a mysql2/)
    })
  })
})
