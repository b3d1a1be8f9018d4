import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib'
import type { RoutingAgent } from '../../../src/agent/index.js'
import {
  type AmqpConsumer,
  createAmqpConsumer,
  createAmqpProducer,
  DEAD_CODE_HEADER,
  DEAD_REASON_HEADER,
  MSG_ID_HEADER,
} from '../../../src/bridges/mq/index.js'
import { currentRouteId, runWithRoute } from '../../../src/context/index.js'
import type { RuleSet } from '../../../src/rules/index.js'
import { until } from '../../helpers/agents.js'
import { needs, RABBITMQ } from '../../helpers/services.js'
import { threeUnits } from '../../helpers/topology.js'
import { agentIn, moved } from './helpers.js'

const skip = await needs(RABBITMQ)

interface Got {
  readonly unit: string
  readonly routeId: string | undefined
  readonly msgId: string | undefined
  readonly body: string
  readonly hops: unknown
}

describe('amqplib bridge (real RabbitMQ)', { skip }, () => {
  const run = randomUUID().slice(0, 8)
  let conn: ChannelModel
  let admin: ConfirmChannel
  const queues: string[] = []
  const exchanges: string[] = []

  before(async () => {
    if (skip) return
    conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672')
    admin = await conn.createConfirmChannel()
  })
  after(async () => {
    if (skip) return
    for (const q of queues) await admin.deleteQueue(q)
    for (const e of exchanges) await admin.deleteExchange(e)
    await conn.close()
  })

  /** An exchange with one queue per unit bound `<unit>.#`, and a dead-letter exchange + queue. */
  async function topology(name: string) {
    const exchange = `appactive-test.${name}.${run}`
    const dead = `${exchange}.dead`
    await admin.assertExchange(exchange, 'topic', { durable: false, autoDelete: false })
    await admin.assertExchange(dead, 'fanout', { durable: false, autoDelete: false })
    exchanges.push(exchange, dead)
    const queue = (unit: string) => `${exchange}.${unit}`
    for (const unit of ['hz', 'sh']) {
      await admin.assertQueue(queue(unit), { durable: false })
      await admin.bindQueue(queue(unit), exchange, `${unit}.#`)
      queues.push(queue(unit), `${queue(unit)}.appactive-delay`)
    }
    await admin.assertQueue(dead, { durable: false })
    await admin.bindQueue(dead, dead, '')
    queues.push(dead)
    return { exchange, dead, queue }
  }

  /** Consumers for hz and sh with their own agents and channels; `got` collects processed messages. */
  async function consumers(
    t: { exchange: string; dead: string; queue: (u: string) => string },
    rules: RuleSet,
  ) {
    const got: Got[] = []
    const agents: Record<string, RoutingAgent> = {}
    const list: AmqpConsumer[] = []
    const channels: ConfirmChannel[] = []
    for (const unit of ['hz', 'sh']) {
      const agent = agentIn(unit, rules)
      agents[unit] = agent
      const channel = await conn.createConfirmChannel()
      channels.push(channel)
      list.push(
        await createAmqpConsumer({
          agent,
          channel,
          queue: t.queue(unit),
          exchange: t.exchange,
          topics: { [t.exchange]: 'unit' },
          deadLetterExchange: t.dead,
          handler: (msg: ConsumeMessage, info) => {
            got.push({
              unit,
              routeId: currentRouteId(),
              msgId: info.msgId,
              body: msg.content.toString(),
              hops: msg.properties.headers?.['x-appactive-hops'],
            })
          },
        }),
      )
    }
    const close = async () => {
      for (const c of list) await c.close()
      for (const ch of channels) await ch.close()
    }
    return { got, agents, consumers: list, close }
  }

  test('routes by owner: each unit consumes only its own route ids, in their route context', async () => {
    const t = await topology('owner')
    const c = await consumers(t, threeUnits(1))
    const channel = await conn.createConfirmChannel()
    try {
      const producer = createAmqpProducer({
        agent: agentIn('center', threeUnits(1)),
        channel,
        topics: { [t.exchange]: 'unit' },
      })
      const a = await runWithRoute({ routeId: '4000' }, () =>
        producer.publish(t.exchange, 'created', Buffer.from('a')),
      )
      const b = await producer.publish(t.exchange, 'created', Buffer.from('b'), { routeId: '7000' })
      assert.equal(a.routingKey, 'hz.created')
      assert.equal(b.routingKey, 'sh.created')
      await until(() => c.got.length === 2, 10_000, 'two deliveries')
      const byUnit = Object.fromEntries(c.got.map((g) => [g.unit, g]))
      assert.deepEqual(
        { ...byUnit.hz, hops: undefined },
        { unit: 'hz', routeId: '4000', msgId: a.msgId, body: 'a', hops: undefined },
      )
      assert.equal(byUnit.sh?.routeId, '7000')
      assert.equal(byUnit.sh?.msgId, b.msgId)
      assert.equal(producer.metrics.snapshot()['publish/published'], 2)
    } finally {
      await c.close()
      await channel.close()
    }
  })

  test('forwards once to the owner when the producer had stale rules, keeping the message id', async () => {
    const t = await topology('forward')
    const c = await consumers(t, moved(2))
    const channel = await conn.createConfirmChannel()
    try {
      // The producer still runs v1, where 5050 belongs to hz.
      const producer = createAmqpProducer({
        agent: agentIn('center', threeUnits(1)),
        channel,
        topics: { [t.exchange]: 'unit' },
      })
      const sent = await producer.publish(t.exchange, 'paid', Buffer.from('x'), { routeId: '5050' })
      assert.equal(sent.routingKey, 'hz.paid')
      await until(() => c.got.length === 1, 10_000, 'the forwarded delivery')
      assert.deepEqual(c.got[0], { unit: 'sh', routeId: '5050', msgId: sent.msgId, body: 'x', hops: '1' })
      assert.equal(c.consumers[0]!.metrics.snapshot()['consume/forwarded'], 1)
      assert.equal((await admin.checkQueue(t.dead)).messageCount, 0)
    } finally {
      await c.close()
      await channel.close()
    }
  })

  test('during a fence the old owner drains what was published before it; later publishes wait for the new owner', async () => {
    const t = await topology('fence')
    const c = await consumers(t, threeUnits(1))
    const channel = await conn.createConfirmChannel()
    try {
      const producerAgent = agentIn('center', threeUnits(1))
      const producer = createAmqpProducer({ agent: producerAgent, channel, topics: { [t.exchange]: 'unit' } })
      // Published before the fence (v1, addressed to hz), consumed while hz's agent holds the fence (v2):
      // hz still owns the key until the switch, so it processes it (the drain), under a drain permit.
      for (const agent of Object.values(c.agents)) agent.apply(threeUnits(2, true))
      await producer.publish(t.exchange, 'early', Buffer.from('early'), { routeId: '5001' })
      await until(() => c.got.length === 1, 10_000, 'the drained message')
      assert.deepEqual(
        c.got.map((g) => `${g.unit}:${g.body}`),
        ['hz:early'],
      )
      assert.equal(c.consumers[0]!.metrics.snapshot()['consume/held'], undefined)
      // A publish during the fence is held at the producer.
      producerAgent.apply(threeUnits(2, true))
      const late = producer.publish(t.exchange, 'late', Buffer.from('late'), { routeId: '5002' })
      await until(() => producer.metrics.snapshot()['publish/held'] === 1, 10_000, 'the producer hold')
      assert.equal(c.got.length, 1)
      // Switch and unfence in one step: 5000~5099 now belongs to sh.
      for (const agent of [producerAgent, ...Object.values(c.agents)]) agent.apply(moved(3))
      assert.equal((await late).routingKey, 'sh.late')
      await until(() => c.got.length === 2, 10_000, 'both messages processed')
      assert.deepEqual(
        c.got.map((g) => `${g.unit}:${g.body}`),
        ['hz:early', 'sh:late'],
      )
      assert.equal((await admin.checkQueue(t.dead)).messageCount, 0)
      assert.equal(c.consumers[0]!.metrics.snapshot()['consume/dead_lettered'], undefined)
    } finally {
      await c.close()
      await channel.close()
    }
  })

  test('dead-letters a message with a malformed header with its reason, and keeps consuming', async () => {
    const t = await topology('malformed')
    const c = await consumers(t, threeUnits(1))
    try {
      const bad = { 'x-appactive-route-id': 'x'.repeat(2000), [MSG_ID_HEADER]: 'bad-1' }
      admin.publish(t.exchange, 'hz.k', Buffer.from('bad'), { headers: bad })
      admin.publish(t.exchange, 'hz.k', Buffer.from('no-id'), { headers: {} })
      admin.publish(t.exchange, 'hz.k', Buffer.from('good'), { headers: { 'x-appactive-route-id': '4001' } })
      await admin.waitForConfirms()
      await until(() => c.got.length === 1, 10_000, 'the good message')
      assert.equal(c.got[0]!.body, 'good')
      await until(
        () => c.consumers[0]!.metrics.snapshot()['consume/dead_lettered'] === 2,
        10_000,
        'dead letters',
      )
      const dead: Record<string, unknown>[] = []
      for (
        let m = await admin.get(t.dead, { noAck: true });
        m !== false;
        m = await admin.get(t.dead, { noAck: true })
      ) {
        dead.push({ body: m.content.toString(), ...m.properties.headers })
      }
      const bodies = Object.fromEntries(dead.map((d) => [d.body, d]))
      assert.match(String(bodies.bad?.[DEAD_REASON_HEADER]), /malformed x-appactive-route-id/)
      assert.equal(bodies.bad?.[DEAD_CODE_HEADER], 'APPACTIVE_NO_ROUTE_ID')
      assert.match(String(bodies['no-id']?.[DEAD_REASON_HEADER]), /no route id/)
    } finally {
      await c.close()
    }
  })

  test('a channel killed mid-hold: every held delivery is redelivered to the next consumer, no stale ack', async () => {
    const t = await topology('killed')
    // A consumer on its own connection holds fenced messages (unacked) when its connection dies.
    const doomed = await amqp.connect('amqp://guest:guest@127.0.0.1:5672')
    const connErrors: unknown[] = []
    doomed.on('error', (err) => connErrors.push(err))
    const channel = await doomed.createConfirmChannel()
    const channelErrors: unknown[] = []
    channel.on('error', (err) => channelErrors.push(err))
    const heldAgent = agentIn('hz', threeUnits(2, true))
    const first = await createAmqpConsumer({
      agent: heldAgent,
      channel,
      queue: t.queue('hz'),
      exchange: t.exchange,
      topics: { [t.exchange]: 'unit' },
      deadLetterExchange: t.dead,
      handler: () => assert.fail('nothing may be processed while fenced'),
    })
    const ids = ['5001', '5002', '5003', '5004', '5005']
    for (const id of ids)
      admin.publish(t.exchange, 'hz.k', Buffer.from(id), { headers: { 'x-appactive-route-id': id } })
    await admin.waitForConfirms()
    await until(() => first.metrics.snapshot()['consume/held'] === ids.length, 10_000, 'all five held')
    // Kill the connection under the held deliveries (as a crashed process or a broker-side close would).
    await doomed.close()
    await first.close() // returns at once: the held deliveries died with their channel, nothing is acked
    // The next consumer, with the fence lifted, gets every one of them, in order.
    const got: string[] = []
    const channel2 = await conn.createConfirmChannel()
    const second = await createAmqpConsumer({
      agent: agentIn('hz', threeUnits(3)),
      channel: channel2,
      queue: t.queue('hz'),
      exchange: t.exchange,
      topics: { [t.exchange]: 'unit' },
      deadLetterExchange: t.dead,
      handler: (msg) => {
        got.push(msg.content.toString())
      },
    })
    try {
      await until(() => got.length === ids.length, 10_000, 'redelivery of the held messages')
      assert.deepEqual(got, ids)
      assert.deepEqual(connErrors, [])
      assert.deepEqual(channelErrors, [], 'no PRECONDITION_FAILED (unknown delivery tag)')
      assert.equal((await admin.checkQueue(t.dead)).messageCount, 0)
      assert.equal((await admin.checkQueue(t.queue('hz'))).messageCount, 0)
    } finally {
      await second.close()
      await channel2.close()
    }
  })

  test('a long fence hold on a quorum queue with delivery-limit 3 dead-letters nothing', async () => {
    const t = await topology('quorum')
    const queue = `${t.exchange}.quorum`
    await admin.assertQueue(queue, {
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-delivery-limit': 3,
        'x-dead-letter-exchange': t.dead,
      },
    })
    await admin.bindQueue(queue, t.exchange, 'hz.#')
    queues.push(queue, `${queue}.appactive-delay`)
    const agent = agentIn('hz', threeUnits(2, true))
    const channel = await conn.createConfirmChannel()
    const got: string[] = []
    const consumer = await createAmqpConsumer({
      agent,
      channel,
      queue,
      exchange: t.exchange,
      topics: { [t.exchange]: 'unit' },
      // Short bounds so that the message makes several trips through the delay queue during the fence.
      hold: { maxMs: 100, recheckMs: 20 },
      delayMs: 150,
      handler: (msg) => {
        got.push(msg.content.toString())
      },
    })
    try {
      admin.publish(t.exchange, 'hz.k', Buffer.from('5007'), { headers: { 'x-appactive-route-id': '5007' } })
      await admin.waitForConfirms()
      // Well past 3 deliveries' worth of holding: a requeue loop would have hit the delivery limit.
      await until(
        () => (consumer.metrics.snapshot()['consume/delayed'] ?? 0) >= 5,
        15_000,
        'five hold rounds',
      )
      assert.deepEqual(got, [])
      agent.apply(threeUnits(3))
      await until(() => got.length === 1, 10_000, 'processed after the fence')
      assert.equal((await admin.checkQueue(t.dead)).messageCount, 0, 'zero dead letters')
    } finally {
      await consumer.close()
      await channel.close()
    }
  })

  test('a hold past its cap parks the message in the delay queue, never requeues it', async () => {
    const t = await topology('delay')
    const agent = agentIn('hz', threeUnits(2, true))
    const channel = await conn.createConfirmChannel()
    const got: string[] = []
    const consumer = await createAmqpConsumer({
      agent,
      channel,
      queue: t.queue('hz'),
      exchange: t.exchange,
      topics: { [t.exchange]: 'unit' },
      deadLetterExchange: t.dead,
      hold: { maxMs: 50, recheckMs: 10 },
      delayMs: 100,
      handler: (msg) => {
        got.push(`${msg.content}:${msg.properties.headers?.['x-appactive-route-id']}`)
      },
    })
    try {
      admin.publish(t.exchange, 'hz.k', Buffer.from('held'), { headers: { 'x-appactive-route-id': '5005' } })
      await admin.waitForConfirms()
      await until(
        () => (consumer.metrics.snapshot()['consume/delayed'] ?? 0) >= 2,
        10_000,
        'two delay rounds',
      )
      assert.deepEqual(got, [])
      agent.apply(threeUnits(3))
      await until(() => got.length === 1, 10_000, 'processing after the fence lifts')
      assert.deepEqual(got, ['held:5005'])
      assert.equal((await admin.checkQueue(t.dead)).messageCount, 0)
    } finally {
      await consumer.close()
      await channel.close()
    }
  })
})
