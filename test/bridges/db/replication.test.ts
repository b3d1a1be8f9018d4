// Each replication probe against real replication (test/helpers/replication.ts): a MariaDB GTID pair,
// and a PostgreSQL primary with a logical subscriber and a physical standby.
import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import mysql from 'mysql2/promise'
import {
  createReplicationProbe,
  gtidBehind,
  MARKER_TABLE,
  mariadbProbe,
  markerProbe,
  mysql2Client,
  noneProbe,
  type ProbeEndpoint,
  ProbeUnreachableError,
  parseGtidList,
  parseLsn,
  pgClient,
  postgresProbe,
  type ReplicationPosition,
  type ReplicationProbe,
  ReplicationTimeoutError,
} from '../../../src/bridges/db/replication/index.js'
import { InvalidArgumentError } from '../../../src/errors/index.js'
import { freePorts } from '../../helpers/ports.js'
import { MARIADB_BIN, needsBinaries, POSTGRES_BIN, startReplication } from '../../helpers/replication.js'

const TIMEOUT_MS = 800
// A timed-out wait may overrun its timeout by one query round trip and the timer's granularity.
const SLACK_MS = 400
const CATCH_UP_MS = 10_000

const mariadbSkip = needsBinaries('MariaDB', Object.values(MARIADB_BIN))
const postgresSkip = needsBinaries('PostgreSQL', Object.values(POSTGRES_BIN))

const started = Date.now()
const {
  mariadb: maria,
  postgres: pg,
  stop,
} = await startReplication({
  mariadb: !mariadbSkip,
  postgres: !postgresSkip,
})
console.log(`# replication harness up in ${Date.now() - started} ms`)
after(stop)

const [closedPort] = (await freePorts(1)) as [number]

/** A probe closed when the test ends. */
function track<P extends ReplicationProbe>(t: { after(fn: () => unknown): void }, probe: P): P {
  t.after(() => probe.close())
  return probe
}

/** Asserts `promise` rejects with a ReplicationTimeoutError no earlier than the timeout and not much later. */
async function assertTimesOut(
  promise: Promise<unknown>,
  timeoutMs = TIMEOUT_MS,
): Promise<ReplicationTimeoutError> {
  const start = performance.now()
  const err = await promise.then(
    () => assert.fail('the wait should have timed out'),
    (e: unknown) => e,
  )
  const took = performance.now() - start
  assert.ok(err instanceof ReplicationTimeoutError, `expected a timeout, got ${err}`)
  assert.equal(err.code as string, 'APPACTIVE_REPLICATION_TIMEOUT')
  assert.ok(took >= timeoutMs - 5 && took <= timeoutMs + SLACK_MS, `timed out after ${Math.round(took)} ms`)
  return err
}

function roundTrip(position: ReplicationPosition): ReplicationPosition {
  return JSON.parse(JSON.stringify(position)) as ReplicationPosition
}

