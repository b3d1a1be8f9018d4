/**
 * kafkajs adapter. The first suites run on the recording client fake (test/helpers/kafka-fake.ts) and
 * assert on its recorded calls; the scenarios at the end take a client factory and run on the fake and,
 * when KAFKA_BROKERS is set, on a real broker (observable outcomes only).
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { afterEach, beforeEach, describe, test } from 'node:test'
import type { Consumer, IHeaders, KafkaMessage, Producer } from 'kafkajs'
import type { RoutingAgent } from '../../../src/agent/index.js'
import {
  createKafkaConsumer,
  createKafkaProducer,
  DEAD_CODE_HEADER,
  DEAD_REASON_HEADER,
  DEAD_TOPIC_HEADER,
  type KafkaConsumer,
  type KafkaConsumerOptions,
  MSG_ID_HEADER,
} from '../../../src/bridges/mq/index.js'
import {
  currentRouteId,
  HOPS_HEADER,
  ROUTE_ID_HEADER,
  runWithRoute,
  UNIT_HEADER,
} from '../../../src/context/index.js'
import { type AppActiveError, FencedError } from '../../../src/errors/index.js'
import { until } from '../../helpers/agents.js'
import { FakeKafka } from '../../helpers/kafka-fake.js'
import { threeUnits } from '../../helpers/topology.js'
import { agentIn, moved } from './helpers.js'

const topics = { orders: 'unit', stock: 'center' } as const

const text = (v: IHeaders[string]): string | undefined =>
  v === undefined ? undefined : Array.isArray(v) ? String(v[0]) : v.toString()

interface Seen {
  readonly offset: string
  readonly routeId: string | undefined
  readonly contextRouteId: string | undefined
  readonly body: string
}

const open: KafkaConsumer[] = []
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close()
})

/** A consumer of `orders.hz` in group `g-hz` on the fake, with its handler's log. */
async function hzConsumer(
  kafka: FakeKafka,
  agent: RoutingAgent,
  extra: Partial<KafkaConsumerOptions> = {},
  name?: string,
) {
  const fc = kafka.consumer('g-hz', name)
  await fc.connect()
  await fc.subscribe({ topics: ['orders.hz'] })
  const seen: Seen[] = []
  const consumer = await createKafkaConsumer({
    agent,
    consumer: fc.client,
    producer: kafka.producer('bridge'),
    topics,
    deadLetterTopic: 'orders.dead',
    hold: { delayMs: 60_000 },
    handler: (m: KafkaMessage, info) => {
      seen.push({
        offset: m.offset,
        routeId: info.route.routeId,
        contextRouteId: currentRouteId(),
        body: m.value?.toString() ?? '',
      })
    },
    ...extra,
  })
  open.push(consumer)
  return { fc, consumer, seen }
}

/** Publishes through a bridge producer of an unfenced hz agent (v1) into one-partition topics. */
async function publish(kafka: FakeKafka, routeIds: string[]): Promise<void> {
  const producer = createKafkaProducer({
    agent: agentIn('hz', threeUnits(1)),
    producer: kafka.producer(),
    topics,
  })
  for (const [i, routeId] of routeIds.entries()) await producer.send('orders', { routeId, value: `m${i}` })
}

