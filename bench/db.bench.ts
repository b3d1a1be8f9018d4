/**
 * `npm run bench:db`: what the database write guards cost (issue: data layer, item 8).
 *
 * 1. Classification: `classifyUncached()` on a corpus of 32 statements as ORMs and hand-written code send
 *    them (MySQL and PostgreSQL, 20 to 330 characters, reads, writes, locking reads, transaction control,
 *    comments and string literals), and `classify()` on the same texts once cached (the usual case: apps
 *    reuse their statements). One call costs well under a microsecond, about what a clock read costs, so
 *    each tinybench iteration times a BATCH of 1024 calls walking the corpus and records the mean per call
 *    (as bench:route does). `classify_median_ns` is the uncached median: the cost the cache saves.
 *
 * 2. Round trips on the real MariaDB and PostgreSQL (127.0.0.1, the test services): the same statement
 *    sent on the same pooled connection (a pool of one) through the driver's promise API unguarded, and
 *    through the guard (`scope: 'unit'`, a route id owned by this unit, so every write is checked, tracked
 *    in flight and released). The write is `UPDATE ... SET v = v + 1 WHERE id = ?` on a table that does not
 *    wait for the disk (MariaDB ENGINE=MEMORY, PostgreSQL UNLOGGED), so the round trip is the driver, the
 *    wire and the server: the guard's share is measured against the cheapest real statement, not hidden
 *    under an fsync. A primary-key SELECT is measured the same way. Both run inside `runWithRoute`.
 *    ROUNDS rounds of N statements per side; within a round unguarded and guarded statements alternate one
 *    by one, each timed alone, so both sides see the same moment of a shared machine (a neighbour's load,
 *    the server's caches). A round's ratio is median guarded time / median unguarded time; the metric is
 *    the median of the per-round ratios.
 *
 * Before timing, the bench checks it measures what it says: the corpus classifies as listed, a guarded
 * write with a route id owned by another unit is refused, and nothing stays in flight after a round.
 *
 * Environment: APPACTIVE_BENCH_TIME_MS (classification time per case, default 1000), APPACTIVE_BENCH_ROUNDS
 * (default 30), APPACTIVE_BENCH_N (statements per run, default 200).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import mysql from 'mysql2/promise'
import pg from 'pg'
import pino from 'pino'
import { Bench, type FnReturnedObject } from 'tinybench'
import type { Dialect } from '../src/bridges/db/index.js'
import type { RuleSet } from '../src/rules/index.js'
import { compileSrc } from './lib/build.js'
import { machineInfo } from './lib/machine.js'
import { envInt, median } from './lib/numbers.js'
import { printReport, printTable, type Row, round } from './lib/report.js'

const machine = machineInfo()

const BATCH = 1024
const TIME_MS = envInt('APPACTIVE_BENCH_TIME_MS', 1000)
const ROUNDS = envInt('APPACTIVE_BENCH_ROUNDS', 30)
const N = envInt('APPACTIVE_BENCH_N', 200)

// The code under test is what tsc emits (what users run), not tsx's transform of it (which wraps every
// named closure in a __name() call). APPACTIVE_BENCH_DB_RUNNER=tsx measures src/ through tsx instead.
const RUNNER = process.env.APPACTIVE_BENCH_DB_RUNNER ?? 'built'
if (RUNNER !== 'built' && RUNNER !== 'tsx') throw new Error('APPACTIVE_BENCH_DB_RUNNER must be built or tsx')
const tmp = mkdtempSync(join(tmpdir(), 'appactive-bench-db-'))
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }))
const base =
  RUNNER === 'tsx'
    ? new URL('../src/', import.meta.url)
    : pathToFileURL(
        `${compileSrc(join(tmp, 'build'), (l) => process.stderr.write(`bench:db: ${l}\n`), 'bridges/db/index.js')}/`,
      )
const { createAgent } = (await import(
  new URL('agent/index.js', base).href
)) as typeof import('../src/agent/index.js')
const { classify, classifyUncached, guard } = (await import(
  new URL('bridges/db/index.js', base).href
)) as typeof import('../src/bridges/db/index.js')
const { runWithRoute } = (await import(
  new URL('context/index.js', base).href
)) as typeof import('../src/context/index.js')

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`bench:db sanity check failed: ${what}`)
}

// ------------------------------------------------------------------------------------- classification

type Entry = readonly [dialect: Dialect, sql: string, write: boolean]

const CORPUS: readonly Entry[] = [
  ['mysql', 'SELECT `users`.* FROM `users` WHERE `users`.`id` = ? LIMIT 1', false],
  [
    'mysql',
    'SELECT `o`.`id`, `o`.`total`, `o`.`status` FROM `orders` AS `o` WHERE `o`.`user_id` = ? ORDER BY `o`.`created_at` DESC LIMIT 20',
    false,
  ],
  [
    'mysql',
    'INSERT INTO `orders` (`user_id`, `sku`, `qty`, `total`, `status`, `created_at`) VALUES (?, ?, ?, ?, ?, NOW())',
    true,
  ],
  ['mysql', 'UPDATE `orders` SET `status` = ?, `updated_at` = NOW() WHERE `id` = ? AND `user_id` = ?', true],
  ['mysql', 'DELETE FROM `cart_items` WHERE `cart_id` = ? AND `sku` = ?', true],
  ['mysql', 'SELECT `qty` FROM `stock` WHERE `sku` = ? FOR UPDATE', true],
  [
    'mysql',
    'INSERT INTO `points` (`user_id`, `balance`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `balance` = `balance` + VALUES(`balance`)',
    true,
  ],
  [
    'mysql',
    "SELECT COUNT(*) AS `n` FROM `sessions` WHERE `user_id` = ? AND `kind` = 'web' -- dashboard badge",
    false,
  ],
  ['mysql', 'START TRANSACTION', false],
  ['mysql', 'COMMIT', false],
  ['mysql', 'ROLLBACK', false],
  [
    'mysql',
    'SELECT /*+ MAX_EXECUTION_TIME(500) */ `id`, `name` FROM `products` WHERE `category_id` IN (?, ?, ?) AND `name` LIKE ?',
    false,
  ],
  ['mysql', 'REPLACE INTO `kv` (`k`, `v`, `expires_at`) VALUES (?, ?, ?)', true],
  [
    'mysql',
    "UPDATE `users` SET `note` = 'it''s; not -- a comment', `flags` = `flags` | 4 WHERE `id` = ?",
    true,
  ],
  [
    'mysql',
    "SELECT `u`.`id`, `u`.`email`, `p`.`plan`, `p`.`renews_at`, `a`.`city`, `a`.`country` FROM `users` `u` JOIN `plans` `p` ON `p`.`user_id` = `u`.`id` LEFT JOIN `addresses` `a` ON `a`.`user_id` = `u`.`id` AND `a`.`primary` = 1 WHERE `u`.`id` = ? AND `p`.`state` IN ('active', 'trial') LIMIT 1",
    false,
  ],
  ['mysql', 'CALL `settle_order`(?, ?)', false],
  ['postgres', 'SELECT "id", "email", "created_at" FROM "users" WHERE "id" = $1', false],
  [
    'postgres',
    'INSERT INTO "orders" ("user_id", "sku", "qty", "total") VALUES ($1, $2, $3, $4) RETURNING "id"',
    true,
  ],
  [
    'postgres',
    'UPDATE "accounts" SET "balance" = "balance" - $1 WHERE "id" = $2 AND "balance" >= $1 RETURNING "balance"',
    true,
  ],
  ['postgres', 'DELETE FROM "sessions" WHERE "expires_at" < now() RETURNING "id"', true],
  ['postgres', 'SELECT * FROM "stock" WHERE "sku" = $1 FOR NO KEY UPDATE SKIP LOCKED', true],
  [
    'postgres',
    'INSERT INTO "points" ("user_id", "balance") VALUES ($1, $2) ON CONFLICT ("user_id") DO UPDATE SET "balance" = "points"."balance" + EXCLUDED."balance"',
    true,
  ],
  [
    'postgres',
    'WITH moved AS (DELETE FROM "outbox" WHERE "id" = ANY($1) RETURNING *) INSERT INTO "outbox_done" SELECT * FROM moved',
    true,
  ],
  [
    'postgres',
    'WITH RECURSIVE tree AS (SELECT id, parent_id FROM categories WHERE id = $1 UNION ALL SELECT c.id, c.parent_id FROM categories c JOIN tree t ON c.parent_id = t.id) SELECT id FROM tree',
    false,
  ],
  ['postgres', 'BEGIN', false],
  ['postgres', 'COMMIT', false],
  [
    'postgres',
    "SELECT 'x' || $1::text AS label /* generated by the ORM: do not edit; DELETE is only a word here */",
    false,
  ],
  ['postgres', 'SELECT count(*) FROM "orders" WHERE "user_id" = $1 AND "status" = ANY($2::text[])', false],
  [
    'postgres',
    'UPDATE "jobs" SET "state" = \'running\', "locked_by" = $1, "locked_at" = now() WHERE "id" = (SELECT "id" FROM "jobs" WHERE "state" = \'queued\' ORDER BY "priority" DESC, "id" LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *',
    true,
  ],
  ['postgres', 'SET LOCAL statement_timeout = 5000', false],
  ['postgres', "SELECT $$a dollar-quoted ; body$$ AS body, E'esc\\'aped' AS esc", false],
  ['postgres', 'SAVEPOINT sp1', false],
]
const MASK = 31
check(CORPUS.length === MASK + 1, 'the corpus holds 32 statements')
const lengths = CORPUS.map(([, sql]) => sql.length).sort((a, b) => a - b)
for (const [dialect, sql, write] of CORPUS) {
  check(
    classifyUncached(sql, dialect).write === write,
    `${dialect}: ${sql} classifies as ${write ? 'a write' : 'not a write'}`,
  )
  const first = classify(sql, dialect)
  check(classify(sql, dialect) === first, `${sql} is cached`)
}

