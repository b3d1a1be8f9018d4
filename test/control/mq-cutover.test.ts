// The cut-over's message drain (issue 9 item 4) end to end: the real control plane and orchestrator,
// agents on the real channel, the amqplib bridge on the real RabbitMQ. A producer publishes numbered
// messages per route id without pause while keys move from center to unit; the old owner processes every
// message published before the fence (under the drain permit of its guarded writes), the orchestrator's
// drain step waits for the barriers, and the new owner processes every later one: per-route-id order
// holds across the cut-over, nothing is lost, nothing is dead-lettered. A consumer that cannot finish
// its backlog makes the drain time out and the run roll back.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib'
import type { RoutingAgent } from '../../src/agent/index.js'
import { type AmqpConsumer, createAmqpConsumer, createAmqpProducer } from '../../src/bridges/mq/index.js'
import { createOrchestrator, type Operation } from '../../src/control/index.js'
import { until } from '../helpers/agents.js'
import { ADMIN, agent, call, OPERATOR, SHARED_DB, type Started, start } from '../helpers/control.js'
import { needs, RABBITMQ } from '../helpers/services.js'

const skip = await needs(RABBITMQ)

const LEASE_MS = 1500
const V1 = {
  units: [{ name: 'center', center: true }, { name: 'unit' }],
  idSource: [{ from: 'query', name: 'r_id' }],
  transform: [{ type: 'mod', divisor: 10000 }],
  mapping: [
    { unit: 'unit', ranges: ['0~1999'] },
    { unit: 'center', ranges: ['2000~9999'] },
  ],
  fallback: 'local',
}
/** Route ids that move (2000~2999 goes to unit) and ones that stay. */
const MOVING = ['2000', '2001', '2002', '2003', '2004', '2005']
const STAYING = ['100', '5000']

type T = Parameters<typeof start>[0]

interface Seen {
  readonly unit: string
  readonly routeId: string
  readonly seq: number
}

