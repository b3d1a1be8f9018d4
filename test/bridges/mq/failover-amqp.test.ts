/**
 * RabbitMQ failover on the machine's broker, one vhost per unit: hz (X, lost) and sh (Y, failover
 * target). Y's stream queue `<topic>.standby.hz` is fed by exchange federation from X's `<topic>`
 * exchange, over a TCP fault proxy.
 *
 * How X is lost: the broker is shared by both "sites", so it cannot be killed, and deleting X's vhost
 * would destroy the messages X must still hold when it returns. Instead the test does what a site loss
 * looks like from Y: the proxy cuts the federation link (nothing more is copied; the link cannot
 * reconnect) and X's application connection is destroyed mid-delivery (no clean close, its unacked
 * delivery goes back to X's queue). Deleting the federation upstream was not chosen: removing the link
 * deletes its upstream queue, so the uncopied messages could neither be measured nor surface later.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import { describe, test } from 'node:test'
import amqp, { type ChannelModel } from 'amqplib'
import {
  amqpStandbyFederation,
  createAmqpCheckpointer,
  createAmqpConsumer,
  createAmqpProducer,
  declareAmqpStandby,
  federationQueueName,
  LATE_REASON_HEADER,
  MSG_ID_HEADER,
  messageTime,
  queueDepth,
  startAmqpFailover,
} from '../../../src/bridges/mq/index.js'
import { currentRouteId } from '../../../src/context/index.js'
import { until } from '../../helpers/agents.js'
import { AppDb, Cleanup, Gate, hzFailedOver } from '../../helpers/failover.js'
import { faultProxy } from '../../helpers/fault-proxy.js'
import {
  addVhost,
  amqpUrl,
  deleteVhost,
  needsFederation,
  rabbitmqctl,
  setParameter,
  setPolicy,
} from '../../helpers/rabbitmq-admin.js'
import { needs, RABBITMQ } from '../../helpers/services.js'
import { threeUnits } from '../../helpers/topology.js'
import { agentIn } from './helpers.js'

const skip = (await needs(RABBITMQ)) ?? (await needsFederation())

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('RabbitMQ failover: stream queue fed by federation, replay from the checkpoint time', {
  skip,
}, () => {
  test('replays the standby stream after X is cut, reports the uncopied backlog as RPO, suppresses duplicates and quarantines late messages', {
    timeout: 120_000,
  }, async (t) => {
    const run = randomUUID().slice(0, 8)
    const topic = `orders-${run}`
    const hzVhost = `appactive-failover-hz-${run}`
    const shVhost = `appactive-failover-sh-${run}`
    const cleanup = new Cleanup()
    t.after(() => cleanup.run())

    for (const vhost of [hzVhost, shVhost]) {
      await addVhost(vhost)
      cleanup.push(() => deleteVhost(vhost))
    }
    const link = await faultProxy(RABBITMQ.port)
    cleanup.push(() => link.close())
    const app = await AppDb.open()
    cleanup.push(() => app.close())

    const connY: ChannelModel = await amqp.connect(amqpUrl(shVhost))
    cleanup.push(() => connY.close())
    const connX: ChannelModel = await amqp.connect(amqpUrl(hzVhost))
    connX.on('error', () => undefined) // its socket is destroyed below
    cleanup.push(async () => xSocket().destroyed || connX.close())
    const xSocket = () => (connX.connection as unknown as { stream: Socket }).stream
    const chY = await connY.createConfirmChannel()
    const chX = await connX.createConfirmChannel()

    // Y: its own topic exchange (forwards land there) and the standby copy of hz, federated from X.
    await chY.assertExchange(topic, 'topic', { durable: true })
    const names = await declareAmqpStandby(chY, { topic, lostUnit: 'hz' })
    assert.deepEqual(names, {
      exchange: `${topic}.standby.hz`,
      stream: `${topic}.standby.hz`,
      binding: 'hz.#',
      late: `${topic}.appactive.late`,
    })
    // X: its topic exchange and hz's queue.
    await chX.assertExchange(topic, 'topic', { durable: true })
    await chX.assertQueue(`${topic}.hz`, { durable: true })
    await chX.bindQueue(`${topic}.hz`, topic, 'hz.#')
    const federation = amqpStandbyFederation({
      topic,
      lostUnit: 'hz',
      upstreamUri: amqpUrl(hzVhost, link.port),
    })
    await setParameter(
      shVhost,
      federation.upstream.component,
      federation.upstream.name,
      federation.upstream.value,
    )
    await setPolicy(shVhost, federation.policy)
    const upstreamQueue = federationQueueName({
      topic,
      lostUnit: 'hz',
      downstreamClusterName: String(
        (connY.connection.serverProperties as { cluster_name?: unknown }).cluster_name,
      ),
      downstreamVhost: shVhost,
    })
    // The link is up once X's exchange is bound `hz.#` to the link's exchange (the binding travels upstream).
    await eventually(async () => {
      const bindings = await rabbitmqctl(
        'list_bindings',
        '-p',
        hzVhost,
        'source_name',
        'destination_name',
        'routing_key',
      )
      return bindings.includes(`${topic}\t${upstreamQueue} B\thz.#`)
    }, 'the federation link')

    // X's consumer processes through the inbox, one message at a time, as far as the gate allows; the
    // checkpointer sees its progress through `track` and samples the link's backlog.
    const gate = new Gate(3)
    const hzAgent = agentIn('hz', threeUnits(1))
    const checkpoints = createAmqpCheckpointer({
      store: app.checkpoints,
      topic,
      unit: 'hz',
      agent: hzAgent,
      intervalMs: 0, // flushed by the test, so the checkpoint's moment is known
      backlog: () => queueDepth(connX, upstreamQueue),
    })
    cleanup.push(() => checkpoints.close())
    const xConsumerChannel = await connX.createConfirmChannel()
    await createAmqpConsumer({
      agent: hzAgent,
      channel: xConsumerChannel,
      queue: `${topic}.hz`,
      exchange: topic,
      topics: { [topic]: 'unit' },
      prefetch: 1,
      handler: checkpoints.track(async (_msg, info) => {
        await gate.pass()
        app.apply(info.msgId, 'hz', currentRouteId())
      }),
    })
    const producer = createAmqpProducer({
      agent: agentIn('hz', threeUnits(1)),
      channel: chX,
      topics: { [topic]: 'unit' },
    })
    const sent: string[] = []
    const publish = async (i: number) => {
      const r = await producer.publish(topic, 'credit', Buffer.from(`p${i}`), { routeId: String(4000 + i) })
      assert.equal(r.routingKey, 'hz.credit')
      sent.push(r.msgId)
    }
    const copied = async () => {
      const ch = await connY.createChannel()
      try {
        return (await ch.checkQueue(names.stream)).messageCount
      } finally {
        await ch.close()
      }
    }

    // 3 old messages, processed by X and copied; the stream's time index must let the replay skip them.
    for (let i = 0; i < 3; i++) await publish(i)
    await until(() => app.count('hz') === 3, 10_000, 'X processing 3')
    await eventually(async () => (await copied()) === 3, '3 copies')
    await new Promise((r) => setTimeout(r, 2500)) // broker time must pass: the stream indexes by second
    // 20 more; X processes 2 of them (5 in all); all 20 are copied.
    gate.open(5)
    for (let i = 3; i < 23; i++) await publish(i)
    await until(() => app.count('hz') === 5, 10_000, 'X processing 5')
    await eventually(async () => (await copied()) === 23, '23 copies')

    // The replication link fails; X keeps accepting: 4 acknowledged publishes wait in the upstream queue.
    link.cut()
    for (let i = 23; i < 27; i++) await publish(i)
    await eventually(async () => (await queueDepth(connX, upstreamQueue)) === 4, 'a backlog of 4')
    const cp = await checkpoints.flush()
    assert.equal(cp?.backlog, 4)
    // The oldest message in X's handler (blocked at the gate) is the 6th: everything older is done.
    assert.equal(cp?.time, messageTime(sent[5]))
    // X processes 3 more after its last checkpoint: the replay repeats them, the inbox suppresses them.
    gate.open(8)
    await until(() => app.count('hz') === 8, 10_000, 'X processing 8')

    // X is lost mid-delivery: its connection drops without a close.
    xSocket().destroy(new Error('site hz lost'))

    const shAgent = agentIn('sh', threeUnits(1))
    shAgent.apply(hzFailedOver(2))
    const replayed: string[] = []
    const failover = await startAmqpFailover({
      agent: shAgent,
      channel: chY,
      topic,
      lostUnit: 'hz',
      store: app.checkpoints,
      marginMs: 1000,
      handler: (_msg, info) => {
        replayed.push(info.msgId ?? '')
        app.apply(info.msgId, 'sh', currentRouteId())
      },
    })
    cleanup.push(() => failover.close())
    const { report } = failover
    assert.equal(report.rpoMessages, 4)
    assert.equal(report.rpoBasis, 'checkpoint-backlog')
    assert.equal(report.startTime, (cp?.time ?? 0) - 1000)
    assert.equal(report.failoverVersion, 2)

    await failover.caughtUp(20_000)
    // Every copied acknowledged publish took effect exactly once; the 4 uncopied ones are the RPO.
    assert.equal(app.count(), 23)
    assert.deepEqual(
      app.effects().map((e) => e.msg_id),
      sent.slice(0, 23),
    )
    assert.equal(app.count('sh'), 15)
    assert.equal(sent.length - app.count(), report.rpoMessages)
    // The replay started near the checkpoint: not at the 3 old messages, but early enough for 6th–8th.
    assert.ok(!replayed.some((id) => sent.slice(0, 3).includes(id)))
    for (const id of sent.slice(5, 8)) assert.ok(replayed.includes(id))
    assert.equal(app.duplicates, replayed.length - 15)
    assert.ok(app.duplicates >= 3)

    // X's site comes back and the link heals: the backlog is copied behind the failover marker. It is
    // older than the failover and surfaced after it: quarantined, not processed.
    link.heal()
    await until(() => failover.failoverMetrics.snapshot()['late/quarantined'] === 4, 20_000, '4 quarantined')
    assert.equal(app.count(), 23)
    const lateCh = await connY.createChannel()
    const quarantined: string[] = []
    for (let i = 0; i < 4; i++) {
      const m = await lateCh.get(names.late, { noAck: true })
      assert.ok(m, 'a quarantined message')
      quarantined.push(String(m.properties.headers?.[MSG_ID_HEADER]))
      assert.match(
        String(m.properties.headers?.[LATE_REASON_HEADER]),
        /copied after the failover of hz \(v1 < v2\)/,
      )
    }
    await lateCh.close()
    assert.deepEqual(quarantined, sent.slice(23))
  })
})
