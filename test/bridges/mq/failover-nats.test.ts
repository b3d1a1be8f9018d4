/**
 * NATS failover on two real nats-servers: X (unit hz, JetStream domain hz) is a leaf node of Y (unit
 * sh, domain sh) through a TCP fault proxy, and Y holds a mirror of X's unit stream. Both servers are
 * started by the test: X must be SIGKILLed and restarted, and the machine's server (4222) has no leaf
 * node listener to join.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, test } from 'node:test'
import {
  AckPolicy,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream'
import { connect, headers, type NatsConnection } from '@nats-io/transport-node'
import {
  createNatsCheckpointer,
  createNatsConsumer,
  createNatsProducer,
  ensureNatsStandby,
  LATE_REASON_HEADER,
  lateDestination,
  MemoryCheckpointStore,
  MSG_ID_HEADER,
  messageHeaders,
  natsStandbyState,
  onUnitEvacuated,
  startNatsFailover,
} from '../../../src/bridges/mq/index.js'
import { currentRouteId } from '../../../src/context/index.js'
import { until } from '../../helpers/agents.js'
import { AppDb, Cleanup, Gate, hzFailedOver } from '../../helpers/failover.js'
import { faultProxy } from '../../helpers/fault-proxy.js'
import { natsSite, needsNatsServerBinary } from '../../helpers/nats-server.js'
import { freePort } from '../../helpers/ports.js'
import { NATS, needs } from '../../helpers/services.js'
import { threeUnits } from '../../helpers/topology.js'
import { agentIn } from './helpers.js'

const skip = needsNatsServerBinary()
const skipMachine = await needs(NATS)

/** Polls an async condition (a server round trip) until it holds. */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {
      // not ready yet (e.g. the leaf node is still connecting)
    }
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function ackFloor(jsm: JetStreamManager, stream: string, consumer: string): Promise<number> {
  return (await jsm.consumers.info(stream, consumer)).ack_floor.stream_seq
}

