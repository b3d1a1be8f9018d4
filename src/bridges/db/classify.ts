/**
 * Statement classification for the write guards, without a SQL parser: a lexer that knows where comments,
 * strings and quoted identifiers start and end in each dialect, and a classifier that reads the leading
 * keyword of each statement (and, for queries, a few keywords anywhere in it).
 *
 * It is fail safe: text it cannot classify (an unknown verb, an unterminated string or comment) is a
 * write, so a guard refuses too much rather than too little. It is not a defence against SQL injection:
 * text an attacker controls can do anything a write can.
 *
 * Results are cached per statement text (apps reuse a small set of statements), in a bounded Map.
 */

/** The SQL dialects the guards speak: how comments, quotes and transactions are written. */
export type Dialect = 'mysql' | 'postgres' | 'sqlite'

/**
 * What one statement does:
 * - `read`: SELECT, SHOW, EXPLAIN... (`SELECT ... FOR UPDATE|SHARE` and `SELECT ... INTO` are writes);
 * - `write`: changes rows or schema (INSERT, UPDATE, DELETE, REPLACE, MERGE, TRUNCATE, DDL, COPY FROM...);
 * - `call`: a stored procedure call (a write unless the guard is told otherwise);
 * - `unknown`: could not be classified; guarded as a write;
 * - `session`: touches no row (SET, USE, SAVEPOINT, ROLLBACK TO SAVEPOINT, PRAGMA, LISTEN...);
 * - `begin`, `commit`, `rollback`, `autocommit-on`, `autocommit-off`: transaction control.
 */
export type StatementKind =
  | 'read'
  | 'write'
  | 'call'
  | 'unknown'
  | 'session'
  | 'begin'
  | 'commit'
  | 'rollback'
  | 'autocommit-on'
  | 'autocommit-off'

/** The classification of a statement text (one or more statements). Frozen; shared through the cache. */
export interface Classification {
  /** Each statement's kind, in order; empty statements (`;`, comments only) are left out. */
  readonly statements: readonly StatementKind[]
  /** True when a statement writes, or could not be classified (the strictest wins). */
  readonly write: boolean
  /** True when a statement is a CALL. */
  readonly call: boolean
  /** True when a statement reads. */
  readonly read: boolean
  /** True when a statement begins or ends a transaction, or switches autocommit. */
  readonly control: boolean
  /** Why a statement could not be classified (no literal text from it), or undefined. */
  readonly unknown: string | undefined
}

// ------------------------------------------------------------------------------------------------ lexer

const END = 0
const WORD = 1
const SEMI = 2
const OPEN = 3
const OTHER = 4
const QUOTED = 5
const BAD = 6