let sink = 0
let at = 0
function perCall(batch: () => void): () => FnReturnedObject {
  return () => {
    const t0 = process.hrtime.bigint()
    batch()
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    return { overriddenDuration: ms / BATCH, overriddenIterationCost: ms }
  }
}
const cases = [
  {
    name: 'classifyUncached(), 32-statement corpus',
    batch: () => {
      let s = 0
      for (let i = 0; i < BATCH; i++) {
        const [dialect, sql] = CORPUS[(at + i) & MASK]!
        s += classifyUncached(sql, dialect).statements.length
      }
      at = (at + 7) & MASK
      sink += s
    },
  },
  {
    name: 'classify(), cached',
    batch: () => {
      let s = 0
      for (let i = 0; i < BATCH; i++) {
        const [dialect, sql] = CORPUS[(at + i) & MASK]!
        s += classify(sql, dialect).statements.length
      }
      at = (at + 7) & MASK
      sink += s
    },
  },
]
const classification = cases.map((c) => {
  const bench = new Bench({ name: c.name, time: TIME_MS, warmup: true, iterations: 64 })
  bench.add(c.name, perCall(c.batch), { async: false })
  const r = bench.runSync()[0]!.result
  if (r.state !== 'completed')
    throw new Error(`${c.name}: ${r.state === 'errored' ? r.error.message : r.state}`)
  return {
    name: c.name,
    medianNs: r.latency.p50 * 1e6,
    p99Ns: r.latency.p99 * 1e6,
    batches: r.latency.samplesCount,
  }
})
printTable(
  classification.map((c) => ({
    case: c.name,
    'median ns/statement': c.medianNs,
    'p99 ns/statement': c.p99Ns,
    batches: c.batches,
  })),
  `bench:db classification  ${BATCH} statements per sample, ${TIME_MS} ms per case; statement lengths ${lengths[0]}..${lengths[lengths.length - 1]} chars (median ${lengths[16]}); target <= 2000 ns uncached`,
)

