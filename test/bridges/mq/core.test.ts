import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { createAgent, type RoutingAgent } from '../../../src/agent/index.js'
import {
  AddressTemplate,
  decideConsume,
  decidePublish,
  HoldGate,
  MqMetrics,
  MSG_ID_HEADER,
  messageHeaders,
  ORIGIN_UNIT_HEADER,
  preparePublish,
  readMessageHeaders,
  resolveHold,
  TopicTable,
} from '../../../src/bridges/mq/index.js'
import { runWithRoute } from '../../../src/context/index.js'
import type { AppActiveError } from '../../../src/errors/index.js'
import { silent } from '../../helpers/agents.js'
import { threeUnits } from '../../helpers/topology.js'

function agentIn(unit: string, fenced = false): RoutingAgent {
  const agent = createAgent({ unit, app: 'shop', channels: [], cache: false, logger: silent })
  assert.equal(agent.apply(threeUnits(1, fenced)).status, 'applied')
  return agent
}

const topics = new TopicTable({
  orders: 'unit',
  stock: 'center',
  audit: { type: 'unit', allowDuringFence: true },
})

describe('topic table', () => {
  test('lists every problem of a bad config at once', () => {
    assert.throws(
      () => new TopicTable({ a: 'unit', b: 'bogus' as never, c: { type: 'shard' } as never, d: 42 as never }),
      (err: AppActiveError) => {
        assert.equal(err.code, 'APPACTIVE_INVALID_ARGUMENT')
        const problems = err.details.problems as string[]
        assert.equal(problems.length, 3)
        assert.match(problems.join('\n'), /topics\.b.*"bogus"/)
        assert.match(problems.join('\n'), /topics\.c.*"shard"/)
        assert.match(problems.join('\n'), /topics\.d/)
        return true
      },
    )
  })
  test('unlisted topics are normal', () => {
    assert.equal(topics.typeOf('orders'), 'unit')
    assert.equal(topics.typeOf('stock'), 'center')
    assert.equal(topics.typeOf('other'), 'normal')
  })
})

describe('address template', () => {
  test('formats and parses unit-addressed names', () => {
    const t = new AddressTemplate('{topic}.{unit}.{key}')
    assert.equal(t.format({ topic: 'orders', unit: 'hz', key: 'created.v1' }), 'orders.hz.created.v1')
    assert.deepEqual(t.parse('orders.hz.created.v1', 'orders'), { unit: 'hz', key: 'created.v1' })
    assert.equal(t.parse('stock.hz.x', 'orders'), undefined)
    assert.throws(() => new AddressTemplate('{key}'), /must contain \{unit\}/)
    assert.throws(() => new AddressTemplate('{unit}.{shard}'), /unknown placeholder \{shard\}/)
  })
})

describe('message headers', () => {
  test('round-trip through the context codecs', () => {
    const h = messageHeaders({
      routeId: 'a b/ü',
      unit: 'hz',
      originUnit: 'sh',
      ruleVersion: 3,
      hops: 1,
      msgId: 'm-1',
    })
    assert.equal(h['x-appactive-route-id'], encodeURIComponent('a b/ü'))
    assert.equal(h[ORIGIN_UNIT_HEADER], 'sh')
    const read = readMessageHeaders(h)
    assert.deepEqual(read, {
      ok: true,
      route: { routeId: 'a b/ü', unit: 'hz', originUnit: 'sh', ruleVersion: 3, hops: 1, msgId: 'm-1' },
    })
  })
  test('reads Buffer values (kafkajs, amqplib) and getters (NATS)', () => {
    const read = readMessageHeaders({
      'x-appactive-route-id': Buffer.from('42'),
      'x-appactive-hops': Buffer.from('0'),
    })
    assert.equal(read.ok && read.route.routeId, '42')
    const got = readMessageHeaders(new Map([['x-appactive-route-id', '7']]))
    assert.equal(got.ok && got.route.routeId, '7')
  })
  for (const [name, value] of [
    ['x-appactive-route-id', 'x'.repeat(2000)],
    ['x-appactive-route-id', '%E0%A4%A'],
    ['x-appactive-hops', 'many'],
    ['x-appactive-rule-version', '-1'],
    ['x-appactive-unit', { nested: true }],
    ['x-appactive-msg-id', 'has space'],
  ] as const) {
    test(`a malformed ${name} (${JSON.stringify(value).slice(0, 12)}) is reported, not guessed`, () => {
      assert.deepEqual(readMessageHeaders({ [name]: value }), { ok: false, malformed: name })
    })
  }
})