const isWordChar = (c: number): boolean =>
  (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 36 || c >= 128

/** PostgreSQL dollar-quote tag characters (a `$` ends the tag). */
const isTagChar = (c: number): boolean =>
  (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c >= 128

/** Where backslashes escape: they depend on server settings, so a text may be lexed under several. */
interface Escapes {
  /** In '...' strings (MySQL by default; PostgreSQL only with standard_conforming_strings off). */
  readonly single: boolean
  /** In "..." (MySQL strings; not with ANSI_QUOTES, where "..." is an identifier). */
  readonly double: boolean
}

class Lexer {
  readonly s: string
  readonly n: number
  readonly #my: boolean
  readonly #pg: boolean
  readonly #lite: boolean
  readonly #esc: Escapes
  i = 0
  /** The current WORD token: s[ws, we). */
  ws = 0
  we = 0
  /** Inside a MySQL executable comment (`/*! ... *\/`), whose content runs. */
  #exec = false
  /** A backslash was seen in a quoted span whose escaping depends on server settings. */
  backslash = false
  /** Why lexing failed (an unterminated span), once it has. */
  bad: string | undefined

  constructor(s: string, dialect: Dialect, esc: Escapes) {
    this.s = s
    this.n = s.length
    this.#my = dialect === 'mysql'
    this.#pg = dialect === 'postgres'
    this.#lite = dialect === 'sqlite'
    this.#esc = esc
  }

  #fail(why: string): number {
    this.bad = why
    this.i = this.n
    return BAD
  }

  next(): number {
    if (this.bad !== undefined) return BAD
    const s = this.s
    const n = this.n
    let i = this.i
    for (;;) {
      if (i >= n) {
        this.i = n
        return this.#exec ? this.#fail('unterminated executable comment') : END
      }
      const c = s.charCodeAt(i)
      if (c <= 32) {
        i++
        continue
      }
      // `--` comments; MySQL needs a space or control character after the dashes (`1--1` is arithmetic).
      if (c === 45 && s.charCodeAt(i + 1) === 45 && (!this.#my || !(s.charCodeAt(i + 2) > 32))) {
        i = lineEnd(s, i + 2)
        continue
      }
      if (c === 35 && this.#my) {
        i = lineEnd(s, i + 1)
        continue
      }
      if (c === 47 && s.charCodeAt(i + 1) === 42) {
        const bang = s.charCodeAt(i + 2)
        if (this.#my && (bang === 33 || (bang === 77 && s.charCodeAt(i + 3) === 33))) {
          // MySQL `/*!NNNNN ... */` and MariaDB `/*M!... */` run their content: lex it as code.
          if (this.#exec) return this.#fail('nested executable comment')
          i += bang === 33 ? 3 : 4
          for (let d = 0; d < 6 && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57; d++) i++
          this.#exec = true
          continue
        }
        i = this.#pg ? nestedCommentEnd(s, i) : s.indexOf('*/', i + 2)
        if (i < 0) return this.#fail('unterminated comment')
        i += 2
        continue
      }
      if (c === 42 && this.#exec && s.charCodeAt(i + 1) === 47) {
        this.#exec = false
        i += 2
        continue
      }
      if (c === 39) return this.#quoted(i, 39, this.#esc.single, !this.#lite)
      if (c === 34) return this.#quoted(i, 34, this.#my && this.#esc.double, this.#my)
      if (c === 96 && !this.#pg) return this.#quoted(i, 96, false, false)
      if (c === 91 && this.#lite) {
        // SQLite [identifier]: no escape inside.
        const j = s.indexOf(']', i + 1)
        if (j < 0) return this.#fail('unterminated [identifier]')
        this.i = j + 1
        return QUOTED
      }
      if (c === 36 && this.#pg) {
        const t = this.#dollar(i)
        if (t !== WORD) return t
      }
      if (c === 59) {
        this.i = i + 1
        return SEMI
      }
      if (c === 40) {
        this.i = i + 1
        return OPEN
      }
      if (isWordChar(c)) {
        let j = i + 1
        while (j < n && isWordChar(s.charCodeAt(j))) j++
        // PostgreSQL E'...' strings take backslash escapes whatever the server settings.
        if (this.#pg && j === i + 1 && (c | 32) === 101 && s.charCodeAt(j) === 39) {
          return this.#quoted(j, 39, true, false)
        }
        this.ws = i
        this.we = j
        this.i = j
        return WORD
      }
      this.i = i + 1
      return OTHER
    }
  }

  /** A '...', "..." or `...` span: the quote doubled stands for itself; `esc`: backslash escapes. */
  #quoted(i: number, q: number, esc: boolean, configurable: boolean): number {
    const s = this.s
    for (let j = i + 1; j < this.n; j++) {
      const d = s.charCodeAt(j)
      if (d === 92) {
        if (configurable) this.backslash = true
        if (esc) j++
      } else if (d === q) {
        if (s.charCodeAt(j + 1) !== q) {
          this.i = j + 1
          return QUOTED
        }
        j++
      }
    }
    return this.#fail('unterminated quoted string or identifier')
  }

  /** PostgreSQL `$n` parameters and `$tag$...$tag$` strings; WORD means "not either, lex it as a word". */
  #dollar(i: number): number {
    const s = this.s
    let j = i + 1
    const d = s.charCodeAt(j)
    if (d >= 48 && d <= 57) {
      while (j < this.n && s.charCodeAt(j) >= 48 && s.charCodeAt(j) <= 57) j++
      this.i = j
      return OTHER
    }
    while (j < this.n && isTagChar(s.charCodeAt(j))) j++
    if (s.charCodeAt(j) !== 36) {
      this.i = i + 1
      return OTHER
    }
    const tag = s.slice(i, j + 1)
    const close = s.indexOf(tag, j + 1)
    if (close < 0) return this.#fail('unterminated dollar-quoted string')
    this.i = close + tag.length
    return QUOTED
  }

  /** The current word in upper case, or '' when it cannot be a keyword (too long, not ASCII). */
  word(): string {
    if (this.we - this.ws > 12) return ''
    for (let k = this.ws; k < this.we; k++) if (this.s.charCodeAt(k) >= 128) return ''
    return this.s.slice(this.ws, this.we).toUpperCase()
  }

  /** True when the current word is `kw` (ASCII upper case), compared without allocating. */
  is(kw: string): boolean {
    const len = kw.length
    if (this.we - this.ws !== len) return false
    // Clearing bit 5 upper-cases ASCII letters; 0xffdf keeps non-ASCII characters from matching.
    for (let k = 0; k < len; k++) {
      if ((this.s.charCodeAt(this.ws + k) & 0xffdf) !== kw.charCodeAt(k)) return false
    }
    return true
  }
}

function lineEnd(s: string, i: number): number {
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 10 || c === 13) return i + 1
  }
  return s.length
}

