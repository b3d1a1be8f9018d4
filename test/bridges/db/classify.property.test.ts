/**
 * Properties of the statement classifier, checked with fast-check against a corpus of real statements
 * decorated with adversarial comments, whitespace and string literals.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import {
  classify,
  classifyUncached,
  type Dialect,
  type StatementKind,
} from '../../../src/bridges/db/classify.js'

const DIALECTS = ['mysql', 'postgres', 'sqlite'] as const
const dialectArb = fc.constantFrom<Dialect>(...DIALECTS)
const RUNS = { numRuns: 400 }

/** Statements whose spaces all separate tokens (no literal holds one): each space may take a filler. */
const SPACED: Record<Dialect, ReadonlyArray<readonly [string, readonly StatementKind[]]>> = {
  mysql: [
    ["SELECT `a` , b FROM t WHERE c = ? AND d = 'x;DELETE' LIMIT 1", ['read']],
    ['SELECT * FROM stock WHERE sku = ? FOR UPDATE', ['write']],
    ["INSERT INTO t ( a , b ) VALUES ( ? , '--' ) ON DUPLICATE KEY UPDATE a = a + 1", ['write']],
    ['UPDATE t SET x = "it\\"s" WHERE id = ?', ['write']],
    ['DELETE FROM t WHERE id = ?', ['write']],
    ['START TRANSACTION', ['begin']],
    ['COMMIT AND CHAIN', ['commit', 'begin']],
    ['ROLLBACK TO SAVEPOINT s1', ['session']],
    ['SET SESSION autocommit = 0', ['autocommit-off']],
    ['WITH c AS ( SELECT 1 ) SELECT * FROM c', ['read']],
    ['CALL p ( ? )', ['call']],
    ['SHOW TABLES', ['read']],
  ],
  postgres: [
    ['SELECT "a" , b FROM t WHERE c = $1 AND d = \'x;DELETE\'', ['read']],
    ['SELECT * FROM t WHERE id = $1 FOR NO KEY UPDATE', ['write']],
    ['INSERT INTO t ( a ) VALUES ( $1 ) ON CONFLICT ( a ) DO NOTHING RETURNING id', ['write']],
    ["UPDATE t SET body = $$;DELETE$$ , note = E'\\';' WHERE id = $1", ['write']],
    ['WITH d AS ( DELETE FROM a RETURNING * ) SELECT * FROM d', ['write']],
    ['BEGIN ISOLATION LEVEL SERIALIZABLE', ['begin']],
    ['END', ['commit']],
    ['ROLLBACK TO SAVEPOINT s', ['session']],
    ['COPY t FROM STDIN', ['write']],
    ['EXPLAIN UPDATE t SET x = 1', ['read']],
    ['VALUES ( 1 ) , ( 2 )', ['read']],
  ],
  sqlite: [
    ["SELECT [a'b] , `c` FROM t WHERE d = ? AND e = 'x;DELETE'", ['read']],
    ['INSERT OR REPLACE INTO t ( k , v ) VALUES ( ? , ? )', ['write']],
    ['UPDATE t SET x = 1 WHERE id = :id', ['write']],
    ['BEGIN IMMEDIATE TRANSACTION', ['begin']],
    ['END TRANSACTION', ['commit']],
    ['PRAGMA journal_mode = WAL', ['session']],
    ['SELECT * FROM t', ['read']],
  ],
}

/** Words, quotes and separators that could fool a careless lexer if they were read as code. */
const NASTY = [
  'DELETE FROM t',
  'INSERT',
  'UPDATE',
  'COMMIT',
  'BEGIN',
  'FOR UPDATE',
  ';',
  "'",
  '"',
  '`',
  '[',
  ']',
  '$$',
  '$q$',
  '--',
  '#',
  '\\',
  '!',
  '/',
  '*',
  ' ',
  'x',
  'é',
  '\u0000',
]
const nastyText = fc.array(fc.constantFrom(...NASTY), { maxLength: 8 }).map((parts) => parts.join(''))

/** Text that is a comment in `dialect`, whatever it holds. */
function commentArb(dialect: Dialect): fc.Arbitrary<string> {
  const line = nastyText.map((t) => `-- ${t.replace(/[\r\n]/g, '')}\n`)
  // Block comment bodies hold no `/` or `*`: no early close, no PostgreSQL nesting, no MySQL `/*!`.
  const block = nastyText.map((t) => `/*${t.replace(/[/*!]/g, '')}*/`)
  // PostgreSQL comments nest: what follows the inner close is still comment.
  const nested = nastyText.map((t) => `/* a /*${t.replace(/[/*]/g, '')}*/ ; DELETE FROM t; */`)
  const hash = nastyText.map((t) => `#${t.replace(/[\r\n]/g, '')}\n`)
  if (dialect === 'mysql') return fc.oneof(line, block, hash)
  if (dialect === 'postgres') return fc.oneof(line, block, nested)
  return fc.oneof(line, block)
}

