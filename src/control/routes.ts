/**
 * The REST routes. Each declares the role it needs (`config.role`, checked by the server's onRequest
 * hook) and its schema (validation and OpenAPI); the work is done by ControlService.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Principal, Role } from './auth.js'
import { ControlError } from './errors.js'
import type { OperationEvent } from './events.js'
import { type OperationKind, type OperationState, TERMINAL_STATES } from './model.js'
import type { CutoverRequest, FailoverRequest, Move } from './plan.js'
import { ROUTE_SCHEMAS as S } from './schemas.js'
import type { ControlService } from './service.js'

export interface RouteDeps {
  readonly service: ControlService
  readonly principal: (req: FastifyRequest) => Principal
  /** Open event streams, ended when the control plane closes. */
  readonly streams: Set<ServerResponse>
  readonly now: () => number
}

const KEEP_ALIVE_MS = 15_000

export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { service } = deps
  const who = deps.principal
  const needs = (role: Role) => ({ role })

  app.get('/healthz', { schema: S.health }, async () => {
    const latest = await service.store.latestRuleSet().catch((err: unknown) => {
      throw new ControlError(503, 'STORE_UNAVAILABLE', `the store does not answer: ${(err as Error).message}`)
    })
    return {
      status: 'ok',
      store: service.store.kind,
      ruleSetVersion: latest?.version ?? null,
      orchestrator: service.hasOrchestrator,
    }
  })

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())

  // ---- topology
  app.get('/v1/topology', { schema: S.getTopology, config: needs('viewer') }, async () => {
    const record = await service.store.getTopology()
    if (!record) throw new ControlError(404, 'NOT_FOUND', 'no topology is stored yet')
    return record
  })

  app.put('/v1/topology', { schema: S.putTopology, config: needs('admin') }, async (req) => {
    const body = req.body as { topology: unknown; reason: string; expectedRevision?: number }
    return service.putTopology(body.topology, body, who(req))
  })

  // ---- rule sets
  app.get('/v1/rules', { schema: S.listRules, config: needs('viewer') }, async (req) => {
    const q = req.query as { limit?: number; before?: number }
    return { ruleSets: await service.store.listRuleSets(q) }
  })

  app.get('/v1/rules/latest', { schema: S.latestRules, config: needs('viewer') }, async () => {
    const record = await service.store.latestRuleSet()
    if (!record) throw new ControlError(404, 'NOT_FOUND', 'no rule set is published yet')
    return record
  })

  app.get('/v1/rules/:version', { schema: S.getRules, config: needs('viewer') }, async (req) => {
    const { version } = req.params as { version: number }
    const record = await service.store.getRuleSet(version)
    if (!record) throw new ControlError(404, 'NOT_FOUND', `no rule set version ${version}`)
    return record
  })

  app.post('/v1/rules/validate', { schema: S.validateRules, config: needs('viewer') }, async (req) => {
    const { ruleSet, latest, diff } = await service.checkRuleSet((req.body as { ruleSet: unknown }).ruleSet)
    return {
      ok: true,
      version: ruleSet.version,
      latestVersion: latest?.version ?? null,
      transformChanged: diff === null,
      ...(diff
        ? { movedKeys: diff.movedKeys, moved: diff.moved, labels: diff.labels, fence: diff.fence }
        : {}),
    }
  })

  app.post('/v1/rules', { schema: S.publishRules, config: needs('operator') }, async (req, reply) => {
    const record = await service.publish(req.body as Parameters<ControlService['publish']>[0], who(req))
    return reply.code(201).header('location', `/v1/rules/${record.version}`).send(record)
  })

  // ---- operations
  const plan = async (kind: OperationKind, req: FastifyRequest, reply: FastifyReply) => {
    const body = req.body as {
      reason: string
      dryRun?: boolean
      target?: unknown
      moves?: Move[]
      unit?: string
      to?: string
      force?: boolean
    }
    const request: CutoverRequest | FailoverRequest =
      kind === 'cutover'
        ? { target: body.target, moves: body.moves }
        : { unit: body.unit!, to: body.to, moves: body.moves, target: body.target, force: body.force }
    const result = await service.operations.plan(kind, request, body, who(req))
    if (!result.operation) return reply.code(200).send({ plan: result.plan })
    return reply.code(201).header('location', `/v1/operations/${result.operation.id}`).send(result.operation)
  }
  app.post('/v1/cutovers', { schema: S.cutover, config: needs('operator') }, (req, reply) =>
    plan('cutover', req, reply),
  )
  app.post('/v1/failovers', { schema: S.failover, config: needs('operator') }, (req, reply) =>
    plan('failover', req, reply),
  )

  app.get('/v1/operations', { schema: S.listOperations, config: needs('viewer') }, async (req) => {
    const q = req.query as { state?: OperationState; kind?: OperationKind; limit?: number }
    return { operations: await service.store.listOperations(q) }
  })

  app.get('/v1/operations/:id', { schema: S.getOperation, config: needs('viewer') }, async (req) =>
    service.operations.getOperation((req.params as { id: string }).id),
  )

  app.post(
    '/v1/operations/:id/start',
    { schema: S.startOperation, config: needs('operator') },
    async (req, reply) =>
      reply.code(202).send(await service.operations.start((req.params as { id: string }).id, who(req))),
  )

  app.post(
    '/v1/operations/:id/abort',
    { schema: S.abortOperation, config: needs('operator') },
    async (req, reply) => {
      const reason = (req.body as { reason?: string } | null | undefined)?.reason ?? 'aborted'
      const op = await service.operations.abort((req.params as { id: string }).id, reason, who(req))
      return reply.code(TERMINAL_STATES.has(op.state) ? 200 : (202 as 200)).send(op)
    },
  )

  app.get(
    '/v1/operations/:id/events',
    { schema: S.operationEvents, config: needs('viewer') },
    async (req, reply) => {
      const { id } = req.params as { id: string }
      // Subscribe before reading the snapshot, so no change falls between the two.
      const early: OperationEvent[] = []
      let deliver: (e: OperationEvent) => void = (e) => early.push(e)
      const unsubscribe = service.events.subscribe(id, (e) => deliver(e))
      let op: Awaited<ReturnType<ControlService['operations']['getOperation']>>
      try {
        op = await service.operations.getOperation(id)
      } catch (err) {
        unsubscribe()
        throw err
      }
      reply.hijack()
      const res = reply.raw
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      })
      res.write('retry: 1000\n\n')
      // Revisions are the event ids: a reconnect with Last-Event-ID skips what it has seen.
      let seen = Number(req.headers['last-event-id'] ?? 0) || 0
      let timer: NodeJS.Timeout | undefined
      const end = () => {
        unsubscribe()
        clearInterval(timer)
        deps.streams.delete(res)
        if (!res.writableEnded) res.end()
      }
      deliver = (e) => {
        if (res.writableEnded) return
        if (e.type === 'progress') {
          res.write(`event: progress\ndata: ${JSON.stringify(e)}\n\n`)
          return
        }
        if (e.operation.revision > seen) {
          seen = e.operation.revision
          res.write(`id: ${seen}\nevent: operation\ndata: ${JSON.stringify(e.operation)}\n\n`)
        }
        // The stream ends with the operation.
        if (TERMINAL_STATES.has(e.operation.state)) end()
      }
      deliver({ type: 'operation', operation: op })
      for (const e of early) deliver(e)
      if (res.writableEnded) return
      timer = setInterval(() => res.write(': keep-alive\n\n'), KEEP_ALIVE_MS)
      timer.unref()
      deps.streams.add(res)
      res.on('close', end)
    },
  )

  // ---- nodes and audit
  app.get('/v1/nodes', { schema: S.nodes, config: needs('viewer') }, async () => {
    const { live, stored } = await service.nodes()
    const byId = new Map(stored.map((n) => [n.nodeId, n]))
    const now = performance.now()
    const nodes: Record<string, unknown>[] = live.map((n) => ({
      nodeId: n.nodeId,
      app: n.app,
      unit: n.unit,
      address: n.address ?? null,
      pid: n.pid ?? null,
      appliedVersion: n.appliedVersion,
      status: n.lapsed ? 'lapsed' : n.connected ? 'live' : 'disconnected',
      leaseRemainingMs: Math.max(0, Math.round(n.leaseExpiresAt - now)),
      inflightFenced: n.inflightFenced,
      lastError: n.lastError ?? null,
      firstSeenAt: byId.get(n.nodeId)?.firstSeenAt ?? null,
      lastSeenAt: byId.get(n.nodeId)?.lastSeenAt ?? null,
    }))
    const liveIds = new Set(live.map((n) => n.nodeId))
    for (const n of stored) {
      if (liveIds.has(n.nodeId)) continue
      nodes.push({
        ...n,
        status: n.leftAt ? 'left' : 'offline',
        leaseRemainingMs: null,
        inflightFenced: 0,
        lastError: null,
      })
    }
    return { nodes }
  })

  app.get('/v1/audit', { schema: S.audit, config: needs('viewer') }, async (req) => {
    const q = req.query as { after?: number; action?: string; target?: string; limit?: number }
    const entries = await service.store.listAudit(q)
    return { entries, next: entries.at(-1)?.seq ?? q.after ?? 0 }
  })
}
