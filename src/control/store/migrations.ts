/**
 * Versioned schema migrations: ordered, each applied in its own transaction together with its row in
 * `schema_migrations`, under a lock so two control planes starting at once cannot both apply one.
 * Running them again applies nothing. A store whose schema is NEWER than this code knows is refused:
 * an old binary must not write into a schema it does not understand.
 *
 * Never edit a released migration; add the next one.
 */
import { StoreUnavailableError } from '../errors.js'
import type { SqlDriver } from './sql.js'
import type { MigrationResult } from './types.js'

export interface Migration {
  readonly version: number
  readonly name: string
  readonly sqlite: readonly string[]
  readonly postgres: readonly string[]
}

const STATES = `'planned', 'running', 'succeeded', 'failed', 'rolled-back', 'aborted'`
const IMMUTABLE = ['audit', 'rule_sets', 'topology_revisions'] as const

/** Tables shared by both dialects, with `{int}` for a 64-bit integer column. */
function tables(int: string, serial: string): string[] {
  return [
    `CREATE TABLE topology_revisions (
      revision ${int} PRIMARY KEY,
      body TEXT NOT NULL,
      author TEXT NOT NULL,
      created_at ${int} NOT NULL
    )`,
    `CREATE TABLE rule_sets (
      version ${int} PRIMARY KEY CHECK (version >= 0),
      body TEXT NOT NULL,
      digest TEXT NOT NULL,
      author TEXT NOT NULL,
      reason TEXT NOT NULL,
      operation_id TEXT,
      created_at ${int} NOT NULL
    )`,
    `CREATE TABLE nodes (
      node_id TEXT PRIMARY KEY,
      app TEXT NOT NULL,
      unit TEXT NOT NULL,
      address TEXT,
      pid ${int},
      applied_version ${int} NOT NULL,
      first_seen_at ${int} NOT NULL,
      last_seen_at ${int} NOT NULL,
      left_at ${int}
    )`,
    `CREATE TABLE operations (
      id TEXT PRIMARY KEY,
      kind TEXT NOT NULL CHECK (kind IN ('cutover', 'failover')),
      state TEXT NOT NULL CHECK (state IN (${STATES})),
      revision ${int} NOT NULL,
      from_version ${int} NOT NULL,
      body TEXT NOT NULL,
      created_at ${int} NOT NULL,
      updated_at ${int} NOT NULL
    )`,
    'CREATE INDEX operations_created ON operations (created_at, id)',
    // At most one operation runs at a time, whatever races the API or an orchestrator lose.
    `CREATE UNIQUE INDEX operations_one_running ON operations (state) WHERE state = 'running'`,
    `CREATE TABLE audit (
      seq ${serial},
      at ${int} NOT NULL,
      actor TEXT NOT NULL,
      action TEXT NOT NULL,
      target TEXT NOT NULL,
      details TEXT NOT NULL
    )`,
    'CREATE INDEX audit_target ON audit (target, seq)',
    'CREATE INDEX audit_action ON audit (action, seq)',
  ]
}

/** The ordered migrations. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'topology, rule sets, nodes, operations, audit',
    sqlite: [
      ...tables('INTEGER', 'INTEGER PRIMARY KEY AUTOINCREMENT'),
      // The database itself refuses to rewrite history, not only the Store interface.
      ...IMMUTABLE.flatMap((t) =>
        ['UPDATE', 'DELETE'].map(
          (op) =>
            `CREATE TRIGGER ${t}_no_${op.toLowerCase()} BEFORE ${op} ON ${t}
             BEGIN SELECT RAISE(ABORT, 'appactive: ${t} is append-only'); END`,
        ),
      ),
    ],
    postgres: [
      ...tables('BIGINT', 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY'),
      `CREATE FUNCTION appactive_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'appactive: % is append-only', TG_TABLE_NAME; END $$`,
      ...IMMUTABLE.flatMap((t) => [
        `CREATE TRIGGER ${t}_append_only BEFORE UPDATE OR DELETE ON ${t}
         FOR EACH ROW EXECUTE FUNCTION appactive_append_only()`,
        `CREATE TRIGGER ${t}_no_truncate BEFORE TRUNCATE ON ${t}
         FOR EACH STATEMENT EXECUTE FUNCTION appactive_append_only()`,
      ]),
    ],
  },
]

/** The schema version this code writes. */
export const SCHEMA_VERSION = MIGRATIONS.at(-1)!.version

const CREATE_LEDGER = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`

/** The highest applied version (0: none). */
export async function appliedVersion(db: SqlDriver): Promise<number> {
  const rows = await db.all<{ v: unknown }>('SELECT MAX(version) AS v FROM schema_migrations')
  return rows[0]?.v == null ? 0 : Number(rows[0].v)
}

/**
 * Applies every pending migration of `list`, in order.
 * @throws StoreUnavailableError when the store's schema is newer than `list` knows.
 */
export async function migrate(
  db: SqlDriver,
  now: () => number,
  list: readonly Migration[] = MIGRATIONS,
): Promise<MigrationResult> {
  await db.transaction(async (c) => {
    await c.lock('migrations')
    await c.run(CREATE_LEDGER)
  })
  const known = list.at(-1)?.version ?? 0
  const current = await appliedVersion(db)
  if (current > known) {
    throw new StoreUnavailableError(
      `the store's schema is at version ${current}, newer than this appactive knows (${known}): upgrade appactive`,
    )
  }
  const applied: number[] = []
  for (const m of list) {
    const done = await db.transaction(async (c) => {
      await c.lock('migrations')
      const rows = await c.all('SELECT version FROM schema_migrations WHERE version = ?', [m.version])
      if (rows.length > 0) return false
      for (const statement of db.dialect === 'sqlite' ? m.sqlite : m.postgres) await c.run(statement)
      await c.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [
        m.version,
        m.name,
        now(),
      ])
      return true
    })
    if (done) applied.push(m.version)
  }
  return { applied, version: await appliedVersion(db) }
}