/** The index of the `*\/` closing a PostgreSQL comment (they nest), or -1. */
function nestedCommentEnd(s: string, i: number): number {
  let depth = 1
  for (i += 2; i < s.length - 1; i++) {
    const c = s.charCodeAt(i)
    if (c === 47 && s.charCodeAt(i + 1) === 42) {
      depth++
      i++
    } else if (c === 42 && s.charCodeAt(i + 1) === 47) {
      if (--depth === 0) return i
      i++
    }
  }
  return -1
}

// ------------------------------------------------------------------------------------------- statements

/** True for the tokens that end a statement. */
const ends = (t: number): boolean => t === SEMI || t === END || t === BAD

/** Consumes the rest of the statement; returns the token that ended it (BAD when the lexer failed). */
function skip(lx: Lexer): number {
  let t = lx.next()
  while (!ends(t)) t = lx.next()
  return t
}

/**
 * True when the current word makes a query write: a data-changing verb (a writable CTE, `WITH ... DELETE`),
 * `INTO` (`SELECT ... INTO table|OUTFILE`), or `SHARE`/`UPDATE` locks (`FOR UPDATE`, `FOR SHARE`,
 * `LOCK IN SHARE MODE`); `prev` is true when the word before was FOR, KEY or IN.
 */
function writesInQuery(lx: Lexer, prev: boolean): boolean {
  switch (lx.we - lx.ws) {
    case 4:
      return lx.is('INTO')
    case 5:
      return lx.is('MERGE') || (prev && lx.is('SHARE'))
    case 6:
      return lx.is('UPDATE') || lx.is('DELETE') || lx.is('INSERT') || lx.is('UPSERT')
    default:
      return false
  }
}

const isLockPrefix = (lx: Lexer): boolean => lx.is('FOR') || lx.is('KEY') || lx.is('IN')

/** A query (SELECT, WITH, VALUES, TABLE, `(`...): a read unless it writes or locks rows. */
function query(lx: Lexer, out: StatementKind[]): number {
  let write = false
  let prev = false
  let t = lx.next()
  for (; !ends(t); t = lx.next()) {
    if (t !== WORD) {
      prev = false
      continue
    }
    if (!write && writesInQuery(lx, prev)) write = true
    prev = isLockPrefix(lx)
  }
  out.push(t === BAD ? 'unknown' : write ? 'write' : 'read')
  return t
}

/** EXPLAIN / DESCRIBE / MariaDB ANALYZE: only `ANALYZE` runs the statement it explains. */
function explain(lx: Lexer, out: StatementKind[], runs: boolean, otherwise: StatementKind): number {
  let write = false
  let t = lx.next()
  for (; !ends(t); t = lx.next()) {
    if (t !== WORD) continue
    if (lx.is('ANALYZE') || lx.is('ANALYSE')) runs = true
    else if (writesInQuery(lx, false) || lx.is('CREATE') || lx.is('EXECUTE')) write = true
  }
  out.push(t === BAD ? 'unknown' : runs && write ? 'write' : otherwise)
  return t
}

