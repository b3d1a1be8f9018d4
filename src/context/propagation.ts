/**
 * Carrying the route context across a hop: the `x-appactive-*` headers, plus the `appactive.route-id`
 * baggage member for OpenTelemetry users. Neither direction throws for malformed input.
 */
import { BAGGAGE_HEADER, getBaggageRouteId, ROUTE_ID_BAGGAGE_KEY, withBaggageRouteId } from './baggage.js'
import { type HeaderSource, headerValues } from './header-source.js'
import { assignRouteHeaders, type HeaderSetter, readRouteHeaders, writeRouteHeaders } from './headers.js'
import { createRouteContext, type RouteContext, type RouteContextInput } from './route-context.js'

/** The outgoing `baggage` value to merge with: a value, repeated values, or a getter read once. */
export type BaggageInput =
  | string
  | readonly string[]
  | undefined
  | (() => string | readonly string[] | undefined)

/**
 * Reads the route context an incoming request carries: the `x-appactive-*` headers, with the route id
 * taken from baggage `appactive.route-id` when the header has none. Malformed values read as absent.
 * @example
 * const route = extractRoute(req.headers)
 * runWithRoute(route, () => next())
 */
export function extractRoute(source: HeaderSource): RouteContext {
  const values = readRouteHeaders(source)
  if (values.routeId !== undefined) return createRouteContext(values)
  const routeId = getBaggageRouteId(headerValues(source, BAGGAGE_HEADER))
  return createRouteContext({ ...values, routeId })
}

/**
 * Writes `route` onto an outgoing request: the `x-appactive-*` headers and the baggage member, merged
 * into `baggage` (the outgoing baggage so far) with every other member kept. When the route has no id
 * that can travel, a stale `appactive.route-id` member is removed from that baggage. `set` is called
 * only for headers that change. Never throws itself.
 * @example
 * const headers = new Headers(init.headers)
 * injectRoute(currentRoute(), (name, value) => headers.set(name, value), () => headers.get('baggage') ?? undefined)
 */
export function injectRoute(
  route: RouteContextInput | undefined,
  set: HeaderSetter,
  baggage?: BaggageInput,
): void {
  if (typeof route !== 'object' || route === null) return
  writeRouteHeaders(route, set)
  const after = routeBaggage(typeof baggage === 'function' ? baggage() : baggage, route)
  if (after !== undefined) set(BAGGAGE_HEADER, after)
}

/**
 * The record form of {@link injectRoute}, for an edge building its upstream headers: writes the hop
 * headers into `headers` and merges the route id into its `baggage` (removed when nothing is left).
 * Returns `headers`. Never throws itself.
 */
export function assignRoute<T extends Record<string, unknown>>(
  headers: T,
  route: RouteContextInput | undefined,
): T {
  if (typeof route !== 'object' || route === null) return headers
  assignRouteHeaders(headers, route)
  const out = headers as Record<string, unknown>
  const existing = out[BAGGAGE_HEADER]
  const after = routeBaggage(
    typeof existing === 'string' || Array.isArray(existing) ? (existing as string | string[]) : undefined,
    route,
  )
  if (after === '') delete out[BAGGAGE_HEADER]
  else if (after !== undefined) out[BAGGAGE_HEADER] = after
  return headers
}

/** `existing` baggage with the route's id merged in, or undefined when it does not change. */
function routeBaggage(
  existing: string | readonly string[] | undefined,
  route: RouteContextInput,
): string | undefined {
  const before = existing === undefined ? '' : typeof existing === 'string' ? existing : existing.join(',')
  const routeId = typeof route.routeId === 'string' ? route.routeId : ''
  if (routeId === '' && !before.includes(ROUTE_ID_BAGGAGE_KEY)) return undefined
  const after = withBaggageRouteId(existing, routeId)
  return after === before ? undefined : after
}
