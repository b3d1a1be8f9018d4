/**
 * The unit-aware L7 edge. For each request: find the app, drop any x-appactive-* header a client sent,
 * read the route id per the rule set, decide the owner unit with the one compiled router, hold the
 * request briefly if its key is fenced, and forward it to a healthy instance of THAT unit (or to the
 * owner unit's gateway) with the hop headers set. Traffic never silently crosses units.
 */
import { timingSafeEqual } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import { Pool } from 'undici'
import type { RoutingAgent } from '../agent/index.js'
import { assignRoute, readRouteHeaders, stripRouteHeaders } from '../context/index.js'
import { compileRouter, type Router } from '../rules/index.js'
import { AppMatcher } from './apps.js'
import { FenceHold } from './hold.js'
import { type ForwardResult, forwardWith, sendError, upstreamHeaders } from './proxy.js'
import type { AppConfig, GatewayConfig } from './types.js'
import type { Instance, UpstreamRegistry } from './upstreams.js'
import { proxyUpgrade } from './websocket.js'

/** Instances tried for one request when connections are refused. */
const MAX_CONNECT_TRIES = 3

/** Header a gateway puts on requests it forwards to a peer gateway; the peer then trusts the hop headers. */
export const PEER_HEADER = 'x-appactive-peer'

/** A decided request on its way to its target: one object instead of a closure per step. */
interface Exchange {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly d: Decision
  readonly started: number
  readonly heldMs: number
  readonly headers: Record<string, string | string[]>
}

/** Where a request was sent, for the access log. */
interface Decision {
  readonly app: AppConfig
  readonly router: Router
  readonly routeId: string | undefined
  readonly unit: string
  readonly fenced: boolean
  readonly reason: string
  readonly hops: number
}

type Target =
  | { readonly kind: 'instance'; readonly instance: Instance }
  | { readonly kind: 'peer'; readonly pool: Pool; readonly origin: string }

/** The request handler and its state; `createGateway` wires it to servers and the agent. */
export class GatewayHandler extends EventEmitter {
  readonly config: GatewayConfig
  readonly agent: RoutingAgent
  readonly upstreams: UpstreamRegistry
  readonly hold: FenceHold
  readonly #apps: AppMatcher
  readonly #log: Logger
  readonly #access: Logger | undefined
  readonly #routers = new Map<string, Router>()
  readonly #peers = new Map<string, { readonly pool: Pool; readonly origin: string }>()
  readonly #upgraded = new Set<Duplex>()
  readonly #peerToken: Buffer | undefined
  readonly #requests: RequestCounts
  readonly #holds: Counter<'outcome'>
  #version = -1