describe('NATS failover: mirror in the failover target, replay from the checkpoint', { skip }, () => {
  test('replays every copied acknowledged publish after X is SIGKILLed, reports the uncopied ones as RPO, suppresses duplicates and quarantines late messages', {
    timeout: 120_000,
  }, async (t) => {
    const run = randomUUID().slice(0, 8)
    const topic = `orders-${run}`
    const stream = `${topic}_hz`
    const cleanup = new Cleanup()
    t.after(() => cleanup.run())

    // Two sites: Y (hub) and X (leaf) joined through the proxy, the only path between them.
    const leafPort = await freePort()
    const link = await faultProxy(leafPort)
    cleanup.push(() => link.close())
    const y = await natsSite({
      name: `y-${run}`,
      domain: 'sh',
      leafListen: true,
      leafPort,
      leafAdvertisePort: link.port,
    })
    cleanup.push(() => y.destroy())
    const x = await natsSite({ name: `x-${run}`, domain: 'hz', leafRemotes: [link.port] })
    cleanup.push(() => x.destroy())
    const app = await AppDb.open()
    cleanup.push(() => app.close())

    const ncX: NatsConnection = await connect({
      servers: x.url,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
    })
    cleanup.push(() => ncX.close())
    const ncY: NatsConnection = await connect({ servers: y.url })
    cleanup.push(() => ncY.close())
    const jsX = jetstream(ncX)
    const jsmX = await jetstreamManager(ncX)
    const jsY = jetstream(ncY)
    const jsmY = await jetstreamManager(ncY)

    // X: the unit stream `<topic>_hz` and hz's durable consumer; Y: the mirror (once the leaf is up).
    await jsmX.streams.add({ name: stream, subjects: [`${topic}.hz.>`], storage: StorageType.File })
    await jsmX.consumers.add(stream, {
      durable_name: 'points-hz',
      ack_policy: AckPolicy.Explicit,
      filter_subject: `${topic}.hz.>`,
      max_deliver: -1,
    })
    let standby = ''
    await eventually(async () => {
      standby = await ensureNatsStandby(jsmY, { stream, domain: 'hz' })
      return true
    }, 'the mirror in Y')
    assert.equal(standby, stream)

    // X's consumer processes through the inbox, one message at a time, as far as the gate allows.
    const gate = new Gate(5)
    const hzAgent = agentIn('hz', threeUnits(1))
    const hzConsumer = await createNatsConsumer({
      agent: hzAgent,
      js: jsX,
      stream,
      consumer: 'points-hz',
      topics: { [topic]: 'unit' },
      prefetch: 1,
      handler: async (_msg, info) => {
        await gate.pass()
        app.apply(info.msgId, 'hz', currentRouteId())
      },
    })
    cleanup.push(() => {
      gate.open(Number.POSITIVE_INFINITY) // its handler waits at the gate; close() waits for it
      return hzConsumer.close()
    })
    const checkpointer = createNatsCheckpointer({
      jsm: jsmX,
      stream,
      consumer: 'points-hz',
      store: app.checkpoints,
      topic,
      unit: 'hz',
      agent: hzAgent,
      intervalMs: 0, // flushed by the test, so the checkpoint's moment is known
    })
    cleanup.push(() => checkpointer.close())

    // 20 acknowledged publishes (route ids of hz); X processes 5; all 20 reach the mirror.
    const producer = createNatsProducer({
      agent: agentIn('hz', threeUnits(1)),
      js: jsX,
      topics: { [topic]: 'unit' },
    })
    const sent: string[] = []
    for (let i = 0; i < 20; i++) {
      const r = await producer.publish(`${topic}.credit`, `p${i}`, { routeId: String(4000 + i) })
      assert.equal(r.seq, i + 1)
      sent.push(r.msgId)
    }
    await until(() => app.count('hz') === 5, 10_000, 'X processing 5')
    await eventually(async () => (await ackFloor(jsmX, stream, 'points-hz')) === 5, 'the ack floor at 5')
    await eventually(
      async () => (await natsStandbyState(jsmY, standby)).copiedThrough === 20,
      'the mirror at 20',
    )

    // The replication link fails; X keeps accepting: 4 acknowledged publishes that are never copied.
    link.cut()
    for (let i = 20; i < 24; i++) {
      const r = await producer.publish(`${topic}.credit`, `p${i}`, { routeId: String(4000 + i) })
      assert.equal(r.seq, i + 1)
      sent.push(r.msgId)
    }
    const cp = await checkpointer.flush()
    assert.equal(cp?.seq, 5)
    assert.equal(cp?.head, 24)
    // X processes 3 more after its last checkpoint: the replay repeats them, the inbox suppresses them.
    gate.open(8)
    await until(() => app.count('hz') === 8, 10_000, 'X processing 8')

    // X is lost mid-stream: SIGKILL, 16 messages unprocessed.
    await x.kill()

    // Y's agent gets the failover rule set; the evacuation of hz starts the replay.
    const shAgent = agentIn('sh', threeUnits(1))
    const evacuated = new Promise<number>((resolve) => onUnitEvacuated(shAgent, 'hz', resolve))
    shAgent.apply(hzFailedOver(2))
    assert.equal(await evacuated, 2)
    const failover = await startNatsFailover({
      agent: shAgent,
      js: jsY,
      jsm: jsmY,
      topic,
      lostUnit: 'hz',
      standby,
      store: app.checkpoints,
      handler: (_msg, info) => {
        app.apply(info.msgId, 'sh', currentRouteId())
      },
    })
    cleanup.push(() => failover.close())
    const { report } = failover
    assert.equal(report.startSeq, 6)
    assert.equal(report.copiedThrough, 20)
    assert.equal(report.knownHead, 24)
    assert.equal(report.rpoMessages, 4)
    assert.equal(report.rpoBasis, 'checkpoint-head')
    assert.equal(report.failoverVersion, 2)
    const rpoMetric = await shAgent.metrics.registry
      .getSingleMetric('appactive_mq_failover_rpo_messages')
      ?.get()
    assert.equal(rpoMetric?.values[0]?.value, 4)

    await failover.caughtUp(20_000)
    // Every copied acknowledged publish took effect exactly once; the uncopied ones are the RPO.
    await until(() => app.count() === 20, 10_000, '20 effects')
    const effects = app.effects()
    assert.deepEqual(
      effects.map((e) => e.msg_id),
      sent.slice(0, 20),
    )
    assert.equal(app.count('sh'), 12)
    assert.equal(app.duplicates, 3)
    assert.ok(effects.filter((e) => e.unit === 'sh').every((e) => Number(e.route_id) >= 4008))
    assert.equal(sent.length - app.count(), report.rpoMessages)
    assert.equal(failover.consumer.metrics.snapshot()['consume/processed'], 15)

    // X comes back and the link heals: the mirror copies the 4 messages past the loss point. They are
    // older than the failover and surfaced after it: quarantined, not processed.
    await x.start()
    link.heal()
    await eventually(
      async () => (await natsStandbyState(jsmY, standby)).copiedThrough === 24,
      'the mirror at 24',
    )
    await until(() => failover.metrics.snapshot()['late/quarantined'] === 4, 20_000, '4 quarantined')
    assert.equal(app.count(), 20)
    const lateStream = await jsmY.streams.find(lateDestination(topic))
    const late = await jsY.consumers.get(lateStream)
    const quarantined: string[] = []
    for await (const m of await late.fetch({ max_messages: 4, expires: 5000 })) {
      quarantined.push(m.headers?.get(MSG_ID_HEADER) ?? '')
      assert.match(m.headers?.get(LATE_REASON_HEADER) ?? '', /copied after the failover of hz \(v1 < v2\)/)
    }
    assert.deepEqual(quarantined, sent.slice(20))
    const lateMetric = await shAgent.metrics.registry
      .getSingleMetric('appactive_mq_late_messages_total')
      ?.get()
    assert.deepEqual(
      lateMetric?.values.map((v) => [v.labels.action, v.value]),
      [['quarantined', 4]],
    )
  })
})

