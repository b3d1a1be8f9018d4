/**
 * The route context: which route id (and, once the edge decided, which unit and rule version) the
 * current async chain serves. One `AsyncLocalStorage` on a versioned global holds it, so two installed
 * copies of appactive read and write the same context (STYLE §2.6, "Route context").
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { Buffer } from 'node:buffer'
import { InvalidArgumentError, NoRouteIdError } from '../errors/index.js'

/** The route a request is served for. Always frozen; build one with {@link runWithRoute}. */
export interface RouteContext {
  /** The raw route id (before any transform); `undefined` when the request carried none. */
  readonly routeId: string | undefined
  /** The unit the edge chose for this request, when an edge decided. */
  readonly unit?: string
  /** The rule-set version that decision was made with. */
  readonly ruleVersion?: number
  /** How many times the request was forwarded across units (the loop guard); 0 at the edge. */
  readonly hops: number
}

/** What {@link runWithRoute} accepts: every field optional; `hops` defaults to 0. */
export interface RouteContextInput {
  readonly routeId?: string | undefined
  readonly unit?: string | undefined
  readonly ruleVersion?: number | undefined
  readonly hops?: number | undefined
}

/** Largest route id, in UTF-8 bytes, that headers and baggage carry; a longer one travels as absent. */
export const MAX_ROUTE_ID_BYTES = 256

/** Largest hop count; the hop header carries 0..255. */
export const MAX_HOPS = 255

// v1 = the shape of RouteContext above. A breaking change to that shape takes a new key (v2).
const kStore = Symbol.for('appactive.context.v1')

let storage: AsyncLocalStorage<RouteContext | undefined> | undefined

/** Returns the process-wide store, creating it on first use (no work at import: sideEffects false). */
function store(): AsyncLocalStorage<RouteContext | undefined> {
  if (storage) return storage
  const slot = globalThis as { [kStore]?: unknown }
  const existing = slot[kStore]
  if (existing instanceof AsyncLocalStorage) {
    storage = existing as AsyncLocalStorage<RouteContext | undefined>
    return storage
  }
  const created = new AsyncLocalStorage<RouteContext | undefined>()
  if (existing === undefined) {
    // Not writable, so no later copy can swap the store out from under running requests.
    Object.defineProperty(globalThis, kStore, { value: created, writable: false, enumerable: false })
  }
  // Something foreign sits in the slot: keep a private store rather than break its owner.
  storage = created
  return storage
}

/** True when `id` fits the wire limit ({@link MAX_ROUTE_ID_BYTES}) and is non-empty. */
export function fitsRouteIdLimit(id: string): boolean {
  // UTF-16 length is a lower bound of the UTF-8 length, and 3 bytes per unit an upper bound.
  if (id.length === 0 || id.length > MAX_ROUTE_ID_BYTES) return false
  return id.length * 3 <= MAX_ROUTE_ID_BYTES || Buffer.byteLength(id, 'utf8') <= MAX_ROUTE_ID_BYTES
}

function optionalText(input: RouteContextInput, name: 'routeId' | 'unit'): string | undefined {
  const value = input[name]
  if (value === undefined || value === '') return undefined
  if (typeof value !== 'string') {
    throw new InvalidArgumentError(`route context ${name} must be a string, got ${typeof value}`, { name })
  }
  return value
}

/**
 * Validates `input` and returns it as a frozen {@link RouteContext}: `hops` defaults to 0, and an empty
 * `routeId` or `unit` becomes absent (no id source yields an empty id).
 * @throws {InvalidArgumentError} `APPACTIVE_INVALID_ARGUMENT` when a field has the wrong type or range.
 */
export function createRouteContext(input: RouteContextInput): RouteContext {
  // One already built here is frozen and valid: reuse it (adapters build the context, then run in it).
  if (built.has(input as object)) return input as RouteContext
  if (typeof input !== 'object' || input === null) {
    throw new InvalidArgumentError('route context must be an object')
  }
  const routeId = optionalText(input, 'routeId')
  const unit = optionalText(input, 'unit')
  const { ruleVersion, hops = 0 } = input
  if (ruleVersion !== undefined && !(Number.isSafeInteger(ruleVersion) && ruleVersion >= 0)) {
    throw new InvalidArgumentError(`route context ruleVersion must be a non-negative safe integer`, {
      ruleVersion,
    })
  }
  if (!(Number.isInteger(hops) && hops >= 0 && hops <= MAX_HOPS)) {
    throw new InvalidArgumentError(`route context hops must be an integer in 0..${MAX_HOPS}`, { hops })
  }
  const ctx: { routeId: string | undefined; unit?: string; ruleVersion?: number; hops: number } = {
    routeId,
    hops,
  }
  if (unit !== undefined) ctx.unit = unit
  if (ruleVersion !== undefined) ctx.ruleVersion = ruleVersion
  const frozen = Object.freeze(ctx)
  built.add(frozen)
  return frozen
}

/** Contexts made by {@link createRouteContext}, so that running in one does not validate it again. */
const built = new WeakSet<object>()

/**
 * Runs `fn` with `route` as the current route context and returns what `fn` returns. The context is
 * visible to everything `fn` starts (awaits, timers, emitters created inside) and to nothing else; it
 * ends when `fn` returns or throws, so it never leaks to the next request (AppActive bug B15).
 * @example
 * await runWithRoute({ routeId: req.headers['x-user-id'] }, () => handle(req, res))
 * @throws {InvalidArgumentError} `APPACTIVE_INVALID_ARGUMENT` when `route` is malformed or `fn` is not a function.
 */
export function runWithRoute<T>(route: RouteContextInput, fn: () => T): T {
  if (typeof fn !== 'function') throw new InvalidArgumentError('runWithRoute needs a function to run')
  return store().run(createRouteContext(route), fn)
}

/** The current route context, or `undefined` outside {@link runWithRoute}. */
export function currentRoute(): RouteContext | undefined {
  return store().getStore()
}

/** The current route id, or `undefined` when there is no context or it carries no id. */
export function currentRouteId(): string | undefined {
  return store().getStore()?.routeId
}

/**
 * The current route id, for code that cannot work without one (unit services, guarded writes).
 * @throws {NoRouteIdError} `APPACTIVE_NO_ROUTE_ID` when there is no context or it carries no id.
 */
export function requireRouteId(): string {
  const routeId = store().getStore()?.routeId
  if (routeId === undefined) {
    throw new NoRouteIdError('no route id in the current route context: run this inside runWithRoute')
  }
  return routeId
}

/**
 * Binds `fn` to the route context current now (or to no context, when there is none), for callbacks
 * that run later from somewhere else: a pool's queue, a shared emitter, a batch flush.
 * @throws {InvalidArgumentError} `APPACTIVE_INVALID_ARGUMENT` when `fn` is not a function.
 */
export function bindRoute<A extends unknown[], R>(fn: (...args: A) => R): (...args: A) => R {
  if (typeof fn !== 'function') throw new InvalidArgumentError('bindRoute needs a function to bind')
  const als = store()
  const route = als.getStore()
  return function boundToRoute(this: unknown, ...args: A): R {
    return als.run(route, () => fn.apply(this, args))
  }
}