describe('kafkajs producer (fake client)', () => {
  test('routes unit topics to <topic>.<owner> with key = route id, acks -1 and the appactive headers', async () => {
    const kafka = new FakeKafka()
    const producer = createKafkaProducer({
      agent: agentIn('hz', threeUnits(1)),
      producer: kafka.producer(),
      topics,
    })
    const a = await producer.send('orders', { routeId: '4000', value: 'a', headers: { trace: 't1' } })
    const b = await runWithRoute({ routeId: '7000' }, () => producer.send('orders', { value: 'b' }))
    const c = await producer.send('stock', { key: '4000', value: 'c' })
    const d = await producer.send('audit', { key: 'k', value: 'd' })
    assert.deepEqual(
      [a, b, c, d].map((r) => [r.topic, r.unit]),
      [
        ['orders.hz', 'hz'],
        ['orders.sh', 'sh'],
        ['stock.center', 'center'],
        ['audit', undefined],
      ],
    )
    const sends = kafka.callsOf('send')
    assert.equal(sends.length, 4)
    for (const s of sends) assert.equal(s.args.acks, -1)
    const messages = sends.map((s) => (s.args.messages as { key: string; headers: IHeaders }[])[0]!)
    assert.deepEqual(
      messages.map((m) => m.key),
      ['4000', '7000', '4000', 'k'],
    )
    assert.equal(messages[0]!.headers.trace, 't1')
    assert.equal(text(messages[0]!.headers[ROUTE_ID_HEADER]), '4000')
    assert.equal(text(messages[0]!.headers[UNIT_HEADER]), 'hz')
    assert.equal(text(messages[0]!.headers[MSG_ID_HEADER]), a.msgId)
    assert.equal(kafka.messages('orders.hz').length, 1)
    assert.equal(a.offset, '0')
  })

  test('rejects a bad template and a key other than the route id', async () => {
    const agent = agentIn('hz', threeUnits(1))
    for (const template of ['{unit}', '{topic}.{unit}.{key}']) {
      assert.throws(
        () => createKafkaProducer({ agent, producer: new FakeKafka().producer(), template }),
        (err: AppActiveError) => err.code === 'APPACTIVE_INVALID_ARGUMENT',
      )
    }
    const producer = createKafkaProducer({ agent, producer: new FakeKafka().producer(), topics })
    await assert.rejects(
      producer.send('orders', { routeId: '4000', key: '4001', value: 'x' }),
      /is the route id/,
    )
  })

  test('a fenced key is held: APPACTIVE_FENCED after the hold, sent once a new rule set unfences it', async () => {
    const kafka = new FakeKafka()
    const agent = agentIn('hz', threeUnits(1, true))
    const producer = createKafkaProducer({ agent, producer: kafka.producer(), topics, hold: { maxMs: 30 } })
    await assert.rejects(
      producer.send('orders', { routeId: '5000', value: 'x' }),
      (err: AppActiveError) => err.code === 'APPACTIVE_FENCED',
    )
    assert.equal(kafka.callsOf('send').length, 0)
    const patient = createKafkaProducer({ agent, producer: kafka.producer(), topics, hold: { maxMs: 5000 } })
    const pending = patient.send('orders', { routeId: '5000', value: 'y' })
    await new Promise((r) => setTimeout(r, 20))
    assert.equal(kafka.callsOf('send').length, 0)
    agent.apply(moved(2))
    assert.equal((await pending).topic, 'orders.sh')
  })
})

