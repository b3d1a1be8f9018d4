/**
 * The shared core of the database write guards (DESIGN §3, "DB (guarded)"): it classifies each statement,
 * asks the agent whether a write may proceed here, and keeps each connection's transaction state, so a
 * write's in-flight handle is held from the transaction's first guarded write until its COMMIT or
 * ROLLBACK completes, or the connection is released. The control plane's drain step (DESIGN §4 step 3)
 * waits on those handles, so a handle must never end before the write it covers is durable or undone.
 *
 * The driver files (mysql2.ts, pg.ts, better-sqlite3.ts) only adapt this core to each driver's calling
 * conventions: callbacks, promises or synchronous throws.
 */
import type { RoutingAgent, WriteHandle, WriteScope } from '../../agent/index.js'
import { currentRouteId } from '../../context/index.js'
import {
  AppActiveError,
  FencedError,
  InvalidArgumentError,
  LeaseExpiredError,
  NoRouteIdError,
  NotCenterError,
  WrongUnitError,
} from '../../errors/index.js'
import { type Classification, classify, type Dialect } from './classify.js'

/** Where a guard reports statements it could not classify (a pino logger fits). */
export interface GuardLogger {
  warn(obj: object, msg: string): void
}

/** Options of every database guard. */
export interface DbGuardOptions {
  /** The agent whose rule set, lease and in-flight tracker decide. */
  readonly agent: RoutingAgent
  /**
   * `unit`: rows belong to route-id owners; a write needs a route id owned by this unit, not fenced.
   * `center`: the center's data; writes are accepted only in the center unit, for any route id.
   */
  readonly scope: WriteScope
  /** Check reads too (they need what a write needs, but are not tracked in flight). Default false. */
  readonly strict?: boolean
  /** Whether `CALL` is a write. Default true: a procedure may write. */
  readonly callIsWrite?: boolean
  /** Where the route id comes from. Default: the current route context (`currentRouteId`). */
  readonly routeId?: () => string | undefined
  /** Where unclassifiable statements are reported, once per shape. Default: the agent's logger. */
  readonly logger?: GuardLogger
}

/** Called when a statement completes (with a result or an error): ends the handles it must end. */
export type Done = () => void

/** Marks a guarded proxy, so an object is not guarded twice (each statement would be checked twice). */
export const kGuarded = Symbol.for('appactive.db.guarded')

/** How many statement shapes a guard remembers having logged. */
const MAX_LOGGED = 256

/** A classification for statement values that are not text (a driver object we cannot read). */
const NOT_TEXT: Classification = Object.freeze({
  statements: Object.freeze(['unknown'] as const),
  write: true,
  call: false,
  read: false,
  control: false,
  unknown: 'a statement that is not a string',
})

/** The compiled options of one guard, shared by the connections of the driver object it wraps. */
export class GuardCore {
  readonly dialect: Dialect
  readonly agent: RoutingAgent
  readonly scope: WriteScope
  readonly #strict: boolean
  readonly #callIsWrite: boolean
  readonly #routeId: () => string | undefined
  readonly #logger: GuardLogger
  readonly #logged = new Set<string>()
  readonly #sessions = new WeakMap<object, Session>()
  readonly #proxies = [new WeakMap<object, object>(), new WeakMap<object, object>()]
  #warnedRelease = false

