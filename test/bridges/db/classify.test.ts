import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  classify,
  classifyUncached,
  type Dialect,
  type StatementKind,
} from '../../../src/bridges/db/classify.js'

type Case = readonly [sql: string, kinds: readonly StatementKind[]]

/** Statements as apps, ORMs and dump tools send them, with what each does. */
const CORPUS: Record<Dialect, readonly Case[]> = {
  mysql: [
    ['SELECT `users`.* FROM `users` WHERE `users`.`id` = ? LIMIT 1', ['read']],
    ['select count(*) as `n` from `orders` where `user_id` = ?', ['read']],
    ['INSERT INTO `orders` (`user_id`,`total`) VALUES (?,?)', ['write']],
    ['UPDATE `orders` SET `status` = ? WHERE `id` = ?', ['write']],
    ['DELETE FROM sessions WHERE expires < NOW()', ['write']],
    ['REPLACE INTO kv (k, v) VALUES (?, ?)', ['write']],
    ['INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = a + 1', ['write']],
    ['INSERT INTO archive SELECT * FROM orders WHERE created < ?', ['write']],
    ['SELECT * FROM stock WHERE sku = ? FOR UPDATE', ['write']],
    ['SELECT * FROM stock WHERE sku = ? LOCK IN SHARE MODE', ['write']],
    ['SELECT * FROM stock WHERE sku = ? FOR SHARE SKIP LOCKED', ['write']],
    ['SELECT id INTO @last FROM t ORDER BY id DESC LIMIT 1', ['write']],
    ["SELECT * FROM t INTO OUTFILE '/tmp/t.csv'", ['write']],
    ["SELECT REPLACE(name, 'a', 'b') AS share FROM t", ['read']],
    ["SELECT * FROM t WHERE note = 'x''; DELETE FROM t; --'", ['read']],
    ["SELECT * FROM t WHERE note = 'x\\'; DELETE FROM t; --'", ['read']],
    ['SELECT "it""s; DELETE FROM t"', ['read']],
    ["SELECT 'a\\\\'", ['read']],
    ['SELECT `weird``name; DELETE` FROM t', ['read']],
    ['SELECT /* INSERT INTO t; */ 1', ['read']],
    ['SELECT 1 # ; DELETE FROM t\n', ['read']],
    ['SELECT 1 -- ; DELETE FROM t\n', ['read']],
    ['SELECT 1--1', ['read']],
    ['SELECT 1 --1; DELETE FROM t', ['read', 'write']],
    ['SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t', ['read']],
    ['SELECT /*!40001 SQL_NO_CACHE */ * FROM t', ['read']],
    ['/*!40101 SET NAMES utf8mb4 */', ['session']],
    ['/*!50000 DELETE FROM t */', ['write']],
    ['SELECT 1 /*M!100100 ; DELETE FROM t */', ['read', 'write']],
    ['(SELECT 1) UNION (SELECT 2)', ['read']],
    ['WITH c AS (SELECT 1 AS x) SELECT * FROM c', ['read']],
    ['WITH c AS (SELECT id FROM t) UPDATE t SET x = 1 WHERE id IN (SELECT id FROM c)', ['write']],
    ['SHOW TABLES', ['read']],
    ['DESCRIBE t', ['read']],
    ['EXPLAIN SELECT * FROM t', ['read']],
    ['EXPLAIN ANALYZE SELECT * FROM t', ['read']],
    ['EXPLAIN UPDATE t SET x = 1', ['read']],
    ['ANALYZE TABLE t', ['session']],
    ['ANALYZE DELETE FROM t WHERE x = 1', ['write']],
    ['HANDLER t READ FIRST', ['read']],
    ['USE test', ['session']],
    ['SET NAMES utf8mb4', ['session']],
    ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', ['session']],
    ['SET autocommit=0', ['autocommit-off']],
    ['SET autocommit = ON', ['autocommit-on']],
    ['SET SESSION autocommit = 1', ['autocommit-on']],
    ['SET @@autocommit := 0', ['autocommit-off']],
    ['SET @@session.autocommit = OFF', ['autocommit-off']],
    ['SET sql_mode = ?, autocommit = 0', ['autocommit-off']],
    ['SET @autocommit = 0', ['session']],
    ['SET autocommit = @saved', ['unknown']],
    ['START TRANSACTION', ['begin']],
    ['START TRANSACTION READ ONLY', ['begin']],
    ['START TRANSACTION WITH CONSISTENT SNAPSHOT', ['begin']],
    ['BEGIN', ['begin']],
    ['BEGIN WORK', ['begin']],
    ['COMMIT', ['commit']],
    ['COMMIT WORK AND NO CHAIN RELEASE', ['commit']],
    ['COMMIT AND CHAIN', ['commit', 'begin']],
    ['ROLLBACK', ['rollback']],
    ['ROLLBACK AND CHAIN', ['rollback', 'begin']],
    ['SAVEPOINT s1', ['session']],
    ['ROLLBACK TO SAVEPOINT s1', ['session']],
    ['ROLLBACK WORK TO s1', ['session']],
    ['RELEASE SAVEPOINT s1', ['session']],
    ["XA START 'g1'", ['begin']],
    ["XA END 'g1'", ['session']],
    ["XA PREPARE 'g1'", ['session']],
    ["XA COMMIT 'g1'", ['commit']],
    ["XA ROLLBACK 'g1'", ['rollback']],
    ['CALL add_points(?, ?)', ['call']],
    ['CREATE TABLE t (id INT PRIMARY KEY)', ['write']],
    ['ALTER TABLE t ADD COLUMN x INT', ['write']],
    ['DROP TABLE IF EXISTS t', ['write']],
    ['TRUNCATE TABLE t', ['write']],
    ['RENAME TABLE a TO b', ['write']],
    ["LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE t", ['write']],
    ['LOCK TABLES t WRITE', ['write']],
    ['UNLOCK TABLES', ['session']],
    ['DO SLEEP(0)', ['write']],
    ['EXECUTE stmt USING @a', ['write']],
    ["PREPARE stmt FROM 'DELETE FROM t'", ['session']],
    ['DEALLOCATE PREPARE stmt', ['session']],
    ['BEGIN NOT ATOMIC INSERT INTO t VALUES (1); END', ['write', 'write']],
    ['SELECT 1; SELECT 2', ['read', 'read']],
    ['SELECT 1; INSERT INTO t VALUES (1);', ['read', 'write']],
    ['START TRANSACTION; UPDATE t SET x = 1; COMMIT', ['begin', 'write', 'commit']],
    [';;  ; -- nothing\n', []],
    ['', []],
  ],
  postgres: [
    ['SELECT * FROM "users" WHERE "id" = $1', ['read']],
    ['SELECT $1::text, $2::int', ['read']],
    ['INSERT INTO orders (user_id) VALUES ($1) RETURNING id', ['write']],
    ['INSERT INTO t (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = t.n + 1', ['write']],
    ['UPDATE accounts SET balance = balance - $1 WHERE id = $2 RETURNING balance', ['write']],
    [
      'MERGE INTO stock s USING incoming i ON s.sku = i.sku WHEN MATCHED THEN UPDATE SET qty = i.qty',
      ['write'],
    ],
    ['SELECT * FROM t WHERE id = $1 FOR NO KEY UPDATE', ['write']],
    ['SELECT * FROM t WHERE id = $1 FOR KEY SHARE', ['write']],
    ['SELECT * INTO backup_t FROM t', ['write']],
    ['WITH moved AS (DELETE FROM a RETURNING *) INSERT INTO b SELECT * FROM moved', ['write']],
    ['WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r', ['read']],
    ['SELECT $$; DELETE FROM t; $$', ['read']],
    ['SELECT $fn$ $$ ; DELETE FROM t $fn$ AS body', ['read']],
    ["SELECT E'it\\'s; DELETE FROM t'", ['read']],
    ["SELECT 'C:\\path', 'x''y; DELETE'", ['read']],
    ['SELECT "weird""col; DELETE" FROM t', ['read']],
    ['SELECT 1 /* outer /* inner */ still a comment; DELETE FROM t */', ['read']],
    ['SELECT 1--; DELETE FROM t\n', ['read']],
    ["SELECT U&'d\\0061t\\+000061'", ['read']],
    ['SELECT a$b FROM t', ['read']],
    ['VALUES (1), (2)', ['read']],
    ['TABLE t', ['read']],
    ['SHOW server_version', ['read']],
    ['EXPLAIN UPDATE t SET x = 1', ['read']],
    ['EXPLAIN ANALYZE DELETE FROM t', ['write']],
    ['EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET x = 1', ['write']],
    ['EXPLAIN (ANALYZE) SELECT * FROM t', ['read']],
    ['ANALYZE t', ['session']],
    ['BEGIN', ['begin']],
    ['BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE', ['begin']],
    ['BEGIN TRANSACTION NOT DEFERRABLE', ['begin']],
    ['START TRANSACTION', ['begin']],
    ['COMMIT', ['commit']],
    ['END', ['commit']],
    ['END TRANSACTION', ['commit']],
    ['ABORT', ['rollback']],
    ['ROLLBACK', ['rollback']],
    ['ROLLBACK TO SAVEPOINT s', ['session']],
    ['RELEASE s', ['session']],
    ["PREPARE TRANSACTION 'g1'", ['commit']],
    ["COMMIT PREPARED 'g1'", ['write']],
    ["ROLLBACK PREPARED 'g1'", ['write']],
    ['PREPARE q (int) AS SELECT * FROM t WHERE id = $1', ['session']],
    ['EXECUTE q (1)', ['write']],
    ['COPY t FROM STDIN', ['write']],
    ['COPY t (a, b) TO STDOUT WITH (FORMAT csv)', ['read']],
    ['COPY (SELECT * FROM t) TO STDOUT', ['read']],
    ['COPY (DELETE FROM t RETURNING *) TO STDOUT', ['write']],
    ['DO $$ BEGIN DELETE FROM t; END $$', ['write']],
    ['CREATE INDEX CONCURRENTLY t_x ON t (x)', ['write']],
    ['COMMENT ON TABLE t IS $$x$$', ['write']],
    ['VACUUM ANALYZE t', ['write']],
    ['REFRESH MATERIALIZED VIEW v', ['write']],
    ['LOCK TABLE t IN ACCESS EXCLUSIVE MODE', ['write']],
    ['GRANT SELECT ON t TO app', ['write']],
    ['LISTEN orders', ['session']],
    ["NOTIFY orders, 'x'", ['session']],
    ['SET search_path TO app, public', ['session']],
    ['SET LOCAL statement_timeout = 5000', ['session']],
    ["LOAD 'auto_explain'", ['session']],
    ['DECLARE c CURSOR FOR SELECT * FROM t', ['read']],
    ['DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE', ['write']],
    ['FETCH 10 FROM c', ['session']],
    ['CLOSE c', ['session']],
    ['DISCARD ALL', ['session']],
    ['CALL transfer($1, $2)', ['call']],
    ['SELECT pg_advisory_lock(1)', ['read']],
    ['BEGIN; INSERT INTO t VALUES (1); COMMIT;', ['begin', 'write', 'commit']],
  ],
  sqlite: [
    ['SELECT * FROM t WHERE id = ?', ['read']],
    ['SELECT * FROM t WHERE id = :id AND x = @x AND y = $y', ['read']],
    ['INSERT OR REPLACE INTO t (k, v) VALUES (?, ?)', ['write']],
    ['INSERT INTO t DEFAULT VALUES', ['write']],
    ['INSERT INTO t (x) VALUES (?) RETURNING id', ['write']],
    ['UPDATE OR IGNORE t SET x = 1', ['write']],
    ['REPLACE INTO t VALUES (1)', ['write']],
    ["SELECT [a'b; DELETE FROM t] FROM t", ['read']],
    ['SELECT `a``b; DELETE` FROM t', ['read']],
    ['SELECT "a""b; DELETE" FROM t', ['read']],
    ["SELECT 'a\\'; DELETE FROM t; --'", ['read', 'write']],
    ['SELECT 1 -- x\n; DELETE FROM t', ['read', 'write']],
    ['SELECT 1--x\n', ['read']],
    ['BEGIN IMMEDIATE', ['begin']],
    ['BEGIN EXCLUSIVE TRANSACTION', ['begin']],
    ['END TRANSACTION', ['commit']],
    ['COMMIT', ['commit']],
    ['ROLLBACK TO s', ['session']],
    ['PRAGMA journal_mode = WAL', ['session']],
    ["ATTACH DATABASE 'other.db' AS other", ['session']],
    ["VACUUM INTO '/tmp/copy.db'", ['write']],
    ['REINDEX', ['write']],
    ['ANALYZE', ['session']],
    ['CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)', ['write']],
    ['WITH c AS (SELECT 1) INSERT INTO t SELECT * FROM c', ['write']],
  ],
}

