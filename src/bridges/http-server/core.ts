/**
 * Provider protection for HTTP servers, shared by every framework adapter (node:http, Express, Fastify,
 * Koa): read the route id (the gateway's trusted `x-appactive-route-id`, else the rule set's id source),
 * decide the service type of the path, and either admit the request with its route context or refuse it
 * with the DESIGN §3 answer: wrong unit 421 + `x-appactive-unit: <owner>`, center service outside the
 * center 421, missing id 400, fenced key on a write 503 + Retry-After.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Pool } from 'undici'
import { type RoutingAgent, resolveInstances, type ServiceRegistry } from '../../agent/index.js'
import { checkProvider } from '../../agent/protection.js'
import {
  type HeaderSource,
  headerValues,
  injectRoute,
  ROUTE_ID_HEADER,
  type RouteContext,
  readRouteHeaders,
  UNIT_HEADER,
} from '../../context/index.js'
import { AppActiveError, ErrorCodes } from '../../errors/index.js'
import { forward, upstreamHeaders } from '../../gateway/index.js'
import type { RequestLike } from '../../rules/index.js'
import { ServicePatterns, type ServiceType } from './patterns.js'

/** Options of `createProtection` (and of every adapter). */
export interface ProtectionOptions {
  /** The process's agent: its rule set and unit decide. */
  readonly agent: RoutingAgent
  /** Service type per Ant-style path pattern, e.g. `{ '/orders/**': 'unit', '/stock/**': 'center' }`. */
  readonly services?: Readonly<Record<string, ServiceType>>
  /** Type of paths no pattern matches; default `normal`. */
  readonly defaultType?: ServiceType
  /**
   * Take the route id from the gateway's `x-appactive-route-id` header when present (default true). Turn
   * it off for services reachable without the gateway in front (a client could then choose its id).
   */
  readonly trustGatewayHeaders?: boolean
  /** Retry-After (seconds) on a 503 for a fenced key; default 1. */
  readonly retryAfterS?: number
  /**
   * Instead of answering 421, forward a request that reached the wrong unit (or a center service
   * outside the center) to an instance of this service in the right unit, once: a request that was
   * already forwarded (`x-appactive-hops` >= 1) gets the 421. Only for callers that cannot follow the
   * 421 themselves; the body streams through.
   */
  readonly forward?: { readonly registry: ServiceRegistry; readonly service: string }
}

/** The request facts the core reads. */
export interface ProtectedRequest extends RequestLike {
  readonly method?: string | undefined
  readonly headers?: HeaderSource & RequestLike['headers']
}

/** Admit (with the route context to run the handler in) or refuse (with the answer to send). */
export type Verdict =
  | { readonly ok: true; readonly type: ServiceType; readonly route: RouteContext }
  | {
      readonly ok: false
      readonly status: number
      readonly code: string
      readonly message: string
      readonly headers: Readonly<Record<string, string>>
      /** Set when `forward` is configured and the request may go to the right unit instead. */
      readonly forwardTo?: { readonly unit: string; readonly route: RouteContext }
    }

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

/** The shared decision of every server adapter. */
export class Protection {
  readonly #agent: RoutingAgent
  readonly #patterns: ServicePatterns
  readonly #trust: boolean
  readonly #retryAfter: string
  readonly #forward: ProtectionOptions['forward']
  /** One pool per instance origin the forwarding reached. */
  readonly #pools = new Map<string, Pool>()
  #next = 0

  constructor(options: ProtectionOptions) {
    this.#agent = options.agent
    this.#patterns = new ServicePatterns(options.services ?? {}, options.defaultType ?? 'normal')
    this.#trust = options.trustGatewayHeaders ?? true
    this.#retryAfter = String(options.retryAfterS ?? 1)
    this.#forward = options.forward
  }