  /** @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) on missing or malformed options. */
  constructor(options: DbGuardOptions, dialect: Dialect) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('a database guard needs options: { agent, scope }')
    }
    const { agent, scope } = options
    if (typeof agent?.beginWrite !== 'function') {
      throw new InvalidArgumentError('a database guard needs options.agent, a RoutingAgent (createAgent())')
    }
    if (scope !== 'unit' && scope !== 'center') {
      throw new InvalidArgumentError(
        `options.scope must be 'unit' or 'center', got ${JSON.stringify(scope)}`,
        {
          scope,
        },
      )
    }
    if (options.routeId !== undefined && typeof options.routeId !== 'function') {
      throw new InvalidArgumentError('options.routeId must be a function returning the route id')
    }
    this.dialect = dialect
    this.agent = agent
    this.scope = scope
    this.#strict = options.strict === true
    this.#callIsWrite = options.callIsWrite !== false
    this.#routeId = options.routeId ?? currentRouteId
    this.#logger = options.logger ?? agent.logger
  }

  /** The (cached) classification of a statement value; anything but a string is an unknown write. */
  classify(sql: unknown): Classification {
    return typeof sql === 'string' ? classify(sql, this.dialect) : NOT_TEXT
  }

  /**
   * Decides a statement: returns the in-flight handle of a write, undefined for a statement that may run
   * unchecked or passed a strict check.
   * @throws FencedError, WrongUnitError, NotCenterError, NoRouteIdError, LeaseExpiredError
   */
  admit(c: Classification): WriteHandle | undefined {
    if (c.unknown !== undefined) this.#logUnknown(c.unknown)
    const write = c.write || (c.call && this.#callIsWrite)
    if (!write && !(this.#strict && (c.read || c.call))) return undefined
    const routeId = this.#routeId()
    try {
      // Center data is not moved by cut-overs: its writes are tracked under no route id, so they never
      // hold up the drain of a fenced key.
      if (write) return this.agent.beginWrite(this.scope === 'center' ? undefined : routeId, this.scope)
      this.agent.checkWrite(routeId, this.scope)
      return undefined
    } catch (err) {
      throw explain(err, this.agent, routeId, this.scope)
    }
  }

  /** Checks a statement that runs outside any transaction (a pool's own query): a one-shot. */
  oneShot(sql: unknown): Done | undefined {
    const handle = this.admit(this.classify(sql))
    return handle === undefined ? undefined : handle.end.bind(handle)
  }

  /** The transaction state of a driver connection (one per connection object, kept across checkouts). */
  session(connection: object): Session {
    let s = this.#sessions.get(connection)
    if (s === undefined) {
      s = new Session(this)
      this.#sessions.set(connection, s)
    }
    return s
  }

  /**
   * The guarded proxy of `raw`, made once: a pool hands out the same connection objects again. `flavor`
   * keeps apart two proxies of one object that a driver adapter needs (mysql2: for callers, and for its
   * own promise layer).
   */
  proxy<T extends object>(raw: T, make: (raw: T) => T, flavor: 0 | 1 = 0): T {
    const proxies = this.#proxies[flavor]!
    let p = proxies.get(raw) as T | undefined
    if (p === undefined) {
      p = make(raw)
      proxies.set(raw, p)
    }
    return p
  }

  #logUnknown(shape: string): void {
    if (this.#logged.has(shape) || this.#logged.size >= MAX_LOGGED) return
    this.#logged.add(shape)
    this.#logger.warn(
      { shape, dialect: this.dialect },
      `appactive: could not classify ${shape}; it is guarded as a write`,
    )
  }

  /** @internal */
  warnReleaseInTransaction(): void {
    if (this.#warnedRelease) return
    this.#warnedRelease = true
    this.#logger.warn(
      { dialect: this.dialect },
      'appactive: a connection was released inside a transaction with guarded writes; ' +
        'their in-flight tracking ends at the release (commit or roll back before releasing)',
    )
  }
}

/**
 * One connection's transaction state. `before` runs before a statement is sent, in the order statements
 * are sent (drivers run a connection's statements in that order), and returns what to do when it completes.
 */
export class Session {
  readonly #core: GuardCore
  /** Handles of the open transaction's writes, one per route id; ended when it commits or rolls back. */
  #open: WriteHandle[] | undefined
  /** Inside BEGIN / START TRANSACTION ... COMMIT / ROLLBACK. */
  #explicit = false
  #autocommit = true

  constructor(core: GuardCore) {
    this.#core = core
  }

  /** True when the next statement runs inside a transaction (explicit, or with autocommit off). */
  get inTransaction(): boolean {
    return this.#explicit || !this.#autocommit
  }

  /**
   * Checks a statement about to be sent on this connection and updates the transaction state.
   * Returns what to call when it completes, or undefined when there is nothing to do then.
   * @throws the typed errors of `GuardCore.admit`; a refused statement changes no state.
   */
  before(c: Classification): Done | undefined {
    if (
      this.#open !== undefined &&
      (c.statements.includes('commit') || c.statements.includes('autocommit-on'))
    ) {
      // A transaction with guarded writes commits only under a live lease; refused, the app rolls back.
      try {
        this.#core.agent.assertLease()
      } catch (err) {
        throw explain(err, this.#core.agent, this.#open[0]?.routeId, this.#core.scope)
      }
    }
    const handle = this.#core.admit(c)
    if (handle === undefined && !c.control) return undefined
    let closing: WriteHandle[] | undefined
    // Whether this statement's write happened in a transaction still open after it.
    let held = false
    for (const kind of c.statements) {
      switch (kind) {
        case 'begin':
          this.#explicit = true
          break
        case 'autocommit-on':
        case 'commit':
        case 'rollback':
          // MySQL commits the open transaction when autocommit is switched on.
          if (kind === 'autocommit-on') this.#autocommit = true
          closing = join(closing, this.#open)
          this.#open = undefined
          this.#explicit = false
          held = false
          break
        case 'autocommit-off':
          this.#autocommit = false
          break
        case 'write':
        case 'unknown':
        case 'call':
          if (this.inTransaction) held = true
          break
      }
    }
    let oneShot: WriteHandle | undefined
    if (handle !== undefined) {
      // A transaction holds one handle per route id; a second write of the same id is covered by it.
      if (!held || this.#open?.some((h) => h.routeId === handle.routeId)) oneShot = handle
      else if (this.#open === undefined) this.#open = [handle]
      else this.#open.push(handle)
    }
    if (closing === undefined && oneShot === undefined) return undefined
    return () => {
      oneShot?.end()
      if (closing !== undefined) for (const h of closing) h.end()
    }
  }

  /**
   * The connection went back to its pool, was closed or reset: whatever transaction it had is no longer
   * this guard's to track (the server rolls it back on close; a pool that keeps it open is an app bug).
   */
  release(): void {
    const open = this.#open
    this.#open = undefined
    this.#explicit = false
    this.#autocommit = true
    if (open === undefined) return
    this.#core.warnReleaseInTransaction()
    for (const h of open) h.end()
  }

  /** For drivers that report their transaction state (better-sqlite3 `inTransaction`): adopt it. */
  sync(inTransaction: boolean): void {
    if (inTransaction) {
      this.#explicit = true
      return
    }
    this.#explicit = false
    const open = this.#open
    this.#open = undefined
    if (open !== undefined) for (const h of open) h.end()
  }
}

function join<T>(a: T[] | undefined, b: T[] | undefined): T[] | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return a.concat(b)
}

/**
 * The agent's refusal, re-issued with every fact a caller needs (DESIGN §3): route id, this unit, the
 * owner, the rule version and the scope. Errors that are not the agent's pass through unchanged.
 */
function explain(err: unknown, agent: RoutingAgent, routeId: string | undefined, scope: WriteScope): unknown {
  if (!(err instanceof AppActiveError)) return err
  const router = agent.router
  const unit = agent.identity.unit
  let owner: string | undefined
  if (scope === 'center') owner = router?.centerUnit
  else if (routeId && router !== undefined) owner = router.route(routeId).unit ?? undefined
  const facts: Record<string, unknown> = { routeId, unit, owner, version: agent.version, scope }
  for (const k of Object.keys(facts)) if (facts[k] === undefined) delete facts[k]
  switch (err.code) {
    case 'APPACTIVE_FENCED':
      return new FencedError(routeId ?? '', { ...err.details, ...facts })
    case 'APPACTIVE_WRONG_UNIT':
      return new WrongUnitError(routeId ?? '', owner ?? String(err.details.owner), unit, facts)
    case 'APPACTIVE_NOT_CENTER':
      return new NotCenterError(router?.centerUnit ?? String(err.details.center), unit, facts)
    case 'APPACTIVE_NO_ROUTE_ID':
      return new NoRouteIdError(
        routeId
          ? err.message
          : 'a guarded write to a unit-scope database needs a route id: run it inside runWithRoute() ' +
              'or pass options.routeId',
        { ...err.details, ...facts },
      )
    case 'APPACTIVE_LEASE_EXPIRED':
      return new LeaseExpiredError({ ...err.details, ...facts })
    default:
      return err
  }
}

/** The members a guarded proxy puts in front of the driver object's own. */
export type Members = Record<string | symbol, unknown>

/** How `guardProxy` reaches the driver object. */
export interface ProxyOptions {
  /** Run other methods with the target as `this` (default true); false: with the proxy. */
  readonly bindMethods?: boolean
  /**
   * Put the proxy over an empty object with the target's prototype, for targets whose frozen own
   * properties a member must replace (a Proxy must report a frozen property of its target as it is).
   */
  readonly shell?: boolean
}

/**
 * A Proxy over a driver object in which `members` replace the target's. By default every other method runs
 * with the target as `this`: native objects (better-sqlite3 statements) refuse a Proxy receiver, and the
 * driver's internal calls (a pool's `query` taking a connection) must not pass through the guard a second
 * time; a method returning the target (chaining) returns the proxy. `instanceof` and every other member
 * keep working, since the Proxy forwards the prototype, reads and writes.
 */
export function guardProxy<T extends object>(target: T, members: Members, options: ProxyOptions = {}): T {
  const bindMethods = options.bindMethods !== false
  const own = Object.assign(Object.create(null) as Members, members, { [kGuarded]: true })
  const bound = new Map<PropertyKey, { fn: (...args: unknown[]) => unknown; call: unknown }>()
  const handler: ProxyHandler<T> = {
    get(_, prop, receiver) {
      if (prop in own) return own[prop]
      if (!bindMethods) return Reflect.get(target, prop, receiver)
      const value: unknown = Reflect.get(target, prop)
      if (typeof value !== 'function' || prop === 'constructor') return value
      let b = bound.get(prop)
      if (b?.fn !== value) {
        const fn = value as (...args: unknown[]) => unknown
        const call = function (this: unknown, ...args: unknown[]): unknown {
          const result = fn.apply(target, args)
          return result === target ? proxy : result
        }
        b = { fn, call }
        bound.set(prop, b)
      }
      return b.call
    },
    set(_, prop, value) {
      return Reflect.set(target, prop, value)
    },
  }
  if (options.shell) handler.has = (_, prop) => prop in own || prop in target
  const proxy: T = new Proxy(
    options.shell ? (Object.create(Object.getPrototypeOf(target)) as T) : target,
    handler,
  )
  return proxy
}

/** True when `value` is already a guarded proxy. */
export function isGuarded(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as { [kGuarded]?: boolean })[kGuarded] === true
}

/**
 * Refuses to guard an object twice (every statement would be checked twice, and transactions tracked
 * by two sessions).
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT)
 */
export function refuseGuarded(value: unknown, what: string): void {
  if (isGuarded(value)) {
    throw new InvalidArgumentError(`this ${what} is already guarded: guard the driver's own object, once`)
  }
}
