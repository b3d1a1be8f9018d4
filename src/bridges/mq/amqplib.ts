/**
 * RabbitMQ (amqplib) adapter of the message layer. Producers publish on a ConfirmChannel to the
 * exchange `<topic>` with the routing key `<ownerUnit>.<key>` (template `routingKey`); each unit's queue
 * is bound `<unit>.#`. The consumer decides per delivery with the shared core: process, forward once to
 * the owner's routing key (same message id), hold (the delivery stays unacked, bounded by the prefetch;
 * past `hold.maxMs` it moves to a TTL delay queue that dead-letters back), or dead-letter to
 * `deadLetterExchange` with reason headers. It never nacks with requeue (reference §A.2).
 * The driver is never imported: pass the channel you opened.
 */
import type { ConfirmChannel, ConsumeMessage, Options } from 'amqplib'
import type { RoutingAgent } from '../../agent/index.js'
import type { RouteContext } from '../../context/index.js'
import { InvalidArgumentError } from '../../errors/index.js'
import {
  AddressTemplate,
  BARRIER_KEY,
  BarrierSender,
  DEAD_CODE_HEADER,
  DEAD_REASON_HEADER,
  decideConsume,
  decideWithHold,
  HoldGate,
  type HoldOptions,
  handlerFailure,
  KeyedSerial,
  MqMetrics,
  orderingKey,
  passBarrier,
  preparePublish,
  type ResolvedHold,
  readBarrier,
  resolveHold,
  runDecided,
  type TopicConfig,
  type TopicTable,
  topicTableOf,
} from './core.js'

/** Keeps the routing key of a message parked in the delay queue (which re-delivers it by queue name). */
export const ROUTING_KEY_HEADER = 'x-appactive-routing-key'

/** @internal Publishes and resolves on the broker's confirm (also used by the standby replay). */
export function confirmed(
  channel: ConfirmChannel,
  exchange: string,
  routingKey: string,
  content: Buffer,
  options: Options.Publish,
): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.publish(exchange, routingKey, content, options, (err) => {
      if (err) reject(err instanceof Error ? err : new Error(`publish not confirmed: ${String(err)}`))
      else resolve()
    })
  })
}

// ---------------------------------------------------------------------------------------------------
// Producer

export interface AmqpProducerOptions {
  readonly agent: RoutingAgent
  /** A channel from `connection.createConfirmChannel()`. */
  readonly channel: ConfirmChannel
  /** Topic (exchange) types; unlisted exchanges are `normal`. */
  readonly topics?: TopicConfig | TopicTable
  /** Routing key of unit and center topics; default `{unit}.{key}`. */
  readonly routingKey?: string
  /** Fence hold of a publish; default 10 s, 1,000 messages. */
  readonly hold?: HoldOptions
}

/** amqplib publish options plus the route id (default: the route context's) and a message id to keep. */
export interface AmqpPublishOptions extends Options.Publish {
  readonly routeId?: string
  readonly msgId?: string
}

/** A publish the broker confirmed. */
export interface PublishResult {
  readonly msgId: string
  /** The destination unit; undefined on a `normal` topic. */
  readonly unit: string | undefined
  readonly routingKey: string
}

export class AmqpProducer {
  readonly metrics: MqMetrics
  readonly #agent: RoutingAgent
  readonly #channel: ConfirmChannel
  readonly #topics: TopicTable
  readonly #template: AddressTemplate
  readonly #hold: ResolvedHold
  readonly #gate: HoldGate
  readonly #barriers: BarrierSender

  constructor(options: AmqpProducerOptions) {
    if (options?.agent === undefined || options.channel === undefined) {
      throw new InvalidArgumentError('createAmqpProducer needs an agent and a confirm channel')
    }
    this.#agent = options.agent
    this.#channel = options.channel
    this.#topics = topicTableOf(options.topics)
    this.#template = new AddressTemplate(options.routingKey ?? '{unit}.{key}')
    this.#hold = resolveHold(options.hold, 10_000)
    this.#gate = new HoldGate(this.#agent, this.#hold.maxHeld)
    this.metrics = new MqMetrics(this.#agent.metrics.registry)
    // Cut-over barriers go to `<unit>.appactive-barrier` of each unit topic: queues bound `<unit>.#` get them.
    this.#barriers = new BarrierSender(this.#agent, this.#topics, async (topic, unit, headers) => {
      const routingKey = this.#template.format({ topic, unit, key: BARRIER_KEY })
      await confirmed(this.#channel, topic, routingKey, Buffer.alloc(0), { headers, persistent: true })
      this.metrics.count('publish', topic, 'barrier')
    })
  }