/** Texts nothing can classify: unknown (a write), with a reason that quotes none of the text. */
const UNCLASSIFIABLE: ReadonlyArray<readonly [Dialect, string, RegExp]> = [
  ['mysql', 'FROBNICATE the_table', /unknown statement FROBNICATE/],
  ['mysql', '{call p()}', /a statement starting with "\{"/],
  ['mysql', "SELECT 'unterminated", /unterminated quoted/],
  ['mysql', 'SELECT "unterminated', /unterminated quoted/],
  ['mysql', 'SELECT `unterminated', /unterminated quoted/],
  ['mysql', 'SELECT 1 /* unterminated', /unterminated comment/],
  ['mysql', '/*!40101 SET NAMES utf8', /unterminated executable comment/],
  ['mysql', 'START SLAVE', /START without TRANSACTION/],
  ['mysql', "XA FROB 'x'", /XA without/],
  ['postgres', 'SELECT $$ unterminated', /unterminated dollar-quoted/],
  ['postgres', 'SELECT 1 /* a /* b */', /unterminated comment/],
  ['sqlite', 'ABORT', /unknown statement ABORT/],
  ['mysql', 'ABORT', /unknown statement ABORT/],
  ['sqlite', 'SELECT [unterminated', /unterminated \[identifier\]/],
  ['sqlite', 'ſELECT 1', /an unknown statement/],
]

