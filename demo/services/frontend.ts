/**
 * frontend: the shop's pages and JSON API, in every unit, behind that unit's gateway. A `normal`
 * service: it serves whatever its gateway sends it, and calls product's three services and orders,
 * which pick their unit by type (list: this unit; detail and orders: the user's unit; buy: the center).
 *
 * Every JSON answer carries `chain` (the {app, unit} of every hop that served it, in call order: the
 * entry gateway, the owner's gateway when the request crossed units, this frontend, then its callees),
 * `ruleVersion` (the rule set this frontend holds) and `route` (its decision for the request's r_id).
 *
 *   GET /                        the page (demo/public)
 *   GET /api/list                the products
 *   GET /api/detail?pId=         one product, from the user's unit
 *   GET|POST /api/buy?pId=&number=   buy: stock in the center, the order in the user's unit
 *   GET /api/orders              the user's orders
 *   GET /api/rules               the rule set in force; /api/events streams it (server-sent events)
 */
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { currentRouteId } from 'appactive/context'
import { callJson, chainOf, DemoError, type Hop, intParam, type Reply, startService } from '../lib/service.js'
import { GATEWAY_PORTS, UNITS } from '../lib/topology.js'

const svc = await startService('frontend')
const { agent } = svc
const client = svc.client({
  product: { type: 'normal' },
  'product-detail': { type: 'unit' },
  'product-buy': { type: 'center' },
  orders: { type: 'unit' },
})

// ---- the hops before this frontend -------------------------------------------------------------

const gatewayByPort = new Map(UNITS.map((u) => [String(GATEWAY_PORTS[u]), u]))

/** The gateways a request came through: the entry one (from X-Forwarded-Host) and, if it was forwarded, ours. */
function gatewayHops(req: IncomingMessage): Hop[] {
  const host = req.headers['x-forwarded-host']
  const port = typeof host === 'string' ? host.slice(host.lastIndexOf(':') + 1) : ''
  const entry = gatewayByPort.get(port)
  if (entry === undefined) return [] // called directly, not through a gateway
  const hops = Number(req.headers['x-appactive-hops'] ?? 0)
  return hops > 0 && entry !== svc.unit
    ? [
        { app: 'gateway', unit: entry },
        { app: 'gateway', unit: svc.unit },
      ]
    : [{ app: 'gateway', unit: entry }]
}

/** The rule set in force, as the page shows it. */
function rulesView() {
  const rs = agent.router?.ruleSet
  if (rs === undefined) return { version: -1 }
  return {
    version: rs.version,
    units: rs.units.map((u) => ({ name: u.name, center: u.center === true })),
    mapping: rs.mapping.map((m) => ({ unit: m.unit, ranges: m.ranges ?? [], labels: m.labels ?? [] })),
    fence: { ranges: rs.fence?.ranges ?? [], labels: rs.fence?.labels ?? [] },
    fallback: rs.fallback ?? 'local',
  }
}

/** Wraps a handler's payload: the chain so far plus the callee's, the rule version and the route decision. */
function envelope(
  req: IncomingMessage,
  status: number,
  body: Record<string, unknown>,
  callee: Hop[] = [],
): Reply {
  const id = currentRouteId()
  const d = agent.router === undefined ? undefined : agent.route(id)
  const retryable = status === 503 || status === 421 || status === 508
  return {
    status,
    headers: retryable ? { 'retry-after': '1' } : {},
    body: {
      ...body,
      chain: [...gatewayHops(req), svc.hop, ...callee],
      ruleVersion: agent.version,
      route: {
        id: id ?? null,
        unit: d?.unit ?? null,
        key: d?.key ?? null,
        reason: d?.reason ?? null,
        fenced: d?.fenced ?? false,
      },
    },
  }
}

/** Calls a product service and wraps its answer, good or bad, with the chain. */
async function relay(
  req: IncomingMessage,
  service: string,
  path: string,
  method: 'GET' | 'POST' = 'GET',
): Promise<Reply> {
  try {
    const { status, body } = await callJson(client, service, path, { method })
    const callee = chainOf(body)
    delete body.chain
    return envelope(req, status, body, callee)
  } catch (err) {
    const e = err as { code?: string; message?: string; httpStatus?: number }
    return envelope(req, e.httpStatus ?? 502, {
      error: { code: e.code ?? 'UPSTREAM_FAILED', message: e.message ?? String(err) },
    })
  }
}

/** Unit services need to know whose data they serve. */
function needUser(what: string): void {
  if (currentRouteId() === undefined) {
    throw new DemoError(
      400,
      'APPACTIVE_NO_ROUTE_ID',
      `no r_id: ${what} is unit data, served only by the unit that owns the user; give r_id (query, header or cookie)`,
    )
  }
}

function guarded(fn: (req: IncomingMessage, url: URL) => Promise<Reply>) {
  return async ({ req, url }: { req: IncomingMessage; url: URL }): Promise<Reply> => {
    try {
      return await fn(req, url)
    } catch (err) {
      if (!(err instanceof DemoError)) throw err
      return envelope(req, err.status, { error: { code: err.code, message: err.message } })
    }
  }
}

// ---- live rule updates (server-sent events) ------------------------------------------------------

const streams = new Set<ServerResponse>()
const push = (res: ServerResponse) => res.write(`event: rules\ndata: ${JSON.stringify(rulesView())}\n\n`)
agent.on('applied', () => {
  for (const res of streams) push(res)
})
const keepAlive = setInterval(() => {
  for (const res of streams) res.write(': keep-alive\n\n')
}, 15_000)
keepAlive.unref()
svc.onClose(() => {
  clearInterval(keepAlive)
  for (const res of streams) res.end()
})

// ---- the page ------------------------------------------------------------------------------------

const publicDir = new URL('../public/', import.meta.url)
const TYPES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
}
const files = new Map(Object.keys(TYPES).map((name) => [name, readFileSync(new URL(name, publicDir))]))

function asset(name: string) {
  return ({ res }: { res: ServerResponse }) => {
    const body = files.get(name)!
    res.writeHead(200, {
      'content-type': TYPES[name]!,
      'content-length': body.length,
      'cache-control': 'no-store',
    })
    res.end(body)
    return undefined
  }
}

const buy = guarded(async (req, url) => {
  needUser('an order')
  const pId = intParam(url, 'pId')
  const number = intParam(url, 'number', 1, 1, 1000)
  return relay(req, 'product-buy', `/buy?pId=${pId}&number=${number}`, 'POST')
})

await svc.serve(
  {},
  {
    'GET /': asset('index.html'),
    'GET /index.html': asset('index.html'),
    'GET /app.js': asset('app.js'),
    'GET /style.css': asset('style.css'),
    'GET /api/list': guarded((req) => relay(req, 'product', '/list')),
    'GET /api/detail': guarded(async (req, url) => {
      needUser('the product detail')
      return relay(req, 'product-detail', `/detail?pId=${intParam(url, 'pId')}`)
    }),
    'GET /api/buy': buy,
    'POST /api/buy': buy,
    'GET /api/orders': guarded(async (req) => {
      needUser('the order history')
      return relay(req, 'orders', '/orders')
    }),
    'GET /api/rules': guarded(async (req) => envelope(req, 200, { rules: rulesView() })),
    'GET /api/events': ({ res }) => {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      })
      res.write('retry: 1000\n\n')
      push(res)
      streams.add(res)
      res.on('close', () => streams.delete(res))
      return undefined
    },
  },
)
