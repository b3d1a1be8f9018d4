/**
 * Provider protection for gRPC servers: which service type a method has, whether it writes, and what
 * gRPC status a refusal becomes. The decision itself is the agent's `checkProvider`, shared with HTTP.
 *
 * | refusal (DESIGN §3 code)                       | gRPC status         | trailing metadata                    |
 * |------------------------------------------------|---------------------|--------------------------------------|
 * | wrong unit (`APPACTIVE_WRONG_UNIT`)            | FAILED_PRECONDITION | `x-appactive-unit: <owner>`          |
 * | center method outside it (`APPACTIVE_NOT_CENTER`) | FAILED_PRECONDITION | `x-appactive-unit: <center>`      |
 * | no / malformed route id (`APPACTIVE_NO_ROUTE_ID`) | INVALID_ARGUMENT |                                      |
 * | fenced write, no rule set yet (retryable)      | UNAVAILABLE         | `retry-after-ms`, `grpc-retry-pushback-ms` |
 *
 * Every refusal also carries `x-appactive-code: <code>`.
 */
import type { Metadata, StatusObject } from '@grpc/grpc-js'
import type { RoutingAgent, ServiceType } from '../../agent/index.js'
import { checkProvider, type ProviderRefusal, type ProviderVerdict } from '../../agent/protection.js'
import { PatternTable } from '../../agent/service-patterns.js'
import {
  extractRoute,
  headerValues,
  ROUTE_ID_HEADER,
  routeHeaders,
  UNIT_HEADER,
} from '../../context/index.js'
import { InvalidArgumentError } from '../../errors/index.js'
import { type Grpc, grpcJs } from './grpc-js.js'
import { CODE_METADATA, metadataHeaders, RETRY_AFTER_METADATA, RETRY_PUSHBACK_METADATA } from './metadata.js'

/**
 * How one method (or pattern of methods) is served: its service type, and whether its calls write.
 * A fenced key refuses writes only. Without `write`, every call of a `unit` method counts as a write
 * (gRPC has no verb to tell); declare reads with `write: false`.
 */
export type MethodRule = ServiceType | { readonly type: ServiceType; readonly write?: boolean }

/** Options of `protectService` and `routeServerInterceptor`. */
export interface GrpcProtectionOptions {
  /** The process's agent: its rule set and unit decide. */
  readonly agent: RoutingAgent
  /**
   * Rule per method path pattern (`/package.Service/Method`; `*` within a segment, `**` across), e.g.
   * `{ '/shop.Orders/*': 'unit', '/shop.Orders/Get*': { type: 'unit', write: false }, '/shop.Stock/*': 'center' }`.
   * The most specific pattern wins.
   */
  readonly methods?: Readonly<Record<string, MethodRule>>
  /** Type of methods no pattern matches; default `normal`. */
  readonly defaultType?: ServiceType
  /**
   * Take the route id (and unit) from the `x-appactive-*` metadata and the `appactive.route-id` baggage
   * that appactive clients send (default true). Turn it off when untrusted clients reach the server
   * directly: the id then comes only from the rule set's header id source, read from the metadata.
   */
  readonly trustRouteMetadata?: boolean
  /** Retry delay announced on UNAVAILABLE refusals, in ms; default 1000. */
  readonly retryAfterMs?: number
}

interface Rule {
  readonly type: ServiceType
  readonly write: boolean
}

const TYPES: ReadonlySet<string> = new Set(['unit', 'center', 'normal'])
const OPTION_KEYS: ReadonlySet<string> = new Set([
  'agent',
  'methods',
  'defaultType',
  'trustRouteMetadata',
  'retryAfterMs',
])

/** Decides gRPC calls and renders refusals as gRPC statuses. Built once per server or service. */
export class GrpcProtection {
  readonly #agent: RoutingAgent
  readonly #rules: PatternTable<Rule>
  readonly #trust: boolean
  readonly #retryAfter: string
  readonly #grpc: Grpc