/** Whitespace, or a comment between whitespace: what may stand wherever a space separates tokens. */
function fillerArb(dialect: Dialect): fc.Arbitrary<string> {
  const ws = fc.constantFrom(' ', '\n', '\t', '  ', '\r\n')
  return fc.oneof(
    ws,
    fc.tuple(ws, commentArb(dialect), ws).map(([a, c, b]) => a + c + b),
  )
}

/** A string literal (or quoted identifier) in `dialect` holding `text`, escaped as that dialect wants. */
function literal(dialect: Dialect, text: string, form: number): string {
  if (dialect === 'mysql') {
    const esc = text.replace(/\\/g, '\\\\')
    return form % 2 === 0 ? `'${esc.replace(/'/g, "''")}'` : `"${esc.replace(/"/g, '""')}"`
  }
  if (dialect === 'postgres') {
    switch (form % 3) {
      case 0:
        // A standard string with no backslash reads the same with standard_conforming_strings on or off.
        return `'${text.replace(/\\/g, '').replace(/'/g, "''")}'`
      case 1:
        return `E'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`
      default:
        return `$z$${text.replace(/\$/g, '')}$z$`
    }
  }
  switch (form % 3) {
    case 0:
      return `'${text.replace(/'/g, "''")}'`
    case 1:
      return `"${text.replace(/"/g, '""')}"`
    default:
      return `[${text.replace(/]/g, '')}]`
  }
}

const caseArb = dialectArb.chain((dialect) =>
  fc.constantFrom(...SPACED[dialect]).map(([sql, kinds]) => ({ dialect, sql, kinds })),
)

describe('classify properties', () => {
  test('the corpus statements have the kinds the fuzzing below relies on', () => {
    for (const dialect of DIALECTS) {
      for (const [sql, kinds] of SPACED[dialect])
        assert.deepEqual(classify(sql, dialect).statements, kinds, sql)
    }
  })

  test('comments and whitespace between tokens never change a classification', () => {
    fc.assert(
      fc.property(
        caseArb.chain((c) =>
          fc
            .array(fillerArb(c.dialect), {
              minLength: c.sql.split(' ').length - 1,
              maxLength: c.sql.split(' ').length - 1,
            })
            .map((fillers) => ({ ...c, fillers })),
        ),
        fc.tuple(fillerArb('sqlite'), fillerArb('sqlite')),
        ({ dialect, sql, kinds, fillers }, [lead, trail]) => {
          const parts = sql.split(' ')
          const decorated = lead + parts.map((p, i) => p + (fillers[i] ?? '')).join('') + trail
          assert.deepEqual(classify(decorated, dialect).statements, kinds, decorated)
        },
      ),
      RUNS,
    )
  })

  test('no literal content makes a read look like a write, or hides what follows it', () => {
    fc.assert(
      fc.property(dialectArb, nastyText, nastyText, fc.nat(), (dialect, a, b, form) => {
        const read = `SELECT ${literal(dialect, a, form)} AS x FROM t WHERE y = ${literal(dialect, b, form + 1)}`
        assert.deepEqual(classify(read, dialect).statements, ['read'], read)
        const write = `UPDATE t SET x = ${literal(dialect, a, form)}; COMMIT`
        assert.deepEqual(classify(write, dialect).statements, ['write', 'commit'], write)
      }),
      RUNS,
    )
  })

  test('statements joined by ; classify as the concatenation of their kinds (the strictest wins)', () => {
    fc.assert(
      fc.property(dialectArb, fc.array(fc.nat(), { minLength: 1, maxLength: 5 }), (dialect, picks) => {
        const chosen = picks.map((p) => SPACED[dialect][p % SPACED[dialect].length]!)
        const c = classify(chosen.map(([sql]) => sql).join(';\n'), dialect)
        assert.deepEqual(
          c.statements,
          chosen.flatMap(([, kinds]) => kinds),
        )
        assert.equal(
          c.write,
          chosen.some(([, kinds]) => kinds.includes('write')),
        )
      }),
      RUNS,
    )
  })

  test('fail safe: any text followed by a write statement classifies as a write', () => {
    const junk = fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), nastyText)
    fc.assert(
      fc.property(dialectArb, junk, (dialect, prefix) => {
        const c = classify(`${prefix}\n;\nINSERT INTO t VALUES (1)`, dialect)
        assert.equal(c.write, true, JSON.stringify(prefix))
      }),
      { numRuns: 2000 },
    )
  })

  test('never throws; an unknown statement always comes with a reason; the cache agrees with a fresh look', () => {
    fc.assert(
      fc.property(
        dialectArb,
        fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), nastyText),
        (dialect, sql) => {
          const c = classify(sql, dialect)
          assert.ok(Object.isFrozen(c))
          assert.equal(c.statements.includes('unknown'), c.unknown !== undefined, JSON.stringify(sql))
          assert.equal(c.write, c.statements.includes('write') || c.statements.includes('unknown'))
          assert.deepEqual(classifyUncached(sql, dialect), c)
        },
      ),
      { numRuns: 2000 },
    )
  })
})
