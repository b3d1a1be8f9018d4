// The orchestrator of DESIGN §4 over the real control plane, real agents and their real channel: the
// happy path, drain, timeouts and aborts rolling back, a silent agent waited out, a restart mid-run,
// and failover.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { request } from 'undici'
import type { RoutingAgent } from '../../src/agent/index.js'
import {
  type CatchUpProbe,
  createOrchestrator,
  type Operation,
  type OrchestratorOptions,
} from '../../src/control/index.js'
import { TOKEN, until } from '../helpers/agents.js'
import { agent, call, OPERATOR, SHARED_DB, type Started, start, world } from '../helpers/control.js'

const LEASE_MS = 800

type T = Parameters<typeof start>[0]

async function controlPlane(t: T, options: OrchestratorOptions = {}, dir?: string): Promise<Started> {
  return start(
    t,
    {
      leaseMs: LEASE_MS,
      heartbeatMs: 150,
      orchestrator: createOrchestrator({ ackTimeoutMs: LEASE_MS + 1000, ...options }),
    },
    dir,
  )
}

async function cutover(s: Started, body: object = { moves: [{ ranges: ['2000~2999'], to: 'unit' }] }) {
  const created = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, { ...body, reason: 'test' })
  assert.equal(created.status, 201, JSON.stringify(created.json))
  const op = created.json as Operation
  const started = await call(s.url, 'POST', `/v1/operations/${op.id}/start`, OPERATOR)
  assert.equal(started.status, 202, started.json?.message)
  return op.id
}

async function operation(s: Started, id: string): Promise<Operation> {
  return (await call(s.url, 'GET', `/v1/operations/${id}`, OPERATOR)).json as Operation
}

async function ended(s: Started, id: string, timeoutMs = 15_000): Promise<Operation> {
  let op = await operation(s, id)
  const deadline = performance.now() + timeoutMs
  while (op.state === 'running' || op.state === 'planned') {
    if (performance.now() > deadline) assert.fail(`operation still ${op.state} in ${op.phase}`)
    await new Promise((r) => setTimeout(r, 20))
    op = await operation(s, id)
  }
  return op
}

