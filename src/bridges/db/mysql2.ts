/**
 * The write guard for mysql2 (MySQL, MariaDB): Pool, Connection and PoolConnection, with the callback API
 * and the promise API (`mysql2/promise`, or `.promise()`), `query`, `execute` and prepared statements.
 *
 * Refusals arrive where mysql2 delivers errors: to the callback, as a rejection, or (a command without a
 * callback) as an `error` event on the returned command. Each statement is checked when it is called, in
 * the caller's route context, and callbacks run in that context too: mysql2 calls them from its socket,
 * whose context is that of whoever opened the connection (another request, for a pooled one).
 */
import { EventEmitter } from 'node:events'
import type { Connection, Pool, PoolConnection } from 'mysql2'
import type {
  Connection as PromiseConnection,
  Pool as PromisePool,
  PoolConnection as PromisePoolConnection,
} from 'mysql2/promise'
import { bindRoute } from '../../context/index.js'
import { InvalidArgumentError } from '../../errors/index.js'
import {
  type DbGuardOptions,
  type Done,
  GuardCore,
  guardProxy,
  refuseGuarded,
  type Session,
} from './guard.js'

/** The mysql2 objects `guardMysql2` accepts. */
export type Mysql2Guardable =
  | Pool
  | Connection
  | PoolConnection
  | PromisePool
  | PromiseConnection
  | PromisePoolConnection

type Callback = (err: unknown, ...results: unknown[]) => void
type Method = (...args: unknown[]) => unknown
type Driver = Record<string, unknown>

const isObject = (v: unknown): v is Driver => typeof v === 'object' && v !== null
const isFn = (v: unknown): v is Method => typeof v === 'function'

/** The callback pool (`mysql2.createPool`); a PoolCluster is not one (it has no connection config). */
function isCorePool(v: unknown): v is Driver {
  return (
    isObject(v) &&
    isFn(v.getConnection) &&
    isFn(v.releaseConnection) &&
    isObject(v.config) &&
    isObject(v.config.connectionConfig)
  )
}

/** A callback connection (`mysql2.createConnection`, or one a pool handed out). */
function isCoreConnection(v: unknown): v is Driver {
  return isObject(v) && isFn(v.addCommand) && isFn(v.query) && isFn(v.execute)
}

/** True when `v` is a mysql2 object `guardMysql2` accepts. */
export function isMysql2(v: unknown): boolean {
  return (
    isCorePool(v) ||
    isCoreConnection(v) ||
    (isObject(v) && (isCorePool(v.pool) || isCoreConnection(v.connection)))
  )
}

/**
 * Guards a mysql2 pool or connection: the returned object is the same driver object (same class, same
 * methods), with every statement checked by `options.agent` before it is sent.
 * @example
 * const pool = guardMysql2(mysql.createPool(config).promise(), { agent, scope: 'unit' })
 * await runWithRoute({ routeId: '42' }, () => pool.execute('UPDATE orders SET paid = 1 WHERE user_id = ?', [42]))
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) for bad options, an object that is not a mysql2
 *   pool or connection (a PoolCluster is not supported: guard each pool), or one already guarded.
 */
export function guardMysql2<T extends Mysql2Guardable>(db: T, options: DbGuardOptions): T {
  return guardWith(new GuardCore(options, 'mysql'), db as unknown) as T
}

function guardWith(core: GuardCore, db: unknown): unknown {
  refuseGuarded(db, 'mysql2 object')
  if (isCorePool(db)) return guardPool(core, db, true)
  if (isCoreConnection(db)) return guardConnection(core, db, true)
  if (isObject(db) && isCorePool(db.pool)) {
    refuseGuarded(db.pool, 'mysql2 pool')
    return guardPromise(core, db, { pool: guardPool(core, db.pool, false) })
  }
  if (isObject(db) && isCoreConnection(db.connection)) {
    refuseGuarded(db.connection, 'mysql2 connection')
    return guardPromise(core, db, { connection: guardConnection(core, db.connection, false) })
  }
  throw new InvalidArgumentError(
    'guardMysql2 needs a mysql2 Pool or Connection (callback or promise API); ' +
      `got ${describe(db)}. For a PoolCluster, guard each pool.`,
  )
}