describe('cut-over message drain (real control plane, real RabbitMQ)', { skip }, () => {
  let conn: ChannelModel
  before(async () => {
    if (skip) return
    conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672')
  })
  after(async () => {
    await conn?.close()
  })

  async function controlPlane(t: T, drainTimeoutMs = 10_000): Promise<Started> {
    const s = await start(t, {
      leaseMs: LEASE_MS,
      heartbeatMs: 200,
      orchestrator: createOrchestrator({ ackTimeoutMs: LEASE_MS + 1000, drainTimeoutMs }),
    })
    const put = await call(s.url, 'PUT', '/v1/topology', ADMIN, { topology: SHARED_DB, reason: 'setup' })
    assert.equal(put.status, 200)
    assert.equal(
      (await call(s.url, 'POST', '/v1/rules', OPERATOR, { ruleSet: V1, reason: 'v1' })).status,
      201,
    )
    return s
  }

  /** An exchange with one queue per unit bound `<unit>.#`, removed after the test. */
  async function topology(t: T): Promise<{ exchange: string; queues: Record<string, string> }> {
    const exchange = `appactive.drain.${randomUUID().slice(0, 8)}`
    const ch = await conn.createChannel()
    await ch.assertExchange(exchange, 'topic', { durable: false, autoDelete: false })
    const queues: Record<string, string> = {}
    for (const unit of ['center', 'unit']) {
      const q = `${exchange}.${unit}`
      await ch.assertQueue(q, { durable: false })
      await ch.bindQueue(q, exchange, `${unit}.#`)
      queues[unit] = q
    }
    t.after(async () => {
      const c = await conn.createChannel()
      for (const q of Object.values(queues)) {
        await c.deleteQueue(q)
        await c.deleteQueue(`${q}.appactive-delay`)
      }
      await c.deleteExchange(exchange)
      await c.close()
      await ch.close()
    })
    return { exchange, queues }
  }

  /** A consumer in `unit` whose handler makes a guarded write (begin/end) and records the message. */
  async function consumer(
    t: T,
    a: RoutingAgent,
    exchange: string,
    queue: string,
    seen: Seen[],
    work: (routeId: string) => Promise<void>,
  ): Promise<{ consumer: AmqpConsumer; refused: unknown[] }> {
    const channel: ConfirmChannel = await conn.createConfirmChannel()
    const refused: unknown[] = []
    const c = await createAmqpConsumer({
      agent: a,
      channel,
      queue,
      exchange,
      topics: { [exchange]: 'unit' },
      prefetch: 32,
      handler: async (msg, info) => {
        const routeId = info.route.routeId!
        await work(routeId)
        let write: { end(): void }
        try {
          write = a.beginWrite(routeId) // the guarded write the DB guard would make
        } catch (err) {
          refused.push(err)
          throw err
        }
        seen.push({ unit: a.identity.unit, routeId, seq: Number(msg.content.toString()) })
        write.end()
      },
    })
    t.after(async () => {
      await c.close()
      await channel.close().catch(() => {})
    })
    return { consumer: c, refused }
  }

  async function cutover(s: Started): Promise<string> {
    const body = { moves: [{ ranges: ['2000~2999'], to: 'unit' }], reason: 'test' }
    const created = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, body)
    assert.equal(created.status, 201, JSON.stringify(created.json))
    const op = created.json as Operation
    assert.equal((await call(s.url, 'POST', `/v1/operations/${op.id}/start`, OPERATOR)).status, 202)
    return op.id
  }

  async function ended(s: Started, id: string): Promise<Operation> {
    const deadline = performance.now() + 30_000
    for (;;) {
      const op = (await call(s.url, 'GET', `/v1/operations/${id}`, OPERATOR)).json as Operation
      if (op.state !== 'running' && op.state !== 'planned') return op
      if (performance.now() > deadline) assert.fail(`operation still ${op.state} in ${op.phase}`)
      await new Promise((r) => setTimeout(r, 25))
    }
  }

  test('per-route-id order holds across a cut-over: the old owner drains, the new owner continues', async (t) => {
    const s = await controlPlane(t)
    const { exchange, queues } = await topology(t)
    const [pc, cc, cu] = [
      await agent(t, s.url, 'producer-1', 'center'),
      await agent(t, s.url, 'consumer-c', 'center'),
      await agent(t, s.url, 'consumer-u', 'unit'),
    ]
    const seen: Seen[] = []
    // The old owner's handler for moving keys stalls until the fence reaches it, so a backlog of them
    // sits in its queue when the cut-over starts. Without the barriers the switch would come first and
    // the new owner would overtake that backlog (or the old owner's late writes would be refused).
    let resume: () => void = () => {}
    const stalled = new Promise<void>((r) => {
      resume = r
    })
    cc!.on('applied', () => {
      if (cc!.router?.ruleSet.fence !== undefined) resume()
    })
    t.after(() => resume())
    const center = await consumer(t, cc!, exchange, queues.center!, seen, async (id) => {
      if (MOVING.includes(id)) await stalled
      await new Promise((r) => setTimeout(r, 2))
    })
    const unit = await consumer(t, cu!, exchange, queues.unit!, seen, async () => {})
    const channel = await conn.createConfirmChannel()
    t.after(() => channel.close().catch(() => {}))
    const producer = createAmqpProducer({ agent: pc!, channel, topics: { [exchange]: 'unit' } })
    t.after(() => producer.close())
    // Every node reported its topics and groups to the control plane.
    await until(
      () => s.cp.rules.nodes().filter((n) => n.mq !== undefined).length === 3,
      5000,
      'message drain reports',
    )

    const published = new Map<string, number>()
    let stop = false
    const failures: unknown[] = []
    const keys = [...MOVING, ...STAYING]
    // One message per route id at a time, all route ids at once: per-key order is the channel's order.
    const publishing = (async () => {
      while (!stop) {
        await Promise.all(
          keys.map(async (routeId) => {
            const seq = (published.get(routeId) ?? 0) + 1
            published.set(routeId, seq)
            try {
              await producer.publish(exchange, 'order', Buffer.from(String(seq)), { routeId })
            } catch (err) {
              failures.push(err)
            }
          }),
        )
      }
    })()
    const sent = () => [...published.values()].reduce((a, b) => a + b, 0)
    let op: Operation
    try {
      await until(() => sent() - seen.length >= 150, 10_000, 'a backlog before the cut-over')
      op = await ended(s, await cutover(s))
      await until(
        () => seen.filter((m) => m.unit === 'unit' && MOVING.includes(m.routeId)).length >= 20,
        10_000,
        'traffic after',
      )
    } finally {
      stop = true
      await publishing
    }
    const total = sent()
    await until(() => seen.length === total, 20_000, `all ${total} messages processed (got ${seen.length})`)

    assert.equal(op.state, 'succeeded', JSON.stringify(op.error))
    assert.deepEqual(failures, [])
    // A handler that began before the fence and wrote after it is refused (APPACTIVE_FENCED) and runs
    // again under the drain permit; a write refused because the key had already moved away would mean
    // the switch overtook the old owner's backlog.
    const codes = center.refused.map((e) => (e as { code?: string }).code)
    assert.deepEqual(
      codes.filter((c) => c !== 'APPACTIVE_FENCED'),
      [],
      'no write of the old owner refused for the wrong unit',
    )
    assert.deepEqual(unit.refused, [])
    for (const routeId of keys) {
      const mine = seen.filter((m) => m.routeId === routeId)
      assert.deepEqual(
        mine.map((m) => m.seq),
        Array.from({ length: published.get(routeId)! }, (_, i) => i + 1),
        `route id ${routeId}: every message once, in order`,
      )
      const units = mine.map((m) => m.unit)
      const expected = MOVING.includes(routeId) ? 'center then unit' : 'center only'
      const firstUnit = units.indexOf('unit')
      if (MOVING.includes(routeId)) {
        assert.ok(firstUnit > 0, `route id ${routeId}: ${expected}`)
        assert.ok(
          units.slice(firstUnit).every((u) => u === 'unit'),
          `route id ${routeId}: ${expected}`,
        )
      } else {
        const owner = routeId === '100' ? 'unit' : 'center'
        assert.ok(
          units.every((u) => u === owner),
          `route id ${routeId} stays in ${owner}`,
        )
      }
    }
    // The drain waited for the barrier from the producer, which the old owner's consumer passed.
    const snap = center.consumer.metrics.snapshot()
    assert.ok((snap['consume/barrier'] ?? 0) >= 1, JSON.stringify(snap))
    assert.equal(snap['consume/dead_lettered'], undefined)
    assert.equal(unit.consumer.metrics.snapshot()['consume/dead_lettered'], undefined)
  })

  test('a consumer that cannot finish its backlog makes the drain time out and the run roll back', async (t) => {
    const s = await controlPlane(t, 1500)
    const { exchange, queues } = await topology(t)
    const [pc, cc, cu] = [
      await agent(t, s.url, 'producer-1', 'center'),
      await agent(t, s.url, 'consumer-c', 'center'),
      await agent(t, s.url, 'consumer-u', 'unit'),
    ]
    const seen: Seen[] = []
    let release: () => void = () => {}
    const stuck = new Promise<void>((r) => {
      release = r
    })
    t.after(() => release())
    // The old owner's handler for a moving key hangs until released: its barrier cannot pass.
    await consumer(t, cc!, exchange, queues.center!, seen, (id) =>
      id === '2000' ? stuck : Promise.resolve(),
    )
    await consumer(t, cu!, exchange, queues.unit!, seen, async () => {})
    const channel = await conn.createConfirmChannel()
    t.after(() => channel.close().catch(() => {}))
    const producer = createAmqpProducer({ agent: pc!, channel, topics: { [exchange]: 'unit' } })
    t.after(() => producer.close())
    await until(() => s.cp.rules.nodes().filter((n) => n.mq !== undefined).length === 3, 5000, 'reports')
    await producer.publish(exchange, 'order', Buffer.from('1'), { routeId: '2000' })

    const op = await ended(s, await cutover(s))
    assert.equal(op.state, 'rolled-back')
    assert.equal(op.error?.code, 'DRAIN_TIMEOUT')
    assert.match(
      op.error?.message ?? '',
      /center\/appactive\.drain\.[^/]+\/appactive\.drain\.[^ ]+\.center \(waiting for producer-1\)/,
    )
    const latest = (await s.store.latestRuleSet())!.ruleSet
    assert.equal(latest.fence, undefined)
    assert.deepEqual(latest.mapping, V1.mapping)
    // Released, the message is processed by its owner of before (the run rolled back).
    release()
    await until(() => seen.length === 1, 10_000, 'the stuck message')
    assert.deepEqual(seen, [{ unit: 'center', routeId: '2000', seq: 1 }])
  })
})
