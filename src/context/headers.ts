/**
 * The internal hop headers (DESIGN §3). Only appactive writes them; the edge strips any copy a client
 * sends. Reading never throws: a malformed value reads as absent (hops as 0).
 */
import { BAGGAGE_HEADER, stripBaggageRouteMembers } from './baggage.js'
import { type HeaderSource, headerText, singleHeader } from './header-source.js'
import { fitsRouteIdLimit, MAX_HOPS, MAX_ROUTE_ID_BYTES, type RouteContextInput } from './route-context.js'

/** The raw route id: verbatim when it is a token without `%`, else `encodeURIComponent(id)`. */
export const ROUTE_ID_HEADER = 'x-appactive-route-id'
/** The unit the edge chose, encoded like the route id. */
export const UNIT_HEADER = 'x-appactive-unit'
/** The rule-set version the edge decided with, in canonical decimal. */
export const RULE_VERSION_HEADER = 'x-appactive-rule-version'
/** How many times the request crossed units (the loop guard), 0..255 in canonical decimal. */
export const HOPS_HEADER = 'x-appactive-hops'
/** The prefix every internal header shares; the edge strips all of them from client requests. */
export const ROUTE_HEADER_PREFIX = 'x-appactive-'

/** What {@link readRouteHeaders} found; absent fields were missing or malformed. */
export interface RouteHeaderValues {
  readonly routeId?: string
  readonly unit?: string
  readonly ruleVersion?: number
  readonly hops: number
}

/** Sets one header on an outgoing message (`(n, v) => req.setHeader(n, v)`, `headers.set`...). */
export type HeaderSetter = (name: string, value: string) => void

