/**
 * The provider check of DESIGN §3, transport-neutral: may this process serve a call of service type
 * `type` for `routeId`? Every server bridge asks here and only translates the answer: HTTP to a status
 * (`ErrorCodes[code].httpStatus`: 421, 400, 503), gRPC to FAILED_PRECONDITION, INVALID_ARGUMENT or
 * UNAVAILABLE. Both put `unit` (the owner, or the center) in `x-appactive-unit`.
 */
import { createRouteContext, type RouteContext } from '../context/index.js'
import { type ErrorCode, ErrorCodes } from '../errors/index.js'
import type { ServiceType } from './registry.js'
import type { RoutingAgent } from './routing-agent.js'

/** What a server bridge read from one incoming call. */
export interface ProviderCall {
  readonly type: ServiceType
  /** Whether the call writes (a fenced key refuses writes only). */
  readonly write: boolean
  /** The raw route id, from trusted hop headers or the rule set's id source. */
  readonly routeId: string | undefined
  /** The hop count the call carries (0 when absent). */
  readonly hops: number
  /** The unit the edge chose, when the hop headers are trusted. */
  readonly unit?: string | undefined
  /** Set (to the carrier field's name) when a route id was sent but does not decode: refused. */
  readonly malformed?: string | undefined
}

/** A refusal: the DESIGN §3 code, a message, and the unit to name (owner or center) when there is one. */
export interface ProviderRefusal {
  readonly ok: false
  readonly code: ErrorCode
  readonly message: string
  readonly unit?: string
  /** True when the same call may succeed later unchanged (fence lifts, rule set arrives). */
  readonly retryable: boolean
}

/** Admit (with the route context to run the handler in) or refuse. */
export type ProviderVerdict =
  | { readonly ok: true; readonly type: ServiceType; readonly route: RouteContext }
  | ProviderRefusal

/** Decides one call. Never throws. */
export function checkProvider(agent: RoutingAgent, call: ProviderCall): ProviderVerdict {
  if (call.malformed !== undefined) {
    // Only a caller that is not an appactive hop sends a route id that does not decode (repeated, too
    // long, not visible ASCII, bad percent-encoding): refuse it rather than guess an owner.
    return refuse('APPACTIVE_NO_ROUTE_ID', `malformed ${call.malformed}`)
  }
  const router = agent.router
  const route = createRouteContext({
    routeId: call.routeId,
    hops: call.hops,
    unit: call.unit,
    ruleVersion: router?.version,
  })
  const { type } = call
  if (type === 'normal') return { ok: true, type, route }
  const unit = agent.identity.unit
  if (router === undefined) return refuse('APPACTIVE_LEASE_EXPIRED', 'this service has no rule set yet')
  if (type === 'center') {
    if (router.centerUnit === unit) return { ok: true, type, route }
    return refuse(
      'APPACTIVE_NOT_CENTER',
      `this service runs only in the center unit ${router.centerUnit}`,
      router.centerUnit,
    )
  }
  const { routeId } = call
  if (routeId === undefined || routeId === '') {
    return refuse('APPACTIVE_NO_ROUTE_ID', 'this unit service needs a route id')
  }
  const code = router.lookup(routeId)
  const owner = router.unitAt(code)
  if (owner === null) {
    return refuse(
      'APPACTIVE_NO_ROUTE_ID',
      `route id is not usable (${router.reasonAt(code)}) and the fallback rejects it`,
    )
  }
  if (owner !== unit) {
    return refuse('APPACTIVE_WRONG_UNIT', `route id ${routeId} belongs to unit ${owner}, not ${unit}`, owner)
  }
  if (call.write && router.fencedAt(code)) {
    return refuse('APPACTIVE_FENCED', `route id ${routeId} is being moved between units; retry shortly`)
  }
  return { ok: true, type, route }
}

function refuse(code: ErrorCode, message: string, unit?: string): ProviderRefusal {
  const retryable = ErrorCodes[code].retryable
  return unit === undefined
    ? { ok: false, code, message, retryable }
    : { ok: false, code, message, unit, retryable }
}