/** COMMIT / END / ROLLBACK / ABORT, with `AND [NO] CHAIN`, `TO SAVEPOINT` and PostgreSQL `PREPARED`. */
function finish(lx: Lexer, out: StatementKind[], kind: 'commit' | 'rollback'): number {
  let chain = false
  let no = false
  let result: StatementKind = kind
  let t = lx.next()
  for (; !ends(t); t = lx.next()) {
    if (t !== WORD) continue
    if (lx.is('TO'))
      result = 'session' // ROLLBACK TO SAVEPOINT: the transaction goes on
    else if (lx.is('PREPARED'))
      result = 'write' // COMMIT|ROLLBACK PREPARED 'gid' (two-phase commit)
    else if (lx.is('NO')) no = true
    else if (lx.is('CHAIN')) chain = !no
  }
  if (t === BAD) result = 'unknown'
  out.push(result)
  if (chain && result === kind) out.push('begin')
  return t
}

/** BEGIN: a transaction, or a MariaDB `BEGIN NOT ATOMIC ... END` block (which runs statements). */
function begin(lx: Lexer, out: StatementKind[], my: boolean): number {
  let block = false
  let t = lx.next()
  for (; !ends(t); t = lx.next()) {
    if (t === WORD && ((my && lx.is('ATOMIC')) || writesInQuery(lx, false))) block = true
  }
  out.push(t === BAD ? 'unknown' : block ? 'write' : 'begin')
  return t
}

/** SET: session settings, except `autocommit`, which opens or ends transactions. */
function set(lx: Lexer, out: StatementKind[], why: string[]): number {
  let autocommit: StatementKind | undefined
  let write = false
  let prev = false
  let t = lx.next()
  for (; !ends(t); t = lx.next()) {
    if (t !== WORD) {
      prev = false
      continue
    }
    // `@autocommit` is a user variable; `@@autocommit`, `@@session.autocommit` the setting.
    const s = lx.s
    if (lx.is('AUTOCOMMIT') && !(s.charCodeAt(lx.ws - 1) === 64 && s.charCodeAt(lx.ws - 2) !== 64)) {
      t = lx.next()
      while (t === OTHER || (t === WORD && lx.is('TO'))) t = lx.next() // `=`, `:=`, `TO`
      const value = t === WORD ? lx.word() : ''
      if (value === '1' || value === 'ON' || value === 'TRUE' || value === 'DEFAULT')
        autocommit = 'autocommit-on'
      else if (value === '0' || value === 'OFF' || value === 'FALSE') autocommit = 'autocommit-off'
      else {
        autocommit = 'unknown'
        why.push('SET autocommit to a value that is not a constant')
      }
      if (ends(t)) break
      continue
    }
    if (!write && writesInQuery(lx, prev)) write = true
    prev = isLockPrefix(lx)
  }
  if (t === BAD) out.push('unknown')
  else {
    if (autocommit !== undefined) out.push(autocommit)
    if (write || autocommit === undefined) out.push(write ? 'write' : 'session')
  }
  return t
}

/** The kind of a statement that is decided by its verb alone. */
const BY_VERB = new Map<string, StatementKind>([
  ...(
    [
      'INSERT',
      'UPDATE',
      'DELETE',
      'REPLACE',
      'MERGE',
      'UPSERT',
      'TRUNCATE',
      'CREATE',
      'ALTER',
      'DROP',
      'RENAME',
      'COMMENT',
      'GRANT',
      'REVOKE',
      'LOCK',
      'VACUUM',
      'REINDEX',
      'CLUSTER',
      'REFRESH',
      'IMPORT',
      'OPTIMIZE',
      'REPAIR',
      'SECURITY',
      'REASSIGN',
      'DO', // PostgreSQL DO blocks, MySQL DO expr: either may change data
      'EXECUTE', // a prepared statement this text does not show
      'FLUSH',
      'INSTALL',
      'UNINSTALL',
      'PURGE',
      'SHUTDOWN',
    ] as const
  ).map((v) => [v, 'write'] as const),
  ...(['SHOW', 'HANDLER', 'CHECK', 'CHECKSUM', 'HELP'] as const).map((v) => [v, 'read'] as const),
  ...(
    [
      'USE',
      'PRAGMA',
      'DEALLOCATE',
      'DISCARD',
      'RESET',
      'LISTEN',
      'UNLISTEN',
      'NOTIFY',
      'FETCH',
      'MOVE',
      'CLOSE',
      'CHECKPOINT',
      'UNLOCK',
      'KILL',
      'ATTACH',
      'DETACH',
      'SAVEPOINT',
      'RELEASE',
    ] as const
  ).map((v) => [v, 'session'] as const),
  ['CALL', 'call'],
])