describe('producer decision', () => {
  test('unit topic: owner unit, headers from the route context', () => {
    const agent = agentIn('center')
    const d = runWithRoute({ routeId: '4000' }, () => decidePublish(agent, topics, { topic: 'orders' }))
    assert.equal(d.action, 'send')
    if (d.action !== 'send') return
    assert.equal(d.unit, 'hz')
    assert.equal(d.headers['x-appactive-route-id'], '4000')
    assert.equal(d.headers['x-appactive-unit'], 'hz')
    assert.equal(d.headers[ORIGIN_UNIT_HEADER], 'center')
    assert.equal(d.headers['x-appactive-rule-version'], '1')
    assert.equal(d.headers['x-appactive-hops'], '0')
    assert.match(
      d.headers[MSG_ID_HEADER]!,
      /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    )
  })
  test('center topic goes to the center, normal keeps its destination', () => {
    const agent = agentIn('sh')
    const c = decidePublish(agent, topics, { topic: 'stock', routeId: '9000' })
    assert.equal(c.action === 'send' && c.unit, 'center')
    const n = decidePublish(agent, topics, { topic: 'misc' })
    assert.equal(n.action === 'send' && n.unit, undefined)
  })
  test('missing id follows the fallback (reject here)', () => {
    const d = decidePublish(agentIn('hz'), topics, { topic: 'orders' })
    assert.equal(d.action === 'fail' && d.error.code, 'APPACTIVE_NO_ROUTE_ID')
  })
  test('a fenced key holds, unless the topic allows it', () => {
    const agent = agentIn('hz', true)
    assert.deepEqual(decidePublish(agent, topics, { topic: 'orders', routeId: '5000' }), {
      action: 'hold',
      routeId: '5000',
    })
    assert.equal(decidePublish(agent, topics, { topic: 'audit', routeId: '5000' }).action, 'send')
  })
  test('no rule set: APPACTIVE_LEASE_EXPIRED', () => {
    const agent = createAgent({ unit: 'hz', app: 'shop', channels: [], cache: false, logger: silent })
    const d = decidePublish(agent, topics, { topic: 'orders', routeId: '1' })
    assert.equal(d.action === 'fail' && d.error.code, 'APPACTIVE_LEASE_EXPIRED')
  })
  test('a held publish is released by the next rule set', async () => {
    const agent = agentIn('hz', true)
    const gate = new HoldGate(agent)
    const sent = preparePublish(agent, topics, gate, resolveHold({ maxMs: 20_000, recheckMs: 20_000 }, 0), {
      topic: 'orders',
      routeId: '5000',
    })
    assert.equal(gate.held, 1)
    const moved = threeUnits(2)
    moved.mapping = [
      { unit: 'center', ranges: ['0~3332'] },
      { unit: 'hz', ranges: ['3333~4999', '5100~6665'] },
      { unit: 'sh', ranges: ['5000~5099', '6666~9999'] },
    ]
    agent.apply(moved)
    const d = await sent
    assert.equal(d.unit, 'sh')
    assert.equal(gate.held, 0)
  })
  test('a held publish fails with APPACTIVE_FENCED when the hold ends; overflow fails at once', async () => {
    const agent = agentIn('hz', true)
    const metrics = new MqMetrics(agent.metrics.registry)
    const gate = new HoldGate(agent, 1)
    const hold = resolveHold({ maxMs: 30, recheckMs: 10 }, 0)
    const first = preparePublish(agent, topics, gate, hold, { topic: 'orders', routeId: '5001' }, metrics)
    await assert.rejects(
      preparePublish(agent, topics, gate, hold, { topic: 'orders', routeId: '5002' }, metrics),
      { code: 'APPACTIVE_FENCED' },
    )
    await assert.rejects(first, { code: 'APPACTIVE_FENCED' })
    assert.deepEqual(metrics.snapshot(), { 'publish/held': 2, 'publish/failed': 2 })
  })
})

describe('consumer decision', () => {
  const from = (routeId: string | undefined, hops = 0, extra: Record<string, string> = {}) => ({
    ...messageHeaders({ routeId, unit: 'x', originUnit: 'center', ruleVersion: 1, hops, msgId: 'id-1' }),
    ...extra,
  })
  test('processes in the owner unit with the route context', () => {
    const d = decideConsume(agentIn('hz'), topics, 'orders', from('4000'))
    assert.equal(d.action, 'process')
    if (d.action !== 'process') return
    assert.deepEqual({ ...d.route }, { routeId: '4000', unit: 'hz', ruleVersion: 1, hops: 0 })
    assert.equal(d.msgId, 'id-1')
  })
  test('forwards once to the owner with the same message id, then dead-letters', () => {
    const d = decideConsume(agentIn('hz'), topics, 'orders', from('7000'))
    assert.equal(d.action, 'forward')
    if (d.action !== 'forward') return
    assert.equal(d.unit, 'sh')
    assert.equal(d.msgId, 'id-1')
    assert.equal(d.headers['x-appactive-hops'], '1')
    assert.equal(d.headers[MSG_ID_HEADER], 'id-1')
    assert.equal(d.headers['x-appactive-unit'], 'sh')
    const again = decideConsume(agentIn('hz'), topics, 'orders', d.headers)
    assert.equal(again.action === 'dead-letter' && again.code, 'APPACTIVE_WRONG_UNIT')
  })
  test('center topics: processed in the center, forwarded from elsewhere', () => {
    assert.equal(decideConsume(agentIn('center'), topics, 'stock', from('9000')).action, 'process')
    const d = decideConsume(agentIn('sh'), topics, 'stock', from('9000'))
    assert.equal(d.action === 'forward' && d.unit, 'center')
  })
  test('holds fenced keys and when there is no rule set', () => {
    assert.deepEqual(decideConsume(agentIn('hz', true), topics, 'orders', from('5050')), {
      action: 'hold',
      reason: 'fenced',
    })
    const bare = createAgent({ unit: 'hz', app: 'shop', channels: [], cache: false, logger: silent })
    assert.deepEqual(decideConsume(bare, topics, 'orders', from('4000')), { action: 'hold', reason: 'lease' })
  })
  test('dead-letters a unit message without id (fallback reject) and malformed headers', () => {
    const none = decideConsume(agentIn('hz'), topics, 'orders', from(undefined))
    assert.equal(none.action === 'dead-letter' && none.code, 'APPACTIVE_NO_ROUTE_ID')
    const bad = decideConsume(agentIn('hz'), topics, 'orders', { 'x-appactive-hops': '9999' })
    assert.equal(bad.action, 'dead-letter')
    assert.match(bad.action === 'dead-letter' ? bad.reason : '', /malformed x-appactive-hops/)
  })
  test('normal topics are processed anywhere', () => {
    assert.equal(decideConsume(agentIn('sh'), topics, 'misc', from('4000')).action, 'process')
  })
})