describe('kafkajs consumer (fake client)', () => {
  test('processes owned messages in the route context and forwards stale ones once to the owner', async () => {
    const kafka = new FakeKafka({ partitions: 1 })
    await publish(kafka, ['4000', '5000', '4001'])
    // The consumer's unit has v2: 5000 now belongs to sh.
    const { seen } = await hzConsumer(kafka, agentIn('hz', moved(2)))
    await until(() => kafka.callsOf('resolveOffset').length === 3, 2000, 'three resolved offsets')
    assert.deepEqual(
      seen.map((s) => [s.offset, s.routeId, s.contextRouteId]),
      [
        ['0', '4000', '4000'],
        ['2', '4001', '4001'],
      ],
    )
    const forwarded = kafka.messages('orders.sh')
    assert.equal(forwarded.length, 1)
    assert.equal(forwarded[0]!.key?.toString(), '5000')
    assert.equal(text(forwarded[0]!.headers[HOPS_HEADER]), '1')
    assert.equal(
      text(forwarded[0]!.headers[MSG_ID_HEADER]),
      text(kafka.messages('orders.hz')[1]!.headers[MSG_ID_HEADER]),
    )
    // The forward's send came before its offset was resolved.
    const i = kafka.calls.findIndex((c) => c.method === 'send' && c.args.topic === 'orders.sh')
    const j = kafka.calls.findIndex((c) => c.method === 'resolveOffset' && c.args.offset === '1')
    assert.ok(i >= 0 && i < j)
    await until(() => kafka.committed('g-hz', 'orders.hz', 0) === 3, 2000, 'commit of 3')
  })

  test('fence hold: partition paused at the held offset, nothing resolved past it, zero dead letters; resumed by the new rule set', async () => {
    const kafka = new FakeKafka({ partitions: 1 })
    await publish(kafka, ['4000', '5000', '4001'])
    const agent = agentIn('hz', threeUnits(1, true))
    const { fc, consumer, seen } = await hzConsumer(kafka, agent)
    await until(() => kafka.callsOf('pause').length === 1, 2000, 'pause')
    await new Promise((r) => setTimeout(r, 30))
    assert.deepEqual(kafka.callsOf('pause')[0]!.args.topics, [{ topic: 'orders.hz', partitions: [0] }])
    assert.deepEqual(kafka.callsOf('seek')[0]!.args, { topic: 'orders.hz', partition: 0, offset: '1' })
    assert.deepEqual(
      kafka.callsOf('resolveOffset').map((c) => c.args.offset),
      ['0'],
    )
    for (const c of kafka.callsOf('commitOffsets')) assert.ok(Number(c.args.offset) <= 1)
    assert.deepEqual(
      seen.map((s) => s.offset),
      ['0'],
    ) // head-of-line: 4001 waits behind the held 5000
    assert.deepEqual(kafka.messages('orders.dead'), [])
    assert.deepEqual(consumer.held, ['orders.hz:0'])
    assert.deepEqual(fc.paused(), [{ topic: 'orders.hz', partitions: [0] }])

    agent.apply(threeUnits(2))
    await until(() => seen.length === 3, 2000, 'all processed')
    assert.deepEqual(
      seen.map((s) => s.offset),
      ['0', '1', '2'],
    )
    assert.equal(kafka.callsOf('resume').length, 1)
    assert.deepEqual(consumer.held, [])
    await until(() => kafka.committed('g-hz', 'orders.hz', 0) === 3, 2000, 'commit of 3')
    assert.equal(consumer.metrics.snapshot()['consume/held'], 1)
  })

  test('a handler raising APPACTIVE_FENCED holds the message instead of dead-lettering it', async () => {
    const kafka = new FakeKafka({ partitions: 1 })
    await publish(kafka, ['4000'])
    const agent = agentIn('hz', threeUnits(1))
    let calls = 0
    await hzConsumer(kafka, agent, {
      hold: { delayMs: 10 },
      handler: () => {
        if (++calls === 1) throw new FencedError('4000')
      },
    })
    await until(() => calls === 2, 2000, 'redelivery after the hold')
    await until(() => kafka.callsOf('resolveOffset').length === 1, 2000, 'resolved')
    assert.equal(kafka.callsOf('pause').length, 1)
    assert.equal(kafka.callsOf('resume').length, 1)
    assert.deepEqual(kafka.messages('orders.dead'), [])
  })

  test('a malformed header is dead-lettered with reason and code, and processing continues', async () => {
    const kafka = new FakeKafka({ partitions: 1 })
    kafka.append('orders.hz', { key: '4000', value: 'bad', headers: { [HOPS_HEADER]: 'many' } })
    await publish(kafka, ['4000'])
    const { seen } = await hzConsumer(kafka, agentIn('hz', threeUnits(1)))
    await until(() => kafka.callsOf('resolveOffset').length === 2, 2000, 'two resolved')
    assert.deepEqual(
      seen.map((s) => s.offset),
      ['1'],
    )
    const dead = kafka.messages('orders.dead')
    assert.equal(dead.length, 1)
    assert.equal(dead[0]!.value?.toString(), 'bad')
    assert.equal(text(dead[0]!.headers[DEAD_CODE_HEADER]), 'APPACTIVE_NO_ROUTE_ID')
    assert.match(text(dead[0]!.headers[DEAD_REASON_HEADER]) ?? '', /malformed x-appactive-hops/)
    assert.equal(text(dead[0]!.headers[DEAD_TOPIC_HEADER]), 'orders.hz')
    // The dead letter was sent before its offset was resolved.
    const i = kafka.calls.findIndex((c) => c.method === 'send' && c.args.topic === 'orders.dead')
    const j = kafka.calls.findIndex((c) => c.method === 'resolveOffset' && c.args.offset === '0')
    assert.ok(i >= 0 && i < j)
  })

  test('cut-over barriers: one per partition after the earlier sends; the old owner drains before them and reports each', async () => {
    const kafka = new FakeKafka({ partitions: 2 })
    const producerAgent = agentIn('hz', threeUnits(1))
    const producer = createKafkaProducer({
      agent: producerAgent,
      producer: kafka.producer(),
      topics,
      partitions: async (topic) => (topic === 'orders.hz' ? 2 : 1),
    })
    assert.deepEqual(producerAgent.messages.state().produces, ['orders'])
    for (const routeId of ['5000', '5001', '5002', '4000'])
      await producer.send('orders', { routeId, value: routeId })
    // The consumer already holds the fence (v2): what was published to hz at v1 is drained, not held.
    const agent = agentIn('hz', threeUnits(2, true))
    const { consumer, seen } = await hzConsumer(kafka, agent, { drain: { group: 'g-hz' } })
    assert.deepEqual(agent.messages.state().consumes, [{ topic: 'orders', group: 'g-hz' }])
    producerAgent.apply(threeUnits(2, true))
    await until(
      () => agent.messages.state().barriers.length === 2,
      2000,
      'barriers passed on both partitions',
    )
    assert.deepEqual(seen.map((m) => m.routeId).sort(), ['4000', '5000', '5001', '5002'])
    const log = kafka.messages('orders.hz')
    for (const partition of [0, 1]) {
      const mine = log.filter((m) => m.partition === partition)
      assert.equal(
        text(mine[mine.length - 1]!.headers?.['x-appactive-barrier']),
        `2:${producerAgent.identity.nodeId}`,
        `the barrier is the last message of partition ${partition}`,
      )
    }
    assert.deepEqual(
      agent.messages
        .state()
        .barriers.map((b) => `${b.topic}/${b.group}/${b.version}/${b.partition}/${b.partitions}`)
        .sort(),
      ['orders/g-hz/2/0/2', 'orders/g-hz/2/1/2'],
    )
    assert.equal(consumer.metrics.snapshot()['consume/barrier'], 2)
    assert.equal(consumer.metrics.snapshot()['consume/held'], undefined)
    assert.deepEqual(kafka.messages('orders.dead'), [])
    producer.close()
  })

  test('a rebalance mid-hold redelivers from the committed offset and loses nothing', async () => {
    const kafka = new FakeKafka({ partitions: 1 })
    await publish(kafka, ['4000', '5000', '4001'])
    const agent = agentIn('hz', threeUnits(1, true))
    const { seen } = await hzConsumer(kafka, agent)
    await until(() => kafka.callsOf('pause').length === 1, 2000, 'pause')
    assert.equal(kafka.committed('g-hz', 'orders.hz', 0), 1)
    kafka.rebalance()
    // Redelivered from offset 1 and held again.
    await until(() => kafka.callsOf('pause').length === 2, 2000, 'second pause')
    assert.deepEqual(
      kafka.callsOf('seek').map((c) => c.args.offset),
      ['1', '1'],
    )
    agent.apply(threeUnits(2))
    await until(() => seen.length === 3, 2000, 'all processed')
    assert.deepEqual(
      seen.map((s) => s.body),
      ['m0', 'm1', 'm2'],
    )
    await until(() => kafka.callsOf('resolveOffset').length === 3, 2000, 'three resolved')
    assert.deepEqual(
      kafka.callsOf('resolveOffset').map((c) => c.args.offset),
      ['0', '1', '2'],
    )
    await until(() => kafka.committed('g-hz', 'orders.hz', 0) === 3, 2000, 'commit of 3')
  })

  test('a crash before the commit redelivers to the next consumer of the group (at least once)', async () => {
    const kafka = new FakeKafka({ partitions: 1 })
    await publish(kafka, ['4000', '4001', '4002'])
    const agent = agentIn('hz', threeUnits(1))
    const bodies: string[] = []
    const first = kafka.consumer('g-hz', 'first')
    await first.subscribe({ topics: ['orders.hz'] })
    open.push(
      await createKafkaConsumer({
        agent,
        consumer: first.client,
        producer: kafka.producer(),
        topics,
        handler: (m) => {
          bodies.push(m.value!.toString())
          if (bodies.length === 2) kafka.crash(first)
        },
      }),
    )
    await until(() => bodies.length === 2, 2000, 'crash')
    assert.equal(kafka.committed('g-hz', 'orders.hz', 0), undefined)
    const { seen } = await hzConsumer(kafka, agent, {}, 'second')
    await until(() => seen.length === 3, 2000, 'redelivery')
    assert.deepEqual(
      seen.map((s) => s.body),
      ['m0', 'm1', 'm2'],
    )
  })
})

