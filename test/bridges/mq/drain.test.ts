// The message drain of a cut-over, piece by piece: which units a fence drains (Router.fencedUnits), the
// consumer decision for messages published before the fence and for barriers, the drain permit of the
// guarded write, the agent's drain state, and the barrier sender. The whole protocol runs end to end on
// RabbitMQ in test/control/mq-cutover.test.ts.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { createAgent, MessageDrain, type RoutingAgent } from '../../../src/agent/index.js'
import {
  BARRIER_HEADER,
  BarrierSender,
  barrierHeaders,
  decideConsume,
  messageHeaders,
  readBarrier,
  runDecided,
  TopicTable,
} from '../../../src/bridges/mq/index.js'
import { compileRouter } from '../../../src/rules/index.js'
import { silent } from '../../helpers/agents.js'
import { threeUnits } from '../../helpers/topology.js'
import { moved } from './helpers.js'

function agentIn(unit: string, version = 1, fenced = false): RoutingAgent {
  const agent = createAgent({
    unit,
    app: 'shop',
    nodeId: `${unit}-1`,
    channels: [],
    cache: false,
    logger: silent,
  })
  assert.equal(agent.apply(threeUnits(version, fenced)).status, 'applied')
  return agent
}

const topics = new TopicTable({ orders: 'unit', audit: 'center', logs: 'normal' })

/** Headers of a message published for `routeId` to `unit` under rule version `version`. */
function published(routeId: string, unit: string, version: number) {
  return messageHeaders({ routeId, unit, originUnit: 'center', ruleVersion: version, hops: 0, msgId: 'm-1' })
}

describe('Router.fencedUnits', () => {
  test('names the owners of fenced ranges and labels, sorted by unit order; empty without a fence', () => {
    assert.deepEqual(compileRouter(threeUnits(1)).fencedUnits(), [])
    assert.deepEqual(compileRouter(threeUnits(1, true)).fencedUnits(), ['hz'])
    const wide = { ...threeUnits(2), fence: { ranges: ['3000~7000'] } }
    assert.deepEqual(compileRouter(wide).fencedUnits(), ['center', 'hz', 'sh'])
    const labelled = {
      ...threeUnits(3),
      mapping: [...threeUnits(3).mapping, { unit: 'sh', labels: ['vip'] }],
      fence: { labels: ['vip'] },
    }
    assert.deepEqual(compileRouter(labelled).fencedUnits(), ['sh'])
  })
})

describe('consumer decision during a fence', () => {
  test('the owner processes a message published to it before the fence, under a drain permit', () => {
    const hz = agentIn('hz', 2, true)
    const d = decideConsume(hz, topics, 'orders', published('5001', 'hz', 1))
    assert.equal(d.action, 'process')
    assert.equal(d.action === 'process' && d.drain, 2)
  })

  test('holds what was published at the fence version, addressed elsewhere, or without a unit', () => {
    const hz = agentIn('hz', 2, true)
    assert.deepEqual(decideConsume(hz, topics, 'orders', published('5001', 'hz', 2)), {
      action: 'hold',
      reason: 'fenced',
    })
    assert.equal(decideConsume(hz, topics, 'orders', published('5001', 'sh', 1)).action, 'hold')
    assert.equal(decideConsume(hz, topics, 'orders', { 'x-appactive-route-id': '5001' }).action, 'hold')
  })

  test('after the switch the old owner holds it (then forwards it once unfenced)', () => {
    const hz = agentIn('hz', 2, true)
    assert.equal(hz.apply({ ...moved(3), fence: { ranges: ['5000~5099'] } }).status, 'applied')
    assert.equal(decideConsume(hz, topics, 'orders', published('5001', 'hz', 1)).action, 'hold')
    assert.equal(hz.apply(moved(4)).status, 'applied')
    const d = decideConsume(hz, topics, 'orders', published('5001', 'hz', 1))
    assert.equal(d.action, 'forward')
    assert.equal(d.action === 'forward' && d.unit, 'sh')
  })

  test('barriers are recognized before anything else; a malformed one is dead-lettered', () => {
    const hz = agentIn('hz', 2, true)
    const producer = agentIn('center', 2, true)
    const headers = barrierHeaders(producer, 2)
    assert.equal(headers[BARRIER_HEADER], '2:center-1')
    assert.deepEqual(decideConsume(hz, topics, 'orders', headers), {
      action: 'barrier',
      version: 2,
      origin: 'center-1',
    })
    assert.deepEqual(readBarrier({ [BARRIER_HEADER]: [Buffer.from('7:node a')] }), 'malformed')
    assert.deepEqual(readBarrier({ [BARRIER_HEADER]: ['7:n1'] }), { version: 7, origin: 'n1' })
    assert.deepEqual(readBarrier({ get: (n: string) => (n === BARRIER_HEADER ? '3:n2' : null) }), {
      version: 3,
      origin: 'n2',
    })
    for (const bad of ['x:n', '1:', '', '1:n:', 42]) {
      const d = decideConsume(hz, topics, 'orders', { [BARRIER_HEADER]: bad })
      if (bad === '1:n:')
        assert.equal(d.action, 'barrier') // `n:` is a valid node id
      else assert.equal(d.action, 'dead-letter', String(bad))
    }
  })
})

