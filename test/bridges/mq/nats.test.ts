import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import {
  AckPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream'
import { connect, headers, type NatsConnection, nanos } from '@nats-io/transport-node'
import type { RoutingAgent } from '../../../src/agent/index.js'
import {
  createNatsConsumer,
  createNatsProducer,
  DEAD_CODE_HEADER,
  DEAD_REASON_HEADER,
  DEAD_SUBJECT_HEADER,
  MSG_ID_HEADER,
  type NatsConsumer,
  type NatsHoldOptions,
  TopicTable,
} from '../../../src/bridges/mq/index.js'
import { currentRouteId, runWithRoute } from '../../../src/context/index.js'
import type { AppActiveError } from '../../../src/errors/index.js'
import type { RuleSet } from '../../../src/rules/index.js'
import { until } from '../../helpers/agents.js'
import { NATS, needs } from '../../helpers/services.js'
import { threeUnits } from '../../helpers/topology.js'
import { agentIn, moved } from './helpers.js'

const skip = await needs(NATS)

describe('NATS adapter without a server', () => {
  const agent = agentIn('hz', threeUnits(1))
  const js = {} as JetStreamClient

  test('topic names are listed longest first, for subject prefix matching', () => {
    const t = new TopicTable({ a: 'unit', 'a.b': 'center', 'c.d.e': 'normal' })
    assert.deepEqual(t.names, ['c.d.e', 'a.b', 'a'])
    assert.deepEqual(new TopicTable().names, [])
  })

  test('rejects a subject template without {topic} or {key}, and a unit subject without a key', async () => {
    for (const template of ['{unit}.{key}', '{topic}.{unit}']) {
      assert.throws(
        () => createNatsProducer({ agent, js, template }),
        (err: AppActiveError) => err.code === 'APPACTIVE_INVALID_ARGUMENT',
      )
    }
    const producer = createNatsProducer({ agent, js, topics: { orders: 'unit' } })
    await assert.rejects(
      producer.publish('orders', 'x', { routeId: '4000' }),
      /needs a key after topic orders/,
    )
  })
})

interface Got {
  readonly unit: string
  readonly routeId: string | undefined
  readonly msgId: string | undefined
  readonly natsMsgId: string
  readonly body: string
  readonly hops: string | undefined
}

describe('NATS JetStream bridge (real server)', { skip }, () => {
  const run = randomUUID().slice(0, 8)
  const prefix = `appactive-test-${run}`
  const stream = `appactive-test-${run}`
  let nc: NatsConnection
  let js: JetStreamClient
  let jsm: JetStreamManager

  before(async () => {
    if (skip) return
    nc = await connect({ servers: `${NATS.host}:${NATS.port}` })
    js = jetstream(nc)
    jsm = await jetstreamManager(nc)
    await jsm.streams.add({ name: stream, subjects: [`${prefix}.>`], storage: StorageType.Memory })
  })
  after(async () => {
    if (skip) return
    try {
      await jsm.streams.delete(stream)
    } finally {
      await nc.close()
    }
  })

  /** A durable pull consumer of the run's stream with one filter subject (server 2.9). */
  async function durable(name: string, filter: string): Promise<void> {
    await jsm.consumers.add(stream, {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      filter_subject: filter,
      max_deliver: -1,
      ack_wait: nanos(30_000),
    })
  }

  /** Messages stored on `subject`. */
  async function countOn(subject: string): Promise<number> {
    const info = await jsm.streams.info(stream, { subjects_filter: subject })
    return info.state.subjects?.[subject] ?? 0
  }

  /** Reads the `n` messages stored on `subject`. */
  async function read(subject: string, n: number): Promise<JsMsg[]> {
    const name = `read-${randomUUID().slice(0, 8)}`
    await durable(name, subject)
    const out: JsMsg[] = []
    const c = await js.consumers.get(stream, name)
    for await (const m of await c.fetch({ max_messages: n, expires: 10_000 })) {
      out.push(m)
      m.ack()
    }
    await jsm.consumers.delete(stream, name)
    return out
  }

  /** A topic of the run with consumers for hz and sh (each filtering `<topic>.<unit>.>`). */
  async function consumers(name: string, rules: RuleSet, hold?: NatsHoldOptions) {
    const topic = `${prefix}.${name}`
    const dead = `${prefix}.dead.${name}`
    const got: Got[] = []
    const agents: Record<string, RoutingAgent> = {}
    const list: NatsConsumer[] = []
    for (const unit of ['hz', 'sh']) {
      const agent = agentIn(unit, rules)
      agents[unit] = agent
      await durable(`${name}-${unit}`, `${topic}.${unit}.>`)
      list.push(
        await createNatsConsumer({
          agent,
          js,
          stream,
          consumer: `${name}-${unit}`,
          topics: { [topic]: 'unit' },
          deadLetterSubject: dead,
          ...(hold ? { hold } : {}),
          handler: (msg, info) => {
            got.push({
              unit,
              routeId: currentRouteId(),
              msgId: info.msgId,
              natsMsgId: msg.headers?.get('Nats-Msg-Id') ?? '',
              body: msg.string(),
              hops: msg.headers?.get('x-appactive-hops') || undefined,
            })
          },
        }),
      )
    }
    const close = async () => {
      for (const c of list) await c.close()
    }
    return { topic, dead, got, agents, consumers: list, close }
  }

  test('routes by owner: each unit consumes only its own route ids, in their route context', async () => {
    const c = await consumers('owner', threeUnits(1))
    try {
      const producer = createNatsProducer({
        agent: agentIn('center', threeUnits(1)),
        js,
        topics: { [c.topic]: 'unit' },
      })
      const a = await runWithRoute({ routeId: '4000' }, () => producer.publish(`${c.topic}.created`, 'a'))
      const b = await producer.publish(`${c.topic}.created`, 'b', { routeId: '7000' })
      assert.equal(a.subject, `${c.topic}.hz.created`)
      assert.equal(b.subject, `${c.topic}.sh.created`)
      assert.equal(a.stream, stream)
      await until(() => c.got.length === 2, 10_000, 'two deliveries')
      const byUnit = Object.fromEntries(c.got.map((g) => [g.unit, g]))
      assert.deepEqual(byUnit.hz, {
        unit: 'hz',
        routeId: '4000',
        msgId: a.msgId,
        natsMsgId: a.msgId,
        body: 'a',
        hops: '0',
      })
      assert.equal(byUnit.sh?.routeId, '7000')
      assert.equal(byUnit.sh?.msgId, b.msgId)
      assert.equal(producer.metrics.snapshot()['publish/published'], 2)
      assert.equal(c.consumers[0]!.metrics.snapshot()['consume/processed'], 1)
      assert.equal(c.consumers[1]!.metrics.snapshot()['consume/processed'], 1)
    } finally {
      await c.close()
    }
  })

  test('forwards once to the owner when the producer had stale rules, keeping the message id', async () => {
    const c = await consumers('forward', moved(2))
    try {
      // The producer still runs v1, where 5050 belongs to hz.
      const producer = createNatsProducer({
        agent: agentIn('center', threeUnits(1)),
        js,
        topics: { [c.topic]: 'unit' },
      })
      const sent = await producer.publish(`${c.topic}.paid`, 'x', { routeId: '5050' })
      assert.equal(sent.subject, `${c.topic}.hz.paid`)
      await until(() => c.got.length === 1, 10_000, 'the forwarded delivery')
      // One stream holds both units' subjects, so the copy's Nats-Msg-Id cannot be the original's.
      assert.deepEqual(c.got[0], {
        unit: 'sh',
        routeId: '5050',
        msgId: sent.msgId,
        natsMsgId: `${sent.msgId}.hop1`,
        body: 'x',
        hops: '1',
      })
      // hz acks (and counts) after the forward's PubAck, which may come after sh processed the copy.
      await until(
        () => c.consumers[0]!.metrics.snapshot()['consume/forwarded'] === 1,
        10_000,
        'the forward counted',
      )
      assert.equal(await countOn(`${c.topic}.sh.paid`), 1)
      assert.equal(await countOn(c.dead), 0)
    } finally {
      await c.close()
    }
  })

  test('during a fence the old owner drains what was published before it; later publishes wait for the new owner', async () => {
    const c = await consumers('fence', threeUnits(1))
    try {
      const producerAgent = agentIn('center', threeUnits(1))
      const producer = createNatsProducer({ agent: producerAgent, js, topics: { [c.topic]: 'unit' } })
      // Published before the fence (v1, addressed to hz), consumed while hz's agent holds the fence (v2):
      // hz still owns the key until the switch, so it processes it (the drain), under a drain permit.
      for (const agent of Object.values(c.agents)) agent.apply(threeUnits(2, true))
      await producer.publish(`${c.topic}.early`, 'early', { routeId: '5001' })
      await until(() => c.got.length === 1, 10_000, 'the drained message')
      assert.deepEqual(
        c.got.map((g) => `${g.unit}:${g.body}`),
        ['hz:early'],
      )
      assert.equal(c.consumers[0]!.metrics.snapshot()['consume/held'], undefined)
      // A publish during the fence is held at the producer.
      producerAgent.apply(threeUnits(2, true))
      const late = producer.publish(`${c.topic}.late`, 'late', { routeId: '5002' })
      await until(() => producer.metrics.snapshot()['publish/held'] === 1, 10_000, 'the producer hold')
      assert.equal(c.got.length, 1)
      // Switch and unfence in one step: 5000~5099 now belongs to sh.
      for (const agent of [producerAgent, ...Object.values(c.agents)]) agent.apply(moved(3))
      assert.equal((await late).subject, `${c.topic}.sh.late`)
      await until(() => c.got.length === 2, 10_000, 'both messages processed')
      assert.deepEqual(
        c.got.map((g) => `${g.unit}:${g.body}`),
        ['hz:early', 'sh:late'],
      )
      assert.equal(await countOn(c.dead), 0)
      assert.equal(c.consumers[0]!.metrics.snapshot()['consume/dead_lettered'], undefined)
      assert.equal(c.consumers[0]!.metrics.snapshot()['consume/delayed'], undefined)
    } finally {
      await c.close()
    }
  })

  test('a connection killed mid-hold: every held message is redelivered to the next consumer, none acked', async () => {
    const topic = `${prefix}.killed`
    const name = 'killed-hz'
    await jsm.consumers.add(stream, {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      filter_subject: `${topic}.hz.>`,
      max_deliver: -1,
      ack_wait: nanos(1000), // redelivery comes one ack wait after the holder is gone
    })
    const doomed = await connect({ servers: `${NATS.host}:${NATS.port}` })
    const first = await createNatsConsumer({
      agent: agentIn('hz', threeUnits(2, true)),
      js: jetstream(doomed),
      stream,
      consumer: name,
      topics: { [topic]: 'unit' },
      handler: () => assert.fail('nothing may be processed while fenced'),
    })
    const ids = ['5001', '5002', '5003', '5004']
    for (const id of ids) {
      const h = headers()
      h.set('x-appactive-route-id', id)
      await js.publish(`${topic}.hz.k`, id, { headers: h })
    }
    await until(() => first.metrics.snapshot()['consume/held'] === ids.length, 10_000, 'all four held')
    // Held messages are kept alive with working(); the process dies (its connection goes) mid-hold.
    await doomed.close()
    await first.close()
    const got: string[] = []
    const second = await createNatsConsumer({
      agent: agentIn('hz', threeUnits(3)),
      js,
      stream,
      consumer: name,
      topics: { [topic]: 'unit' },
      handler: (msg) => {
        got.push(msg.string())
      },
    })
    try {
      await until(() => got.length === ids.length, 10_000, 'redelivery of the held messages')
      assert.deepEqual([...got].sort(), ids)
      const info = await jsm.consumers.info(stream, name)
      assert.equal(info.num_pending + info.num_ack_pending, 0)
    } finally {
      await second.close()
      await jsm.consumers.delete(stream, name)
    }
  })

  test('a hold past its cap naks the message with a delay, never acks it, then processes it', async () => {
    const c = await consumers('delay', threeUnits(2, true), { maxMs: 50, recheckMs: 10, delayMs: 100 })
    try {
      const h = headers()
      h.set('x-appactive-route-id', '5005')
      await js.publish(`${c.topic}.hz.k`, 'held', { headers: h })
      const hz = c.consumers[0]!
      await until(() => (hz.metrics.snapshot()['consume/delayed'] ?? 0) >= 2, 10_000, 'two delay rounds')
      assert.equal(c.got.length, 0)
      c.agents.hz!.apply(threeUnits(3))
      await until(() => c.got.length === 1, 10_000, 'processing after the fence lifts')
      assert.deepEqual(
        c.got.map((g) => `${g.unit}:${g.body}:${g.routeId}`),
        ['hz:held:5005'],
      )
      assert.equal(await countOn(c.dead), 0)
    } finally {
      await c.close()
    }
  })

  test('dead-letters a message with a malformed header with its reason, and keeps consuming', async () => {
    const c = await consumers('malformed', threeUnits(1))
    try {
      const bad = headers()
      bad.set('x-appactive-route-id', 'x'.repeat(2000))
      bad.set(MSG_ID_HEADER, 'bad-1')
      const good = (routeId: string) => {
        const h = headers()
        h.set('x-appactive-route-id', routeId)
        return h
      }
      await js.publish(`${c.topic}.hz.k`, 'bad', { headers: bad, msgID: 'bad-1' })
      await js.publish(`${c.topic}.hz.k`, 'no-id')
      await js.publish(`${c.topic}.hz.k`, 'good', { headers: good('4001') })
      await until(() => c.got.length === 1, 10_000, 'the good message')
      assert.equal(c.got[0]!.body, 'good')
      const hz = c.consumers[0]!
      await until(() => hz.metrics.snapshot()['consume/dead_lettered'] === 2, 10_000, 'dead letters')
      // Still consuming after the dead letters.
      await js.publish(`${c.topic}.hz.k`, 'after', { headers: good('4002') })
      await until(() => c.got.length === 2, 10_000, 'a message after the dead letters')
      assert.equal(c.got[1]!.body, 'after')
      const dead = await read(c.dead, 2)
      const bodies = Object.fromEntries(dead.map((m) => [m.string(), m.headers!]))
      assert.match(bodies.bad!.get(DEAD_REASON_HEADER), /malformed x-appactive-route-id/)
      assert.equal(bodies.bad!.get(DEAD_CODE_HEADER), 'APPACTIVE_NO_ROUTE_ID')
      assert.equal(bodies.bad!.get(DEAD_SUBJECT_HEADER), `${c.topic}.hz.k`)
      assert.equal(bodies.bad!.get('Nats-Msg-Id'), 'bad-1.dead')
      assert.match(bodies['no-id']!.get(DEAD_REASON_HEADER), /no route id/)
    } finally {
      await c.close()
    }
  })

  test('Nats-Msg-Id de-duplicates a retried publish: the stream stores one message', async () => {
    const topic = `${prefix}.dedupe`
    const producer = createNatsProducer({
      agent: agentIn('hz', threeUnits(1)),
      js,
      topics: { [topic]: 'unit' },
    })
    const msgId = `retry-${run}`
    const first = await producer.publish(`${topic}.x`, 'one', { routeId: '4000', msgId })
    const second = await producer.publish(`${topic}.x`, 'one', { routeId: '4000', msgId })
    assert.equal(first.duplicate, false)
    assert.equal(second.duplicate, true)
    assert.equal(second.seq, first.seq)
    assert.equal(await countOn(`${topic}.hz.x`), 1)
    const [stored] = await read(`${topic}.hz.x`, 1)
    assert.equal(stored!.headers!.get('Nats-Msg-Id'), msgId)
    assert.equal(stored!.headers!.get(MSG_ID_HEADER), msgId)
  })
})
