/**
 * The control-plane HTTP server (fastify 5): the REST API under /v1, its OpenAPI document at
 * /openapi.json, bearer-token roles, JSON error bodies `{ code, message, issues? }`, server-sent events
 * of operation progress, and the agent channel (RuleServer) mounted under /v1/agent.
 *
 * The channel server reads its own request bodies with its own limits and holds SSE streams, so it
 * gets the raw requests before fastify sees them (through `serverFactory`): fastify never parses, times
 * out or logs them.
 */
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import swagger from '@fastify/swagger'
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify'
import type { Logger } from 'pino'
import { createRuleServer, type RuleServer } from '../channels/index.js'
import { RuleInvalidError } from '../errors/index.js'
import {
  type Authenticator,
  checkTokenConfig,
  type Principal,
  type Role,
  roleAllows,
  type TokenConfig,
} from './auth.js'
import { ControlError } from './errors.js'
import { OperationEvents } from './events.js'
import type { OrchestratorFactory } from './orchestrator-types.js'
import { registerRoutes } from './routes.js'
import { SHARED_SCHEMAS } from './schemas.js'
import { ControlService } from './service.js'
import type { Store } from './store/types.js'

/** Default largest request body: a rule set with tens of thousands of ranges still fits. */
export const DEFAULT_BODY_LIMIT = 4 * 1024 * 1024

export interface ControlPlaneOptions {
  /** An opened, migrated store (see `openStore`); the caller closes it. */
  readonly store: Store
  /** API and agent tokens (see `loadTokenConfig`). Needs an admin token and an agent token. */
  readonly tokens: TokenConfig
  /** Where `listen()` binds; default 127.0.0.1:7070. */
  readonly listen?: { readonly host?: string; readonly port?: number }
  /** The orchestrator that runs operations; without one, starting an operation answers 501. */
  readonly orchestrator?: OrchestratorFactory
  /** pino logger for requests and the control plane; default none. */
  readonly logger?: Logger
  /** Largest API request body in bytes; default 4 MiB. */
  readonly bodyLimit?: number
  /** Agent lease and heartbeat (see RuleServerOptions). */
  readonly leaseMs?: number
  readonly heartbeatMs?: number
  /** Stored versions loaded into the channel server at start, so agents resume in order; default 64. */
  readonly replay?: number
  /** Wall clock, epoch ms; default Date.now. */
  readonly now?: () => number
}

export interface ControlPlane {
  readonly app: FastifyInstance
  readonly rules: RuleServer
  readonly store: Store
  readonly service: ControlService
  readonly events: OperationEvents
  /** Binds and starts serving; resolves to the base URL. */
  listen(): Promise<{ readonly url: string; readonly host: string; readonly port: number }>
  /** Ends event streams, the agent channel and the orchestrator, then the server (not the store). */
  close(): Promise<void>
}

/**
 * Builds the control plane: checks the tokens, loads the latest rule sets into the agent channel,
 * recovers running operations and prepares (without binding) the HTTP server.
 * @throws ControlConfigError without an admin token or an agent token (the control plane never runs open).
 */
export async function createControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const auth = checkTokenConfig(options.tokens)
  const now = options.now ?? Date.now
  const rules = createRuleServer({
    tokens: options.tokens.agentTokens,
    ...(options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {}),
    ...(options.heartbeatMs !== undefined ? { heartbeatMs: options.heartbeatMs } : {}),
  })
  const events = new OperationEvents(now)
  const service = new ControlService({
    store: options.store,
    rules,
    events,
    orchestrator: options.orchestrator,
    logger: options.logger,
    now,
  })
  try {
    await service.init(options.replay ?? 64)
  } catch (err) {
    await service.close()
    await rules.close()
    throw err
  }
  const streams = new Set<ServerResponse>()
  let app: FastifyInstance
  try {
    app = await buildApp(options, { auth, rules, service, streams, now })
  } catch (err) {
    await service.close()
    await rules.close()
    throw err
  }
  let closed: Promise<void> | undefined
  return {
    app,
    rules,
    store: options.store,
    service,
    events,
    async listen() {
      const host = options.listen?.host ?? '127.0.0.1'
      await app.listen({ host, port: options.listen?.port ?? 7070 })
      const addr = app.server.address() as AddressInfo
      const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
      return { url: `http://${shown}:${addr.port}`, host: addr.address, port: addr.port }
    },
    close() {
      closed ??= (async () => {
        for (const res of streams) res.end()
        await service.close()
        await rules.close()
        await app.close()
      })()
      return closed
    },
  }
}