  constructor(
    config: GatewayConfig,
    agent: RoutingAgent,
    upstreams: UpstreamRegistry,
    logger: Logger,
    registry: Registry,
  ) {
    super()
    this.config = config
    this.agent = agent
    this.upstreams = upstreams
    this.hold = new FenceHold(config.hold)
    this.#apps = new AppMatcher(config.apps)
    this.#log = logger
    this.#access = config.accessLog ? logger.child({ log: 'access' }) : undefined
    this.#peerToken = config.peerToken === undefined ? undefined : Buffer.from(config.peerToken)
    const registers = [registry]
    this.#requests = new RequestCounts(registers)
    this.#holds = new Counter({
      name: 'appactive_gateway_hold_total',
      help: 'Requests held for a fenced key, by outcome: released, timeout, overflow, aborted.',
      labelNames: ['outcome'],
      registers,
    })
    const hold = this.hold
    new Gauge({
      name: 'appactive_gateway_held_requests',
      help: 'Requests held now, waiting for a fence to lift.',
      registers,
      collect() {
        this.set(hold.held)
      },
    })
    const ejections = new Counter({
      name: 'appactive_gateway_upstream_ejections_total',
      help: 'Instances taken out of rotation after failures, by app and unit.',
      labelNames: ['app', 'unit'],
      registers,
    })
    upstreams.on('ejected', (instance, set) => {
      const [app = '', unit = ''] = set.name.split('/')
      ejections.inc({ app, unit })
      logger.warn(
        { upstream: instance.url, set: set.name, err: instance.lastError },
        'upstream instance ejected',
      )
    })
    upstreams.on('restored', (instance, set) => {
      logger.info({ upstream: instance.url, set: set.name }, 'upstream instance restored')
    })
    for (const [unit, u] of Object.entries(config.units)) {
      if (u.gateway !== undefined) {
        const origin = new URL(u.gateway).origin
        this.#peers.set(unit, {
          pool: new Pool(origin, { connections: 64, keepAliveTimeout: 60_000 }),
          origin,
        })
      }
    }
    agent.on('applied', () => this.#rulesChanged())
    if (agent.router !== undefined) this.#rulesChanged()
  }

  /** Recompiles per-app routers (apps that override the fallback) and releases held requests. */
  #rulesChanged(): void {
    const base = this.agent.router
    if (base === undefined || base.version === this.#version) return
    this.#version = base.version
    this.#routers.clear()
    for (const app of this.config.apps) {
      if (app.fallback === undefined) continue
      try {
        this.#routers.set(
          app.name,
          compileRouter(base.ruleSet, { localUnit: this.config.unit, fallback: app.fallback }),
        )
      } catch (err) {
        this.#log.error(
          { app: app.name, err: (err as Error).message },
          'app fallback does not fit the rule set; using the rule set fallback',
        )
      }
    }
    this.hold.release()
  }

  /** True when the peer token on the request is ours (compared in constant time). */
  #trusted(req: IncomingMessage): boolean {
    const token = this.#peerToken
    const sent = req.headers[PEER_HEADER]
    if (token === undefined || typeof sent !== 'string') return false
    const b = Buffer.from(sent)
    return b.length === token.length && timingSafeEqual(b, token)
  }

  /** Decides where a request goes; answers it and returns undefined when it cannot be routed. */
  #decide(req: IncomingMessage, res: ServerResponse | undefined): Decision | undefined {
    const app = this.#apps.match(req.headers.host, req.url)
    if (app === undefined) {
      this.#reject(res, 404, 'NO_APP', `no app serves ${req.headers.host ?? ''}${req.url ?? ''}`)
      return undefined
    }
    const trusted = this.#trusted(req)
    let hops = 0
    let headerId: string | undefined
    if (trusted) {
      const values = readRouteHeaders(req.headers)
      hops = values.hops
      headerId = values.routeId
    }
    delete req.headers[PEER_HEADER]
    // A client may not set the internal headers (or the appactive baggage): the edge strips them.
    if (!trusted) stripRouteHeaders(req.headers as Record<string, unknown>)
    const router = this.#routers.get(app.name) ?? this.agent.router
    if (router === undefined) {
      this.#reject(res, 503, 'NO_RULES', 'the gateway has no rule set yet', { 'retry-after': '1' })
      return undefined
    }
    if (!app.unitEnabled) {
      return {
        app,
        router,
        routeId: undefined,
        unit: this.config.unit,
        fenced: false,
        reason: 'unit_disabled',
        hops,
      }
    }
    const routeId = headerId ?? router.extract(req)
    const code = router.lookup(routeId)
    this.agent.metrics.decision(code)
    const unit = router.unitAt(code)
    if (unit === null) {
      this.#reject(
        res,
        400,
        'APPACTIVE_NO_ROUTE_ID',
        `no usable route id (${router.reasonAt(code)}) and the fallback rejects it`,
      )
      return undefined
    }
    return { app, router, routeId, unit, fenced: router.fencedAt(code), reason: router.reasonAt(code), hops }
  }

  #reject(
    res: ServerResponse | undefined,
    status: number,
    code: string,
    message: string,
    headers?: Record<string, string>,
  ): void {
    if (res !== undefined) sendError(res, status, code, message, headers)
    this.#requests.count('-', '-', code)
  }

  /** Chooses the instance or peer gateway for a decision; answers and returns undefined when there is none. */
  #target(d: Decision, res: ServerResponse | undefined): Target | undefined {
    const local = d.unit === this.config.unit
    if (!local && this.config.forwarding === 'gateway') {
      if (d.hops >= 1) {
        this.#reject(
          res,
          508,
          'LOOP_DETECTED',
          `already forwarded once, and unit ${d.unit} owns this route id`,
        )
        return undefined
      }
      const peer = this.#peers.get(d.unit)
      if (peer === undefined) {
        this.#reject(res, 502, 'NO_PEER_GATEWAY', `no gateway is configured for unit ${d.unit}`)
        return undefined
      }
      return { kind: 'peer', pool: peer.pool, origin: peer.origin }
    }
    const set = this.upstreams.get(d.app.name, d.unit)
    const instance = set?.pick()
    if (instance === undefined) {
      const why = set === undefined ? 'has no upstreams' : 'has no healthy instance'
      this.#reject(res, 503, 'APPACTIVE_NO_PROVIDER', `app ${d.app.name} ${why} in unit ${d.unit}`, {
        'retry-after': '1',
      })
      return undefined
    }
    return { kind: 'instance', instance }
  }

  /** Outgoing headers: the request's, the hop headers, and the peer token when going to a peer gateway. */
  #headers(req: IncomingMessage, d: Decision, peer: boolean): Record<string, string | string[]> {
    const headers = upstreamHeaders(req, this.config.tls !== undefined)
    // The hop headers, and the route id in baggage (a client's appactive.* members were stripped already).
    assignRoute(headers, {
      routeId: d.routeId,
      unit: d.unit,
      ruleVersion: d.router.version,
      hops: d.hops + (peer ? 1 : 0),
    })
    if (peer && this.config.peerToken !== undefined) headers[PEER_HEADER] = this.config.peerToken
    return headers
  }

  /**
   * Handles one HTTP request. Never throws. The common path (not held) is synchronous up to the
   * forward and creates no promise: at tens of thousands of requests a second, each one shows.
   */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now()
    try {
      const d = this.#decide(req, res)
      if (d === undefined) return
      if (d.fenced && this.hold.applies(req.method)) {
        this.#holdThenSend(req, res, d, started).catch((err: unknown) => this.#internalError(req, res, err))
        return
      }
      this.#send(req, res, d, started, 0)
    } catch (err) {
      this.#internalError(req, res, err)
    }
  }

  #internalError(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    this.#log.error({ err: (err as Error)?.message, url: req.url }, 'request failed')
    sendError(res, 500, 'INTERNAL', 'internal error')
  }

  async #holdThenSend(
    req: IncomingMessage,
    res: ServerResponse,
    d: Decision,
    started: number,
  ): Promise<void> {
    const held = await this.#holdUntilUnfenced(req, res, d)
    const heldMs = performance.now() - started
    if (held !== undefined) this.#send(req, res, held, started, heldMs)
  }

  /** Forwards a decided request to its target and accounts for it when it ends. */
  #send(req: IncomingMessage, res: ServerResponse, d: Decision, started: number, heldMs: number): void {
    const target = this.#target(d, res)
    if (target === undefined) return
    const x: Exchange = {
      req,
      res,
      d,
      started,
      heldMs,
      headers: this.#headers(req, d, target.kind === 'peer'),
    }
    if (target.kind === 'instance') {
      this.#attempt(x, target.instance, 1)
      return
    }
    forwardWith(req, res, target.pool, target.origin, x.headers, false, (result) => {
      try {
        this.#finished(x, 'gateway', result)
      } catch (err) {
        this.#internalError(req, res, err)
      }
    })
  }

  /** One try on an instance of the owner unit. */
  #attempt(x: Exchange, instance: Instance, tries: number): void {
    instance.begin()
    forwardWith(
      x.req,
      x.res,
      instance.pool,
      instance.origin,
      x.headers,
      tries < MAX_CONNECT_TRIES,
      (result) => {
        try {
          this.#tried(x, instance, tries, result)
        } catch (err) {
          this.#internalError(x.req, x.res, err)
        }
      },
    )
  }

  /** A refused connection sent nothing: the unit's other instances are tried (never another unit's). */
  #tried(x: Exchange, instance: Instance, tries: number, result: ForwardResult): void {
    instance.end(result.upstreamOk, result.cause)
    const { d } = x
    if (result.retryable) {
      const next = this.upstreams.get(d.app.name, d.unit)?.pick()
      if (next !== undefined && next !== instance) {
        this.#attempt(x, next, tries + 1)
        return
      }
      sendError(
        x.res,
        502,
        'UPSTREAM_UNREACHABLE',
        `no instance of ${d.app.name} in unit ${d.unit} accepted the connection`,
      )
      this.#finished(x, instance.url, { ...result, retryable: false })
      return
    }
    this.#finished(x, instance.url, result)
  }

  /** Counts and logs a forwarded request. */
  #finished({ req, d, started, heldMs }: Exchange, via: string, result: ForwardResult): void {
    this.#requests.count(d.app.name, d.unit, statusClass(result.status))
    this.#access?.info(
      {
        app: d.app.name,
        method: req.method,
        url: req.url,
        status: result.status,
        ms: Math.round((performance.now() - started) * 10) / 10,
        unit: d.unit,
        reason: d.reason,
        key: d.routeId === undefined ? undefined : d.router.keyOf(d.routeId),
        fenced: d.fenced || undefined,
        heldMs: heldMs > 0 ? Math.round(heldMs) : undefined,
        via,
        error: result.error,
      },
      'request',
    )
  }

  /** Waits for the fence on `d` to lift (bounded); returns the new decision, or answers 503 and returns undefined. */
  async #holdUntilUnfenced(
    req: IncomingMessage,
    res: ServerResponse,
    d: Decision,
  ): Promise<Decision | undefined> {
    const abort = new AbortController()
    const onClose = () => abort.abort()
    res.once('close', onClose)
    const deadline = performance.now() + this.hold.maxMs
    try {
      let current = d
      while (current.fenced) {
        const outcome = await this.hold.wait(deadline - performance.now(), abort.signal)
        if (outcome === 'aborted') {
          this.#holds.inc({ outcome })
          return undefined
        }
        if (outcome !== 'changed') {
          this.#holds.inc({ outcome })
          this.#reject(
            res,
            503,
            'APPACTIVE_FENCED',
            'this route id is being moved between units; retry shortly',
            {
              'retry-after': String(this.hold.retryAfterS),
            },
          )
          return undefined
        }
        const next = this.#decide(req, res)
        if (next === undefined) return undefined
        current = next
      }
      this.#holds.inc({ outcome: 'released' })
      return current
    } finally {
      res.off('close', onClose)
    }
  }

  /** Handles a WebSocket (or other) upgrade: routed at upgrade time like any request. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const d = this.#decide(req, undefined)
    if (d === undefined) {
      refuse(socket, 400, 'the upgrade request cannot be routed')
      return
    }
    if (d.fenced) {
      refuse(socket, 503, 'this route id is being moved between units; retry shortly')
      return
    }
    const target = this.#target(d, undefined)
    if (target === undefined) {
      refuse(socket, 503, 'no instance can take this upgrade')
      return
    }
    const headers = this.#headers(req, d, target.kind === 'peer')
    const dispatcher = target.kind === 'peer' ? target.pool : target.instance.pool
    proxyUpgrade(req, socket, head, dispatcher, headers, this.#log, this.#upgraded)
  }

  async close(): Promise<void> {
    this.hold.close()
    for (const socket of this.#upgraded) socket.destroy()
    await Promise.all([...this.#peers.values()].map((p) => p.pool.close()))
  }
}

/**
 * `appactive_gateway_requests_total{app,unit,code}`, counted in plain numbers on the hot path and folded
 * into the prom-client counter when scraped (prom-client's labelled `inc` hashes its labels per call).
 */