// ------------------------------------------------------------------------------------------ round trips

const RULES: RuleSet = {
  version: 1,
  units: [{ name: 'center', center: true }, { name: 'unit' }],
  idSource: [{ from: 'query', name: 'r_id' }],
  transform: [{ type: 'mod', divisor: 10000 }],
  mapping: [
    { unit: 'unit', ranges: ['0~1999'] },
    { unit: 'center', ranges: ['2000~9999'] },
  ],
  fallback: 'local',
}
const agent = createAgent({
  unit: 'unit',
  app: 'bench',
  nodeId: 'bench-db',
  cache: false,
  logger: pino({ level: 'silent' }),
})
check(agent.apply(RULES).status === 'applied', 'the rule set applies')
const OWNED = '5'
const FOREIGN = '2500'
const TABLE = `aa_bench_db_${process.pid}`

/** One driver's pair of callables: the same statement unguarded and guarded, on the same connection. */
interface Target {
  readonly name: string
  readonly run: {
    readonly write: { readonly plain: () => Promise<unknown>; readonly guarded: () => Promise<unknown> }
    readonly read: { readonly plain: () => Promise<unknown>; readonly guarded: () => Promise<unknown> }
  }
  close(): Promise<void>
}

async function mariadb(): Promise<Target> {
  const pool = mysql.createPool({
    host: '127.0.0.1',
    port: 3306,
    user: 'root',
    password: '',
    database: 'test',
    connectionLimit: 1,
  })
  try {
    await pool.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=MEMORY`)
  } catch (err) {
    await pool.end()
    throw new Error(
      `bench:db needs MariaDB on 127.0.0.1:3306 (root, database test): ${(err as Error).message}`,
    )
  }
  await pool.query(`INSERT IGNORE INTO ${TABLE} (id, v) VALUES (1, 0)`)
  const guarded = guard(pool, { agent, scope: 'unit' })
  const write = `UPDATE ${TABLE} SET v = v + 1 WHERE id = ?`
  const read = `SELECT v FROM ${TABLE} WHERE id = ?`
  return {
    name: 'MariaDB (mysql2 promise pool)',
    run: {
      write: { plain: () => pool.execute(write, [1]), guarded: () => guarded.execute(write, [1]) },
      read: { plain: () => pool.execute(read, [1]), guarded: () => guarded.execute(read, [1]) },
    },
    async close() {
      await pool.query(`DROP TABLE IF EXISTS ${TABLE}`)
      await pool.end()
    },
  }
}

async function postgres(): Promise<Target> {
  const pool = new pg.Pool({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test', max: 1 })
  try {
    await pool.query(`CREATE UNLOGGED TABLE IF NOT EXISTS ${TABLE} (id INT PRIMARY KEY, v INT NOT NULL)`)
  } catch (err) {
    await pool.end()
    throw new Error(
      `bench:db needs PostgreSQL on 127.0.0.1:5432 (postgres, database test): ${(err as Error).message}`,
    )
  }
  await pool.query(`INSERT INTO ${TABLE} (id, v) VALUES (1, 0) ON CONFLICT DO NOTHING`)
  const guarded = guard(pool, { agent, scope: 'unit' })
  const write = `UPDATE ${TABLE} SET v = v + 1 WHERE id = $1`
  const read = `SELECT v FROM ${TABLE} WHERE id = $1`
  return {
    name: 'PostgreSQL (pg pool)',
    run: {
      write: { plain: () => pool.query(write, [1]), guarded: () => guarded.query(write, [1]) },
      read: { plain: () => pool.query(read, [1]), guarded: () => guarded.query(read, [1]) },
    },
    async close() {
      await pool.query(`DROP TABLE IF EXISTS ${TABLE}`)
      await pool.end()
    },
  }
}

interface Pair {
  readonly plainNs: number
  readonly guardedNs: number
  readonly ratio: number
  readonly ratioMin: number
  readonly ratioMax: number
}

/**
 * ROUNDS rounds (after one warm-up round) of N unguarded and N guarded statements, interleaved one by one
 * (which goes first alternates), each timed alone. A round's ratio is the median guarded time over the
 * median unguarded time: medians, because a scheduler hiccup or a GC pause lands on single statements.
 */
async function compare(pair: Target['run']['write']): Promise<Pair> {
  const plain: number[] = []
  const guarded: number[] = []
  const ratios: number[] = []
  const time = async (send: () => Promise<unknown>): Promise<number> => {
    const t0 = process.hrtime.bigint()
    await send()
    return Number(process.hrtime.bigint() - t0)
  }
  for (let r = -1; r < ROUNDS; r++) {
    const p: number[] = []
    const g: number[] = []
    await runWithRoute({ routeId: OWNED }, async () => {
      for (let i = 0; i < N; i++) {
        if (i % 2 === 0) {
          p.push(await time(pair.plain))
          g.push(await time(pair.guarded))
        } else {
          g.push(await time(pair.guarded))
          p.push(await time(pair.plain))
        }
      }
    })
    if (r < 0) continue // warm-up round
    const pm = median(p)
    const gm = median(g)
    plain.push(pm)
    guarded.push(gm)
    ratios.push(gm / pm)
  }
  check(agent.state().inflight === 0, 'nothing stays in flight after the rounds')
  return {
    plainNs: median(plain),
    guardedNs: median(guarded),
    ratio: median(ratios),
    ratioMin: Math.min(...ratios),
    ratioMax: Math.max(...ratios),
  }
}

const results: Array<{ target: string; statement: string; pair: Pair }> = []
for (const open of [mariadb, postgres]) {
  const target = await open()
  try {
    // The guarded path must really check: a write for a route id owned by another unit is refused.
    const refused = await runWithRoute({ routeId: FOREIGN }, () =>
      target.run.write.guarded().then(
        () => undefined,
        (err: { code?: string }) => err.code,
      ),
    )
    check(refused === 'APPACTIVE_WRONG_UNIT', `${target.name}: a foreign write is refused (got ${refused})`)
    for (const statement of ['write', 'read'] as const) {
      results.push({ target: target.name, statement, pair: await compare(target.run[statement]) })
    }
  } finally {
    await target.close()
  }
}

const rows: Row[] = results.map(({ target, statement, pair }) => ({
  database: target,
  statement: statement === 'write' ? 'UPDATE by primary key' : 'SELECT by primary key',
  'unguarded us': pair.plainNs / 1000,
  'guarded us': pair.guardedNs / 1000,
  'guard ns': pair.guardedNs - pair.plainNs,
  'ratio median': pair.ratio,
  'ratio min..max': `${pair.ratioMin.toFixed(3)}..${pair.ratioMax.toFixed(3)}`,
}))
const loadNote =
  machine.loadavg_1m > machine.cpu_cores / 2
    ? `  WARNING: load average ${machine.loadavg_1m} on ${machine.cpu_cores} cores at start, figures are noisy`
    : ''
printTable(
  rows,
  `bench:db round trips  ${ROUNDS} rounds x ${N} statements per side, interleaved, one pooled connection, inside runWithRoute; median per statement; ratio = guarded / unguarded per round (median of rounds), target <= 1.03${loadNote}`,
)
process.stdout.write(`checksum ${sink}\n`)

const ratioOf = (db: string, statement: string): number =>
  round(results.find((r) => r.target.startsWith(db) && r.statement === statement)!.pair.ratio, 4)
const plainOf = (db: string): number =>
  round(results.find((r) => r.target.startsWith(db) && r.statement === 'write')!.pair.plainNs, 0)
printReport({
  bench: 'db',
  machine,
  metrics: {
    classify_median_ns: round(classification[0]!.medianNs),
    classify_cached_median_ns: round(classification[1]!.medianNs),
    mariadb_guarded_ratio: ratioOf('MariaDB', 'write'),
    postgres_guarded_ratio: ratioOf('PostgreSQL', 'write'),
    mariadb_read_guarded_ratio: ratioOf('MariaDB', 'read'),
    postgres_read_guarded_ratio: ratioOf('PostgreSQL', 'read'),
    mariadb_roundtrip_median_ns: plainOf('MariaDB'),
    postgres_roundtrip_median_ns: plainOf('PostgreSQL'),
  },
})
