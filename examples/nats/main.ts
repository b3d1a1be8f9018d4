// NATS JetStream through appactive/mq: a `unit` topic (subjects `orders.<unit>.<key>`) whose messages are
// consumed in the unit that owns the route id. Two agents in one process stand in for the units `unit`
// and `center` (rules: examples/rules/baseline.yaml, r_id mod 10000: unit owns 0~1999, center
// 2000~9999); each unit has a durable pull consumer filtering `<topic>.<unit>.>`. The producer runs in
// `unit` and publishes for both.
// Run: npx tsx examples/nats/main.ts   (NATS with JetStream on NATS_URL, default 127.0.0.1:4222)
import { randomUUID } from 'node:crypto'
import { AckPolicy, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import { connect, nanos } from '@nats-io/transport-node'
import { createAgent } from 'appactive/agent'
import { currentRouteId } from 'appactive/context'
import { createNatsConsumer, createNatsProducer } from 'appactive/mq'

const rules = process.env.APPACTIVE_RULES ?? new URL('../rules/baseline.yaml', import.meta.url).pathname
const nc = await connect({ servers: process.env.NATS_URL ?? '127.0.0.1:4222' })
const js = jetstream(nc)
const jsm = await jetstreamManager(nc)

const topic = `orders-example-${randomUUID().slice(0, 8)}` // a fresh name per run
const topics = { [topic]: 'unit' } as const // the first subject token(s); unlisted topics stay `normal`
await jsm.streams.add({ name: topic, subjects: [`${topic}.>`], storage: StorageType.Memory })

const got: string[] = []
let allConsumed!: () => void
const done = new Promise<void>((resolve) => {
  allConsumed = resolve
})
const consumers = []
for (const unit of ['unit', 'center']) {
  const agent = createAgent({ unit, app: 'shop', rules })
  await agent.start()
  // One filter subject per consumer (server 2.9); every `nak` of a hold counts as a delivery.
  await jsm.consumers.add(topic, {
    durable_name: unit,
    filter_subject: `${topic}.${unit}.>`,
    ack_policy: AckPolicy.Explicit,
    max_deliver: -1,
    ack_wait: nanos(30_000),
  })
  const consumer = await createNatsConsumer({
    agent,
    js,
    stream: topic,
    consumer: unit,
    topics,
    // The handler runs in the message's route context; the message is acked when it resolves.
    handler: (msg) => {
      got.push(`${unit} consumed ${currentRouteId()} (${msg.subject.slice(topic.length + 1)})`)
      if (got.length === 2) allConsumed()
    },
  })
  consumers.push({ agent, consumer })
}

// The producer runs in `unit`; the route id comes from the `routeId` option (or the route context).
const producer = createNatsProducer({ agent: consumers[0]!.agent, js, topics })
for (const routeId of ['10042', '15000']) {
  const sent = await producer.publish(`${topic}.placed`, JSON.stringify({ routeId }), { routeId })
  console.log(`published ${routeId} to ${sent.subject}, stream seq ${sent.seq} (Nats-Msg-Id ${sent.msgId})`)
}
await done
console.log(`nats: ${got.sort().join('; ')}`)

for (const { agent, consumer } of consumers) {
  await consumer.close()
  await agent.close()
}
await jsm.streams.delete(topic)
await nc.close()