// RFC 9110 tchar without `%`: such text travels verbatim; anything else is percent-encoded.
const PLAIN = /^[!#$&'*+\-.^_`|~0-9A-Za-z]+$/
// What a value may hold on the wire: visible ASCII, no spaces (so `a, b` from joined repeats fails).
const VISIBLE = /^[\x21-\x7E]+$/
const VERSION = /^(?:0|[1-9][0-9]{0,15})$/
const HOPS = /^(?:0|[1-9][0-9]{0,2})$/
// Percent-encoding takes at most 3 characters per UTF-8 byte.
const MAX_ENCODED_LENGTH = MAX_ROUTE_ID_BYTES * 3

/** Encodes a route id or unit for a header; `undefined` when it cannot travel (empty, too long, ill-formed). */
function encodeText(text: string): string | undefined {
  if (typeof text !== 'string' || !fitsRouteIdLimit(text)) return undefined
  if (PLAIN.test(text)) return text
  try {
    return encodeURIComponent(text)
  } catch {
    return undefined // a lone surrogate has no UTF-8 form
  }
}

function decodeText(value: string | undefined): string | undefined {
  if (value === undefined || value.length > MAX_ENCODED_LENGTH || !VISIBLE.test(value)) return undefined
  let text = value
  if (value.includes('%')) {
    try {
      text = decodeURIComponent(value)
    } catch {
      return undefined
    }
  }
  return fitsRouteIdLimit(text) ? text : undefined
}

function decodeInteger(value: string | undefined, pattern: RegExp, max: number): number | undefined {
  if (value === undefined || !pattern.test(value)) return undefined
  const n = Number(value)
  return n <= max ? n : undefined
}

function validVersion(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function validHops(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= MAX_HOPS
}

/**
 * Reads the hop headers from a node:http headers record, a `Headers`-like object or an undici flat
 * array. A header that is repeated with different values, malformed, or over its limit reads as
 * absent; a missing or bad hop count reads as 0.
 */
export function readRouteHeaders(source: HeaderSource): RouteHeaderValues {
  const routeId = decodeText(singleHeader(source, ROUTE_ID_HEADER))
  const unit = decodeText(singleHeader(source, UNIT_HEADER))
  const ruleVersion = decodeInteger(
    singleHeader(source, RULE_VERSION_HEADER),
    VERSION,
    Number.MAX_SAFE_INTEGER,
  )
  const hops = decodeInteger(singleHeader(source, HOPS_HEADER), HOPS, MAX_HOPS) ?? 0
  const out: { routeId?: string; unit?: string; ruleVersion?: number; hops: number } = { hops }
  if (routeId !== undefined) out.routeId = routeId
  if (unit !== undefined) out.unit = unit
  if (ruleVersion !== undefined) out.ruleVersion = ruleVersion
  return out
}

/**
 * Writes the hop headers for `route` into `target`, a headers record, and returns it. Fields that cannot
 * travel (absent, empty, over the limit, out of range) are not written, so the next hop reads them as
 * absent. Never throws itself. The fastest form, for an edge building its upstream headers.
 */
export function assignRouteHeaders<T extends Record<string, unknown>>(
  target: T,
  route: RouteContextInput | undefined,
): T {
  if (typeof route !== 'object' || route === null) return target
  const out = target as Record<string, unknown>
  const routeId = route.routeId === undefined ? undefined : encodeText(route.routeId)
  if (routeId !== undefined) out[ROUTE_ID_HEADER] = routeId
  const unit = route.unit === undefined ? undefined : encodeText(route.unit)
  if (unit !== undefined) out[UNIT_HEADER] = unit
  if (validVersion(route.ruleVersion)) out[RULE_VERSION_HEADER] = String(route.ruleVersion)
  const hops = route.hops ?? 0
  if (validHops(hops)) out[HOPS_HEADER] = String(hops)
  return target
}

/**
 * Writes the hop headers for `route` through `set` (see {@link assignRouteHeaders} for which).
 * Never throws itself.
 */
export function writeRouteHeaders(route: RouteContextInput | undefined, set: HeaderSetter): void {
  const values = assignRouteHeaders<Record<string, string>>({}, route)
  for (const name in values) set(name, values[name]!)
}

/** The hop headers for `route` as a plain record, for `fetch(url, { headers })` and friends. */
export function routeHeaders(route: RouteContextInput | undefined): Record<string, string> {
  return assignRouteHeaders({}, route)
}

/** True when `name` is an internal appactive header (`x-appactive-*`, any case). */
export function isRouteHeader(name: string): boolean {
  if (typeof name !== 'string' || name.length <= ROUTE_HEADER_PREFIX.length) return false
  // Most names fail on the first character, before any string is made.
  const first = name.charCodeAt(0)
  if (first !== 120 /* x */ && first !== 88 /* X */) return false
  return (
    name.startsWith(ROUTE_HEADER_PREFIX) ||
    name.slice(0, ROUTE_HEADER_PREFIX.length).toLowerCase() === ROUTE_HEADER_PREFIX
  )
}

/** True when `name` is `baggage` in any case. */
function isBaggage(name: string): boolean {
  return (
    name.length === BAGGAGE_HEADER.length &&
    (name === BAGGAGE_HEADER || name.toLowerCase() === BAGGAGE_HEADER)
  )
}

/** A node:http headers record, or a mutable undici flat `[name, value...]` array. */
export type MutableHeaders = Record<string, unknown> | (string | Uint8Array)[]

function headerName(name: string | Uint8Array | undefined): string {
  return name === undefined ? '' : headerText(name)
}

/**
 * The edge's stripping rule: deletes, in place, every `x-appactive-*` header a client sent (names
 * compared case-insensitively) and every `appactive.*` member of its `baggage` header, so a client
 * cannot choose its own unit, version, hop count or route id. Returns how many were removed (headers
 * plus baggage members); 0 means the request was clean.
 */
export function stripRouteHeaders(headers: MutableHeaders): number {
  let removed = 0
  if (Array.isArray(headers)) {
    for (let i = (headers.length & ~1) - 2; i >= 0; i -= 2) {
      const name = headerName(headers[i])
      if (isRouteHeader(name)) {
        headers.splice(i, 2)
        removed++
      } else if (isBaggage(name)) {
        const stripped = stripBaggageRouteMembers(headerName(headers[i + 1]))
        if (stripped.removed === 0) continue
        removed += stripped.removed
        if (stripped.header === '') headers.splice(i, 2)
        else headers[i + 1] = stripped.header
      }
    }
    return removed
  }
  // for-in (no key array): deleting the current key while iterating is allowed.
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue
    if (isRouteHeader(name)) {
      delete headers[name]
      removed++
      continue
    }
    if (!isBaggage(name)) continue
    const value = headers[name]
    const text =
      typeof value === 'string'
        ? value
        : Array.isArray(value)
          ? value.filter((v): v is string => typeof v === 'string')
          : undefined
    if (text === undefined) continue
    const stripped = stripBaggageRouteMembers(text)
    if (stripped.removed === 0) continue
    removed += stripped.removed
    if (stripped.header === '') delete headers[name]
    else headers[name] = stripped.header
  }
  return removed
}