/** Records `kind` for a statement whose deciding token was just read, and consumes the rest of it. */
function rest(lx: Lexer, out: StatementKind[], kind: StatementKind, t = skip(lx)): number {
  if (!ends(t)) t = skip(lx)
  out.push(t === BAD ? 'unknown' : kind)
  return t
}

/** Classifies the statement whose first token `first` was just read; returns the token that ended it. */
function statement(lx: Lexer, first: number, dialect: Dialect, out: StatementKind[], why: string[]): number {
  if (first === OPEN) return query(lx, out)
  if (first !== WORD) {
    why.push(`a statement starting with ${JSON.stringify(lx.s[lx.i - 1] ?? '')}`)
    return rest(lx, out, 'unknown')
  }
  const verb = lx.word()
  const kind = BY_VERB.get(verb)
  if (kind !== undefined) return rest(lx, out, kind)
  switch (verb) {
    case 'SELECT':
    case 'WITH':
    case 'VALUES':
    case 'TABLE':
    case 'DECLARE': // DECLARE c CURSOR FOR SELECT ... [FOR UPDATE]
      return query(lx, out)
    case 'EXPLAIN':
    case 'DESCRIBE':
    case 'DESC':
      return explain(lx, out, false, 'read')
    case 'ANALYZE': // statistics, or MariaDB's ANALYZE <statement>, which runs it
    case 'ANALYSE':
      return explain(lx, out, dialect === 'mysql', 'session')
    case 'BEGIN':
      return begin(lx, out, dialect === 'mysql')
    case 'START': {
      const t = lx.next()
      if (t === WORD && lx.is('TRANSACTION')) return rest(lx, out, 'begin')
      why.push('START without TRANSACTION')
      return rest(lx, out, 'unknown', t)
    }
    case 'COMMIT':
      return finish(lx, out, 'commit')
    case 'END': // PostgreSQL and SQLite: COMMIT. MySQL: the end of a compound block (which may write).
      return dialect === 'mysql' ? rest(lx, out, 'write') : finish(lx, out, 'commit')
    case 'ROLLBACK':
      return finish(lx, out, 'rollback')
    case 'ABORT':
      if (dialect === 'postgres') return finish(lx, out, 'rollback')
      break
    case 'SET':
      return set(lx, out, why)
    case 'PREPARE': {
      // PREPARE TRANSACTION 'gid' hands the transaction to two-phase commit: this session's part ends.
      const t = lx.next()
      return rest(lx, out, t === WORD && lx.is('TRANSACTION') ? 'commit' : 'session', t)
    }
    case 'XA': {
      const t = lx.next()
      const op = t === WORD ? lx.word() : ''
      const xa = XA.get(op)
      if (xa === undefined) why.push('XA without a known operation')
      return rest(lx, out, xa ?? 'unknown', t)
    }
    case 'LOAD': {
      // MySQL LOAD DATA|XML writes rows; PostgreSQL LOAD 'library' does not.
      const t = lx.next()
      return rest(lx, out, t === WORD && (lx.is('DATA') || lx.is('XML')) ? 'write' : 'session', t)
    }
    case 'COPY': {
      // COPY t FROM ... writes; COPY t TO ... reads; COPY (query) TO ... is what the query is.
      let t = lx.next()
      if (t === OPEN) return query(lx, out)
      let from = false
      for (; !ends(t); t = lx.next()) if (t === WORD && lx.is('FROM')) from = true
      return rest(lx, out, from ? 'write' : 'read', t)
    }
  }
  why.push(verb === '' ? 'an unknown statement' : `an unknown statement ${verb}`)
  return rest(lx, out, 'unknown')
}

const XA = new Map<string, StatementKind>([
  ['START', 'begin'],
  ['BEGIN', 'begin'],
  ['COMMIT', 'commit'],
  ['ROLLBACK', 'rollback'],
  ['END', 'session'],
  ['PREPARE', 'session'],
  ['RECOVER', 'read'],
])

interface Pass {
  readonly statements: StatementKind[]
  readonly unknown: string | undefined
  readonly backslash: boolean
}

