/**
 * The write guard for better-sqlite3: `prepare` (run, get, all, iterate), `exec` and `transaction`.
 *
 * better-sqlite3 is synchronous, so a refusal is thrown by the call that would have run the statement.
 * Statements are classified once, when prepared, and checked each time they run, in the route context of
 * that moment (apps prepare at start-up and run per request). The database reports whether a transaction
 * is open (`inTransaction`), and the guard follows it: `transaction()` functions included.
 */
import type BetterSqlite3 from 'better-sqlite3'
import { InvalidArgumentError } from '../../errors/index.js'
import type { Classification } from './classify.js'
import { type DbGuardOptions, GuardCore, guardProxy, refuseGuarded } from './guard.js'

type Method = (...args: unknown[]) => unknown
type Driver = Record<string, unknown>

const isObject = (v: unknown): v is Driver => typeof v === 'object' && v !== null
const isFn = (v: unknown): v is Method => typeof v === 'function'

/** True when `v` is a better-sqlite3 Database. */
export function isSqlite(v: unknown): boolean {
  return isObject(v) && isFn(v.prepare) && isFn(v.exec) && isFn(v.transaction) && 'inTransaction' in v
}

/**
 * Guards a better-sqlite3 database: the returned object is the same Database (same class, same methods),
 * and every statement it prepares or executes is checked by `options.agent` when it runs.
 * @example
 * const db = guardSqlite(new Database('shop.db'), { agent, scope: 'unit' })
 * const pay = db.prepare('UPDATE orders SET paid = 1 WHERE user_id = ?')
 * runWithRoute({ routeId: '42' }, () => pay.run(42))
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) for bad options, an object that is not a
 *   better-sqlite3 Database, or one already guarded.
 */
export function guardSqlite<T extends BetterSqlite3.Database>(db: T, options: DbGuardOptions): T {
  const core = new GuardCore(options, 'sqlite')
  refuseGuarded(db, 'better-sqlite3 database')
  if (!isSqlite(db))
    throw new InvalidArgumentError(`guardSqlite needs a better-sqlite3 Database; got ${typeof db}`)
  return guardDatabase(core, db as unknown as Driver) as T
}

function guardDatabase(core: GuardCore, db: Driver): unknown {
  const session = core.session(db)
  const inTransaction = () => db.inTransaction === true

  /** Runs a statement now: checked first (a refusal throws), its write tracked until the transaction ends. */
  function run<R>(c: Classification, invoke: () => R): R {
    session.sync(inTransaction())
    const done = session.before(c)
    try {
      return invoke()
    } finally {
      done?.()
      session.sync(inTransaction())
    }
  }

  function guardStatement(statement: Driver): unknown {
    const c = core.classify(statement.source)
    const call = (name: string, args: unknown[]) => (statement[name] as Method).apply(statement, args)
    return guardProxy(
      statement,
      {
        run: (...args: unknown[]) => run(c, () => call('run', args)),
        get: (...args: unknown[]) => run(c, () => call('get', args)),
        all: (...args: unknown[]) => run(c, () => call('all', args)),
        iterate(...args: unknown[]): unknown {
          session.sync(inTransaction())
          const done = session.before(c)
          let rows: Iterator<unknown>
          try {
            rows = call('iterate', args) as Iterator<unknown>
          } catch (err) {
            done?.()
            session.sync(inTransaction())
            throw err
          }
          // The statement runs while it is iterated: it is over when the iterator is done or closed.
          return tracked(rows, () => {
            done?.()
            session.sync(inTransaction())
          })
        },
        // A frozen own property of the statement: only a shell proxy may answer it with the guarded database.
        database: proxy,
      },
      { shell: true },
    )
  }

  /** A `transaction()` function (and its deferred/immediate/exclusive forms) that settles the state after. */
  function guardTransaction(fn: unknown): unknown {
    const original = (db.transaction as Method).call(db, fn) as Method & Record<string, Method>
    const settle = (f: Method): Method =>
      function guardedTransaction(this: unknown, ...args: unknown[]): unknown {
        try {
          return f.apply(this, args)
        } finally {
          session.sync(inTransaction())
        }
      }
    const forms = Object.fromEntries(
      ['default', 'deferred', 'immediate', 'exclusive'].map((k) => [k, settle(original[k]!)]),
    )
    const properties: PropertyDescriptorMap = { database: { value: proxy, enumerable: true } }
    for (const [k, f] of Object.entries(forms)) properties[k] = { value: f }
    for (const f of Object.values(forms)) Object.defineProperties(f, properties)
    return forms.default
  }

  const members = {
    prepare: (...args: unknown[]) => guardStatement((db.prepare as Method).apply(db, args) as Driver),
    exec(sql: unknown): unknown {
      run(core.classify(sql), () => (db.exec as Method).call(db, sql))
      return proxy
    },
    transaction: guardTransaction,
    close(...args: unknown[]): unknown {
      session.release()
      ;(db.close as Method).apply(db, args)
      return proxy
    },
  }
  const proxy = guardProxy(db, members)
  return proxy
}

/** `rows`, calling `done` once when the iteration ends: exhausted, closed early, or failed. */
function tracked<T>(rows: Iterator<T>, done: () => void): IterableIterator<T> {
  let open = true
  const finish = () => {
    if (open) {
      open = false
      done()
    }
  }
  return {
    next(): IteratorResult<T> {
      try {
        const r = rows.next()
        if (r.done) finish()
        return r
      } catch (err) {
        finish()
        throw err
      }
    },
    return(value?: unknown): IteratorResult<T> {
      try {
        return rows.return ? rows.return(value) : { done: true, value: undefined }
      } finally {
        finish()
      }
    },
    [Symbol.iterator]() {
      return this
    },
  }
}