describe('MariaDB GTID probe', { skip: mariadbSkip }, () => {
  const endpoint = (unit: string, config: mysql.PoolOptions): ProbeEndpoint => ({
    unit,
    client: mysql2Client(config),
  })
  const probeFor = (t: { after(fn: () => unknown): void }, target = maria!.replica.config) =>
    track(t, mariadbProbe({ source: endpoint('hz', maria!.primary.config), target: endpoint('sh', target) }))

  test('waits until the replica has applied every write made before the position', async (t) => {
    const probe = probeFor(t)
    await maria!.primary.query("INSERT INTO items (v) VALUES ('gtid-1'), ('gtid-2')")
    const position = roundTrip(await probe.position())
    assert.equal(position.kind, 'mariadb-gtid')
    assert.equal(position.unit, 'hz')
    assert.match(position.value, /^0-1-\d+$/)
    const done = await probe.waitApplied(position, CATCH_UP_MS)
    assert.equal(done.target, 'sh')
    assert.ok(done.waitedMs >= 0 && done.waitedMs < CATCH_UP_MS)
    const rows = await maria!.replica.query("SELECT v FROM items WHERE v LIKE 'gtid-%' ORDER BY v")
    assert.deepEqual(
      rows.map((r) => r.v),
      ['gtid-1', 'gtid-2'],
    )
    assert.equal(typeof (await probe.lag!()), 'number')
  })

  test('a position spanning several replication domains is waited for in every domain', async (t) => {
    const probe = probeFor(t)
    const conn = await mysql.createConnection(maria!.primary.config)
    t.after(() => conn.end())
    await conn.query('SET SESSION gtid_domain_id = 7')
    await conn.query("INSERT INTO items (v) VALUES ('domain-7')")
    const position = await probe.position()
    const domains = parseGtidList(position.value)
    assert.ok(domains.has(0) && domains.has(7), position.value)
    await probe.waitApplied(position, CATCH_UP_MS)
    assert.equal((await maria!.replica.query("SELECT v FROM items WHERE v = 'domain-7'")).length, 1)
  })

  test('a stopped replica times out with APPACTIVE_REPLICATION_TIMEOUT, then catches up when restarted', async (t) => {
    const probe = probeFor(t)
    await maria!.replica.query('STOP SLAVE')
    t.after(() => maria!.replica.query('START SLAVE'))
    await maria!.primary.query("INSERT INTO items (v) VALUES ('stalled')")
    const position = await probe.position()
    const err = await assertTimesOut(probe.waitApplied(position, TIMEOUT_MS))
    assert.equal(err.details.source, 'hz')
    assert.equal(err.details.target, 'sh')
    assert.equal(err.details.position, position.value)
    assert.equal(err.details.replicating, false)
    assert.equal((err.details.behind as string[]).length, 1)
    assert.equal(await probe.lag!(), undefined)

    // An abort ends the wait promptly, with the caller's reason (waits run in one-second slices).
    const reason = new Error('operator cancelled')
    const aborted = performance.now()
    await assert.rejects(probe.waitApplied(position, CATCH_UP_MS, AbortSignal.timeout(100)), {
      name: 'TimeoutError',
    })
    const controller = new AbortController()
    const wait = probe.waitApplied(position, CATCH_UP_MS, controller.signal)
    controller.abort(reason)
    await assert.rejects(wait, (e) => e === reason)
    assert.ok(performance.now() - aborted < 2500)

    await maria!.replica.query('START SLAVE')
    const done = await probe.waitApplied(position, CATCH_UP_MS)
    assert.equal(done.target, 'sh')
    assert.equal((await maria!.replica.query("SELECT v FROM items WHERE v = 'stalled'")).length, 1)
  })

  test('an unreachable database fails with APPACTIVE_PROBE_UNREACHABLE naming the unit and database', async (t) => {
    const probe = probeFor(t, { ...maria!.replica.config, port: closedPort })
    const position = await probe.position()
    await assert.rejects(probe.waitApplied(position, CATCH_UP_MS), (err: unknown) => {
      assert.ok(err instanceof ProbeUnreachableError)
      assert.equal(err.code as string, 'APPACTIVE_PROBE_UNREACHABLE')
      assert.equal(err.details.unit, 'sh')
      assert.match(err.message, new RegExp(`database appactive at 127\\.0\\.0\\.1:${closedPort} of unit sh`))
      return true
    })
    const down = track(
      t,
      mariadbProbe({
        source: endpoint('hz', { ...maria!.primary.config, port: closedPort }),
        target: endpoint('sh', maria!.replica.config),
      }),
    )
    await assert.rejects(down.position(), /database appactive at .* of unit hz: .*ECONNREFUSED/)
  })

  test('refuses a position taken by another kind of probe or at another unit', async (t) => {
    const probe = probeFor(t)
    const none = await noneProbe({ source: 'hz', target: 'sh' }).position()
    await assert.rejects(probe.waitApplied(none, 100), InvalidArgumentError)
    const elsewhere = { ...(await probe.position()), unit: 'bj' }
    await assert.rejects(probe.waitApplied(elsewhere, 100), InvalidArgumentError)
    await assert.rejects(
      probe.waitApplied({ ...none, kind: 'mariadb-gtid', value: 'x' }, 100),
      InvalidArgumentError,
    )
  })

  test('createReplicationProbe builds a working probe from a JSON spec', async (t) => {
    const probe = track(
      t,
      createReplicationProbe({
        kind: 'mariadb',
        source: { unit: 'hz', connection: maria!.primary.config },
        target: { unit: 'sh', connection: maria!.replica.config },
      }),
    )
    await maria!.primary.query("INSERT INTO items (v) VALUES ('spec')")
    await probe.waitApplied(await probe.position(), CATCH_UP_MS)
    assert.equal((await maria!.replica.query("SELECT v FROM items WHERE v = 'spec'")).length, 1)
  })
})

