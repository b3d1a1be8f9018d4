/**
 * What every shop service of the demo shares: its agent (rules pushed by the control plane, lease,
 * acks), a node:http server behind appactive's provider protection, a unit-aware client for the other
 * services, JSON answers, and a clean stop on SIGTERM or when the supervisor goes away.
 *
 * Settings come from the environment the supervisor passes: APPACTIVE_UNIT, APPACTIVE_CONTROL_URL,
 * APPACTIVE_TOKEN (DESIGN §6); the port follows from the app and the unit (lib/topology.ts).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createAgent, type RoutingAgent, StaticRegistry } from 'appactive/agent'
import { AppActiveError } from 'appactive/errors'
import { type ServiceType, withAppActive } from 'appactive/node-http'
import { createServiceClient, type ServiceClient } from 'appactive/undici'
import { onStop } from './lifecycle.js'
import { type AppName, instancesOf, servicePort, UNITS, type UnitName } from './topology.js'

/** One hop of a request: which app in which unit served it. */
export interface Hop {
  readonly app: string
  readonly unit: string
}

/** An answer of a handler: status (default 200) and a JSON body. */
export interface Reply {
  readonly status?: number
  readonly body: unknown
  readonly headers?: Readonly<Record<string, string>>
}

export interface RequestContext {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly url: URL
}

/** A handler answers with a Reply, or writes `res` itself and returns undefined (static files, SSE). */
export type Handler = (ctx: RequestContext) => Promise<Reply | undefined> | Reply | undefined

/** A refusal of the demo's own (bad input, sold out), answered as `{ error: { code, message } }`. */
export class DemoError extends Error {
  readonly status: number
  readonly code: string
  readonly extra: Readonly<Record<string, unknown>>
  constructor(status: number, code: string, message: string, extra: Record<string, unknown> = {}) {
    super(message)
    this.status = status
    this.code = code
    this.extra = extra
  }
}

/** The answer for any error a handler throws: the demo's own, appactive's typed ones, anything else. */
export function errorReply(err: unknown, extra: Record<string, unknown> = {}): Reply {
  if (err instanceof DemoError) {
    return {
      status: err.status,
      body: { error: { code: err.code, message: err.message }, ...err.extra, ...extra },
    }
  }
  if (err instanceof AppActiveError) {
    const headers: Record<string, string> = err.retryable ? { 'retry-after': '1' } : {}
    return {
      status: err.httpStatus,
      headers,
      body: { error: { code: err.code, message: err.message }, ...extra },
    }
  }
  const code = (err as { code?: unknown })?.code
  return {
    status: 502,
    body: {
      error: {
        code: typeof code === 'string' ? code : 'INTERNAL',
        message: (err as Error)?.message ?? String(err),
      },
      ...extra,
    },
  }
}

/** A whole number from the query string, within bounds, or a 400 naming the parameter. */
export function intParam(url: URL, name: string, fallback?: number, min = 1, max = 1_000_000): number {
  const raw = url.searchParams.get(name)
  if (raw === null || raw === '') {
    if (fallback !== undefined) return fallback
    throw new DemoError(400, 'BAD_REQUEST', `${name} is required`)
  }
  const n = /^\d{1,9}$/.test(raw) ? Number(raw) : Number.NaN
  if (!(n >= min && n <= max)) {
    throw new DemoError(
      400,
      'BAD_REQUEST',
      `${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`,
    )
  }
  return n
}

/** Reads a JSON request body (at most 64 KiB). */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0
  const chunks: Buffer[] = []
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > 65_536) throw new DemoError(413, 'BODY_TOO_LARGE', 'the body is larger than 64 KiB')
    chunks.push(chunk)
  }
  if (size === 0) return {}
  try {
    const value = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
    if (typeof value === 'object' && value !== null && !Array.isArray(value))
      return value as Record<string, unknown>
  } catch {}
  throw new DemoError(400, 'BAD_JSON', 'the body must be a JSON object')
}

function send(res: ServerResponse, reply: Reply): void {
  const text = JSON.stringify(reply.body)
  res.writeHead(reply.status ?? 200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...reply.headers,
  })
  res.end(text)
}

/** The unit this process stands in, from APPACTIVE_UNIT. */
function unitFromEnv(): UnitName {
  const unit = process.env.APPACTIVE_UNIT
  if (!UNITS.includes(unit as UnitName)) {
    throw new Error(`APPACTIVE_UNIT must be one of ${UNITS.join(', ')}, got ${JSON.stringify(unit)}`)
  }
  return unit as UnitName
}