  /** Decides one request. Never throws. */
  check(req: ProtectedRequest): Verdict {
    const type = this.#patterns.typeOf(req.url ?? '/')
    const hop = req.headers === undefined ? { hops: 0 } : readRouteHeaders(req.headers)
    // A route-id header that does not decode: only a caller that is not the gateway sends one.
    const malformed =
      this.#trust &&
      hop.routeId === undefined &&
      req.headers !== undefined &&
      headerValues(req.headers, ROUTE_ID_HEADER).length > 0
    const verdict = checkProvider(this.#agent, {
      type,
      write: !SAFE.has(req.method ?? 'GET'),
      routeId: (this.#trust ? hop.routeId : undefined) ?? this.#agent.router?.extract(req),
      hops: hop.hops,
      unit: this.#trust ? hop.unit : undefined,
      malformed: malformed ? `${ROUTE_ID_HEADER} header` : undefined,
    })
    if (verdict.ok) return verdict
    const headers: Record<string, string> = {}
    if (verdict.unit !== undefined) headers[UNIT_HEADER] = verdict.unit
    if (verdict.retryable) headers['retry-after'] = this.#retryAfter
    const status = ErrorCodes[verdict.code].httpStatus
    const misplaced = verdict.code === 'APPACTIVE_WRONG_UNIT' || verdict.code === 'APPACTIVE_NOT_CENTER'
    if (this.#forward !== undefined && misplaced && verdict.unit !== undefined && hop.hops === 0) {
      const routeId = (this.#trust ? hop.routeId : undefined) ?? this.#agent.router?.extract(req)
      const route: RouteContext = {
        routeId,
        unit: verdict.unit,
        hops: 1,
        ...(this.#agent.router ? { ruleVersion: this.#agent.router.version } : {}),
      }
      return {
        ok: false,
        status,
        code: verdict.code,
        message: verdict.message,
        headers,
        forwardTo: { unit: verdict.unit, route },
      }
    }
    return refuse(status, verdict.code, verdict.message, headers)
  }

  /**
   * Forwards a refused request to an instance of the service in `verdict.forwardTo.unit` and streams
   * its answer back; answers the refusal itself when that unit has no instance. Never throws.
   */
  async forward(
    req: IncomingMessage,
    res: ServerResponse,
    verdict: Extract<Verdict, { ok: false }>,
  ): Promise<void> {
    const target = verdict.forwardTo
    const options = this.#forward
    if (target === undefined || options === undefined) return sendRefusal(res, verdict)
    let instances: ReturnType<typeof resolveInstances>
    try {
      const router = this.#agent.router!
      const center = verdict.code === 'APPACTIVE_NOT_CENTER'
      instances = resolveInstances(options.registry, {
        service: options.service,
        type: center ? 'center' : 'unit',
        owner: target.unit,
        localUnit: this.#agent.identity.unit,
        centerUnit: router.centerUnit,
      })
    } catch (err) {
      const message = err instanceof AppActiveError ? `${verdict.message}; ${err.message}` : verdict.message
      return sendRefusal(res, { ...verdict, message })
    }
    const instance = instances[this.#next++ % instances.length]!
    const origin = new URL(instance.url.includes('://') ? instance.url : `http://${instance.url}`).origin
    let pool = this.#pools.get(origin)
    if (pool === undefined) {
      pool = new Pool(origin, { connections: 16 })
      this.#pools.set(origin, pool)
    }
    const headers = upstreamHeaders(req, false)
    for (const name of Object.keys(headers)) if (name.startsWith('x-appactive-')) delete headers[name]
    const baggage = headers.baggage
    injectRoute(
      target.route,
      (name, value) => {
        headers[name] = value
      },
      typeof baggage === 'string' ? baggage : undefined,
    )
    await forward(req, res, pool, origin, headers)
  }

  /** Closes the connections the forwarding opened. */
  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.close()))
    this.#pools.clear()
  }
}

/**
 * Answers a refused request on node:http objects: forwarded to the right unit when the verdict says so,
 * else the refusal. For the node:http, Express, Koa and Fastify adapters.
 */
export function answerRefusal(
  protection: Protection,
  req: IncomingMessage,
  res: ServerResponse,
  verdict: Extract<Verdict, { ok: false }>,
): void {
  if (verdict.forwardTo === undefined) sendRefusal(res, verdict)
  else void protection.forward(req, res, verdict)
}

function refuse(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): Verdict {
  return { ok: false, status, code, message, headers }
}

/** The body of a refusal: `{ error: { code, message } }`. */
export function refusal(v: Extract<Verdict, { ok: false }>): { error: { code: string; message: string } } {
  return { error: { code: v.code, message: v.message } }
}

/** The JSON text of a refusal. */
export function refusalBody(v: Extract<Verdict, { ok: false }>): string {
  return JSON.stringify(refusal(v))
}

/** Answers a refusal on a node:http response (the node:http and Express adapters). */
export function sendRefusal(res: ServerResponse, v: Extract<Verdict, { ok: false }>): void {
  const body = refusalBody(v)
  res.writeHead(v.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...v.headers,
  })
  res.end(body)
}

/** Creates the shared protection. @throws InvalidArgumentError for a malformed service pattern. */
export function createProtection(options: ProtectionOptions): Protection {
  return new Protection(options)
}