  /** @throws InvalidArgumentError for malformed options, or when @grpc/grpc-js is not installed. */
  constructor(options: GrpcProtectionOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('gRPC protection needs options with an agent')
    }
    for (const key of Object.keys(options)) {
      if (!OPTION_KEYS.has(key)) throw new InvalidArgumentError(`unknown gRPC protection option ${key}`)
    }
    const {
      agent,
      methods = {},
      defaultType = 'normal',
      trustRouteMetadata = true,
      retryAfterMs = 1000,
    } = options
    if (typeof agent?.identity?.unit !== 'string') {
      throw new InvalidArgumentError('gRPC protection needs `agent`, a RoutingAgent (createAgent())')
    }
    if (!Number.isSafeInteger(retryAfterMs) || retryAfterMs < 0) {
      throw new InvalidArgumentError(`retryAfterMs must be a non-negative integer, got ${retryAfterMs}`)
    }
    const rules: Record<string, Rule> = {}
    for (const [pattern, rule] of Object.entries(methods)) rules[pattern] = resolveRule(pattern, rule)
    this.#agent = agent
    this.#rules = new PatternTable(rules, resolveRule('(default)', defaultType))
    this.#trust = trustRouteMetadata
    this.#retryAfter = String(retryAfterMs)
    this.#grpc = grpcJs()
  }

  /** Decides one call to method `path` with request `metadata`. Never throws. */
  check(path: string, metadata: Metadata): ProviderVerdict {
    const { type, write } = this.#rules.lookup(path)
    const headers = metadataHeaders(metadata)
    // Header first, then the baggage member: the two ways an appactive hop carries the id.
    const carried = extractRoute(headers)
    let routeId = this.#trust ? carried.routeId : undefined
    const malformed =
      this.#trust && routeId === undefined && headerValues(headers, ROUTE_ID_HEADER).length > 0
        ? `${ROUTE_ID_HEADER} metadata`
        : undefined
    routeId ??= this.#agent.router?.extract({ headers })
    return checkProvider(this.#agent, {
      type,
      write,
      routeId,
      hops: carried.hops,
      unit: this.#trust ? carried.unit : undefined,
      malformed,
    })
  }

  /** The gRPC status (code, details, trailing metadata) of a refusal, for `call.sendStatus`. */
  status(refusal: ProviderRefusal): StatusObject {
    const { Metadata, status } = this.#grpc
    const metadata = new Metadata()
    metadata.set(CODE_METADATA, refusal.code)
    if (refusal.unit !== undefined) {
      // Encoded as on the hop header, so a unit name that is not a token still fits in metadata.
      const unit = routeHeaders({ unit: refusal.unit })[UNIT_HEADER]
      if (unit !== undefined) metadata.set(UNIT_HEADER, unit)
    }
    if (refusal.retryable) {
      metadata.set(RETRY_AFTER_METADATA, this.#retryAfter)
      metadata.set(RETRY_PUSHBACK_METADATA, this.#retryAfter)
    }
    const code =
      refusal.code === 'APPACTIVE_NO_ROUTE_ID'
        ? status.INVALID_ARGUMENT
        : refusal.retryable
          ? status.UNAVAILABLE
          : status.FAILED_PRECONDITION
    return { code, details: `${refusal.code}: ${refusal.message}`, metadata }
  }

  /** A refusal as the error a handler passes to its callback or emits on its stream. */
  error(refusal: ProviderRefusal): Error & StatusObject {
    const s = this.status(refusal)
    return Object.assign(new Error(s.details), s)
  }
}

function resolveRule(pattern: string, rule: MethodRule): Rule {
  const { type, write, ...rest } = typeof rule === 'string' ? { type: rule } : (rule ?? ({} as Partial<Rule>))
  if (typeof type !== 'string' || !TYPES.has(type)) {
    throw new InvalidArgumentError(
      `service type of ${pattern} must be unit, center or normal, got ${JSON.stringify(type)}`,
    )
  }
  if (write !== undefined && typeof write !== 'boolean') {
    throw new InvalidArgumentError(`write of ${pattern} must be true or false, got ${JSON.stringify(write)}`)
  }
  const unknown = Object.keys(rest)
  if (unknown.length > 0)
    throw new InvalidArgumentError(`unknown key ${unknown[0]} in the rule of ${pattern}`)
  return { type: type as ServiceType, write: write ?? true }
}
