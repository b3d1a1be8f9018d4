// One store suite, run against SQLite (a temporary file) and PostgreSQL (a schema of its own per test,
// dropped afterwards): the two stores must behave the same.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { StoreConflictError, StoreUnavailableError } from '../../src/control/errors.js'
import type { AuditInput, Plan } from '../../src/control/model.js'
import { MIGRATIONS, migrate, SCHEMA_VERSION } from '../../src/control/store/migrations.js'
import { openStore } from '../../src/control/store/open.js'
import type { SqlStore } from '../../src/control/store/sql-store.js'
import type { Store } from '../../src/control/store/types.js'
import { rules } from '../helpers/agents.js'
import { needs, POSTGRES } from '../helpers/services.js'

type T = { after(fn: () => Promise<void>): void }

interface Backend {
  readonly name: string
  readonly skip: string | undefined
  /** A URL of an empty store, cleaned up when the test ends. */
  fresh(t: T): Promise<string>
}

let schemas = 0
const backends: Backend[] = [
  {
    name: 'SQLite',
    skip: undefined,
    async fresh(t) {
      const dir = await mkdtemp(join(tmpdir(), 'appactive-store-'))
      t.after(() => rm(dir, { recursive: true, force: true }))
      return `sqlite:${join(dir, 'control.db')}`
    },
  },
  {
    name: 'PostgreSQL',
    skip: await needs(POSTGRES),
    async fresh(t) {
      const schema = `appactive_test_${process.pid}_${++schemas}`
      const url = `postgres://postgres@127.0.0.1:5432/test?schema=${schema}`
      t.after(async () => {
        const s = (await openStore(url, { migrate: false })) as SqlStore
        await s.driver.run(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
        await s.close()
      })
      return url
    },
  },
]

/** Opens a store that is closed when the test ends. */
async function open(t: T, url: string): Promise<SqlStore> {
  const store = (await openStore(url)) as SqlStore
  t.after(() => store.close())
  return store
}

const audit = (action: string, target = 'x'): AuditInput => ({ actor: 'tester', action, target, details: {} })

function plan(fromVersion = 1): Plan {
  return {
    kind: 'cutover',
    fromVersion,
    target: rules(fromVersion + 3, 2999),
    moved: [{ lo: 2000, hi: 2999, from: 'center', to: 'unit' }],
    labels: [],
    movedKeys: 1000,
    fence: { ranges: ['2000~2999'], labels: [] },
    catchUp: [],
    steps: [],
    checks: [],
    warnings: [],
    transcript: [],
  }
}

async function newOperation(store: Store, id: string) {
  return store.createOperation(
    { id, kind: 'cutover', plan: plan(), reason: 'move', createdBy: 'alice' },
    audit('operation.create', `operation:${id}`),
  )
}

for (const backend of backends) {
  describe(`store on ${backend.name}`, { skip: backend.skip }, () => {
    test('migrations: applied once, recorded, idempotent; a newer schema is refused', async (t) => {
      const url = await backend.fresh(t)
      const store = await open(t, url)
      assert.equal(await store.schemaVersion(), SCHEMA_VERSION)
      assert.deepEqual(await store.migrate(), { applied: [], version: SCHEMA_VERSION })
      const second = await open(t, url)
      assert.deepEqual(await second.migrate(), { applied: [], version: SCHEMA_VERSION })
      const ledger = await store.driver.all('SELECT version, name FROM schema_migrations ORDER BY version')
      assert.deepEqual(
        ledger.map((r) => [Number(r.version), r.name]),
        MIGRATIONS.map((m) => [m.version, m.name]),
      )
      await store.driver.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [
        SCHEMA_VERSION + 1,
        'from the future',
        0,
      ])
      await assert.rejects(store.migrate(), (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError)
        assert.match(err.message, new RegExp(`schema is at version ${SCHEMA_VERSION + 1}, newer`))
        return true
      })
    })

    test('a migration runs in a transaction: a failing one leaves nothing behind; concurrent runs apply it once', async (t) => {
      const store = await open(t, await backend.fresh(t))
      const next = SCHEMA_VERSION + 1
      const broken = [
        ...MIGRATIONS,
        {
          version: next,
          name: 'broken',
          sqlite: ['CREATE TABLE half (id INTEGER)', 'CREATE TABLE half (id INTEGER)'],
          postgres: ['CREATE TABLE half (id INTEGER)', 'CREATE TABLE half (id INTEGER)'],
        },
      ]
      await assert.rejects(migrate(store.driver, Date.now, broken))
      assert.equal(await store.schemaVersion(), SCHEMA_VERSION)
      await store.driver.run('CREATE TABLE half (id INTEGER)') // would fail if the first one had stayed

      const good = [
        ...MIGRATIONS,
        {
          version: next,
          name: 'extra',
          sqlite: ['CREATE TABLE extra (id INTEGER)'],
          postgres: ['CREATE TABLE extra (id INTEGER)'],
        },
      ]
      const results = await Promise.all([1, 2, 3].map(() => migrate(store.driver, Date.now, good)))
      assert.deepEqual(
        results.flatMap((r) => r.applied),
        [next],
      )
      assert.ok(results.every((r) => r.version === next))
    })

    test('rule sets: versions are assigned in order, stored byte for byte, and compare-and-set', async (t) => {
      const store = await open(t, await backend.fresh(t))
      assert.equal(await store.latestRuleSet(), undefined)
      const { version: _v, ...doc } = rules(0)
      const first = await store.appendRuleSet({ ruleSet: doc, author: 'alice', reason: 'first' }, (v) =>
        audit('ruleset.publish', `ruleset:${v}`),
      )
      assert.equal(first.version, 1)
      assert.equal(first.ruleSet.version, 1)
      const second = await store.appendRuleSet(
        { ruleSet: rules(7, 2999), author: 'bob', reason: 'second', expectedLatest: 1, operationId: 'op-1' },
        (v) => audit('ruleset.publish', `ruleset:${v}`),
      )
      assert.equal(second.version, 7)
      const got = await store.getRuleSet(7)
      assert.deepEqual(got, second)
      assert.equal(got?.operationId, 'op-1')
      assert.equal(got?.digest, createHash('sha256').update(JSON.stringify(got?.ruleSet)).digest('hex'))
      assert.deepEqual((await store.latestRuleSet())?.version, 7)

      await assert.rejects(
        store.appendRuleSet({ ruleSet: rules(7), author: 'c', reason: 'again' }, () => audit('x')),
        /version 7 is not above the latest version 7/,
      )
      await assert.rejects(
        store.appendRuleSet({ ruleSet: rules(9), author: 'c', reason: 'stale', expectedLatest: 1 }, () =>
          audit('x'),
        ),
        (err: unknown) =>
          err instanceof StoreConflictError && /latest rule set is version 7, not 1/.test(err.message),
      )
      assert.deepEqual(
        (await store.listRuleSets()).map((r) => [r.version, r.author, r.reason]),
        [
          [7, 'bob', 'second'],
          [1, 'alice', 'first'],
        ],
      )
      assert.deepEqual(
        (await store.recentRuleSets(5)).map((r) => r.version),
        [1, 7],
      )
      const lines = await store.listAudit({ action: 'ruleset.publish' })
      assert.deepEqual(
        lines.map((l) => l.target),
        ['ruleset:1', 'ruleset:7'],
        'one audit line per stored version, none for the refused ones',
      )
    })

    test('rule sets: concurrent publishes never share a version', async (t) => {
      const store = await open(t, await backend.fresh(t))
      const { version: _v, ...doc } = rules(0)
      const auto = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.appendRuleSet({ ruleSet: doc, author: `w${i}`, reason: 'auto' }, (v) =>
            audit('p', `ruleset:${v}`),
          ),
        ),
      )
      assert.deepEqual(
        auto.map((r) => r.version).sort((a, b) => a - b),
        Array.from({ length: 20 }, (_, i) => i + 1),
      )
      const same = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) =>
          store.appendRuleSet({ ruleSet: rules(50), author: `w${i}`, reason: 'same' }, () => audit('p')),
        ),
      )
      assert.equal(same.filter((r) => r.status === 'fulfilled').length, 1)
      for (const r of same) if (r.status === 'rejected') assert.ok(r.reason instanceof StoreConflictError)
      assert.equal((await store.listRuleSets({ limit: 1000 })).length, 21)
    })

    test('rule sets and audit lines cannot be rewritten, even with SQL', async (t) => {
      const store = await open(t, await backend.fresh(t))
      await store.appendRuleSet({ ruleSet: rules(1), author: 'a', reason: 'r' }, () =>
        audit('ruleset.publish'),
      )
      await store.appendAudit(audit('note'))
      const topo = { units: [{ name: 'center', center: true }], apps: [], dbScopes: [], probes: [] }
      await store.putTopology(topo, { author: 'a' }, audit('topology.update'))
      for (const sql of [
        "UPDATE rule_sets SET author = 'mallory'",
        'DELETE FROM rule_sets',
        "UPDATE audit SET actor = 'mallory'",
        'DELETE FROM audit',
        "UPDATE topology_revisions SET author = 'mallory'",
        'DELETE FROM topology_revisions',
      ]) {
        await assert.rejects(store.driver.run(sql), /append-only/, sql)
      }
      assert.equal((await store.getRuleSet(1))?.author, 'a')
      assert.deepEqual(
        (await store.listAudit()).map((e) => [e.actor, e.action]),
        [
          ['tester', 'ruleset.publish'],
          ['tester', 'note'],
          ['tester', 'topology.update'],
        ],
      )
    })

    test('audit: increasing seq, filters, paging', async (t) => {
      const store = await open(t, await backend.fresh(t))
      for (const [action, target] of [
        ['a', 'op:1'],
        ['b', 'op:2'],
        ['a', 'op:2'],
      ] as const)
        await store.appendAudit({ actor: 'alice', action, target, details: { n: target } })
      const all = await store.listAudit()
      assert.equal(all.length, 3)
      assert.ok(all[0]!.seq < all[1]!.seq && all[1]!.seq < all[2]!.seq)
      assert.deepEqual(all[0]!.details, { n: 'op:1' })
      assert.ok(!Number.isNaN(Date.parse(all[0]!.at)))
      assert.deepEqual(
        (await store.listAudit({ action: 'a' })).map((e) => e.target),
        ['op:1', 'op:2'],
      )
      assert.deepEqual(
        (await store.listAudit({ target: 'op:2' })).map((e) => e.action),
        ['b', 'a'],
      )
      assert.deepEqual(
        (await store.listAudit({ after: all[0]!.seq, limit: 1 })).map((e) => e.seq),
        [all[1]!.seq],
      )
    })

    test('operations: transitions are checked, compare-and-set, one running at a time, persisted', async (t) => {
      const url = await backend.fresh(t)
      const store = await open(t, url)
      const a = await newOperation(store, 'a0000000-0000-4000-8000-000000000001')
      const b = await newOperation(store, 'b0000000-0000-4000-8000-000000000002')
      assert.equal(a.state, 'planned')
      assert.equal(a.revision, 1)
      assert.equal(a.toVersion, 4)

      const running = await store.updateOperation(
        a.id,
        1,
        { state: 'running', startedBy: 'alice' },
        audit('start'),
      )
      assert.equal(running.revision, 2)
      await assert.rejects(
        store.updateOperation(a.id, 1, { phase: 'fence' }, audit('stale')),
        /changed meanwhile \(revision 2, expected 1\)/,
      )
      await assert.rejects(
        store.updateOperation(a.id, 2, { state: 'planned' }, audit('back')),
        /cannot go from running to planned/,
      )
      await assert.rejects(
        store.updateOperation(b.id, 1, { state: 'running' }, audit('second')),
        (err: unknown) =>
          err instanceof StoreConflictError && err.message.includes(`operation ${a.id} is running`),
      )
      // Two writers racing on one revision: exactly one wins.
      const race = await Promise.allSettled([
        store.updateOperation(a.id, 2, { phase: 'fence' }, audit('w1')),
        store.updateOperation(a.id, 2, { phase: 'drain' }, audit('w2')),
      ])
      assert.equal(race.filter((r) => r.status === 'fulfilled').length, 1)

      const phases = [
        { name: 'fence', startedAt: '2026-01-01T00:00:00.000Z', endedAt: null, outcome: 'running' as const },
      ]
      const cur = (await store.getOperation(a.id))!
      const done = await store.updateOperation(
        a.id,
        cur.revision,
        { state: 'succeeded', phases, endedAt: '2026-01-01T00:00:01.000Z' },
        audit('end'),
      )
      await assert.rejects(
        store.updateOperation(a.id, done.revision, { state: 'failed' }, audit('after')),
        /cannot go/,
      )
      // Now the other one may run.
      await store.updateOperation(b.id, 1, { state: 'running' }, audit('start b'))

      await store.close()
      const reopened = await open(t, url)
      assert.deepEqual(await reopened.getOperation(a.id), done)
      assert.deepEqual(
        (await reopened.listOperations()).map((o) => [o.id, o.state]),
        [
          [b.id, 'running'],
          [a.id, 'succeeded'],
        ],
      )
      assert.deepEqual(
        (await reopened.listOperations({ state: 'running' })).map((o) => o.id),
        [b.id],
      )
      assert.equal((await reopened.listAudit({ target: `operation:${a.id}` })).length, 1, 'the create line')
    })

    test('topology revisions and nodes', async (t) => {
      const store = await open(t, await backend.fresh(t))
      const topo = { units: [{ name: 'center', center: true }], apps: [], dbScopes: [], probes: [] }
      const one = await store.putTopology(topo, { author: 'alice' }, audit('topology.update'))
      assert.equal(one.revision, 1)
      await assert.rejects(
        store.putTopology(topo, { author: 'bob', expectedRevision: 0 }, audit('t')),
        /revision 1, not 0/,
      )
      const two = await store.putTopology(topo, { author: 'bob', expectedRevision: 1 }, audit('t'))
      assert.deepEqual(await store.getTopology(), two)

      const node = { nodeId: 'n1', app: 'shop', unit: 'center', address: 'http://a', pid: 7 }
      await store.recordNodes([{ ...node, appliedVersion: -1, left: false }], [audit('node.joined')])
      await store.recordNodes([
        { ...node, appliedVersion: 3 },
        { ...node, appliedVersion: 2 },
      ])
      let [n] = await store.listNodes()
      assert.equal(n?.appliedVersion, 3, 'an ack never moves a node back')
      assert.equal(n?.leftAt, null)
      await store.recordNodes([{ ...node, appliedVersion: 3, left: true }])
      ;[n] = await store.listNodes()
      assert.ok(n?.leftAt)
      await store.recordNodes([{ ...node, pid: 8, appliedVersion: -1, left: false }])
      ;[n] = await store.listNodes()
      assert.deepEqual([n?.appliedVersion, n?.pid, n?.leftAt], [-1, 8, null], 'a new registration resets')
    })
  })
}

test('bad store URLs fail with a clear message', async (t) => {
  await assert.rejects(openStore('mysql://x'), /unknown store URL "mysql:\/\/x"/)
  await assert.rejects(
    openStore('sqlite:/nonexistent-dir-appactive/x.db'),
    (err: unknown) =>
      err instanceof StoreUnavailableError && /cannot open the SQLite store/.test(err.message),
  )
  await assert.rejects(
    openStore('postgres://postgres:secret@127.0.0.1:1/test', { connectTimeoutMs: 2000 }),
    (err: unknown) => {
      assert.ok(err instanceof StoreUnavailableError)
      assert.match(
        err.message,
        /cannot reach the PostgreSQL store at postgres:\/\/postgres@127\.0\.0\.1:1\/test/,
      )
      assert.match(err.message, /ECONNREFUSED/)
      assert.doesNotMatch(err.message, /secret/)
      return true
    },
  )
  await assert.rejects(openStore('postgres://x@127.0.0.1/test?schema=Bad-Name'), /schema "Bad-Name" must be/)
  void t
})