async function inPhase(s: Started, id: string, phase: string): Promise<void> {
  const deadline = performance.now() + 10_000
  while ((await operation(s, id)).phase !== phase) {
    if (performance.now() > deadline) assert.fail(`never reached phase ${phase}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const latest = async (s: Started) => (await s.store.latestRuleSet())!.ruleSet

describe('orchestrator: cut-over', () => {
  test('fence, drain, catch-up, switch, unfence: every agent ends on the new mapping without a fence', async (t) => {
    const s = await controlPlane(t)
    const agents = await world(t, s, SHARED_DB)
    const published: number[] = []
    s.cp.rules.on('ack', (_node, v) => published.push(v))
    const op = await ended(s, await cutover(s))
    assert.equal(op.state, 'succeeded', JSON.stringify(op.error))
    assert.deepEqual(
      op.phases.map((p) => [p.name, p.outcome]),
      [
        ['fence', 'ok'],
        ['drain', 'ok'],
        ['catch-up', 'ok'],
        ['switch', 'ok'],
        ['unfence', 'ok'],
      ],
    )
    assert.equal(op.toVersion, 4)
    const rs = await latest(s)
    assert.equal(rs.version, 4)
    assert.equal(rs.fence, undefined)
    for (const a of agents) {
      assert.equal(a.version, 4)
      assert.equal(a.route('2500').unit, 'unit')
      assert.equal(a.route('2500').fenced, false)
    }
    // Every version was applied by both agents, in order, and never skipped.
    assert.deepEqual([...new Set(published)], [2, 3, 4])
    const audit = (await call(s.url, 'GET', '/v1/audit?action=ruleset.publish', OPERATOR)).json.entries
    assert.deepEqual(
      audit.map((e: { target: string }) => e.target),
      ['ruleset:1', 'ruleset:2', 'ruleset:3', 'ruleset:4'],
    )
  })

  test('the drain waits for an in-flight write on a fenced key, and nothing is published meanwhile', async (t) => {
    const s = await controlPlane(t)
    const [center] = await world(t, s, SHARED_DB)
    const write = center!.beginWrite('2500') // owned by center, about to move
    const id = await cutover(s)
    await inPhase(s, id, 'drain')
    await new Promise((r) => setTimeout(r, 300))
    assert.equal((await operation(s, id)).phase, 'drain', 'still draining while the write is open')
    assert.equal((await latest(s)).version, 2)
    write.end()
    const op = await ended(s, id)
    assert.equal(op.state, 'succeeded')
    assert.ok((op.phases.find((p) => p.name === 'drain')!.detail!.ms as number) >= 300)
  })

  test('a drain that times out rolls back to the old mapping with no fence', async (t) => {
    const s = await controlPlane(t, { drainTimeoutMs: 300 })
    const [center, unit] = await world(t, s, SHARED_DB)
    const write = center!.beginWrite('2500')
    t.after(() => write.end())
    const op = await ended(s, await cutover(s))
    assert.equal(op.state, 'rolled-back')
    assert.equal(op.error?.code, 'DRAIN_TIMEOUT')
    assert.deepEqual(
      op.phases.map((p) => [p.name, p.outcome]),
      [
        ['fence', 'ok'],
        ['drain', 'failed'],
        ['rollback', 'compensated'],
      ],
    )
    const rs = await latest(s)
    assert.equal(rs.fence, undefined)
    assert.deepEqual(rs.mapping, [
      { unit: 'unit', ranges: ['0~1999'] },
      { unit: 'center', ranges: ['2000~9999'] },
    ])
    await until(() => unit!.version === rs.version && center!.version === rs.version, 5000, 'rollback acks')
    assert.equal(center!.route('2500').fenced, false)
  })

  test('an abort during the run rolls back and ends aborted', async (t) => {
    const s = await controlPlane(t)
    const [center] = await world(t, s, SHARED_DB)
    const write = center!.beginWrite('2001')
    t.after(() => write.end())
    const id = await cutover(s)
    await inPhase(s, id, 'drain')
    const aborted = await call(s.url, 'POST', `/v1/operations/${id}/abort`, OPERATOR, {
      reason: 'changed my mind',
    })
    assert.equal(aborted.status, 202, aborted.json?.message)
    const op = await ended(s, id)
    assert.equal(op.state, 'aborted')
    assert.match(op.error!.message, /changed my mind/)
    assert.equal((await latest(s)).fence, undefined)
  })

  test('a catch-up that times out rolls back; the position is taken only after the drain', async (t) => {
    const order: string[] = []
    const stalled: CatchUpProbe = {
      async position() {
        order.push('position')
        return { lsn: '0/1' }
      },
      waitApplied(_p, timeoutMs) {
        return new Promise((_, reject) =>
          setTimeout(
            () =>
              reject(Object.assign(new Error('replica stalled'), { code: 'APPACTIVE_REPLICATION_TIMEOUT' })),
            timeoutMs,
          ),
        )
      },
      async close() {},
    }
    const s = await controlPlane(t, { probes: () => stalled, catchUpTimeoutMs: 200 })
    const topology = {
      ...SHARED_DB,
      probes: [{ source: 'center', target: 'unit', kind: 'postgres' }, SHARED_DB.probes[1]],
    }
    const [center] = await world(t, s, topology)
    const write = center!.beginWrite('2500')
    const id = await cutover(s)
    await inPhase(s, id, 'drain')
    order.push('drain still open')
    write.end()
    const op = await ended(s, id)
    assert.deepEqual(order, ['drain still open', 'position'])
    assert.equal(op.state, 'rolled-back')
    assert.equal(op.error?.code, 'APPACTIVE_REPLICATION_TIMEOUT')
    assert.equal((await latest(s)).fence, undefined)
  })

  test('an agent that stops heartbeating is waited out until its lease lapses; one that renews without acking aborts the run', async (t) => {
    const s = await controlPlane(t)
    await world(t, s, SHARED_DB)
    // A node that registered and then went silent: waited out after its lease.
    const silent = await call(s.url, 'POST', '/v1/agent/register', TOKEN, {
      nodeId: 'silent',
      app: 'shop',
      unit: 'unit',
      version: 1,
    })
    assert.equal(silent.status, 200)
    const op = await ended(s, await cutover(s))
    assert.equal(op.state, 'succeeded')
    assert.deepEqual(op.phases[0]!.detail!.lapsed, ['silent'])

    // A node that keeps renewing its lease but never applies anything: the run cannot prove it fenced.
    const stuck = (
      await call(s.url, 'POST', '/v1/agent/register', TOKEN, {
        nodeId: 'stuck',
        app: 'shop',
        unit: 'center',
        version: 4,
      })
    ).json.session as string
    const beat = setInterval(() => {
      void request(`${s.url}/v1/agent/heartbeat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stuck}`, 'content-type': 'application/json' },
        body: JSON.stringify({ version: 4, inflightFenced: 0 }),
      })
        .then((r) => r.body.dump())
        .catch(() => {}) // the control plane may already be closed
    }, 100)
    t.after(() => clearInterval(beat))
    const back = await ended(s, await cutover(s, { moves: [{ ranges: ['2000~2999'], to: 'center' }] }))
    assert.equal(back.state, 'rolled-back')
    assert.equal(back.error?.code, 'ACK_TIMEOUT')
    assert.match(back.error!.message, /stuck/)
  })

  test('after the switch a late agent does not stop the run: the fence is lifted and the agent listed', async (t) => {
    const s = await controlPlane(t)
    await world(t, s, SHARED_DB)
    // An agent that applies the fence (its heartbeats carry version 2, which counts as an ack) and then
    // never anything else, while keeping its lease.
    const session = (
      await call(s.url, 'POST', '/v1/agent/register', TOKEN, {
        nodeId: 'slow',
        app: 'shop',
        unit: 'unit',
        version: 1,
      })
    ).json.session as string
    let held = 1
    const beat = setInterval(() => {
      void request(`${s.url}/v1/agent/heartbeat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${session}`, 'content-type': 'application/json' },
        body: JSON.stringify({ version: held, inflightFenced: 0 }),
      })
        .then((r) => r.body.dump())
        .catch(() => {}) // the control plane may already be closed
    }, 100)
    t.after(() => clearInterval(beat))
    s.cp.rules.on('ack', () => {
      if (s.cp.rules.latestVersion === 2) held = 2
    })
    const op = await ended(s, await cutover(s))
    assert.equal(op.state, 'succeeded', JSON.stringify(op.error))
    const late = (name: string) => op.phases.find((p) => p.name === name)!.detail!.late
    assert.deepEqual(late('switch'), ['slow'])
    assert.deepEqual(late('unfence'), ['slow'])
    assert.equal((await latest(s)).fence, undefined)
  })

  test('a control plane stopped mid-run resumes on restart and never leaves a fence', async (t) => {
    const first = await controlPlane(t)
    const [center] = await world(t, first, SHARED_DB)
    const write = center!.beginWrite('2500')
    const id = await cutover(first)
    await inPhase(first, id, 'drain')
    await first.cp.close() // the run stays `running` in the store
    assert.equal((await first.store.getOperation(id))!.state, 'running')
    const port = Number(new URL(first.url).port)
    await first.store.close()
    write.end()

    const second = await controlPlane(t, {}, first.dir)
    void port
    // The agents reconnect to the new control plane on their own (same store, new port: re-point them).
    const agents: RoutingAgent[] = [
      await agent(t, second.url, 'c2', 'center'),
      await agent(t, second.url, 'u2', 'unit'),
    ]
    const op = await ended(second, id, 20_000)
    assert.equal(op.state, 'succeeded', JSON.stringify(op.error))
    const rs = await latest(second)
    assert.equal(rs.fence, undefined)
    await until(() => agents.every((a) => a.version === rs.version), 5000, 'agents on the final version')
    assert.equal(agents[0]!.route('2500').unit, 'unit')
  })
})

describe('orchestrator: failover', () => {
  test("waits out the lost unit's leases, switches, and records RTO", async (t) => {
    const s = await controlPlane(t)
    const [center, unit] = await world(t, s, SHARED_DB)
    // The unit is lost: its agent stops without saying goodbye (no DELETE /session).
    await unit!.close()
    const created = await call(s.url, 'POST', '/v1/failovers', OPERATOR, {
      unit: 'unit',
      to: 'center',
      reason: 'lost',
    })
    assert.equal(created.status, 201, JSON.stringify(created.json))
    const started = await call(s.url, 'POST', `/v1/operations/${created.json.id}/start`, OPERATOR)
    assert.equal(started.status, 202)
    const op = await ended(s, created.json.id)
    assert.equal(op.state, 'succeeded', JSON.stringify(op.error))
    assert.deepEqual(
      op.phases.map((p) => p.name),
      ['wait-leases', 'switch'],
    )
    assert.equal(typeof op.phases[1]!.detail!.rtoMs, 'number')
    assert.equal(center!.route('100').unit, 'center')
  })

  test('refuses to fail over a unit whose agents still renew their leases, publishing nothing', async (t) => {
    const s = await controlPlane(t, { ackTimeoutMs: 500 })
    await world(t, s, SHARED_DB)
    const created = await call(s.url, 'POST', '/v1/failovers', OPERATOR, {
      unit: 'unit',
      to: 'center',
      reason: 'x',
    })
    await call(s.url, 'POST', `/v1/operations/${created.json.id}/start`, OPERATOR)
    const op = await ended(s, created.json.id)
    assert.equal(op.state, 'rolled-back')
    assert.equal(op.error?.code, 'LEASES_HELD')
    assert.equal((await latest(s)).version, 1)
  })
})