function pass(sql: string, dialect: Dialect, esc: Escapes): Pass {
  const lx = new Lexer(sql, dialect, esc)
  const statements: StatementKind[] = []
  const why: string[] = []
  for (;;) {
    const t = lx.next()
    if (t === END) break
    if (t === SEMI) continue
    if (t === BAD) {
      statements.push('unknown')
      break
    }
    if (statement(lx, t, dialect, statements, why) === BAD) break
  }
  const unknown =
    lx.bad ?? why[0] ?? (statements.includes('unknown') ? 'an unclassifiable statement' : undefined)
  return { statements, unknown, backslash: lx.backslash }
}

// Default escapes of each dialect, then the other server settings a backslash makes matter.
const MYSQL: Escapes = { single: true, double: true }
const MYSQL_ANSI_QUOTES: Escapes = { single: true, double: false }
const STANDARD: Escapes = { single: false, double: false }
const PG_LEGACY_STRINGS: Escapes = { single: true, double: false }

const WRITES: ReadonlySet<StatementKind> = new Set(['write', 'unknown'])
const CONTROL: ReadonlySet<StatementKind> = new Set([
  'begin',
  'commit',
  'rollback',
  'autocommit-on',
  'autocommit-off',
])

function make(statements: readonly StatementKind[], unknown: string | undefined): Classification {
  return Object.freeze({
    statements: Object.freeze(statements.slice()),
    write: statements.some((k) => WRITES.has(k)),
    call: statements.includes('call'),
    read: statements.includes('read'),
    control: statements.some((k) => CONTROL.has(k)),
    unknown,
  })
}

/** One shared classification per single statement kind: most texts are one plain statement. */
const SINGLE = new Map<StatementKind, Classification>(
  (
    [
      'read',
      'write',
      'call',
      'session',
      'begin',
      'commit',
      'rollback',
      'autocommit-on',
      'autocommit-off',
    ] as const
  ).map((k) => [k, make([k], undefined)]),
)
const EMPTY = make([], undefined)

/** Classifies `sql` without the cache (the cost the cache saves; used by the benchmark). */
export function classifyUncached(sql: string, dialect: Dialect): Classification {
  const first = pass(sql, dialect, dialect === 'mysql' ? MYSQL : STANDARD)
  let statements = first.statements
  let unknown = first.unknown
  if (first.backslash && dialect !== 'sqlite') {
    // Whether a backslash escapes depends on server settings (MySQL ANSI_QUOTES, PostgreSQL
    // standard_conforming_strings): lex under the other setting too and keep the stricter answer, so no
    // setting can hide a write inside what looked like a string.
    const other = pass(sql, dialect, dialect === 'mysql' ? MYSQL_ANSI_QUOTES : PG_LEGACY_STRINGS)
    const writes = (p: Pass) => p.statements.some((k) => WRITES.has(k))
    if (writes(other) && !writes(first)) {
      unknown ??= other.unknown ?? 'a write hidden by backslash escapes under another server setting'
      statements = [...statements, 'unknown']
    }
  }
  if (unknown === undefined) {
    if (statements.length === 0) return EMPTY
    if (statements.length === 1) return SINGLE.get(statements[0]!) ?? make(statements, unknown)
  }
  return make(statements, unknown)
}

/** Texts longer than this are classified but not cached: they are usually built per call (bulk inserts). */
const MAX_CACHED_TEXT = 4096
/** Cached texts per dialect; the oldest is dropped beyond this (apps use far fewer distinct statements). */
const MAX_CACHED = 2048

const caches: Record<Dialect, Map<string, Classification>> = {
  mysql: new Map(),
  postgres: new Map(),
  sqlite: new Map(),
}

/**
 * Classifies a statement text (one or more statements) in `dialect`. Never throws: what it cannot
 * classify is `unknown` (a write). Results are cached per text.
 * @example
 * classify('SELECT * FROM orders WHERE id = ? FOR UPDATE', 'mysql').write // true
 */
export function classify(sql: string, dialect: Dialect): Classification {
  const cache = caches[dialect]
  let c = cache.get(sql)
  if (c === undefined) {
    c = classifyUncached(sql, dialect)
    if (sql.length <= MAX_CACHED_TEXT) {
      // Insertion order makes the first key the oldest: a FIFO bound, cheaper than true LRU bookkeeping
      // on every hit, and enough for a working set that fits.
      if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value!)
      cache.set(sql, c)
    }
  }
  return c
}
