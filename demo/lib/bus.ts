/**
 * The demo's event: an order placed publishes `order.placed` for its user, and the points module of the
 * unit owning that user credits their points (unit data). The topic is a `unit` topic of appactive/mq,
 * so the message goes to, and is consumed in, the owner's unit; a consumer that gets a message for a
 * user it does not own (stale rules) forwards it once to the owner's destination.
 *
 * `npm start -- --mq` picks the channel, named per run (DEMO_MQ_NAME, `appactive-demo-<hex>`):
 *   memory    in-process (lib/memory-mq.ts), the default: nothing to install
 *   rabbitmq  amqplib on DEMO_AMQP_URL (default the machine's 127.0.0.1:5672, guest/guest): topic
 *             exchange <name>, routing key <unit>.order.placed, a queue <name>.<unit> bound <unit>.#
 *             per unit, dead letters to the fanout exchange <name>.dead (queue <name>.dead)
 *   nats      JetStream on DEMO_NATS_URL (default 127.0.0.1:4222): stream <name> on <name>.>, subject
 *             <name>.<unit>.order.placed, a durable pull consumer <unit> filtering <name>.<unit>.>,
 *             dead letters on <name>.dead
 * The supervisor creates the broker's objects before the services start (`provision`) and deletes them
 * when it stops, so a run leaves nothing on the broker.
 */
import type { RoutingAgent } from 'appactive/agent'
import { MemoryBroker, MemoryConsumer, MemoryProducer } from './memory-mq.js'

export const MQ_KINDS = ['memory', 'rabbitmq', 'nats'] as const
export type MqKind = (typeof MQ_KINDS)[number]

/** The event's key below the per-run topic. */
export const ORDER_PLACED = 'order.placed'

export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672'
export const DEFAULT_NATS_URL = '127.0.0.1:4222'

/** The body of `order.placed`. */
export interface OrderPlaced {
  readonly orderId: number
  readonly rId: string
  readonly product: string
  readonly amount: number
  /** The unit that wrote the order. */
  readonly unit: string
}

/** What a publish returned: the message id and the unit it was addressed to. */
export interface Published {
  readonly msgId: string
  readonly unit: string | undefined
}

export interface Bus {
  readonly kind: MqKind
  /** Publishes `order.placed` for the route id of the current context; resolves on the broker's confirm. */
  publish(event: OrderPlaced): Promise<Published>
  close(): Promise<void>
}

export type OrderPlacedHandler = (event: OrderPlaced, msgId: string) => Promise<void>

/** Where a channel's settings come from (the supervisor's environment). */
export interface BusSettings {
  readonly kind: MqKind
  /** The per-run topic: exchange, stream and subject prefix. */
  readonly name: string
  readonly amqpUrl: string
  readonly natsUrl: string
}

export function busSettings(env: NodeJS.ProcessEnv = process.env): BusSettings {
  const kind = (env.DEMO_MQ ?? 'memory') as MqKind
  if (!MQ_KINDS.includes(kind)) throw new Error(`DEMO_MQ must be ${MQ_KINDS.join(', ')}`)
  return {
    kind,
    name: env.DEMO_MQ_NAME || 'appactive-demo',
    amqpUrl: env.DEMO_AMQP_URL || DEFAULT_AMQP_URL,
    natsUrl: env.DEMO_NATS_URL || DEFAULT_NATS_URL,
  }
}

/** Where the broker is, for messages (passwords left out). */
export function brokerAddress(s: BusSettings): string {
  return s.kind === 'rabbitmq'
    ? s.amqpUrl.replace(/\/\/[^@/]*@/, '//')
    : s.kind === 'nats'
      ? s.natsUrl
      : 'in-process'
}

const decode = (body: Uint8Array): OrderPlaced =>
  JSON.parse(Buffer.from(body).toString('utf8')) as OrderPlaced

/**
 * Creates what the run needs on the broker (see the module comment) and returns how to delete it.
 * @throws Error naming the broker when it cannot be reached.
 */