function describe(v: unknown): string {
  if (!isObject(v)) return typeof v
  return v.constructor?.name ? `a ${v.constructor.name}` : 'an object'
}

/** The statement text of a `query`/`execute` argument: a string, or an options object or command. */
function textOf(sql: unknown): unknown {
  return isObject(sql) && typeof sql.sql === 'string' ? sql.sql : sql
}

/**
 * A promise-API object (PromisePool, PromiseConnection): its methods run unchanged, with `this` the proxy,
 * so they reach the callback object through `pool` / `connection`, which the proxy replaces with a guarded
 * one. Refusals then travel mysql2's own path: callback error, promise rejection. That inner object does
 * not bind callbacks to the route context: they only settle promises, whose awaiters keep their context.
 */
function guardPromise(
  core: GuardCore,
  promise: Driver,
  inner: { pool?: unknown; connection?: unknown },
): unknown {
  return core.proxy(promise, (p) => guardProxy(p, inner, { bindMethods: false }))
}

/**
 * Sends one statement through `invoke`. `check` decides it first; a refusal goes where mysql2 sends
 * errors (see `refused`). `done` runs when the statement completes, before the caller's callback.
 */
function send(
  check: () => Done | undefined,
  cb: unknown,
  invoke: (cb: Callback | undefined) => unknown,
  bind: boolean,
): unknown {
  const callback = isFn(cb) ? (cb as Callback) : undefined
  let done: Done | undefined
  try {
    done = check()
  } catch (err) {
    return refused(err, callback)
  }
  let wrapped = callback === undefined || done === undefined ? callback : after(done, callback)
  if (bind && wrapped !== undefined) wrapped = bindRoute(wrapped)
  let command: unknown
  try {
    command = invoke(wrapped)
  } catch (err) {
    done?.()
    throw err
  }
  if (done !== undefined && callback === undefined) {
    // No callback: the command is an emitter that always ends with `end` (after `error`, too).
    if (isObject(command) && isFn(command.once)) command.once('end', done)
    else done()
  }
  return command
}

/** `callback`, after `done`. (A factory: an arrow assigned to a name would be renamed on every call.) */
function after(done: Done, callback: Callback): Callback {
  return (err, ...results) => {
    done()
    callback(err, ...results)
  }
}

/** A refused statement's stand-in for mysql2's command: the error reaches the callback, or is emitted. */
function refused(err: unknown, callback: Callback | undefined): EventEmitter {
  const command = new EventEmitter()
  process.nextTick(() => {
    if (callback !== undefined) callback(err)
    else command.emit('error', err)
    command.emit('end')
  })
  return command
}

/** A `query` or `execute` method, `(sql, values?, callback?)`, whose statements `check` decides first. */
function statementMethod(
  target: Driver,
  name: 'query' | 'execute',
  check: (sql: unknown) => () => Done | undefined,
  bind: boolean,
): Method {
  const method = target[name] as Method
  return (sql: unknown, values?: unknown, cb?: unknown): unknown =>
    isFn(values)
      ? send(check(textOf(sql)), values, (w) => method.call(target, sql, w), bind)
      : send(check(textOf(sql)), cb, (w) => method.call(target, sql, values, w), bind)
}