export interface Service {
  readonly app: AppName
  readonly unit: UnitName
  readonly port: number
  readonly agent: RoutingAgent
  /** This process as a hop of the chain. */
  readonly hop: Hop
  /** A unit-aware client of the other demo services (see `client`). */
  client(services: Readonly<Record<string, { readonly type: ServiceType }>>): ServiceClient
  /** Serves `routes` ('GET /path') behind appactive's protection of `services` (path pattern -> type). */
  serve(
    services: Readonly<Record<string, ServiceType>>,
    routes: Readonly<Record<string, Handler>>,
  ): Promise<void>
  /** Runs `fn` when the process stops, before the agent leaves the control plane. */
  onClose(fn: () => unknown): void
}

/**
 * Starts this process's agent (registers with the control plane and waits for the first rule set) and
 * returns what a service needs. Resolves once the agent has made its first attempt.
 */
export async function startService(app: AppName): Promise<Service> {
  const unit = unitFromEnv()
  const port = servicePort(app, unit)
  const agent = createAgent({
    app,
    unit,
    nodeId: `${app}-${unit}`,
    address: `http://127.0.0.1:${port}`,
    cache: false, // every run starts from a fresh control-plane store
  })
  const closers: (() => unknown)[] = []
  const clients: ServiceClient[] = []
  let server: ReturnType<typeof createServer> | undefined

  onStop(async (why) => {
    agent.logger.info({ why }, 'stopping')
    if (server !== undefined) {
      const closed = new Promise((resolve) => server!.close(resolve))
      server.closeIdleConnections()
      setTimeout(() => server!.closeAllConnections(), 500).unref()
      await closed
    }
    for (const fn of closers) await fn()
    await Promise.all(clients.map((c) => c.close()))
    await agent.close() // leaves the control plane gracefully
  })
  await agent.start()

  const registry = new StaticRegistry({
    product: instancesOf('product'),
    'product-detail': instancesOf('product'),
    'product-buy': instancesOf('product'),
    storage: instancesOf('storage'),
    orders: instancesOf('orders'),
  })

  return {
    app,
    unit,
    port,
    agent,
    hop: { app, unit },
    client(services) {
      const client = createServiceClient({ agent, registry, services, timeouts: { headersMs: 10_000 } })
      clients.push(client)
      return client
    },
    onClose(fn) {
      closers.push(fn)
    },
    async serve(services, routes) {
      const table = new Map(Object.entries(routes))
      const handler = withAppActive(
        async (req: IncomingMessage, res: ServerResponse) => {
          const url = new URL(req.url ?? '/', 'http://demo.invalid')
          const route = table.get(`${req.method} ${url.pathname}`)
          let reply: Reply | undefined
          if (route === undefined) {
            reply = {
              status: 404,
              body: { error: { code: 'NOT_FOUND', message: `no ${req.method} ${url.pathname} here` } },
            }
          } else {
            try {
              reply = await route({ req, res, url })
            } catch (err) {
              reply = errorReply(err, { chain: [{ app, unit }] })
              if (reply.status === 502)
                agent.logger.error({ err: (err as Error).message, url: req.url }, 'request failed')
            }
          }
          if (reply !== undefined && !res.headersSent) send(res, reply)
        },
        { agent, services: { '/healthz': 'normal', ...services } },
      )
      table.set('GET /healthz', () => {
        const s = agent.state()
        const ready = s.version >= 0 && (s.lease === 'valid' || s.lease === 'off')
        return { status: ready ? 200 : 503, body: { app, unit, ready, version: s.version, lease: s.lease } }
      })
      server = createServer(handler)
      server.keepAliveTimeout = 65_000
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject)
        server!.listen(port, '127.0.0.1', () => resolve())
      })
      agent.logger.info({ port }, `${app} in unit ${unit} listening on http://127.0.0.1:${port}`)
    },
  }
}

/** Calls another service and returns its status and JSON body (any HTTP status is an answer). */
export async function callJson(
  client: ServiceClient,
  service: string,
  path: string,
  options: { method?: 'GET' | 'POST'; body?: unknown } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await client.request(service, path, {
    method: options.method ?? 'GET',
    ...(options.body === undefined
      ? {}
      : { body: JSON.stringify(options.body), headers: { 'content-type': 'application/json' } }),
  })
  const text = await res.body.text()
  let body: Record<string, unknown>
  try {
    body = JSON.parse(text) as Record<string, unknown>
  } catch {
    body = { error: { code: 'BAD_ANSWER', message: `${service} answered ${res.statusCode} with no JSON` } }
  }
  return { status: res.statusCode, body }
}

/** The chain a callee reported, or nothing. */
export function chainOf(body: Record<string, unknown>): Hop[] {
  return Array.isArray(body.chain) ? (body.chain as Hop[]) : []
}
