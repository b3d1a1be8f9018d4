/**
 * `createGateway(config)`: the gateway's servers (HTTP or HTTPS, plus an admin listener), its agent
 * (rules from a file, an AppActive directory or the control plane), and its upstream pools.
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import pino, { type Logger } from 'pino'
import { Registry } from 'prom-client'
import { createAgent, type RoutingAgent } from '../agent/index.js'
import { GatewayHandler } from './gateway.js'
import { sendError } from './proxy.js'
import type { GatewayConfig, ListenAddress } from './types.js'
import { UpstreamRegistry } from './upstreams.js'

/** Options of `createGateway` beyond the config file. */
export interface GatewayOptions {
  readonly logger?: Logger
  /** prom-client registry for the gateway's and its agent's metrics; default: the given agent's, else a new one. */
  readonly registry?: Registry
  /** An agent to use instead of building one from `config.rules` (tests, embedding). */
  readonly agent?: RoutingAgent
  /** Node id of the gateway's agent; default `gateway-<unit>-<pid>`. */
  readonly nodeId?: string
}

/** A running (or ready to run) gateway. */
export interface Gateway {
  readonly config: GatewayConfig
  readonly agent: RoutingAgent
  readonly handler: GatewayHandler
  readonly registry: Registry
  /** Starts the agent, the health checks and the listeners; resolves with the bound addresses. */
  listen(): Promise<{ main: AddressInfo; admin: AddressInfo | undefined }>
  /** True when rules are applied and every app has a healthy instance in the local unit. */
  ready(): { ready: boolean; reasons: string[] }
  close(): Promise<void>
}

/** Builds a gateway from a resolved config (see `loadGatewayConfig`). */
export function createGateway(config: GatewayConfig, options: GatewayOptions = {}): Gateway {
  const logger =
    options.logger ?? pino({ name: 'appactive-gateway', level: process.env.APPACTIVE_LOG_LEVEL ?? 'info' })
  const registry = options.registry ?? options.agent?.metrics.registry ?? new Registry()
  const agent =
    options.agent ??
    createAgent({
      unit: config.unit,
      app: 'gateway',
      nodeId: options.nodeId ?? `gateway-${config.unit}-${process.pid}`,
      rules: config.rules,
      ...(config.token !== undefined ? { token: config.token } : {}),
      logger,
      registry,
    })
  const upstreams = new UpstreamRegistry(config.apps, config.timeouts)
  const handler = new GatewayHandler(config, agent, upstreams, logger, registry)
  const server: Server =
    config.tls === undefined
      ? createHttpServer({ maxHeaderSize: config.maxHeaderBytes })
      : createHttpsServer({
          maxHeaderSize: config.maxHeaderBytes,
          cert: config.tls.cert,
          key: config.tls.key,
        })
  server.keepAliveTimeout = 65_000
  // handle() never throws: it answers 500 itself on an internal error.
  server.on('request', (req: IncomingMessage, res: ServerResponse) => handler.handle(req, res))
  server.on('upgrade', (req, socket, head) => handler.handleUpgrade(req, socket, head))
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy()
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request'
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
  })

  const ready = (): { ready: boolean; reasons: string[] } => {
    const reasons: string[] = []
    if (agent.router === undefined) reasons.push('no rule set applied')
    for (const app of config.apps) {
      const set = upstreams.get(app.name, config.unit)
      if (set !== undefined && set.healthy === 0)
        reasons.push(`app ${app.name} has no healthy instance in ${config.unit}`)
    }
    return { ready: reasons.length === 0, reasons }
  }

  let admin: Server | undefined
  if (config.admin !== undefined) {
    admin = createHttpServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (req.method !== 'GET') return sendError(res, 405, 'METHOD_NOT_ALLOWED', 'GET only')
      if (path === '/healthz') return json(res, 200, { ok: true })
      if (path === '/readyz') {
        const r = ready()
        return json(res, r.ready ? 200 : 503, {
          ...r,
          version: agent.version,
          upstreams: upstreams.snapshot(),
        })
      }
      if (path === '/metrics') {
        registry
          .metrics()
          .then((text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text))
          .catch(() => sendError(res, 500, 'INTERNAL', 'metrics failed'))
        return
      }
      sendError(res, 404, 'NOT_FOUND', 'try /metrics, /healthz or /readyz')
    })
  }

  let closed = false
  return {
    config,
    agent,
    handler,
    registry,
    ready,
    async listen() {
      if (options.agent === undefined) await agent.start()
      upstreams.start()
      const main = await bind(server, config.listen)
      const adminAddress = admin === undefined ? undefined : await bind(admin, config.admin!)
      logger.info(
        { listen: main, admin: adminAddress, unit: config.unit, version: agent.version },
        'gateway listening',
      )
      return { main, admin: adminAddress }
    },
    async close() {
      if (closed) return
      closed = true
      await Promise.all([stop(server), admin ? stop(admin) : undefined])
      await handler.close()
      await upstreams.close()
      if (options.agent === undefined) await agent.close()
    },
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res
    .writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    .end(text)
}

function bind(server: Server, at: ListenAddress): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: at.host, port: at.port, backlog: 4096 }, () => {
      server.off('error', reject)
      resolve(server.address() as AddressInfo)
    })
  })
}

function stop(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
    server.closeIdleConnections()
    setTimeout(() => server.closeAllConnections(), 2000).unref()
  })
}