describe("NATS failover replay options (the machine's server; a plain stream stands for the mirror)", {
  skip: skipMachine,
}, () => {
  test('without a checkpoint it replays the whole copy; processLate processes late messages and counts them', async (t) => {
    const run = randomUUID().slice(0, 8)
    const topic = `appactive-fo-${run}`
    const standby = `appactive-fo-${run}`
    const nc = await connect({ servers: `${NATS.host}:${NATS.port}` })
    const js = jetstream(nc)
    const jsm = await jetstreamManager(nc)
    const cleanup = new Cleanup()
    t.after(() => cleanup.run())
    cleanup.push(() => nc.close())
    await jsm.streams.add({ name: standby, subjects: [`${topic}.hz.>`], storage: StorageType.Memory })
    cleanup.push(() => jsm.streams.delete(standby))
    const producer = createNatsProducer({
      agent: agentIn('hz', threeUnits(1)),
      js,
      topics: { [topic]: 'unit' },
    })
    const sent: string[] = []
    for (let i = 0; i < 3; i++)
      sent.push((await producer.publish(`${topic}.k`, `p${i}`, { routeId: '4000' })).msgId)

    const agent = agentIn('sh', hzFailedOver(2))
    const got: string[] = []
    const failover = await startNatsFailover({
      agent,
      js,
      jsm,
      topic,
      lostUnit: 'hz',
      standby,
      consumer: `replay-${run}`,
      store: new MemoryCheckpointStore(),
      processLate: true,
      handler: (_msg, info) => {
        got.push(info.msgId ?? '')
      },
    })
    cleanup.push(() => failover.close())
    assert.equal(failover.report.startSeq, 1)
    assert.equal(failover.report.copiedThrough, 3)
    assert.equal(failover.report.rpoMessages, 0)
    assert.equal(failover.report.rpoBasis, 'unknown')
    assert.equal(failover.report.checkpoint, undefined)
    await failover.caughtUp(10_000)
    await until(() => got.length === 3, 10_000, 'the 3 copied messages')
    assert.deepEqual(got, sent)

    // After the loss point: two stamped v1 (late, processed on request) and one stamped v2 (not late).
    for (let i = 3; i < 5; i++)
      sent.push((await producer.publish(`${topic}.k`, `p${i}`, { routeId: '4000' })).msgId)
    // A message stamped v2 that lands in hz's stream anyway (a producer with a custom subject).
    const h = headers()
    const v2 = messageHeaders({
      routeId: '4000',
      unit: 'sh',
      originUnit: 'center',
      ruleVersion: 2,
      hops: 0,
      msgId: `v2-${run}`,
    })
    for (const [name, value] of Object.entries(v2)) h.set(name, value)
    await js.publish(`${topic}.hz.k`, 'p5', { headers: h, msgID: `v2-${run}` })
    await until(() => got.length === 6, 10_000, 'the messages after the loss point')
    assert.deepEqual(got.slice(3), [...sent.slice(3, 5), `v2-${run}`])
    assert.deepEqual(failover.metrics.snapshot(), { 'late/processed': 2 })
  })
})