// ---------------------------------------------------------------------------------------------------
// Scenarios on a client factory: the fake always, a real broker when KAFKA_BROKERS is set.

interface Stored {
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers?: IHeaders
}

/** The clients of one scenario run; `topic()` makes run-unique logical topic names. */
interface KafkaEnv {
  readonly timeoutMs: number
  topic(base: string): string
  createTopics(names: string[]): Promise<void>
  producer(): Promise<Producer>
  /** A connected consumer of `groupId`, subscribed to `topics` from the beginning. */
  consumer(groupId: string, topics: string[]): Promise<Consumer>
  /** The first `count` messages of `topic` (waits for them). */
  read(topic: string, count: number): Promise<Stored[]>
  close(): Promise<void>
}

function fakeEnv(): KafkaEnv {
  const kafka = new FakeKafka({ partitions: 1 })
  return {
    timeoutMs: 2000,
    topic: (base) => base,
    createTopics: async (names) => {
      for (const name of names) kafka.log(name)
    },
    producer: async () => kafka.producer(),
    consumer: async (groupId, topics) => {
      const c = kafka.consumer(groupId)
      await c.connect()
      await c.subscribe({ topics, fromBeginning: true })
      return c.client
    },
    read: async (topic, count) => {
      await until(() => kafka.messages(topic).length >= count, 2000, `${count} messages on ${topic}`)
      return kafka.messages(topic).slice(0, count)
    },
    close: async () => undefined,
  }
}

