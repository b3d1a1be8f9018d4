// RabbitMQ through appactive/mq: a `unit` topic (exchange `orders`) whose messages are consumed in the
// unit that owns the route id. Two agents in one process stand in for the units `unit` and `center`
// (rules: examples/rules/baseline.yaml, r_id mod 10000: unit owns 0~1999, center 2000~9999); each unit
// has its own queue bound `<unit>.#`. The producer runs in `unit` and publishes for both.
// Run: npx tsx examples/amqplib/main.ts   (RabbitMQ on AMQP_URL, default amqp://guest:guest@127.0.0.1:5672)
import { randomUUID } from 'node:crypto'
import amqp from 'amqplib'
import { createAgent } from 'appactive/agent'
import { currentRouteId, runWithRoute } from 'appactive/context'
import { createAmqpConsumer, createAmqpProducer } from 'appactive/mq'

const rules = process.env.APPACTIVE_RULES ?? new URL('../rules/baseline.yaml', import.meta.url).pathname
const conn = await amqp.connect(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672')
const admin = await conn.createConfirmChannel()

const exchange = `orders-example-${randomUUID().slice(0, 8)}` // a fresh name per run
const topics = { [exchange]: 'unit' } as const // unlisted exchanges stay `normal`
await admin.assertExchange(exchange, 'topic', { durable: false, autoDelete: true })

const got: string[] = []
let allConsumed!: () => void
const done = new Promise<void>((resolve) => {
  allConsumed = resolve
})
const units = ['unit', 'center']
const consumers = []
for (const unit of units) {
  const agent = createAgent({ unit, app: 'shop', rules })
  await agent.start()
  const queue = `${exchange}.${unit}`
  await admin.assertQueue(queue, { durable: false })
  await admin.bindQueue(queue, exchange, `${unit}.#`)
  const consumer = await createAmqpConsumer({
    agent,
    channel: await conn.createConfirmChannel(),
    queue,
    exchange,
    topics,
    // The handler runs in the message's route context; the delivery is acked when it resolves.
    handler: (msg) => {
      got.push(`${unit} consumed ${currentRouteId()} (${msg.fields.routingKey})`)
      if (got.length === 2) allConsumed()
    },
  })
  consumers.push({ agent, queue, consumer })
}

// The producer runs in `unit`; the route id comes from the route context (or the `routeId` option).
const producer = createAmqpProducer({
  agent: consumers[0]!.agent,
  channel: await conn.createConfirmChannel(),
  topics,
})
for (const routeId of ['10042', '15000']) {
  const sent = await runWithRoute({ routeId }, () =>
    producer.publish(exchange, 'placed', Buffer.from(JSON.stringify({ routeId }))),
  )
  console.log(`published ${routeId} to ${sent.routingKey}, confirmed (msg id ${sent.msgId})`)
}
await done
console.log(`amqplib: ${got.sort().join('; ')}`)

for (const { agent, queue, consumer } of consumers) {
  await consumer.close()
  await admin.deleteQueue(queue)
  await admin.deleteQueue(`${queue}.appactive-delay`) // the consumer's delay queue for long holds
  await agent.close()
}
await conn.close()