describe('PostgreSQL probe, logical subscription', { skip: postgresSkip }, () => {
  const probeFor = (
    t: { after(fn: () => unknown): void },
    target = pg!.subscriber.config,
    subscription?: string,
  ) =>
    track(
      t,
      postgresProbe({
        mode: 'logical',
        subscription,
        source: { unit: 'hz', client: pgClient(pg!.primary.config) },
        target: { unit: 'sh', client: pgClient(target) },
      }),
    )

  test('waits until the subscriber has applied every write made before the position', async (t) => {
    const probe = probeFor(t)
    await pg!.primary.query("INSERT INTO items (v) VALUES ('lsn-1'), ('lsn-2')")
    const position = roundTrip(await probe.position())
    assert.equal(position.kind, 'postgres-lsn')
    parseLsn(position.value)
    const done = await probe.waitApplied(position, CATCH_UP_MS)
    assert.equal(done.target, 'sh')
    const rows = await pg!.subscriber.query("SELECT v FROM items WHERE v LIKE 'lsn-%' ORDER BY v")
    assert.deepEqual(
      rows.map((r) => r.v),
      ['lsn-1', 'lsn-2'],
    )
    assert.equal(typeof (await probe.lag!()), 'number')
  })

  test('an idle subscription catches up with WAL that carries nothing for it', async (t) => {
    const probe = probeFor(t, undefined, 'sub')
    await probe.waitApplied(await probe.position(), CATCH_UP_MS)
    // Only unpublished tables change: the WAL moves on, the subscription receives no change at all.
    await pg!.primary.query("INSERT INTO unpublished (v) SELECT 'idle-' || g FROM generate_series(1, 100) g")
    const done = await probe.waitApplied(await probe.position(), CATCH_UP_MS)
    assert.ok(done.waitedMs < CATCH_UP_MS)
  })

  test('a table whose initial copy has not finished keeps the wait open', async (t) => {
    const probe = probeFor(t)
    // The subscriber already holds the row the copy brings: the copy fails on the key, again and again.
    for (const db of [pg!.primary, pg!.subscriber]) {
      await db.query('CREATE TABLE blocked (id int PRIMARY KEY)')
      await db.query('INSERT INTO blocked VALUES (1)')
    }
    t.after(async () => {
      await pg!.primary.query('ALTER PUBLICATION pub DROP TABLE blocked')
      await pg!.subscriber.query('ALTER SUBSCRIPTION sub REFRESH PUBLICATION')
      await Promise.all([pg!.primary.query('DROP TABLE blocked'), pg!.subscriber.query('DROP TABLE blocked')])
    })
    await pg!.primary.query('ALTER PUBLICATION pub ADD TABLE blocked')
    await pg!.subscriber.query('ALTER SUBSCRIPTION sub REFRESH PUBLICATION')
    const err = await assertTimesOut(probe.waitApplied(await probe.position(), TIMEOUT_MS))
    assert.deepEqual(err.details.syncing, ['blocked'])
  })

  test('a disabled subscription times out with APPACTIVE_REPLICATION_TIMEOUT, then catches up', async (t) => {
    const probe = probeFor(t)
    await pg!.subscriber.query('ALTER SUBSCRIPTION sub DISABLE')
    t.after(() => pg!.subscriber.query('ALTER SUBSCRIPTION sub ENABLE'))
    await pg!.primary.query("INSERT INTO items (v) VALUES ('disabled')")
    const position = await probe.position()
    const err = await assertTimesOut(probe.waitApplied(position, TIMEOUT_MS))
    assert.equal(err.details.subscription, 'sub')
    assert.equal(err.details.enabled, false)
    assert.ok(parseLsn(String(err.details.applied)) < parseLsn(position.value))
    assert.equal((await pg!.subscriber.query("SELECT v FROM items WHERE v = 'disabled'")).length, 0)

    await pg!.subscriber.query('ALTER SUBSCRIPTION sub ENABLE')
    await probe.waitApplied(position, CATCH_UP_MS)
    assert.equal((await pg!.subscriber.query("SELECT v FROM items WHERE v = 'disabled'")).length, 1)
  })

  test('an unreachable subscriber fails the wait naming the unit and database', async (t) => {
    const probe = probeFor(t, { ...pg!.subscriber.config, port: closedPort })
    const position = await probe.position()
    await assert.rejects(probe.waitApplied(position, CATCH_UP_MS), (err: unknown) => {
      assert.ok(err instanceof ProbeUnreachableError)
      assert.equal(err.details.unit, 'sh')
      assert.match(
        err.message,
        new RegExp(`database shop at 127\\.0\\.0\\.1:${closedPort} of unit sh: .*ECONNREFUSED`),
      )
      return true
    })
  })

  test('names the problem when the subscription does not exist', async (t) => {
    const probe = probeFor(t, undefined, 'nope')
    await assert.rejects(probe.waitApplied(await probe.position(), 100), /no subscription nope .*has: sub/)
  })
})