async function realEnv(brokers: string): Promise<KafkaEnv> {
  const { Kafka, logLevel } = await import('kafkajs')
  const kafka = new Kafka({
    clientId: 'appactive-test',
    brokers: brokers.split(','),
    logLevel: logLevel.NOTHING,
  })
  const admin = kafka.admin()
  await admin.connect()
  const run = randomUUID().slice(0, 8)
  const clients: { disconnect(): Promise<void> }[] = []
  const created: string[] = []
  return {
    timeoutMs: 30_000,
    topic: (base) => `appactive-test-${run}-${base}`,
    createTopics: async (names) => {
      await admin.createTopics({
        waitForLeaders: true,
        topics: names.map((topic) => ({ topic, numPartitions: 1 })),
      })
      created.push(...names)
    },
    producer: async () => {
      const p = kafka.producer()
      await p.connect()
      clients.push(p)
      return p
    },
    consumer: async (groupId, topics) => {
      const c = kafka.consumer({ groupId: `${groupId}-${run}` })
      await c.connect()
      await c.subscribe({ topics, fromBeginning: true })
      clients.push(c)
      return c
    },
    read: async (topic, count) => {
      const c = kafka.consumer({ groupId: `reader-${randomUUID()}` })
      await c.connect()
      await c.subscribe({ topics: [topic], fromBeginning: true })
      const got: Stored[] = []
      await c.run({
        eachMessage: async ({ message }) => {
          got.push(message)
        },
      })
      try {
        await until(() => got.length >= count, 30_000, `${count} messages on ${topic}`)
      } finally {
        await c.disconnect()
      }
      return got.slice(0, count)
    },
    close: async () => {
      for (const c of clients.reverse()) await c.disconnect()
      if (created.length > 0) await admin.deleteTopics({ topics: created })
      await admin.disconnect()
    },
  }
}

