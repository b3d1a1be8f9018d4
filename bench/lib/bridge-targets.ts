/**
 * The targets of `bench:bridges`, one per process: `node bridge-targets.js KIND PORT [BACKEND]` (compiled
 * by the bench) or `node --import tsx bench/lib/bridge-targets.ts KIND PORT [BACKEND]`.
 *
 *   express-plain / express-appactive   Express 5, `GET /orders/:id` answers `{ id, routeId }` with res.json
 *   fastify-plain / fastify-appactive   Fastify 5, the same route as an async handler
 *   client-plain  / client-appactive    node:http; every request is sent on to BACKEND (bench/lib/backend.ts)
 *                                       through an undici Agent and the backend's body is answered
 *
 * A plain target is the same code without appactive: it never imports it, so no AsyncLocalStorage is ever
 * enabled in its process (on Node 20 an enabled ALS adds async hooks to every promise: a cost of the
 * adapter, which the bench must see). An appactive target holds a real agent (rules applied, no cache, no
 * channels, silent logger) with unit `hz` of the bridge tests' 3-unit topology (`uid` from the query,
 * `mod 10000`; hz owns 3333~6665):
 *   - express / fastify: appactiveMiddleware / appactivePlugin with `{ '/orders/**': 'unit' }`; the
 *     handler's routeId is `currentRouteId()`, so the answer shows the handler ran inside the context;
 *   - client: the dispatcher is `new Agent().compose(routeInterceptor())` and the call runs inside
 *     `runWithRoute({ routeId: <uid of the query>, unit, ruleVersion, hops: 0 })`, so the hop headers and
 *     the baggage member are sent.
 */
import { createServer, type Server, type ServerResponse } from 'node:http'
import pino from 'pino'
import { Agent, type Dispatcher } from 'undici'
import { threeUnits } from '../../test/helpers/topology.js'

const KINDS = [
  'express-plain',
  'express-appactive',
  'fastify-plain',
  'fastify-appactive',
  'client-plain',
  'client-appactive',
] as const
type Kind = (typeof KINDS)[number]

const [kindArg, portArg, backend] = process.argv.slice(2)
const kind = kindArg as Kind
const port = Number(portArg)
if (!KINDS.includes(kind) || !Number.isInteger(port) || port <= 0 || (kind.startsWith('client') && !backend))
  throw new Error(`usage: bridge-targets.ts ${KINDS.join('|')} PORT [BACKEND_ORIGIN (client-*)]`)
const appactive = kind.endsWith('-appactive')

/** A real agent of unit hz with the 3-unit rule set applied. */
async function hzAgent() {
  const { createAgent } = await import('../../src/agent/index.js')
  const agent = createAgent({
    unit: 'hz',
    app: 'bench',
    logger: pino({ level: 'silent' }),
    cache: false,
    channels: [],
  })
  const outcome = agent.apply(threeUnits(1))
  if (outcome.status !== 'applied') throw new Error(`rule set not applied: ${JSON.stringify(outcome)}`)
  return agent
}

const services = { '/orders/**': 'unit' } as const
/** What the handler reports as its route id: the context's, or null where there is none. */
let routeIdOf: () => string | null = () => null

async function expressServer(): Promise<Server> {
  const { default: express } = await import('express')
  const app = express()
  if (appactive) {
    const { appactiveMiddleware } = await import('../../src/bridges/http-server/express.js')
    const { currentRouteId } = await import('../../src/context/index.js')
    app.use(appactiveMiddleware({ agent: await hzAgent(), services }))
    routeIdOf = () => currentRouteId() ?? null
  }
  app.get('/orders/:id', (req, res) => {
    res.json({ id: req.params.id, routeId: routeIdOf() })
  })
  return app.listen(port, '127.0.0.1')
}

async function fastifyServer(): Promise<Server> {
  const { default: Fastify } = await import('fastify')
  const app = Fastify({ logger: false })
  if (appactive) {
    const { appactivePlugin } = await import('../../src/bridges/http-server/fastify.js')
    const { currentRouteId } = await import('../../src/context/index.js')
    await app.register(appactivePlugin, { agent: await hzAgent(), services })
    routeIdOf = () => currentRouteId() ?? null
  }
  app.get<{ Params: { id: string } }>('/orders/:id', async (request) => ({
    id: request.params.id,
    routeId: routeIdOf(),
  }))
  await app.listen({ port, host: '127.0.0.1' })
  return app.server
}

async function clientServer(): Promise<Server> {
  const origin = backend!
  let dispatcher: Dispatcher = new Agent({ connections: 128, keepAliveTimeout: 60_000 })
  /** Sends `path` to the backend and answers its status and body. */
  const forward = async (path: string, res: ServerResponse): Promise<void> => {
    try {
      const up = await dispatcher.request({ origin, path, method: 'GET' })
      const body = Buffer.from(await up.body.arrayBuffer())
      res.writeHead(up.statusCode, { 'content-type': 'application/json', 'content-length': body.length })
      res.end(body)
    } catch {
      if (res.headersSent) res.destroy()
      else res.writeHead(502).end()
    }
  }
  let handle = forward
  if (appactive) {
    const { routeInterceptor } = await import('../../src/bridges/http-client/undici.js')
    const { runWithRoute } = await import('../../src/context/index.js')
    const agent = await hzAgent()
    const [unit, ruleVersion] = [agent.identity.unit, agent.version]
    dispatcher = (dispatcher as Agent).compose(routeInterceptor())
    handle = (path, res) => {
      const q = path.indexOf('uid=')
      const routeId = q === -1 ? undefined : path.slice(q + 4)
      return runWithRoute({ routeId, unit, ruleVersion, hops: 0 }, () => forward(path, res))
    }
  }
  const server = createServer((req, res) => void handle(req.url ?? '/', res))
  return server.listen({ host: '127.0.0.1', port })
}

const start = { express: expressServer, fastify: fastifyServer, client: clientServer }[
  kind.slice(0, kind.indexOf('-')) as 'express' | 'fastify' | 'client'
]
const server = await start()
server.keepAliveTimeout = 65_000
process.on('SIGTERM', () => {
  server.closeAllConnections()
  // Exiting (not just closing) lets `--cpu-prof` write its profile.
  server.close(() => process.exit(0))
})
