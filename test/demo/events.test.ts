// The demo's event (issue 9, item 8): an order placed publishes `order.placed`, and the unit owning the
// user credits their points. The default in-process channel is covered by demo.test.ts; here the same
// shop runs with `npm start -- --mq rabbitmq` and `--mq nats` against the machine's brokers, and each run
// must leave nothing on the broker.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { DemoState } from '../../demo/lib/topology.js'
import { NATS, needs, RABBITMQ } from '../helpers/services.js'
import { busyPorts, CENTER, call, type Demo, eventually, hops, startDemo, UNIT } from './helpers.js'

interface Points {
  points: number
  credits: number
  unit: string | null
}

/** The points of `rId` once `credits` orders are credited (read through the unit gateway). */
function pointsOf(rId: number, credits: number): Promise<{ points: Points; chain: unknown }> {
  return eventually(`${credits} order(s) of r_id ${rId} credited`, async () => {
    const a = await call(`${UNIT}/api/orders?r_id=${rId}`)
    const points = a.body.points as Points
    return a.status === 200 && points.credits >= credits ? { points, chain: a.body.chain } : undefined
  })
}

/** Whether the run's exchange (RabbitMQ) or stream (NATS) exists on the broker. */
async function onBroker(kind: 'rabbitmq' | 'nats', name: string): Promise<boolean> {
  if (kind === 'rabbitmq') {
    const { default: amqp } = await import('amqplib')
    const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672')
    try {
      const ch = await conn.createChannel()
      ch.on('error', () => {}) // a 404 closes the channel
      return await ch.checkExchange(name).then(
        () => true,
        () => false,
      )
    } finally {
      await conn.close()
    }
  }
  const { connect } = await import('@nats-io/transport-node')
  const { jetstreamManager } = await import('@nats-io/jetstream')
  const nc = await connect({ servers: `${NATS.host}:${NATS.port}` })
  try {
    const jsm = await jetstreamManager(nc)
    return await jsm.streams.info(name).then(
      () => true,
      () => false,
    )
  } finally {
    await nc.close()
  }
}

for (const [kind, service] of [
  ['rabbitmq', RABBITMQ],
  ['nats', NATS],
] as const) {
  const skip = await needs(service)

  describe(`the demo with --mq ${kind}`, { skip }, () => {
    let demo: Demo
    let state: DemoState

    before(async () => {
      demo = await startDemo(['--mq', kind])
      state = JSON.parse(readFileSync(join(demo.dir, 'demo.json'), 'utf8')) as DemoState
    })
    after(() => demo?.kill())

    test(`names the broker and creates the run's own ${kind === 'nats' ? 'stream' : 'exchange'}`, async () => {
      assert.equal(state.mq.kind, kind)
      assert.match(state.mq.name, /^appactive-demo-[0-9a-f]{8}$/)
      assert.match(demo.output(), new RegExp(`order\\.placed events\\s+.*${state.mq.name}`))
      assert.equal(await onBroker(kind, state.mq.name), true)
    })

    test('buying as r_id 1000 and 2000 credits points in the unit owning each, over the broker', async () => {
      const a = await call(`${CENTER}/api/buy?r_id=1000&pId=14&number=2`, 'POST')
      assert.equal(a.status, 200, JSON.stringify(a.body))
      assert.deepEqual(
        [a.body.event, (a.body.order as { unit: string }).unit],
        [
          {
            topic: 'order.placed',
            via: kind,
            msgId: (a.body.event as { msgId: string }).msgId,
            unit: 'unit',
          },
          'unit',
        ],
      )
      const b = await call(`${UNIT}/api/buy?r_id=2000&pId=12`, 'POST')
      assert.equal(b.status, 200, JSON.stringify(b.body))
      assert.equal((b.body.event as { unit: string; via: string }).unit, 'center')

      const p1000 = await pointsOf(1000, 1)
      assert.deepEqual(p1000.points, { points: 40, credits: 1, unit: 'unit' }) // 2 rackets at 200: 400 / 10
      assert.deepEqual(p1000.chain, hops('gateway@unit', 'frontend@unit', 'orders@unit'))
      const p2000 = await pointsOf(2000, 1)
      assert.deepEqual(p2000.points, { points: 30, credits: 1, unit: 'center' })
      assert.deepEqual(
        p2000.chain,
        hops('gateway@unit', 'gateway@center', 'frontend@center', 'orders@center'),
      )

      // One more order each: credited once each, never twice.
      await call(`${UNIT}/api/buy?r_id=1000&pId=18`, 'POST')
      assert.deepEqual((await pointsOf(1000, 2)).points, { points: 50, credits: 2, unit: 'unit' })
      await new Promise((r) => setTimeout(r, 300))
      assert.deepEqual((await pointsOf(1000, 2)).points.credits, 2)
    })

    test(`Ctrl-C stops every process and deletes the run's ${kind === 'nats' ? 'stream' : 'exchange'}`, async () => {
      const { code, left } = await demo.interrupt()
      assert.equal(code, 0, demo.output())
      assert.deepEqual(left, [], 'processes left behind')
      assert.deepEqual(await busyPorts(), [])
      assert.equal(await onBroker(kind, state.mq.name), false, `${state.mq.name} is still on the broker`)
    })
  })
}
