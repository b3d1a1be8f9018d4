/**
 * `appactive/context`: the route context (AsyncLocalStorage) and how it travels between hops.
 */

export type { BaggageEntry } from './baggage.js'
export {
  BAGGAGE_HEADER,
  getBaggageRouteId,
  MAX_BAGGAGE_BYTES,
  MAX_BAGGAGE_MEMBERS,
  parseBaggage,
  ROUTE_ID_BAGGAGE_KEY,
  serializeBaggage,
  withBaggageRouteId,
} from './baggage.js'
export type { HeaderGetter, HeaderRecord, HeaderSource, RawHeaders } from './header-source.js'
export { headerValues } from './header-source.js'
export type { HeaderSetter, MutableHeaders, RouteHeaderValues } from './headers.js'
export {
  assignRouteHeaders,
  HOPS_HEADER,
  isRouteHeader,
  ROUTE_HEADER_PREFIX,
  ROUTE_ID_HEADER,
  RULE_VERSION_HEADER,
  readRouteHeaders,
  routeHeaders,
  stripRouteHeaders,
  UNIT_HEADER,
  writeRouteHeaders,
} from './headers.js'
export type { BaggageInput } from './propagation.js'
export { assignRoute, extractRoute, injectRoute } from './propagation.js'
export type { RouteContext, RouteContextInput } from './route-context.js'
export {
  bindRoute,
  createRouteContext,
  currentRoute,
  currentRouteId,
  MAX_HOPS,
  MAX_ROUTE_ID_BYTES,
  requireRouteId,
  runWithRoute,
} from './route-context.js'
