/**
 * The write guard for pg (node-postgres): Client, Pool and the clients a pool hands out.
 *
 * Refusals arrive where pg delivers errors: to the callback, as a rejection, or (a submittable such as
 * pg-cursor or pg-query-stream) through its `handleError`. Each statement is checked when it is called, in
 * the caller's route context; callbacks run in that context too (pg calls them from its socket).
 */
import type { Client, Pool, PoolClient } from 'pg'
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

/** The pg objects `guardPg` accepts. */
export type PgGuardable = Client | Pool | PoolClient

type Callback = (err: unknown, ...results: unknown[]) => void
type Method = (...args: unknown[]) => unknown
type Driver = Record<string, unknown>

const isObject = (v: unknown): v is Driver => typeof v === 'object' && v !== null
const isFn = (v: unknown): v is Method => typeof v === 'function'

function isPool(v: unknown): v is Driver {
  return isObject(v) && isFn(v.connect) && isFn(v.query) && 'idleCount' in v && 'totalCount' in v
}

function isClient(v: unknown): v is Driver {
  return isObject(v) && isFn(v.connect) && isFn(v.query) && isObject(v.connectionParameters)
}

/** True when `v` is a pg object `guardPg` accepts. */
export function isPg(v: unknown): boolean {
  return isPool(v) || isClient(v)
}

/**
 * Guards a pg pool or client: the returned object is the same driver object (same class, same methods),
 * with every statement checked by `options.agent` before it is sent.
 * @example
 * const pool = guardPg(new pg.Pool(config), { agent, scope: 'unit' })
 * await runWithRoute({ routeId: '42' }, () => pool.query('UPDATE orders SET paid = true WHERE user_id = $1', [42]))
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) for bad options, an object that is not a pg
 *   pool or client, or one already guarded.
 */
export function guardPg<T extends PgGuardable>(db: T, options: DbGuardOptions): T {
  const core = new GuardCore(options, 'postgres')
  refuseGuarded(db, 'pg object')
  if (isPool(db)) return guardPool(core, db) as T
  if (isClient(db)) return guardClient(core, db) as T
  throw new InvalidArgumentError(`guardPg needs a pg Pool or Client; got ${typeof db}`)
}

/** The text of a query argument: a string, or a config object's / submittable's `text`. */
function textOf(config: unknown): unknown {
  return isObject(config) && typeof config.text === 'string' ? config.text : config
}

/** The callback of a `query(config, values, callback)` call, in pg's order of precedence. */
function callbackOf(config: unknown, values: unknown, callback: unknown): Callback | undefined {
  if (isFn(values)) return values as Callback
  if (isFn(callback)) return callback as Callback
  if (isObject(config) && isFn(config.callback)) return config.callback as Callback
  return undefined
}

/**
 * Runs one `query`: `check` decides it first; `run(values, callback)` calls the driver. With a callback, the
 * result goes to it (in the caller's context) after `done`; without, `done` follows the returned promise.
 */
function send(
  check: () => Done | undefined,
  config: unknown,
  values: unknown,
  callback: unknown,
  run: (config: unknown, values: unknown, callback?: Callback) => unknown,
): unknown {
  const cb = callbackOf(config, values, callback)
  let done: Done | undefined
  try {
    done = check()
  } catch (err) {
    if (cb === undefined) return Promise.reject(err)
    process.nextTick(cb, err)
    return undefined
  }
  if (cb !== undefined) {
    const wrapped = bindRoute(
      done === undefined
        ? cb
        : (err: unknown, ...results: unknown[]) => {
            done()
            cb(err, ...results)
          },
    )
    if (isFn(values)) return run(config, wrapped)
    if (isFn(callback)) return run(config, values, wrapped)
    // The callback came in config.callback: pass a copy holding ours (pg would write into the caller's).
    return run({ ...(config as Driver), callback: wrapped }, values)
  }
  let result: unknown
  try {
    result = run(config, values)
  } catch (err) {
    done?.()
    throw err
  }
  if (done !== undefined) {
    if (isObject(result) && isFn(result.then)) result.then(done, done)
    else done()
  }
  return result
}

/** A submittable (pg-cursor, pg-query-stream): refused through `handleError`, tracked to ReadyForQuery. */
function submit(session: Session, core: GuardCore, query: Driver, run: () => unknown): unknown {
  let done: Done | undefined
  try {
    done = session.before(core.classify(textOf(query)))
  } catch (err) {
    const handleError = query.handleError
    process.nextTick(() => {
      if (isFn(handleError)) handleError.call(query, err)
    })
    return query
  }
  if (done !== undefined) {
    // pg calls handleReadyForQuery when the statement is over, and only handleError when it never ran.
    const end = done
    for (const name of ['handleReadyForQuery', 'handleError']) {
      const original = query[name]
      query[name] = function (this: unknown, ...args: unknown[]) {
        end()
        return isFn(original) ? original.apply(this, args) : undefined
      }
    }
  }
  try {
    return run()
  } catch (err) {
    done?.()
    throw err
  }
}

function guardClient(core: GuardCore, raw: Driver): unknown {
  refuseGuarded(raw, 'pg client')
  return core.proxy(raw, (client) => {
    const session = core.session(client)
    // A client that ended took its transaction with it.
    if (isFn(client.once)) client.once('end', () => session.release())
    const query = client.query as Method
    const members: Record<string, unknown> = {
      query(config: unknown, values?: unknown, callback?: unknown): unknown {
        // pg throws a TypeError for a missing query: leave that to it.
        if (config == null) return query.call(client, config, values, callback)
        if (isObject(config) && isFn(config.submit)) {
          return submit(session, core, config, () => query.call(client, config, values, callback))
        }
        return send(
          () => session.before(core.classify(textOf(config))),
          config,
          values,
          callback,
          (...args) => query.apply(client, args),
        )
      },
      end(...args: unknown[]): unknown {
        session.release()
        return (client.end as Method).apply(client, args)
      },
    }
    if (isFn(client.release)) {
      // A pool's client: `release` is set on each checkout, so it is read when called.
      members.release = (...args: unknown[]): unknown => {
        session.release()
        return (client.release as Method).apply(client, args)
      }
    }
    return guardProxy(client, members)
  })
}

function guardPool(core: GuardCore, raw: Driver): unknown {
  return core.proxy(raw, (pool) => {
    // The pool's own query takes a client and gives it back: one statement, no transaction.
    const query = pool.query as Method
    const connect = pool.connect as Method
    const members = {
      query(config: unknown, values?: unknown, callback?: unknown): unknown {
        if (config == null || isFn(config)) return query.call(pool, config, values, callback)
        return send(
          () => core.oneShot(textOf(config)),
          config,
          values,
          callback,
          (...args) => query.apply(pool, args),
        )
      },
      connect(cb?: unknown): unknown {
        const guard = (client: unknown) => (isClient(client) ? (guardClient(core, client) as Driver) : client)
        if (!isFn(cb)) return (connect.call(pool) as Promise<unknown>).then(guard)
        // Bound: a waiting caller gets its client from whoever releases one, in that one's context.
        return connect.call(
          pool,
          bindRoute((err: unknown, client: unknown, release: unknown) => {
            const guarded = guard(client)
            const done = isFn(release) && isObject(guarded) ? (guarded.release as Method) : release
            ;(cb as Callback)(err, guarded, done)
          }),
        )
      },
    }
    return guardProxy(pool, members)
  })
}