const envs: [string, () => Promise<KafkaEnv>, boolean][] = [
  ['fake client', async () => fakeEnv(), false],
  ['real broker', () => realEnv(process.env.KAFKA_BROKERS ?? ''), !process.env.KAFKA_BROKERS],
]

for (const [name, makeEnv, skip] of envs) {
  describe(`kafkajs scenarios (${name})`, { skip: skip && 'KAFKA_BROKERS is not set' }, () => {
    let env: KafkaEnv
    let T: string
    let table: Record<string, 'unit'>
    const consumers: KafkaConsumer[] = []

    beforeEach(async () => {
      env = await makeEnv()
      T = env.topic('orders')
      table = { [T]: 'unit' }
      await env.createTopics([`${T}.hz`, `${T}.sh`, `${T}.center`, `${T}.dead`])
    })
    afterEach(async () => {
      while (consumers.length > 0) await consumers.pop()!.close()
      await env.close()
    })

    async function send(routeIds: string[]): Promise<void> {
      const agent = agentIn('hz', threeUnits(1))
      const producer = createKafkaProducer({ agent, producer: await env.producer(), topics: table })
      for (const [i, routeId] of routeIds.entries()) await producer.send(T, { routeId, value: `m${i}` })
    }

    async function consume(agent: RoutingAgent): Promise<{ seen: string[]; consumer: KafkaConsumer }> {
      const seen: string[] = []
      const consumer = await createKafkaConsumer({
        agent,
        consumer: await env.consumer('hz', [`${T}.hz`]),
        producer: await env.producer(),
        topics: table,
        deadLetterTopic: `${T}.dead`,
        hold: { delayMs: 60_000 },
        handler: (m) => {
          seen.push(`${m.key?.toString()}:${m.value?.toString()}`)
        },
      })
      consumers.push(consumer)
      return { seen, consumer }
    }

    test('routing by owner: <topic>.<unit>, key = route id', async () => {
      await send(['4000', '7000'])
      const [hz] = await env.read(`${T}.hz`, 1)
      const [sh] = await env.read(`${T}.sh`, 1)
      assert.equal(hz!.key?.toString(), '4000')
      assert.equal(sh!.key?.toString(), '7000')
      assert.equal(text(sh!.headers?.[UNIT_HEADER]), 'sh')
    })

    test('stale rules: forwarded once to the owner, the rest processed', async () => {
      await send(['4000', '5000'])
      const { seen } = await consume(agentIn('hz', moved(2)))
      const [fwd] = await env.read(`${T}.sh`, 1)
      assert.equal(fwd!.key?.toString(), '5000')
      assert.equal(text(fwd!.headers?.[HOPS_HEADER]), '1')
      await until(() => seen.length === 1, env.timeoutMs, 'processed')
      assert.deepEqual(seen, ['4000:m0'])
    })

    test('fence hold, then resume on the new rule set, in order', async () => {
      await send(['4000', '5000', '4001'])
      const agent = agentIn('hz', threeUnits(1, true))
      const { seen, consumer } = await consume(agent)
      await until(() => consumer.held.length === 1, env.timeoutMs, 'held')
      await new Promise((r) => setTimeout(r, 200))
      assert.deepEqual(seen, ['4000:m0'])
      agent.apply(threeUnits(2))
      await until(() => seen.length === 3, env.timeoutMs, 'all processed')
      assert.deepEqual(seen, ['4000:m0', '5000:m1', '4001:m2'])
    })

    test('malformed header: dead-lettered, processing continues', async () => {
      const raw = await env.producer()
      await raw.send({
        topic: `${T}.hz`,
        messages: [{ key: '4000', value: 'bad', headers: { [HOPS_HEADER]: 'x' } }],
      })
      await send(['4000'])
      const { seen } = await consume(agentIn('hz', threeUnits(1)))
      const [dead] = await env.read(`${T}.dead`, 1)
      assert.equal(text(dead!.headers?.[DEAD_CODE_HEADER]), 'APPACTIVE_NO_ROUTE_ID')
      await until(() => seen.length === 1, env.timeoutMs, 'processed')
      assert.deepEqual(seen, ['4000:m0'])
    })
  })
}