describe('PostgreSQL probe, physical standby', { skip: postgresSkip }, () => {
  const probeFor = (t: { after(fn: () => unknown): void }, target = pg!.standby.config) =>
    track(
      t,
      postgresProbe({
        mode: 'physical',
        source: { unit: 'hz', client: pgClient(pg!.primary.config) },
        target: { unit: 'sh', client: pgClient(target) },
      }),
    )

  test('waits until the standby has replayed every write made before the position', async (t) => {
    const probe = probeFor(t)
    await pg!.primary.query("INSERT INTO unpublished (v) VALUES ('standby')")
    const done = await probe.waitApplied(await probe.position(), CATCH_UP_MS)
    assert.equal(done.target, 'sh')
    assert.equal((await pg!.standby.query("SELECT v FROM unpublished WHERE v = 'standby'")).length, 1)
    assert.equal(typeof (await probe.lag!()), 'number')
  })

  test('paused replay times out with APPACTIVE_REPLICATION_TIMEOUT, then catches up when resumed', async (t) => {
    const probe = probeFor(t)
    await pg!.standby.query('SELECT pg_wal_replay_pause()')
    t.after(() => pg!.standby.query('SELECT pg_wal_replay_resume()'))
    await pg!.primary.query("INSERT INTO unpublished (v) VALUES ('paused')")
    const position = await probe.position()
    const err = await assertTimesOut(probe.waitApplied(position, TIMEOUT_MS))
    assert.equal(err.details.mode, 'physical')
    assert.equal(err.details.replay, 'paused')
    assert.equal((await pg!.standby.query("SELECT v FROM unpublished WHERE v = 'paused'")).length, 0)

    await pg!.standby.query('SELECT pg_wal_replay_resume()')
    await probe.waitApplied(position, CATCH_UP_MS)
    assert.equal((await pg!.standby.query("SELECT v FROM unpublished WHERE v = 'paused'")).length, 1)
  })

  test('refuses a target that is not a standby', async (t) => {
    const probe = probeFor(t, pg!.subscriber.config)
    await assert.rejects(probe.waitApplied(await probe.position(), 100), /unit sh .* is not a standby/)
  })
})