describe('drain permit', () => {
  test('a guarded write on a fenced key passes only under the permit of the version in force, in its owner', () => {
    const hz = agentIn('hz', 2, true)
    assert.throws(() => hz.checkWrite('5001'), { code: 'APPACTIVE_FENCED' })
    const d = decideConsume(hz, topics, 'orders', published('5001', 'hz', 1))
    assert.equal(d.action, 'process')
    if (d.action !== 'process') return
    runDecided(d, () => {
      hz.beginWrite('5001').end()
      // The permit is for this route id only.
      assert.throws(() => hz.checkWrite('5002'), { code: 'APPACTIVE_FENCED' })
    })
    // A newer version (the switch) voids it: the key has left this unit.
    assert.equal(hz.apply({ ...moved(3), fence: { ranges: ['5000~5099'] } }).status, 'applied')
    runDecided(d, () => assert.throws(() => hz.checkWrite('5001'), { code: 'APPACTIVE_FENCED' }))
  })

  test('a write in flight under the permit counts for the drain step', () => {
    const hz = agentIn('hz', 2, true)
    const d = decideConsume(hz, topics, 'orders', published('5001', 'hz', 1))
    if (d.action !== 'process') assert.fail(d.action)
    const handle = runDecided(d, () => hz.beginWrite('5001'))
    assert.equal(hz.inflightFenced(), 1)
    handle.end()
    assert.equal(hz.inflightFenced(), 0)
  })
})

describe('MessageDrain', () => {
  test('declares topics and groups with reference counts, keeps the newest barrier per producer and partition', () => {
    let changes = 0
    const drain = new MessageDrain(() => changes++)
    assert.equal(drain.empty, true)
    const a = drain.declareProducer(['orders'])
    const b = drain.declareProducer(['orders', 'points'])
    const c = drain.declareConsumer('orders', 'q1')
    drain.passed({ topic: 'orders', group: 'q1', origin: 'n1', version: 3, partition: 0, partitions: 1 })
    drain.passed({ topic: 'orders', group: 'q1', origin: 'n1', version: 2, partition: 0, partitions: 1 })
    a()
    a() // idempotent
    assert.deepEqual(drain.state(), {
      produces: ['orders', 'points'],
      consumes: [{ topic: 'orders', group: 'q1' }],
      barriers: [{ topic: 'orders', group: 'q1', origin: 'n1', version: 3, partition: 0, partitions: 1 }],
    })
    b()
    c()
    assert.deepEqual(drain.state().produces, [])
    assert.deepEqual(drain.state().consumes, [])
    assert.equal(changes, 7)
  })
})

describe('BarrierSender', () => {
  test('on a fence, waits for earlier publishes, then sends one barrier per unit topic and source unit', async () => {
    const producer = agentIn('center', 1)
    const sent: string[] = []
    let confirm: () => void = () => {}
    const earlier = new Promise<void>((r) => {
      confirm = r
    })
    const sender = new BarrierSender(producer, topics, async (topic, unit, headers) => {
      sent.push(`${topic}:${unit}:${headers[BARRIER_HEADER]}`)
    })
    assert.deepEqual(producer.messages.state().produces, ['orders'])
    void sender.track(earlier)
    producer.apply(threeUnits(2, true))
    await new Promise((r) => setTimeout(r, 20))
    assert.deepEqual(sent, [], 'the barrier waits for the publish decided before the fence')
    confirm()
    await new Promise((r) => setTimeout(r, 20))
    assert.deepEqual(sent, ['orders:hz:2:center-1'])
    // The same fence again (no new version) or a version without a fence sends nothing.
    producer.apply(threeUnits(3))
    await new Promise((r) => setTimeout(r, 20))
    assert.deepEqual(sent, ['orders:hz:2:center-1'])
    sender.close()
    assert.deepEqual(producer.messages.state().produces, [])
    producer.apply(threeUnits(4, true))
    await new Promise((r) => setTimeout(r, 20))
    assert.equal(sent.length, 1, 'closed: no more barriers')
  })

  test('retries a barrier the broker refused, then gives up loudly', async () => {
    const producer = agentIn('center', 1)
    let attempts = 0
    const sender = new BarrierSender(producer, topics, async () => {
      attempts++
      if (attempts < 3) throw new Error('channel closed')
    })
    producer.apply(threeUnits(2, true))
    const deadline = Date.now() + 3000
    while (attempts < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    assert.equal(attempts, 3)
    sender.close()
  })
})