  /**
   * Publishes `content` to `exchange` for `key`, unit-addressed on unit and center topics, and resolves
   * once the broker confirmed it.
   * @throws FencedError (after the hold), LeaseExpiredError, NoRouteIdError; the broker's error when it
   *   refuses the message.
   */
  async publish(
    exchange: string,
    key: string,
    content: Buffer,
    options: AmqpPublishOptions = {},
  ): Promise<PublishResult> {
    const { routeId, msgId, ...publish } = options
    const d = await preparePublish(
      this.#agent,
      this.#topics,
      this.#gate,
      this.#hold,
      { topic: exchange, routeId, msgId },
      this.metrics,
    )
    const routingKey =
      d.unit === undefined ? key : this.#template.format({ topic: exchange, unit: d.unit, key })
    await this.#barriers.track(
      confirmed(this.#channel, exchange, routingKey, content, {
        ...publish,
        headers: { ...publish.headers, ...d.headers },
      }),
    )
    this.metrics.count('publish', exchange, 'published')
    return { msgId: d.msgId, unit: d.unit, routingKey }
  }

  /** Fails every held publish with APPACTIVE_FENCED. The channel stays yours to close. */
  close(): void {
    this.#gate.close()
    this.#barriers.close()
  }
}

/** Creates a unit-aware producer on a ConfirmChannel. @throws InvalidArgumentError for bad options. */
export function createAmqpProducer(options: AmqpProducerOptions): AmqpProducer {
  return new AmqpProducer(options)
}

// ---------------------------------------------------------------------------------------------------
// Consumer

/** What the handler gets besides the delivery. */
export interface AmqpDeliveryInfo {
  readonly route: RouteContext
  readonly msgId: string | undefined
}

export interface AmqpConsumerOptions {
  readonly agent: RoutingAgent
  /** A confirm channel: forwards, delays and dead letters are published with confirms. */
  readonly channel: ConfirmChannel
  readonly queue: string
  /** The exchange (topic) the queue is bound to; names the topic type and is where forwards go. */
  readonly exchange: string
  readonly topics?: TopicConfig | TopicTable
  /** Routing key template of the exchange's producers; default `{unit}.{key}`. */
  readonly routingKey?: string
  /** Runs inside the message's route context; the delivery is acked after it resolves. */
  readonly handler: (message: ConsumeMessage, info: AmqpDeliveryInfo) => unknown
  /** Where dead letters go (same routing key, reason headers); default: `nack` without requeue. */
  readonly deadLetterExchange?: string
  /** Unacked deliveries at once (`channel.prefetch`); bounds the held messages. Default 16. */
  readonly prefetch?: number
  /** Consumer hold; default 30 s, re-decided every 250 ms and on each new rule set. */
  readonly hold?: HoldOptions
  /** Delay queue for holds past `hold.maxMs`; default `<queue>.appactive-delay`. */
  readonly delayQueue?: string
  /** How long a message waits in the delay queue; default 5,000 ms. */
  readonly delayMs?: number
}

export class AmqpConsumer {
  readonly metrics: MqMetrics
  readonly #o: AmqpConsumerOptions
  readonly #topics: TopicTable
  readonly #template: AddressTemplate
  readonly #hold: ResolvedHold
  readonly #gate: HoldGate
  readonly #serial = new KeyedSerial()
  readonly #pending = new Set<Promise<void>>()
  readonly #stop = new AbortController()
  readonly #delayQueue: string
  #tag: string | undefined
  #closed = false
  #undeclare: (() => void) | undefined