/** A guarded pool; `bind`: callbacks run in the caller's route context (false: for mysql2's promise layer). */
function guardPool(core: GuardCore, raw: Driver, bind: boolean): unknown {
  return core.proxy(
    raw,
    (pool) => {
      // The pool's own query/execute take a connection and give it back: one statement, no transaction.
      const check = (sql: unknown) => () => core.oneShot(sql)
      const members = {
        query: statementMethod(pool, 'query', check, bind),
        execute: statementMethod(pool, 'execute', check, bind),
        getConnection(cb?: unknown): unknown {
          const get = pool.getConnection as Method
          if (!isFn(cb)) return get.call(pool, cb)
          const give = (err: unknown, conn: unknown) =>
            (cb as Callback)(err, isCoreConnection(conn) ? guardConnection(core, conn, bind) : conn)
          // Bound: a queued request gets its connection from whoever releases one, in that one's context.
          return get.call(pool, bind ? bindRoute(give) : give)
        },
        promise(impl?: unknown): unknown {
          const inner = guardPool(core, pool, false)
          return guardPromise(core, (pool.promise as Method).call(pool, impl) as Driver, { pool: inner })
        },
      }
      return guardProxy(pool, members)
    },
    bind ? 0 : 1,
  )
}

/** A guarded connection; `bind` as for `guardPool`. Both flavors share the connection's session. */
function guardConnection(core: GuardCore, raw: Driver, bind: boolean): unknown {
  refuseGuarded(raw, 'mysql2 connection')
  return core.proxy(
    raw,
    (conn) => {
      const session = core.session(conn)
      const check = (sql: unknown) => () => session.before(core.classify(sql))
      // A connection that closed took its transaction with it.
      if (isFn(conn.once)) conn.once('end', () => session.release())
      const call = (name: string, ...args: unknown[]) => (conn[name] as Method).apply(conn, args)
      const members: Record<string, unknown> = {
        query: statementMethod(conn, 'query', check, bind),
        execute: statementMethod(conn, 'execute', check, bind),
        prepare(options: unknown, cb?: unknown): unknown {
          if (!isFn(cb)) {
            // Without a callback the statement comes out of an event we cannot wrap: it would run unguarded.
            throw new InvalidArgumentError('a guarded mysql2 connection needs a callback for prepare()')
          }
          const give = (err: unknown, statement: unknown) =>
            (cb as Callback)(
              err,
              isObject(statement) ? guardStatement(session, core, statement, bind) : statement,
            )
          return call('prepare', options, bind ? bindRoute(give) : give)
        },
        beginTransaction: (cb?: unknown) =>
          send(check('START TRANSACTION'), cb, (w) => call('beginTransaction', w), bind),
        commit: (cb?: unknown) => send(check('COMMIT'), cb, (w) => call('commit', w), bind),
        rollback: (cb?: unknown) => send(check('ROLLBACK'), cb, (w) => call('rollback', w), bind),
        end(...args: unknown[]): unknown {
          session.release()
          return call('end', ...args)
        },
        destroy(...args: unknown[]): unknown {
          session.release()
          return call('destroy', ...args)
        },
        // COM_RESET_CONNECTION rolls back the transaction and restores autocommit.
        reset(...args: unknown[]): unknown {
          session.release()
          return call('reset', ...args)
        },
        promise(impl?: unknown): unknown {
          const inner = guardConnection(core, conn, false)
          return guardPromise(core, call('promise', impl) as Driver, { connection: inner })
        },
      }
      if (isFn(conn.release)) {
        members.release = (...args: unknown[]): unknown => {
          session.release()
          return call('release', ...args)
        }
      }
      return guardProxy(conn, members)
    },
    bind ? 0 : 1,
  )
}

/** A prepared statement (`connection.prepare`): its `execute` runs on the connection's session. */
function guardStatement(session: Session, core: GuardCore, statement: Driver, bind: boolean): unknown {
  const c = core.classify(statement.query)
  const execute = statement.execute as Method
  return guardProxy(statement, {
    execute(parameters?: unknown, cb?: unknown): unknown {
      return isFn(parameters)
        ? send(
            () => session.before(c),
            parameters,
            (w) => execute.call(statement, w),
            bind,
          )
        : send(
            () => session.before(c),
            cb,
            (w) => execute.call(statement, parameters, w),
            bind,
          )
    },
  })
}