export async function provision(
  s: BusSettings,
  units: readonly string[],
): Promise<{ teardown(): Promise<void> }> {
  if (s.kind === 'memory') return { teardown: async () => {} }
  if (s.kind === 'rabbitmq') {
    const { default: amqp } = await import('amqplib')
    const conn = await amqp.connect(s.amqpUrl, { timeout: 3000 })
    conn.on('error', () => {}) // a lost connection surfaces at teardown
    const ch = await conn.createChannel()
    await ch.assertExchange(s.name, 'topic', { durable: false })
    await ch.assertExchange(`${s.name}.dead`, 'fanout', { durable: false })
    await ch.assertQueue(`${s.name}.dead`, { durable: false })
    await ch.bindQueue(`${s.name}.dead`, `${s.name}.dead`, '')
    for (const unit of units) {
      await ch.assertQueue(`${s.name}.${unit}`, { durable: false })
      await ch.bindQueue(`${s.name}.${unit}`, s.name, `${unit}.#`)
    }
    return {
      async teardown() {
        try {
          for (const unit of units) {
            await ch.deleteQueue(`${s.name}.${unit}`)
            await ch.deleteQueue(`${s.name}.${unit}.appactive-delay`) // the consumer's delay queue
          }
          await ch.deleteQueue(`${s.name}.dead`)
          await ch.deleteExchange(s.name)
          await ch.deleteExchange(`${s.name}.dead`)
        } finally {
          await conn.close().catch(() => {})
        }
      },
    }
  }
  const { connect, nanos } = await import('@nats-io/transport-node')
  const { AckPolicy, jetstreamManager, StorageType } = await import('@nats-io/jetstream')
  const nc = await connect({ servers: s.natsUrl, timeout: 3000 })
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: s.name, subjects: [`${s.name}.>`], storage: StorageType.Memory })
  for (const unit of units) {
    await jsm.consumers.add(s.name, {
      durable_name: unit,
      filter_subject: `${s.name}.${unit}.>`,
      ack_policy: AckPolicy.Explicit,
      max_deliver: -1,
      ack_wait: nanos(30_000),
    })
  }
  return {
    async teardown() {
      try {
        await jsm.streams.delete(s.name)
      } finally {
        await nc.close().catch(() => {})
      }
    },
  }
}

/**
 * This unit's end of the channel: a unit-aware producer of `order.placed`, and a consumer of the
 * messages addressed to this unit that calls `onOrderPlaced` inside the message's route context.
 * @param log where dead letters and undeliverable messages are reported
 */
export async function openBus(
  s: BusSettings,
  agent: RoutingAgent,
  onOrderPlaced: OrderPlacedHandler,
  log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void },
): Promise<Bus> {
  const topics = { [s.name]: 'unit' } as const
  const unit = agent.identity.unit
  if (s.kind === 'memory') {
    const broker = new MemoryBroker((m, to) =>
      log.warn(
        { to, routeId: m.headers['x-appactive-route-id'] },
        `order.placed for unit ${to} has no consumer in this process (the in-process channel reaches no other unit)`,
      ),
    )
    const producer = new MemoryProducer({ agent, broker, topics })
    const consumer = new MemoryConsumer({
      agent,
      broker,
      topics,
      topic: s.name,
      handler: (m, { msgId }) => onOrderPlaced(decode(m.body), msgId ?? ''),
      deadLetter: (m, reason) =>
        log.error({ routeId: m.headers['x-appactive-route-id'], reason }, 'order.placed dead-lettered'),
    })
    consumer.start()
    return {
      kind: s.kind,
      publish: (event) => producer.publish(s.name, ORDER_PLACED, Buffer.from(JSON.stringify(event))),
      async close() {
        producer.close()
        await consumer.close()
      },
    }
  }
  if (s.kind === 'rabbitmq') {
    const { default: amqp } = await import('amqplib')
    const { createAmqpConsumer, createAmqpProducer } = await import('appactive/mq')
    const conn = await amqp.connect(s.amqpUrl, { timeout: 3000 })
    conn.on('error', (err) => log.error({ err: err.message }, 'RabbitMQ connection error'))
    const producer = createAmqpProducer({ agent, channel: await conn.createConfirmChannel(), topics })
    const consumer = await createAmqpConsumer({
      agent,
      channel: await conn.createConfirmChannel(),
      queue: `${s.name}.${unit}`,
      exchange: s.name,
      topics,
      deadLetterExchange: `${s.name}.dead`,
      handler: (msg, { msgId }) => onOrderPlaced(decode(msg.content), msgId ?? ''),
    })
    return {
      kind: s.kind,
      publish: (event) =>
        producer.publish(s.name, ORDER_PLACED, Buffer.from(JSON.stringify(event)), {
          contentType: 'application/json',
          persistent: false,
        }),
      async close() {
        producer.close()
        await consumer.close()
        await conn.close().catch(() => {})
      },
    }
  }
  const { connect } = await import('@nats-io/transport-node')
  const { jetstream } = await import('@nats-io/jetstream')
  const { createNatsConsumer, createNatsProducer } = await import('appactive/mq')
  const nc = await connect({ servers: s.natsUrl, timeout: 3000 })
  const js = jetstream(nc)
  const producer = createNatsProducer({ agent, js, topics })
  const consumer = await createNatsConsumer({
    agent,
    js,
    stream: s.name,
    consumer: unit,
    topics,
    deadLetterSubject: `${s.name}.dead`,
    handler: (msg, { msgId }) => onOrderPlaced(decode(msg.data), msgId ?? ''),
  })
  return {
    kind: s.kind,
    publish: (event) => producer.publish(`${s.name}.${ORDER_PLACED}`, JSON.stringify(event)),
    async close() {
      producer.close()
      await consumer.close()
      await nc.close().catch(() => {})
    },
  }
}
