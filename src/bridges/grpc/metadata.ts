/**
 * gRPC `Metadata` as a carrier of the route context: read as a header record (so the context module's
 * readers and the rule set's header id source apply unchanged), written with the same encoding as HTTP.
 */
import type { Metadata } from '@grpc/grpc-js'
import { BAGGAGE_HEADER, injectRoute, isRouteHeader, type RouteContextInput } from '../../context/index.js'

/** The metadata key that carries the DESIGN §3 code of a refusal (a trailer, like `x-appactive-unit`). */
export const CODE_METADATA = 'x-appactive-code'

/** How long to wait before retrying an UNAVAILABLE refusal, in ms. */
export const RETRY_AFTER_METADATA = 'retry-after-ms'

/**
 * gRPC's own pushback trailer (gRFC A6): a grpc-js client whose service config retries UNAVAILABLE waits
 * this long, so a fenced write retries by itself once the cut-over ends.
 */
export const RETRY_PUSHBACK_METADATA = 'grpc-retry-pushback-ms'

/** The text values of `metadata` by key; binary (`-bin`) values are left out. */
export function metadataHeaders(metadata: Metadata): Readonly<Record<string, readonly string[]>> {
  const out: Record<string, string[]> = {}
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    const texts = values.filter((v): v is string => typeof v === 'string')
    if (texts.length > 0) out[key] = texts
  }
  return out
}

/**
 * Puts `route` on outgoing `metadata`: the `x-appactive-*` keys (any copy the caller set by hand is
 * replaced, as the HTTP client does) and the `appactive.route-id` baggage member, merged into the
 * call's own `baggage`.
 */
export function writeRouteMetadata(metadata: Metadata, route: RouteContextInput): void {
  for (const key of Object.keys(metadata.getMap())) if (isRouteHeader(key)) metadata.remove(key)
  const baggage = metadata.get(BAGGAGE_HEADER).filter((v): v is string => typeof v === 'string')
  injectRoute(route, (name, value) => metadata.set(name, value), baggage)
}