  constructor(options: AmqpConsumerOptions) {
    if (options?.agent === undefined || options.channel === undefined) {
      throw new InvalidArgumentError('createAmqpConsumer needs an agent and a confirm channel')
    }
    if (typeof options.queue !== 'string' || options.queue === '') {
      throw new InvalidArgumentError('createAmqpConsumer needs a queue name')
    }
    if (typeof options.exchange !== 'string' || options.exchange === '') {
      throw new InvalidArgumentError('createAmqpConsumer needs the exchange (topic) the queue is bound to')
    }
    if (typeof options.handler !== 'function')
      throw new InvalidArgumentError('createAmqpConsumer needs a handler')
    this.#o = options
    this.#topics = topicTableOf(options.topics)
    this.#template = new AddressTemplate(options.routingKey ?? '{unit}.{key}')
    this.#hold = resolveHold(options.hold, 30_000)
    this.#gate = new HoldGate(options.agent, Number.MAX_SAFE_INTEGER)
    this.#delayQueue = options.delayQueue ?? `${options.queue}.appactive-delay`
    this.metrics = new MqMetrics(options.agent.metrics.registry)
  }

  /** Declares the delay queue, sets the prefetch and starts consuming. */
  async start(): Promise<void> {
    const { channel, queue } = this.#o
    // Held deliveries die with their channel: the broker redelivers them; never ack an old tag.
    channel.once('close', () => {
      this.#closed = true
      this.#stop.abort()
    })
    await channel.assertQueue(this.#delayQueue, {
      durable: true,
      arguments: {
        'x-message-ttl': this.#o.delayMs ?? 5000,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': queue,
      },
    })
    await channel.prefetch(this.#o.prefetch ?? 16)
    const { consumerTag } = await channel.consume(queue, (msg) => this.#onMessage(msg), { noAck: false })
    this.#tag = consumerTag
    // A unit topic's queue takes part in the cut-over's message drain (its barriers are awaited).
    if (this.#topics.typeOf(this.#o.exchange) === 'unit')
      this.#undeclare = this.#o.agent.messages.declareConsumer(this.#o.exchange, queue)
  }

  /**
   * Stops consuming and waits for the messages being handled; held messages stop waiting and stay
   * unacked (the broker redelivers them when the channel closes). The channel stays yours to close.
   */
  async close(): Promise<void> {
    if (this.#tag !== undefined && !this.#closed) await this.#o.channel.cancel(this.#tag)
    this.#tag = undefined
    this.#undeclare?.()
    this.#stop.abort()
    this.#gate.close()
    while (this.#pending.size > 0) await Promise.all([...this.#pending])
  }

  #onMessage(msg: ConsumeMessage | null): void {
    if (msg === null) return // cancelled by the broker
    const barrier = readBarrier(msg.properties.headers)
    const task =
      barrier !== undefined && barrier !== 'malformed'
        ? this.#barrier(msg, barrier, [...this.#pending])
        : this.#serial.run(orderingKey(msg.properties.headers), () => this.#handle(msg))
    // One reaction settles the bookkeeping (a catch + finally pair cost three promises per delivery).
    const tracked: Promise<void> = task.then(
      () => {
        this.#pending.delete(tracked)
      },
      (err: unknown) => {
        this.#pending.delete(tracked)
        this.#o.agent.logger.error({ err }, 'amqp consumer failed')
      },
    )
    this.#pending.add(tracked)
  }

  /** A cut-over barrier: once every delivery before it is settled, report it and ack it. */
  async #barrier(
    msg: ConsumeMessage,
    barrier: { version: number; origin: string },
    before: readonly Promise<void>[],
  ): Promise<void> {
    await Promise.all(before)
    if (this.#closed) return
    const { agent, exchange, queue, channel } = this.#o
    passBarrier(agent, { topic: exchange, group: queue, ...barrier })
    channel.ack(msg)
    this.metrics.count('consume', exchange, 'barrier')
  }

  async #handle(msg: ConsumeMessage): Promise<void> {
    const { agent, exchange, channel } = this.#o
    const headers = msg.properties.headers ?? {}
    const started = performance.now()
    for (;;) {
      // Decided at once unless it must wait (the common case needs no hold loop and no await).
      const now = decideConsume(agent, this.#topics, exchange, headers)
      const left = { ...this.#hold, maxMs: Math.max(0, this.#hold.maxMs - (performance.now() - started)) }
      const d =
        now.action !== 'hold'
          ? now
          : await decideWithHold(agent, this.#topics, exchange, headers, this.#gate, left, {
              signal: this.#stop.signal,
              metrics: this.metrics,
            })
      if (this.#closed) return
      switch (d.action) {
        case 'process': {
          try {
            await runDecided(d, () => this.#o.handler(msg, { route: d.route, msgId: d.msgId }))
          } catch (err) {
            if (this.#closed) return
            const reason = handlerFailure(err)
            if (reason === undefined) {
              // A fence or lease lapse the handler's own guard saw: hold, then decide again.
              await this.#gate.wait(this.#hold.recheckMs, this.#stop.signal)
              continue
            }
            this.metrics.count('consume', exchange, 'handler_error')
            return this.#deadLetter(msg, undefined, reason)
          }
          if (this.#closed) return
          channel.ack(msg)
          this.metrics.count('consume', exchange, 'processed')
          return
        }
        case 'forward': {
          const key = this.#keyOf(msg)
          const routingKey = this.#template.format({ topic: exchange, unit: d.unit, key })
          await confirmed(channel, exchange, routingKey, msg.content, {
            ...publishProps(msg),
            headers: { ...withoutParking(headers), ...d.headers },
          })
          if (this.#closed) return
          channel.ack(msg)
          this.metrics.count('consume', exchange, 'forwarded')
          return
        }
        case 'dead-letter':
          return this.#deadLetter(msg, d.code, d.reason)
        case 'barrier':
          // Barriers are taken apart on delivery (#onMessage); one that got here passes unreported.
          channel.ack(msg)
          return
        case 'delay': {
          if (this.#stop.signal.aborted) return // closing: leave it unacked for redelivery
          await confirmed(channel, '', this.#delayQueue, msg.content, {
            ...publishProps(msg),
            headers: { ...headers, [ROUTING_KEY_HEADER]: this.#routingKeyOf(msg) },
          })
          if (this.#closed) return
          channel.ack(msg)
          this.metrics.count('consume', exchange, 'delayed')
          return
        }
      }
    }
  }

  async #deadLetter(msg: ConsumeMessage, code: string | undefined, reason: string): Promise<void> {
    const { channel, exchange, deadLetterExchange } = this.#o
    if (deadLetterExchange === undefined) {
      channel.nack(msg, false, false)
    } else {
      const headers: Record<string, unknown> = { ...msg.properties.headers, [DEAD_REASON_HEADER]: reason }
      if (code !== undefined) headers[DEAD_CODE_HEADER] = code
      await confirmed(channel, deadLetterExchange, this.#routingKeyOf(msg), msg.content, {
        ...publishProps(msg),
        headers,
      })
      if (this.#closed) return
      channel.ack(msg)
    }
    this.metrics.count('consume', exchange, 'dead_lettered')
  }

  #routingKeyOf(msg: ConsumeMessage): string {
    const parked = msg.properties.headers?.[ROUTING_KEY_HEADER]
    return typeof parked === 'string' ? parked : msg.fields.routingKey
  }

  /** The user key of the delivered routing key (the template's `{key}`), or the whole key. */
  #keyOf(msg: ConsumeMessage): string {
    const routingKey = this.#routingKeyOf(msg)
    return this.#template.parse(routingKey, this.#o.exchange)?.key ?? routingKey
  }
}

function withoutParking(headers: Record<string, unknown>): Record<string, unknown> {
  const { [ROUTING_KEY_HEADER]: _, ...rest } = headers
  return rest
}

/** @internal The publish properties of a delivery, to republish it unchanged. */
export function publishProps(msg: ConsumeMessage): Options.Publish {
  const p = msg.properties
  const out: Record<string, unknown> = {}
  for (const name of [
    'contentType',
    'contentEncoding',
    'deliveryMode',
    'priority',
    'correlationId',
    'replyTo',
    'messageId',
    'timestamp',
    'type',
    'appId',
  ] as const) {
    if (p[name] !== undefined) out[name] = p[name]
  }
  return out as Options.Publish
}

/**
 * Creates and starts a unit-aware consumer of `queue`.
 * @throws InvalidArgumentError for bad options; the broker's error when the queue cannot be consumed.
 */
export async function createAmqpConsumer(options: AmqpConsumerOptions): Promise<AmqpConsumer> {
  const consumer = new AmqpConsumer(options)
  await consumer.start()
  return consumer
}
