/** The driver-free parts of message failover: checkpoints, RPO, late messages, standby names. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import Database from 'better-sqlite3'
import {
  amqpStandbyFederation,
  amqpStandbyNames,
  type Checkpoint,
  Checkpointer,
  checkpointSqlite,
  checkpointTableSql,
  combineCheckpoints,
  federationQueueName,
  isLateMessage,
  lateDestination,
  MemoryCheckpointStore,
  messageTime,
  newMessageId,
  onUnitEvacuated,
  SqlCheckpointStore,
  sequenceRpo,
  startAmqpFailover,
  unitEvacuated,
} from '../../../src/bridges/mq/index.js'
import type { AppActiveError } from '../../../src/errors/index.js'
import { hzFailedOver } from '../../helpers/failover.js'
import { threeUnits } from '../../helpers/topology.js'
import { agentIn } from './helpers.js'

const cp = (member: string, fields: Partial<Checkpoint>): Checkpoint => ({
  topic: 'orders',
  unit: 'hz',
  member,
  at: 1000,
  ...fields,
})

describe('failover checkpoints', () => {
  test('combines members to the lowest position and the highest head and backlog', () => {
    assert.equal(combineCheckpoints([]), undefined)
    const one = cp('a', { seq: 5 })
    assert.equal(combineCheckpoints([one]), one)
    assert.deepEqual(
      combineCheckpoints([
        cp('a', { seq: 5, head: 9, time: 300, backlog: 1, ruleVersion: 3, at: 10 }),
        cp('b', { seq: 3, head: 12, time: 200, at: 20 }),
      ]),
      {
        topic: 'orders',
        unit: 'hz',
        member: 'a,b',
        seq: 3,
        time: 200,
        head: 12,
        backlog: 1,
        ruleVersion: 3,
        at: 20,
      },
    )
  })

  test('the SQL store upserts one row per member and loads them combined (SQLite)', async () => {
    const db = new Database(':memory:')
    db.exec(checkpointTableSql('sqlite'))
    const store = new SqlCheckpointStore({ executor: checkpointSqlite(db), dialect: 'sqlite' })
    assert.equal(await store.load('orders', 'hz'), undefined)
    await store.save(cp('a', { seq: 1, head: 4 }))
    await store.save(cp('a', { seq: 7, head: 9 }))
    assert.deepEqual(await store.load('orders', 'hz'), cp('a', { seq: 7, head: 9 }))
    await store.save(cp('b', { seq: 6, head: 9 }))
    await store.save({ ...cp('a', { seq: 1 }), unit: 'sh' })
    assert.equal((await store.load('orders', 'hz'))?.seq, 6)
    assert.equal((await store.load('orders', 'sh'))?.seq, 1)
    db.close()
  })

  test('table SQL per dialect, and bad names are rejected', () => {
    assert.match(checkpointTableSql('postgres'), /PRIMARY KEY \(topic, unit, member\)/)
    assert.match(checkpointTableSql('mysql', 'app.cp'), /^CREATE TABLE IF NOT EXISTS app\.cp .*LONGTEXT/)
    for (const bad of [
      () => checkpointTableSql('sqlite', 'x; DROP TABLE y'),
      () => checkpointTableSql('oracle' as 'sqlite'),
    ]) {
      assert.throws(bad, (err: AppActiveError) => err.code === 'APPACTIVE_INVALID_ARGUMENT')
    }
  })

  test('a checkpointer saves what it samples, skips empty rounds and never overlaps rounds', async () => {
    const store = new MemoryCheckpointStore()
    let seq: number | undefined
    let samples = 0
    const checkpointer = new Checkpointer({
      store,
      topic: 'orders',
      unit: 'hz',
      intervalMs: 0,
      sample: async () => {
        samples++
        return seq === undefined ? undefined : { seq }
      },
    })
    assert.equal(await checkpointer.flush(), undefined)
    assert.equal(await store.load('orders', 'hz'), undefined)
    seq = 4
    const [a, b] = await Promise.all([checkpointer.flush(), checkpointer.flush()])
    assert.equal(a, b)
    assert.equal(samples, 2)
    assert.equal((await store.load('orders', 'hz'))?.seq, 4)
    assert.equal(checkpointer.last?.member, 'default')
    await checkpointer.close()
  })

  test('a failing round on the timer is reported, not thrown', async () => {
    const errors: unknown[] = []
    const checkpointer = new Checkpointer({
      store: new MemoryCheckpointStore(),
      topic: 'orders',
      unit: 'hz',
      intervalMs: 5,
      sample: async () => {
        throw new Error('broker gone')
      },
      onError: (err) => errors.push(err),
    })
    while (errors.length === 0) await new Promise((r) => setTimeout(r, 5))
    await checkpointer.close()
    assert.match(String(errors[0]), /broker gone/)
  })

  test('rejects a checkpointer without topic, unit or sample, or with a bad interval', () => {
    const store = new MemoryCheckpointStore()
    const sample = async () => undefined
    for (const options of [
      { store, topic: '', unit: 'hz', sample },
      { store, topic: 'orders', unit: '', sample },
      { store, topic: 'orders', unit: 'hz' },
      { store, topic: 'orders', unit: 'hz', sample, intervalMs: -1 },
    ]) {
      assert.throws(
        () => new Checkpointer(options as never),
        (err: AppActiveError) => err.code === 'APPACTIVE_INVALID_ARGUMENT',
      )
    }
  })
})

describe('failover RPO, message time and late messages', () => {
  test('sequence RPO: the checkpoint head or the mirror lag, whichever knows more', () => {
    assert.deepEqual(sequenceRpo({ copiedThrough: 20, mirrorLag: 0, checkpointHead: 24 }), {
      knownHead: 24,
      rpo: 4,
      basis: 'checkpoint-head',
    })
    // The mirror heard of more than the (older) checkpoint.
    assert.equal(sequenceRpo({ copiedThrough: 20, mirrorLag: 7, checkpointHead: 24 }).rpo, 7)
    assert.deepEqual(sequenceRpo({ copiedThrough: 20, mirrorLag: 2 }), {
      knownHead: 22,
      rpo: 2,
      basis: 'mirror-lag',
    })
    assert.deepEqual(sequenceRpo({ copiedThrough: 20 }), { knownHead: 20, rpo: 0, basis: 'unknown' })
    // A checkpoint taken before later copies never makes the RPO negative.
    assert.equal(sequenceRpo({ copiedThrough: 30, checkpointHead: 24 }).rpo, 0)
  })

  test('message time comes from the UUIDv7 message id, else the fallback', () => {
    const before = Date.now()
    const t = messageTime(newMessageId())
    assert.ok(t !== undefined && t >= before && t <= Date.now())
    assert.equal(messageTime('0190a000-0000-7000-8000-000000000000'), 0x0190a0000000)
    assert.equal(messageTime('not-a-uuid', 42), 42)
    assert.equal(messageTime(undefined), undefined)
    assert.equal(messageTime('0190a000-0000-4000-8000-000000000000', 7), 7) // a UUIDv4 has no time
  })

  test('a message after the loss point is late when older than the failover or unversioned', () => {
    assert.equal(isLateMessage(1, 2), true)
    assert.equal(isLateMessage(undefined, 2), true)
    assert.equal(isLateMessage(2, 2), false)
    assert.equal(isLateMessage(3, 2), false)
    assert.equal(lateDestination('orders'), 'orders.appactive.late')
  })

  test('detects the evacuation of a unit, once, from the agent rule changes', () => {
    assert.equal(unitEvacuated(threeUnits(1), 'hz'), false)
    assert.equal(unitEvacuated(hzFailedOver(2), 'hz'), true)
    const agent = agentIn('sh', threeUnits(1))
    const fired: number[] = []
    const off = onUnitEvacuated(agent, 'hz', (v) => fired.push(v))
    agent.apply(threeUnits(2))
    assert.deepEqual(fired, [])
    agent.apply(hzFailedOver(3))
    agent.apply(hzFailedOver(4))
    assert.deepEqual(fired, [3])
    off()
    // Already evacuated when subscribing: fires at once.
    const late: number[] = []
    onUnitEvacuated(agent, 'hz', (v) => late.push(v))
    assert.deepEqual(late, [4])
    // The lost unit itself never replays its own copy.
    const hz = agentIn('hz', hzFailedOver(2))
    const self: number[] = []
    onUnitEvacuated(hz, 'hz', (v) => self.push(v))
    assert.deepEqual(self, [])
  })
})

describe('RabbitMQ standby names and federation definitions', () => {
  test('names the standby exchange, stream, binding and quarantine from the topic and the lost unit', () => {
    assert.deepEqual(amqpStandbyNames({ topic: 'orders', lostUnit: 'hz' }), {
      exchange: 'orders.standby.hz',
      stream: 'orders.standby.hz',
      binding: 'hz.#',
      late: 'orders.appactive.late',
    })
    assert.equal(
      amqpStandbyNames({ topic: 'orders', lostUnit: 'hz', routingKey: 'u.{unit}.{key}' }).binding,
      'u.hz.#',
    )
    assert.equal(
      federationQueueName({
        topic: 'orders',
        lostUnit: 'hz',
        downstreamClusterName: 'rabbit@y',
        downstreamVhost: 'sh',
      }),
      'federation: orders -> rabbit@y:sh:orders.standby.hz',
    )
  })

  test('federates the standby exchange from the topic exchange with max-hops 1 and on-confirm acks', () => {
    const f = amqpStandbyFederation({ topic: 'orders.v1', lostUnit: 'hz', upstreamUri: 'amqp://x/hz' })
    assert.deepEqual(f.upstream, {
      component: 'federation-upstream',
      name: 'appactive-standby-hz-orders.v1',
      value: {
        uri: 'amqp://x/hz',
        exchange: 'orders.v1',
        'max-hops': 1,
        'ack-mode': 'on-confirm',
        'reconnect-delay': 1,
      },
    })
    assert.deepEqual(f.policy, {
      name: 'appactive-standby-hz-orders.v1',
      pattern: '^orders\\.v1\\.standby\\.hz$',
      definition: { 'federation-upstream': 'appactive-standby-hz-orders.v1' },
      applyTo: 'exchanges',
    })
    assert.ok(new RegExp(f.policy.pattern).test('orders.v1.standby.hz'))
    assert.ok(!new RegExp(f.policy.pattern).test('ordersXv1.standby.hz'))
  })

  test('rejects a failover without topic, lost unit or handler, or with a bad margin', async () => {
    const agent = agentIn('sh', hzFailedOver(2))
    const base = { agent, channel: {} as never, store: new MemoryCheckpointStore(), handler: () => undefined }
    for (const options of [
      { ...base, topic: '', lostUnit: 'hz' },
      { ...base, topic: 'orders', lostUnit: '' },
      { ...base, topic: 'orders', lostUnit: 'hz', handler: undefined },
      { ...base, topic: 'orders', lostUnit: 'hz', marginMs: -1 },
    ]) {
      await assert.rejects(
        startAmqpFailover(options as never),
        (err: AppActiveError) => err.code === 'APPACTIVE_INVALID_ARGUMENT',
      )
    }
  })
})