describe('classify', () => {
  for (const dialect of ['mysql', 'postgres', 'sqlite'] as const) {
    test(`${dialect}: a corpus of real statements`, () => {
      for (const [sql, kinds] of CORPUS[dialect]) {
        const c = classify(sql, dialect)
        assert.deepEqual(c.statements, kinds, `${dialect}: ${JSON.stringify(sql)}`)
        assert.equal(c.write, kinds.includes('write') || kinds.includes('unknown'), sql)
        assert.equal(c.read, kinds.includes('read'), sql)
        assert.equal(c.call, kinds.includes('call'), sql)
        assert.equal(
          c.control,
          kinds.some((k) => ['begin', 'commit', 'rollback', 'autocommit-on', 'autocommit-off'].includes(k)),
          sql,
        )
        assert.equal(c.unknown === undefined, !kinds.includes('unknown'), sql)
      }
    })
  }

  test('what it cannot classify is an unknown write, with a reason free of the text', () => {
    for (const [dialect, sql, reason] of UNCLASSIFIABLE) {
      const c = classify(sql, dialect)
      assert.equal(c.write, true, sql)
      assert.ok(c.statements.includes('unknown'), sql)
      assert.match(c.unknown ?? '', reason, sql)
    }
    assert.equal(classify('ABORT', 'postgres').statements[0], 'rollback')
    // A MySQL END closes a compound block, not a transaction.
    assert.deepEqual(classify('END', 'mysql').statements, ['write'])
  })

  test('keywords are ASCII only, compared without case', () => {
    assert.deepEqual(classify('sElEcT 1 fOr UpDaTe', 'postgres').statements, ['write'])
    assert.deepEqual(classify('ınsert INTO t VALUES (1)', 'mysql').statements, ['unknown'])
    // U+0141 has the low byte of 'A': it must not be taken for one.
    assert.deepEqual(classify('SELECT * FROM t FOR UPDŁTE', 'mysql').statements, ['read'])
  })

  test('a backslash that escapes under one server setting and not another: the stricter reading wins', () => {
    // MySQL with ANSI_QUOTES: "a\" is an identifier, and the DELETE runs.
    const ansi = classify(`SELECT "a\\", 'b' ; DELETE FROM t; -- "`, 'mysql')
    assert.equal(ansi.write, true)
    assert.match(ansi.unknown ?? '', /another server setting/)
    // PostgreSQL with standard_conforming_strings off: 'a\', ' is one string, and the DELETE runs.
    const legacy = classify(`SELECT 'a\\', 'b; DELETE FROM t; --'`, 'postgres')
    assert.equal(legacy.write, true)
    // Under ANSI_QUOTES "it\" ends early, and what follows is code.
    assert.equal(classify(`SELECT "it\\"s; DELETE FROM t"`, 'mysql').write, true)
    // Backslashes that read the same under every setting change nothing.
    assert.deepEqual(classify(`SELECT 'C:\\\\dir', 'it''s'`, 'mysql').statements, ['read'])
    assert.equal(classify(`SELECT 'C:\\\\dir'`, 'mysql').unknown, undefined)
  })

  test('results are cached per dialect and text, and equal to an uncached classification', () => {
    const sql = 'SELECT * FROM orders WHERE id = ? FOR UPDATE'
    assert.equal(classify(sql, 'mysql'), classify(sql, 'mysql'))
    assert.deepEqual(classify(sql, 'mysql'), classifyUncached(sql, 'mysql'))
    assert.ok(Object.isFrozen(classify(sql, 'mysql')))
    assert.ok(Object.isFrozen(classify(sql, 'mysql').statements))
    // The same text may mean something else in another dialect.
    assert.deepEqual(classify('SELECT 1 #x\n; DELETE FROM t', 'mysql').statements, ['read', 'write'])
    assert.deepEqual(classify('SELECT 1 #x\n; DELETE FROM t', 'postgres').statements, ['read', 'write'])
    assert.deepEqual(classify('SELECT 1 # ; DELETE FROM t', 'mysql').statements, ['read'])
    assert.deepEqual(classify('SELECT 1 # ; DELETE FROM t', 'postgres').statements, ['read', 'write'])
    // Long texts (bulk inserts built per call) are classified but not kept.
    const bulk = `INSERT INTO t VALUES ${Array.from({ length: 1000 }, (_, i) => `(${i})`).join(',')}; SELECT 1`
    assert.notEqual(classify(bulk, 'mysql'), classify(bulk, 'mysql'))
    assert.deepEqual(classify(bulk, 'mysql').statements, ['write', 'read'])
  })
})