describe('marker probe', () => {
  test('over MariaDB replication: waits for the marker, times out while the replica is stopped', {
    skip: mariadbSkip,
  }, async (t) => {
    const probe = track(
      t,
      markerProbe({
        source: { unit: 'hz', client: mysql2Client(maria!.primary.config) },
        target: { unit: 'sh', client: mysql2Client(maria!.replica.config) },
      }),
    )
    const first = roundTrip(await probe.position())
    assert.equal(first.kind, 'marker')
    await probe.waitApplied(first, CATCH_UP_MS)
    assert.equal(
      (await maria!.replica.query(`SELECT id FROM ${MARKER_TABLE} WHERE id = ?`, [first.value])).length,
      1,
    )

    await maria!.replica.query('STOP SLAVE')
    t.after(() => maria!.replica.query('START SLAVE'))
    const second = await probe.position()
    assert.notEqual(second.value, first.value)
    await assertTimesOut(probe.waitApplied(second, TIMEOUT_MS))
    await maria!.replica.query('START SLAVE')
    await probe.waitApplied(second, CATCH_UP_MS)
  })

  test('over PostgreSQL logical replication: waits for the marker, times out while disabled', {
    skip: postgresSkip,
  }, async (t) => {
    const probe = track(
      t,
      markerProbe({
        source: { unit: 'hz', client: pgClient(pg!.primary.config) },
        target: { unit: 'sh', client: pgClient(pg!.subscriber.config) },
      }),
    )
    await probe.waitApplied(await probe.position(), CATCH_UP_MS)
    await pg!.subscriber.query('ALTER SUBSCRIPTION sub DISABLE')
    t.after(() => pg!.subscriber.query('ALTER SUBSCRIPTION sub ENABLE'))
    const position = await probe.position()
    const err = await assertTimesOut(probe.waitApplied(position, TIMEOUT_MS))
    assert.equal(err.details.hint, undefined)
    await pg!.subscriber.query('ALTER SUBSCRIPTION sub ENABLE')
    await probe.waitApplied(position, CATCH_UP_MS)
  })

  test('a marker table missing at the target times out with a hint to create it', {
    skip: postgresSkip,
  }, async (t) => {
    // Logical replication carries no DDL: the table the probe creates at the source never reaches the target.
    const probe = track(
      t,
      markerProbe({
        table: 'appactive_marker_unreplicated',
        source: { unit: 'hz', client: pgClient(pg!.primary.config) },
        target: { unit: 'sh', client: pgClient(pg!.subscriber.config) },
      }),
    )
    const err = await assertTimesOut(probe.waitApplied(await probe.position(), TIMEOUT_MS))
    assert.match(String(err.details.hint), /appactive_marker_unreplicated does not exist at unit sh/)
  })

  test('an unreachable target fails naming the unit and database', { skip: postgresSkip }, async (t) => {
    const probe = track(
      t,
      markerProbe({
        source: { unit: 'hz', client: pgClient(pg!.primary.config) },
        target: { unit: 'sh', client: pgClient({ ...pg!.subscriber.config, port: closedPort }) },
      }),
    )
    await assert.rejects(probe.waitApplied(await probe.position(), CATCH_UP_MS), (err: unknown) => {
      assert.ok(err instanceof ProbeUnreachableError)
      assert.match(
        err.message,
        new RegExp(`database shop at 127\\.0\\.0\\.1:${closedPort} of unit sh: .*ECONNREFUSED`),
      )
      return true
    })
  })

  test('rejects table names that are not plain identifiers', () => {
    const client = { query: async () => [] }
    assert.throws(
      () =>
        markerProbe({
          table: 'x; DROP TABLE y',
          source: { unit: 'a', client },
          target: { unit: 'b', client },
        }),
      InvalidArgumentError,
    )
  })
})

describe('none probe', () => {
  test('returns at once for units sharing one database', async () => {
    const probe = noneProbe({ source: 'hz', target: 'sh' })
    const position = roundTrip(await probe.position())
    assert.deepEqual({ ...position, takenAt: 0 }, { kind: 'none', value: '', unit: 'hz', takenAt: 0 })
    const done = await probe.waitApplied(position, 0)
    assert.deepEqual(done, { position, target: 'sh', waitedMs: 0 })
    assert.equal(await probe.lag!(), 0)
    await assert.rejects(probe.waitApplied({ ...position, unit: 'bj' }, 0), InvalidArgumentError)
  })
})

describe('position parsing', () => {
  test('GTID lists parse per domain and report the domains still behind', () => {
    assert.deepEqual(
      [...parseGtidList('0-1-100, 7-2-5')],
      [
        [0, 100n],
        [7, 5n],
      ],
    )
    assert.equal(parseGtidList('').size, 0)
    assert.throws(() => parseGtidList('0-1'), InvalidArgumentError)
    assert.throws(() => parseGtidList('0-1-2,0-1-3'), InvalidArgumentError)
    assert.deepEqual(gtidBehind('0-1-100,7-2-5', '0-1-100,7-2-4'), ['domain 7: 4 < 5'])
    assert.deepEqual(gtidBehind('0-1-100,7-2-5', '0-1-101'), ['domain 7: 0 < 5'])
    assert.deepEqual(gtidBehind('0-1-100', '0-1-100,7-2-4'), [])
  })

  test('LSNs compare as 64-bit positions', () => {
    assert.ok(parseLsn('1/0') > parseLsn('0/FFFFFFFF'))
    assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xb374d848n)
    assert.throws(() => parseLsn('16B374D848'), InvalidArgumentError)
  })
})
