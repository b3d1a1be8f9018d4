// The control plane over real HTTP: a fastify server on 127.0.0.1:0 over a SQLite store, real agents
// on the mounted channel, undici requests.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import {
  ControlConfigError,
  createControlPlane,
  type Operation,
  type OrchestratorContext,
  openStore,
} from '../../src/control/index.js'
import { applied, TOKEN, until } from '../helpers/agents.js'
import {
  ADMIN,
  agent,
  call,
  doc,
  events,
  OPERATOR,
  start,
  TOKENS,
  TOPOLOGY,
  VIEWER,
  world,
} from '../helpers/control.js'

describe('control-plane API', () => {
  test('refuses to start with no admin token or no agent token', async (t) => {
    const store = await openStore('sqlite::memory:')
    t.after(() => store.close())
    await assert.rejects(
      createControlPlane({ store, tokens: { tokens: [TOKENS.tokens[1]!], agentTokens: [TOKEN] } }),
      (err: unknown) => err instanceof ControlConfigError && /no admin token is configured/.test(err.message),
    )
    await assert.rejects(
      createControlPlane({ store, tokens: { tokens: TOKENS.tokens, agentTokens: [] } }),
      /no agent token is configured/,
    )
    await assert.rejects(
      createControlPlane({
        store,
        tokens: { tokens: [{ name: 'a', role: 'admin', token: TOKEN }], agentTokens: [TOKEN] },
      }),
      /same token as an agent token/,
    )
  })

  test('401 without or with an unknown token, 403 for a role too low; health and OpenAPI are public', async (t) => {
    const { url } = await start(t)
    const none = await call(url, 'GET', '/v1/audit')
    assert.equal(none.status, 401)
    assert.equal(none.headers['www-authenticate'], 'Bearer')
    assert.deepEqual(none.json, { code: 'UNAUTHORIZED', message: 'missing or unknown bearer token' })
    assert.equal((await call(url, 'GET', '/v1/audit', 'not-a-token-0123456789')).status, 401)
    assert.equal(
      (await call(url, 'GET', '/v1/audit', TOKEN)).status,
      401,
      'an agent token is not an API token',
    )

    const publish = { ruleSet: doc(), reason: 'first' }
    const topology = { topology: TOPOLOGY, reason: 'setup' }
    const viewerPublish = await call(url, 'POST', '/v1/rules', VIEWER, publish)
    assert.equal(viewerPublish.status, 403)
    assert.deepEqual(viewerPublish.json, {
      code: 'FORBIDDEN',
      message: 'role viewer cannot do this; it needs operator',
    })
    assert.equal((await call(url, 'PUT', '/v1/topology', VIEWER, topology)).status, 403)
    assert.equal((await call(url, 'PUT', '/v1/topology', OPERATOR, topology)).status, 403)
    assert.equal((await call(url, 'GET', '/v1/audit', VIEWER)).status, 200)
    assert.equal((await call(url, 'POST', '/v1/rules', OPERATOR, publish)).status, 201)
    assert.equal((await call(url, 'PUT', '/v1/topology', ADMIN, topology)).status, 200)

    const health = await call(url, 'GET', '/healthz')
    assert.equal(health.status, 200)
    assert.deepEqual(health.json, { status: 'ok', store: 'sqlite', ruleSetVersion: 1, orchestrator: false })
    assert.equal((await call(url, 'GET', '/openapi.json')).status, 200)
    const missing = await call(url, 'GET', '/v1/nope', VIEWER)
    assert.equal(missing.status, 404)
    assert.equal(missing.json.code, 'NOT_FOUND')
  })

  test('the OpenAPI document lists every route with its bearer security', async (t) => {
    const { url } = await start(t)
    const { json } = await call(url, 'GET', '/openapi.json')
    assert.equal(json.openapi, '3.1.0')
    assert.deepEqual(json.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer' })
    const routes = Object.entries(json.paths as Record<string, object>).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    )
    for (const r of [
      'GET /healthz',
      'GET /v1/topology',
      'PUT /v1/topology',
      'GET /v1/rules',
      'POST /v1/rules',
      'GET /v1/rules/latest',
      'GET /v1/rules/{version}',
      'POST /v1/rules/validate',
      'POST /v1/cutovers',
      'POST /v1/failovers',
      'GET /v1/operations',
      'GET /v1/operations/{id}',
      'POST /v1/operations/{id}/start',
      'POST /v1/operations/{id}/abort',
      'GET /v1/operations/{id}/events',
      'GET /v1/nodes',
      'GET /v1/audit',
    ])
      assert.ok(routes.includes(r), `${r} is missing from ${routes.join(', ')}`)
    assert.ok(json.components.schemas.Operation, 'shared schemas are components')
    assert.deepEqual(json.paths['/healthz'].get.security, [])
  })

  test('an invalid rule set is refused with every problem; bad requests list every field', async (t) => {
    const { url, store } = await start(t)
    const bad = {
      ...doc(),
      mapping: [
        { unit: 'unit', ranges: ['0~2999'] },
        { unit: 'center', ranges: ['2000~9999'] },
        { unit: 'nowhere', ranges: ['11000~11001'] },
      ],
    }
    const res = await call(url, 'POST', '/v1/rules', OPERATOR, { ruleSet: bad, reason: 'bad' })
    assert.equal(res.status, 400)
    assert.equal(res.json.code, 'RULE_INVALID')
    const paths = res.json.issues.map((i: { path: string }) => i.path).sort()
    assert.deepEqual(paths, ['mapping[1].ranges[0]', 'mapping[2].ranges[0]', 'mapping[2].unit'])
    const messages = res.json.issues.map((i: { message: string }) => i.message).join('\n')
    assert.match(messages, /unknown unit "nowhere"/)
    assert.match(messages, /2000~9999 overlaps 0~2999/)
    assert.match(messages, /11000~11001 is outside the key space 0~9999/)

    const fields = await call(url, 'POST', '/v1/rules', OPERATOR, { ruleSet: doc(), colour: 'red' })
    assert.equal(fields.status, 400)
    assert.equal(fields.json.code, 'BAD_REQUEST')
    assert.deepEqual(fields.json.issues.map((i: { path: string }) => i.path).sort(), [
      'body.colour',
      'body.reason',
    ])
    assert.equal(await store.latestRuleSet(), undefined, 'nothing was stored')

    const topo = await call(url, 'PUT', '/v1/topology', ADMIN, {
      topology: { units: [{ name: 'a' }, { name: 'a' }], probes: [{ source: 'a', target: 'x', kind: 'pg' }] },
      reason: 'bad',
    })
    assert.equal(topo.status, 400)
    assert.equal(topo.json.code, 'TOPOLOGY_INVALID')
    assert.deepEqual(
      topo.json.issues.map((i: { path: string }) => i.path),
      ['probes[0].kind'],
    )
  })

  test('an oversized body is refused with 413 and a JSON error', async (t) => {
    const { url } = await start(t, { bodyLimit: 64 * 1024 })
    const res = await call(url, 'POST', '/v1/rules', OPERATOR, {
      ruleSet: { ...doc(), description: 'x'.repeat(100 * 1024) },
      reason: 'big',
    })
    assert.equal(res.status, 413)
    assert.deepEqual(res.json, {
      code: 'BODY_TOO_LARGE',
      message: 'the request body is larger than 65536 bytes',
    })
  })

  test('a published rule set reaches every agent, which acks it; moving keys needs a cut-over or an admin', async (t) => {
    const s = await start(t)
    const [center, unit] = await world(t, s)
    const moving = await call(s.url, 'POST', '/v1/rules', OPERATOR, { ruleSet: doc(2999), reason: 'move' })
    assert.equal(moving.status, 409)
    assert.equal(moving.json.code, 'OWNERSHIP_CHANGE')
    assert.match(moving.json.message, /moves 1000 key\(s\)/)
    const forcedByOperator = await call(s.url, 'POST', '/v1/rules', OPERATOR, {
      ruleSet: doc(2999),
      reason: 'move',
      force: true,
    })
    assert.equal(forcedByOperator.status, 403)

    // A fence-only change moves nothing: an operator may publish it.
    const fenced = await call(s.url, 'POST', '/v1/rules', OPERATOR, {
      ruleSet: { ...doc(), fence: { ranges: ['10~19'] } },
      reason: 'fence 10~19',
      expectedVersion: 1,
    })
    assert.equal(fenced.status, 201)
    assert.equal(fenced.json.version, 2)
    assert.equal(fenced.headers.location, '/v1/rules/2')
    const acks = await s.cp.rules.waitForAcks(2, { timeoutMs: 5000 })
    assert.deepEqual([acks.ok, [...acks.satisfied].sort()], [true, ['c1', 'u1']])
    assert.equal(center!.route('15').fenced, true)

    const stale = await call(s.url, 'POST', '/v1/rules', OPERATOR, {
      ruleSet: doc(),
      reason: 'x',
      expectedVersion: 1,
    })
    assert.equal(stale.status, 409)

    const forced = await call(s.url, 'POST', '/v1/rules', ADMIN, {
      ruleSet: doc(2999),
      reason: 'break glass',
      force: true,
    })
    assert.equal(forced.status, 201)
    await applied(unit!, 3)
    assert.equal(unit!.route('2500').unit, 'unit')

    const nodes = await call(s.url, 'GET', '/v1/nodes', VIEWER)
    assert.deepEqual(
      nodes.json.nodes
        .map((n: { nodeId: string; unit: string; status: string }) => [n.nodeId, n.unit, n.status])
        .sort(),
      [
        ['c1', 'center', 'live'],
        ['u1', 'unit', 'live'],
      ],
    )
    const history = await call(s.url, 'GET', '/v1/rules', VIEWER)
    assert.deepEqual(
      history.json.ruleSets.map((r: { version: number; author: string; reason: string }) => [
        r.version,
        r.author,
        r.reason,
      ]),
      [
        [3, 'alice', 'break glass'],
        [2, 'olga', 'fence 10~19'],
        [1, 'olga', 'v1'],
      ],
    )
    const audit = await call(s.url, 'GET', '/v1/audit?action=ruleset.publish', VIEWER)
    assert.deepEqual(
      audit.json.entries.map((e: { actor: string; target: string }) => [e.actor, e.target]),
      [
        ['olga', 'ruleset:1'],
        ['olga', 'ruleset:2'],
        ['alice', 'ruleset:3'],
      ],
    )
    assert.equal(audit.json.entries[2].details.force, true)
    await s.cp.service.flushNodes()
    const joined = await call(s.url, 'GET', '/v1/audit?action=node.joined', VIEWER)
    assert.deepEqual(joined.json.entries.map((e: { target: string }) => e.target).sort(), [
      'node:c1',
      'node:u1',
    ])
  })

  test('versions survive a restart; the latest is served to agents that reconnect', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'appactive-api-'))
    t.after(() => rm(dir, { recursive: true, force: true }))
    const first = await start(t, {}, dir)
    for (const upTo of [1999, 1999]) {
      const r = await call(first.url, 'POST', '/v1/rules', OPERATOR, {
        ruleSet: { ...doc(upTo), description: `at ${Date.now()}` },
        reason: 'r',
      })
      assert.equal(r.status, 201)
    }
    await first.cp.close()
    await first.store.close()

    const second = await start(t, {}, dir)
    assert.equal(second.cp.rules.latestVersion, 2, 'replayed into the channel server')
    const a = await agent(t, second.url, 'late')
    await applied(a, 2)
    const next = await call(second.url, 'POST', '/v1/rules', OPERATOR, {
      ruleSet: doc(),
      reason: 'after restart',
    })
    assert.equal(next.json.version, 3)
    await applied(a, 3)
  })

  test('plan a cut-over: moved ranges, fence, steps and checks; a dry run stores nothing', async (t) => {
    const s = await start(t)
    await world(t, s)
    const dry = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, {
      moves: [{ ranges: ['2000~2999'], to: 'unit' }],
      reason: 'rebalance',
      dryRun: true,
    })
    assert.equal(dry.status, 200)
    const plan = dry.json.plan
    assert.deepEqual(plan.moved, [{ lo: 2000, hi: 2999, from: 'center', to: 'unit' }])
    assert.deepEqual(plan.fence, { ranges: ['2000~2999'], labels: [] })
    assert.equal(plan.fromVersion, 1)
    assert.equal(plan.target.version, 4)
    assert.deepEqual(plan.target.mapping, [
      { unit: 'center', ranges: ['3000~9999'] },
      { unit: 'unit', ranges: ['0~2999'] },
    ])
    assert.equal(plan.target.fence, undefined)
    assert.deepEqual(
      plan.steps.map((x: { name: string; version?: number }) => [x.name, x.version ?? null]),
      [
        ['fence', 2],
        ['drain', null],
        ['catch-up', null],
        ['switch', 3],
        ['unfence', 4],
      ],
    )
    assert.deepEqual(
      plan.catchUp.map((c: { source: string; target: string }) => [c.source, c.target]),
      [['center', 'unit']],
    )
    assert.ok(plan.checks.every((c: { ok: boolean }) => c.ok))
    assert.ok(plan.transcript.some((l: string) => l === '  2000~2999: center -> unit'))
    assert.deepEqual((await call(s.url, 'GET', '/v1/operations', VIEWER)).json.operations, [])

    const created = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, {
      moves: [{ ranges: ['2000~2999'], to: 'unit' }],
      reason: 'rebalance',
    })
    assert.equal(created.status, 201)
    const op: Operation = created.json
    assert.deepEqual(
      [op.kind, op.state, op.fromVersion, op.toVersion, op.createdBy],
      ['cutover', 'planned', 1, 4, 'olga'],
    )
    assert.deepEqual(op.plan.fence, plan.fence)
    assert.equal(created.headers.location, `/v1/operations/${op.id}`)
    assert.deepEqual((await call(s.url, 'GET', `/v1/operations/${op.id}`, VIEWER)).json, op)

    const target = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, {
      target: { ...doc(2999), version: 99 },
      reason: 'same by target',
      dryRun: true,
    })
    assert.equal(target.status, 200)
    assert.deepEqual(target.json.plan.fence, plan.fence)
  })

  test('a bad plan lists every problem: unknown unit, keys the target owns, key space, no healthy node, no probe', async (t) => {
    const s = await start(t)
    await world(t, s)
    const res = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, {
      moves: [
        { ranges: ['100~199'], to: 'unit' },
        { ranges: ['5000~5999'], to: 'mars' },
        { ranges: ['9000~12000'], to: 'unit' },
      ],
      reason: 'bad',
    })
    assert.equal(res.status, 400)
    assert.equal(res.json.code, 'PLAN_INVALID')
    assert.deepEqual(res.json.issues, [
      { path: 'moves[0].ranges[0]', message: 'keys 100~199 are already owned by unit "unit"' },
      { path: 'moves[1].to', message: 'unknown unit "mars" (units: center, unit)' },
      { path: 'moves[2].ranges[0]', message: '9000~12000 is outside the key space 0~9999 of the transform' },
    ])

    // Without a node in the target unit, and without a probe for the pair.
    await call(s.url, 'PUT', '/v1/topology', ADMIN, {
      topology: { ...TOPOLOGY, probes: [] },
      reason: 'no probes',
    })
    const lonely = await start(t)
    await call(lonely.url, 'POST', '/v1/rules', OPERATOR, { ruleSet: doc(), reason: 'v1' })
    const none = await call(lonely.url, 'POST', '/v1/cutovers', OPERATOR, {
      moves: [{ ranges: ['2000~2999'], to: 'unit' }],
      reason: 'x',
    })
    assert.equal(none.status, 400)
    assert.deepEqual(none.json.issues, [
      { path: 'nodes', message: 'no healthy node in target unit "unit": nothing would serve the moved keys' },
      {
        path: 'topology.probes',
        message:
          'no replication probe from center to unit: declare one in the topology (kind "none" if they share no data)',
      },
    ])
    const noProbe = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, {
      moves: [{ ranges: ['2000~2999'], to: 'unit' }],
      reason: 'x',
    })
    assert.deepEqual(
      noProbe.json.issues.map((i: { path: string }) => i.path),
      ['topology.probes'],
    )
    const nothing = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, { target: doc(), reason: 'x' })
    assert.equal(nothing.status, 400)
    assert.match(nothing.json.issues[0].message, /nothing moves/)
  })

  test('plan a failover: every key of the lost unit goes to the survivor, no fence', async (t) => {
    const s = await start(t)
    await world(t, s)
    const res = await call(s.url, 'POST', '/v1/failovers', OPERATOR, {
      unit: 'unit',
      to: 'center',
      reason: 'unit lost',
      dryRun: true,
    })
    assert.equal(res.status, 200)
    const plan = res.json.plan
    assert.deepEqual(plan.moved, [{ lo: 0, hi: 1999, from: 'unit', to: 'center' }])
    assert.deepEqual(plan.fence, { ranges: [], labels: [] })
    assert.equal(plan.failedUnit, 'unit')
    assert.deepEqual(plan.target.mapping, [{ unit: 'center', ranges: ['0~9999'] }])
    assert.deepEqual(
      plan.steps.map((x: { name: string }) => x.name),
      ['wait-leases', 'switch'],
    )
    assert.ok(plan.warnings.some((w: string) => /unit unit still has 1 agent/.test(w)))
    const center = await call(s.url, 'POST', '/v1/failovers', OPERATOR, {
      unit: 'center',
      to: 'unit',
      reason: 'x',
    })
    assert.equal(center.status, 400)
    assert.match(center.json.issues[0].message, /is the center/)
    const partial = await call(s.url, 'POST', '/v1/failovers', OPERATOR, {
      unit: 'unit',
      moves: [{ ranges: ['0~999'], to: 'center' }],
      reason: 'x',
    })
    assert.equal(partial.status, 400)
    assert.match(partial.json.issues[0].message, /1000~1999 would still belong to the lost unit unit/)
  })

  test('start needs an orchestrator (501, nothing changes); abort of a planned operation; SSE ends with it', async (t) => {
    const s = await start(t)
    await world(t, s)
    const op: Operation = (
      await call(s.url, 'POST', '/v1/cutovers', OPERATOR, {
        moves: [{ ranges: ['2000~2999'], to: 'unit' }],
        reason: 'r',
      })
    ).json
    const started = await call(s.url, 'POST', `/v1/operations/${op.id}/start`, OPERATOR)
    assert.equal(started.status, 501)
    assert.equal(started.json.code, 'ORCHESTRATOR_UNAVAILABLE')
    assert.match(started.json.message, /^orchestrator not available/)
    assert.equal((await s.store.getOperation(op.id))?.state, 'planned')

    const seen = await events(s.url, `/v1/operations/${op.id}/events`, VIEWER, async () => {
      const aborted = await call(s.url, 'POST', `/v1/operations/${op.id}/abort`, OPERATOR, {
        reason: 'changed my mind',
      })
      assert.equal(aborted.status, 200)
    })
    assert.deepEqual(
      seen.map((e) => [e.event, e.id, e.data.state]),
      [
        ['operation', '1', 'planned'],
        ['operation', '2', 'aborted'],
      ],
    )
    assert.deepEqual(seen[1]!.data.abortRequested.reason, 'changed my mind')
    assert.equal((await call(s.url, 'POST', `/v1/operations/${op.id}/abort`, OPERATOR)).status, 409)
    const trail = await call(s.url, 'GET', `/v1/audit?target=operation:${op.id}`, VIEWER)
    assert.deepEqual(
      trail.json.entries.map((e: { action: string; actor: string }) => [e.action, e.actor]),
      [
        ['operation.create', 'olga'],
        ['operation.abort', 'olga'],
      ],
    )
    assert.equal(
      (await call(s.url, 'GET', '/v1/operations/00000000-0000-4000-8000-000000000000', VIEWER)).status,
      404,
    )
  })

  test('an orchestrator gets running operations; its updates are stored, audited and streamed', async (t) => {
    let ctx: OrchestratorContext | undefined
    const startedOps: Operation[] = []
    const aborts: string[] = []
    const s = await start(t, {
      orchestrator: (c) => {
        ctx = c
        return {
          start: async (op) => {
            startedOps.push(op)
          },
          abort: async (op, request) => {
            aborts.push(`${op.id}:${request.actor}:${request.reason}`)
          },
          recover: async () => {},
          close: async () => {},
        }
      },
    })
    await world(t, s)
    const plan = (body: object) => call(s.url, 'POST', '/v1/cutovers', OPERATOR, { ...body, reason: 'r' })
    const op: Operation = (await plan({ moves: [{ ranges: ['2000~2999'], to: 'unit' }] })).json
    const other: Operation = (await plan({ moves: [{ ranges: ['3000~3999'], to: 'unit' }] })).json

    const seen = events(s.url, `/v1/operations/${op.id}/events`, VIEWER, async () => {
      const started = await call(s.url, 'POST', `/v1/operations/${op.id}/start`, OPERATOR)
      assert.equal(started.status, 202)
      assert.equal(started.json.state, 'running')
      assert.equal(started.json.startedBy, 'olga')
      await until(() => startedOps.length === 1, 5000, 'orchestrator.start')
      assert.equal((await call(s.url, 'POST', `/v1/operations/${other.id}/start`, OPERATOR)).status, 409)
      const abort = await call(s.url, 'POST', `/v1/operations/${op.id}/abort`, OPERATOR, { reason: 'stop' })
      assert.equal(abort.status, 202)
      assert.deepEqual(aborts, [`${op.id}:olga:stop`])
      let cur = (await s.store.getOperation(op.id))!
      ctx!.events.progress(op.id, 'rolling back')
      const fence = await ctx!.publish({
        ruleSet: { ...doc(), fence: { ranges: ['2000~2999'] } },
        expectedLatest: 1,
        operationId: op.id,
        actor: 'orchestrator',
        reason: 'fence',
      })
      assert.equal(fence.version, 2)
      await assert.rejects(
        ctx!.publish({ ruleSet: doc(), expectedLatest: 1, operationId: op.id, actor: 'o', reason: 'raced' }),
        /latest rule set is version 2, not 1/,
      )
      cur = await ctx!.update(cur, { state: 'aborted', phase: 'rollback', endedAt: new Date().toISOString() })
      assert.equal(cur.state, 'aborted')
    })
    const stream = await seen
    assert.deepEqual(
      stream.map((e) => [e.event, e.data.state ?? e.data.message]),
      [
        ['operation', 'planned'],
        ['operation', 'running'],
        ['operation', 'running'],
        ['progress', 'rolling back'],
        ['operation', 'aborted'],
      ],
    )
    assert.equal((await s.store.getRuleSet(2))?.operationId, op.id)
    // The stale plan: version 2 was published after `other` was planned from version 1.
    const stale = await call(s.url, 'POST', `/v1/operations/${other.id}/start`, OPERATOR)
    assert.equal(stale.status, 409)
    assert.equal(stale.json.code, 'PLAN_STALE')
    const publishDuringRun = await call(s.url, 'GET', `/v1/audit?target=operation:${op.id}`, VIEWER)
    assert.deepEqual(
      publishDuringRun.json.entries.map((e: { action: string }) => e.action),
      ['operation.create', 'operation.start', 'operation.abort-request', 'operation.update'],
    )
  })
})