/** The fastify app: hooks, error handling, OpenAPI, routes; the agent channel served in front of it. */
async function buildApp(
  options: ControlPlaneOptions,
  deps: {
    readonly auth: Authenticator
    readonly rules: RuleServer
    readonly service: ControlService
    readonly streams: Set<ServerResponse>
    readonly now: () => number
  },
): Promise<FastifyInstance> {
  const { auth, rules, service, streams, now } = deps
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT
  const app = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit,
    ajv: { customOptions: { allErrors: true, removeAdditional: false } },
    serverFactory: (handler) => {
      const server = createServer((req, res) => {
        if (!rules.handle(req, res)) handler(req, res)
      })
      // Agents keep their connection between heartbeats.
      server.keepAliveTimeout = 65_000
      return server
    },
  })
  const principals = new WeakMap<FastifyRequest, Principal>()

  app.addHook('onRequest', async (req, reply) => {
    const needed = (req.routeOptions.config as { role?: Role }).role
    if (needed === undefined) return
    const header = req.headers.authorization
    const m = typeof header === 'string' ? /^Bearer +(\S+)\s*$/i.exec(header) : null
    const who = auth.authenticate(m?.[1])
    if (!who) {
      reply.header('www-authenticate', 'Bearer')
      throw new ControlError(401, 'UNAUTHORIZED', 'missing or unknown bearer token')
    }
    if (!roleAllows(who.role, needed))
      throw new ControlError(403, 'FORBIDDEN', `role ${who.role} cannot do this; it needs ${needed}`)
    principals.set(req, who)
  })
  app.setErrorHandler((err: FastifyError, req, reply) => sendError(err, req, reply, bodyLimit))
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ code: 'NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]}` })
  })

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'appactive control plane',
        version: '1',
        description:
          'Topology, rule-set history, cut-overs and failovers, nodes and the audit log. Send `Authorization: Bearer <token>`; roles are viewer < operator < admin. Agents use /v1/agent (see the agent protocol).',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
  })
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema)
  await app.register(async (api) =>
    registerRoutes(api, {
      service,
      principal: (req) => principals.get(req)!,
      streams,
      now,
    }),
  )
  await app.ready()

  await app.ready()
  // The logger type parameter differs with a pino instance; callers only need the plain instance.
  return app as unknown as FastifyInstance
}

/** Every error as `{ code, message, issues? }` with its status. */
function sendError(err: FastifyError, req: FastifyRequest, reply: FastifyReply, bodyLimit: number): void {
  if (err instanceof ControlError) {
    reply.code(err.status).send(err.toJSON())
    return
  }
  if (err instanceof RuleInvalidError) {
    reply.code(400).send({ code: 'RULE_INVALID', message: err.message, issues: err.issues })
    return
  }
  if (err.validation) {
    const where = err.validationContext ?? 'body'
    const issues = err.validation.map((v) => {
      const missing = (v.params as { missingProperty?: string; additionalProperty?: string }) ?? {}
      const path = [where, ...v.instancePath.split('/').filter(Boolean)]
      if (missing.missingProperty) path.push(missing.missingProperty)
      if (missing.additionalProperty) path.push(missing.additionalProperty)
      const message = missing.additionalProperty ? 'is not a known field' : (v.message ?? 'is invalid')
      return { path: path.join('.'), message }
    })
    reply
      .code(400)
      .send({ code: 'BAD_REQUEST', message: `invalid request: ${issues.length} problem(s)`, issues })
    return
  }
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    reply
      .code(413)
      .send({ code: 'BODY_TOO_LARGE', message: `the request body is larger than ${bodyLimit} bytes` })
    return
  }
  const status = err.statusCode ?? 500
  if (status < 500) {
    reply.code(status).send({ code: err.code ?? 'BAD_REQUEST', message: err.message })
    return
  }
  req.log.error({ err }, 'request failed')
  reply.code(500).send({ code: 'INTERNAL', message: 'internal error (see the control-plane log)' })
}