class RequestCounts {
  /** app -> unit -> code -> count: three lookups of strings whose hashes V8 keeps, no key built per request. */
  readonly #pending = new Map<string, Map<string, Map<string, Pending>>>()

  constructor(registers: Registry[]) {
    const pending = this.#pending
    new Counter({
      name: 'appactive_gateway_requests_total',
      help: 'Requests answered, by app, unit sent to, and status code class (or error code).',
      labelNames: ['app', 'unit', 'code'],
      registers,
      collect() {
        for (const units of pending.values())
          for (const codes of units.values())
            for (const entry of codes.values()) {
              if (entry.n === 0) continue
              this.inc(entry.labels, entry.n)
              entry.n = 0
            }
      },
    })
  }

  count(app: string, unit: string, code: string): void {
    let units = this.#pending.get(app)
    if (units === undefined) {
      units = new Map()
      this.#pending.set(app, units)
    }
    let codes = units.get(unit)
    if (codes === undefined) {
      codes = new Map()
      units.set(unit, codes)
    }
    const entry = codes.get(code)
    if (entry !== undefined) entry.n++
    else codes.set(code, { labels: { app, unit, code }, n: 1 })
  }
}

interface Pending {
  readonly labels: Record<'app' | 'unit' | 'code', string>
  n: number
}

function statusClass(status: number): string {
  return status >= 500
    ? '5xx'
    : status >= 400
      ? '4xx'
      : status >= 300
        ? '3xx'
        : status >= 200
          ? '2xx'
          : String(status)
}

function refuse(socket: Duplex, status: number, message: string): void {
  const body = JSON.stringify({ error: { code: String(status), message } })
  socket.end(
    `HTTP/1.1 ${status} ${status === 400 ? 'Bad Request' : 'Service Unavailable'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  )
}
