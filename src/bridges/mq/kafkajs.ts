/**
 * kafkajs adapter of the message layer. A producer sends a message of topic `<topic>` to the Kafka topic
 * `<topic>.<ownerUnit>` (template `{topic}.{unit}`) with message key = route id (per-key partition
 * order) and `acks: -1`, and resolves when kafkajs's `send` does. The consumer runs `eachBatch` with
 * `eachBatchAutoResolve: false` and decides per message with the shared core, in partition order:
 * process (then `resolveOffset`), forward once to the owner's topic (`resolveOffset` after that send
 * resolves), dead-letter to `deadLetterTopic` (then `resolveOffset`), or hold: `pause()` the partition,
 * `seek()` back to the held offset, stop the batch there and never resolve it, so no offset at or past
 * a held message is committed; the partition is resumed on the next rule set or after `hold.delayMs`.
 * No driver is imported: pass the kafkajs producer and consumer you created.
 */
import type {
  Consumer,
  ConsumerRunConfig,
  EachBatchPayload,
  IHeaders,
  KafkaMessage,
  Producer,
  RecordMetadata,
} from 'kafkajs'
import type { RoutingAgent } from '../../agent/index.js'
import { currentRouteId, isRouteHeader, type RouteContext } from '../../context/index.js'
import { InvalidArgumentError } from '../../errors/index.js'
import {
  AddressTemplate,
  BARRIER_PARTITIONS_HEADER,
  BarrierSender,
  DEAD_CODE_HEADER,
  DEAD_REASON_HEADER,
  decideConsume,
  HoldGate,
  type HoldOptions,
  handlerFailure,
  MqMetrics,
  passBarrier,
  preparePublish,
  type ResolvedHold,
  resolveHold,
  runDecided,
  type TopicConfig,
  type TopicTable,
  topicTableOf,
} from './core.js'

/** The Kafka topic a dead letter was consumed from, on dead letters only. */
export const DEAD_TOPIC_HEADER = 'x-appactive-dead-topic'
/** `<partition>:<offset>` of the consumed message, on dead letters only. */
export const DEAD_OFFSET_HEADER = 'x-appactive-dead-offset'

const DEFAULT_TEMPLATE = '{topic}.{unit}'

function topicTemplate(template: string | undefined): AddressTemplate {
  const t = new AddressTemplate(template ?? DEFAULT_TEMPLATE)
  if (!t.template.includes('{topic}') || t.template.includes('{key}')) {
    throw new InvalidArgumentError(
      `Kafka topic template needs {topic} and {unit} and no {key}, got ${JSON.stringify(t.template)}`,
    )
  }
  return t
}

/** Copies headers, leaving out the appactive ones unless `keepRoute`. */
function copyHeaders(from: IHeaders | undefined, keepRoute: boolean): IHeaders {
  const out: IHeaders = {}
  if (from === undefined || from === null) return out
  for (const [name, value] of Object.entries(from)) {
    if (value === undefined || (!keepRoute && isRouteHeader(name.toLowerCase()))) continue
    out[name] = value
  }
  return out
}

// ---------------------------------------------------------------------------------------------------
// Producer

export interface KafkaProducerOptions {
  readonly agent: RoutingAgent
  /** A connected kafkajs `Producer`. */
  readonly producer: Producer
  /** Topic types; unlisted topics are `normal`, sent unchanged. */
  readonly topics?: TopicConfig | TopicTable
  /** Kafka topic of unit and center topics; default `{topic}.{unit}` (no `{key}`). */
  readonly template?: string
  /** Fence hold of a send; default 10 s, 1,000 messages. */
  readonly hold?: HoldOptions
  /** `acks` of every send; default -1 (all in-sync replicas): a send counts only once acknowledged. */
  readonly acks?: number
  /**
   * How many partitions a Kafka topic has. With it the producer takes part in the cut-over's message
   * drain: on a fence it sends a barrier to every partition of `<topic>.<unit>` of each source unit,
   * after every send decided before the fence resolved. For example
   * `(topic) => admin.fetchTopicMetadata({ topics: [topic] }).then((m) => m.topics[0].partitions.length)`.
   */
  readonly partitions?: (kafkaTopic: string) => Promise<number>
}

export interface KafkaSendOptions {
  /** The route id, also the message key; default `key`, else the current route context's. */
  readonly routeId?: string
  /** The message key; on unit and center topics it must equal the route id (it is the route id). */
  readonly key?: string
  readonly value: Buffer | string | null
  /** More headers; `x-appactive-*` ones are replaced by the bridge's. */
  readonly headers?: IHeaders
  /** Keep a message id (a retry of the same message); default a new UUIDv7. */
  readonly msgId?: string
  /** Request timeout of the send, in ms; default the client's. */
  readonly timeoutMs?: number
}

/** A send kafkajs resolved (acknowledged with `acks`). */
export interface KafkaSendResult {
  readonly msgId: string
  /** The destination unit; undefined on a `normal` topic. */
  readonly unit: string | undefined
  /** The Kafka topic written. */
  readonly topic: string
  readonly partition: number | undefined
  readonly offset: string | undefined
}

export class KafkaProducer {
  readonly metrics: MqMetrics
  readonly #agent: RoutingAgent
  readonly #producer: Producer
  readonly #topics: TopicTable
  readonly #template: AddressTemplate
  readonly #hold: ResolvedHold
  readonly #gate: HoldGate
  readonly #acks: number
  readonly #barriers: BarrierSender | undefined

  constructor(options: KafkaProducerOptions) {
    if (options?.agent === undefined || options.producer === undefined) {
      throw new InvalidArgumentError('createKafkaProducer needs an agent and a kafkajs producer')
    }
    const acks = options.acks ?? -1
    if (![-1, 0, 1].includes(acks)) throw new InvalidArgumentError('acks must be -1, 0 or 1', { acks })
    this.#agent = options.agent
    this.#producer = options.producer
    this.#topics = topicTableOf(options.topics)
    this.#template = topicTemplate(options.template)
    this.#hold = resolveHold(options.hold, 10_000)
    this.#gate = new HoldGate(this.#agent, this.#hold.maxHeld)
    this.#acks = acks
    this.metrics = new MqMetrics(this.#agent.metrics.registry)
    const partitions = options.partitions
    if (partitions !== undefined && typeof partitions !== 'function')
      throw new InvalidArgumentError('partitions must be a function of the Kafka topic')
    this.#barriers =
      partitions === undefined
        ? undefined
        : new BarrierSender(this.#agent, this.#topics, async (topic, unit, headers) => {
            const target = this.#template.format({ topic, unit, key: '' })
            const n = await partitions(target)
            if (!(Number.isInteger(n) && n >= 1))
              throw new InvalidArgumentError(`partitions(${target}) must be a positive integer, got ${n}`)
            const value = { ...headers, [BARRIER_PARTITIONS_HEADER]: String(n) }
            await this.#producer.send({
              topic: target,
              acks: this.#acks,
              messages: Array.from({ length: n }, (_, partition) => ({
                partition,
                key: null,
                value: null,
                headers: value,
              })),
            })
            this.metrics.count('publish', topic, 'barrier')
          })
  }

  /**
   * Sends one message of `topic`: to `<topic>.<owner>` with key = route id on unit and center topics,
   * unchanged on `normal` ones; resolves when kafkajs's `send` resolves.
   * @throws FencedError (after the hold), LeaseExpiredError, NoRouteIdError, InvalidArgumentError (a key
   *   other than the route id); the client's error when the send fails.
   */
  async send(topic: string, message: KafkaSendOptions): Promise<KafkaSendResult> {
    if (message === undefined || message === null || !('value' in message)) {
      throw new InvalidArgumentError('send needs a message with a value')
    }
    const routed = this.#topics.typeOf(topic) !== 'normal'
    if (
      routed &&
      message.key !== undefined &&
      message.routeId !== undefined &&
      message.key !== message.routeId
    ) {
      throw new InvalidArgumentError(`the message key of unit topic ${topic} is the route id`, { topic })
    }
    // Pinned before any wait: the route context may be gone after an await.
    const routeId = message.routeId ?? message.key ?? currentRouteId()
    const d = await preparePublish(
      this.#agent,
      this.#topics,
      this.#gate,
      this.#hold,
      { topic, routeId, msgId: message.msgId },
      this.metrics,
    )
    const target = d.unit === undefined ? topic : this.#template.format({ topic, unit: d.unit, key: '' })
    const headers = { ...copyHeaders(message.headers, false), ...d.headers }
    const key = routed ? (routeId ?? null) : (message.key ?? null)
    let meta: RecordMetadata[]
    try {
      const sent = this.#producer.send({
        topic: target,
        acks: this.#acks,
        ...(message.timeoutMs === undefined ? {} : { timeout: message.timeoutMs }),
        messages: [{ key, value: message.value, headers }],
      })
      meta = await (this.#barriers === undefined ? sent : this.#barriers.track(sent))
    } catch (err) {
      this.metrics.count('publish', topic, 'failed')
      throw err
    }
    this.metrics.count('publish', topic, 'published')
    const first = meta?.[0]
    return {
      msgId: d.msgId,
      unit: d.unit,
      topic: target,
      partition: first?.partition,
      offset: first?.baseOffset ?? first?.offset,
    }
  }

  /** Fails every held send with APPACTIVE_FENCED. The producer stays yours to disconnect. */
  close(): void {
    this.#gate.close()
    this.#barriers?.close()
  }
}

/** Creates a unit-aware kafkajs producer. @throws InvalidArgumentError for bad options. */
export function createKafkaProducer(options: KafkaProducerOptions): KafkaProducer {
  return new KafkaProducer(options)
}

// ---------------------------------------------------------------------------------------------------
// Consumer

/** What the handler gets besides the message. */
export interface KafkaDeliveryInfo {
  /** The Kafka topic consumed and the logical topic it belongs to. */
  readonly kafkaTopic: string
  readonly topic: string
  readonly partition: number
  readonly route: RouteContext
  readonly msgId: string | undefined
}

/** Consumer hold: a held partition is paused and resumed on the next rule set or after `delayMs`. */
export interface KafkaHoldOptions {
  /** Resume a held partition after this long even without a new rule set (a lease renewal emits no
   * event), in ms; the message is decided again and held again if it must. Default 1,000. */
  readonly delayMs?: number
}

export interface KafkaConsumerOptions {
  readonly agent: RoutingAgent
  /**
   * A kafkajs `Consumer` you connected and subscribed to this unit's topics (`<topic>.<unit>`). The
   * bridge calls `run()` on it (do not run it yourself) and pauses, seeks and resumes its partitions.
   */
  readonly consumer: Consumer
  /** Producer for forwards and dead letters (connected; `acks: -1`). */
  readonly producer: Producer
  readonly topics?: TopicConfig | TopicTable
  /** Kafka topic template of the producers; default `{topic}.{unit}`. */
  readonly template?: string
  /** Runs inside the message's route context; the offset is resolved after it resolves. */
  readonly handler: (message: KafkaMessage, info: KafkaDeliveryInfo) => unknown
  /** Where dead letters go (reason headers, then the offset is resolved); default: logged and skipped. */
  readonly deadLetterTopic?: string
  readonly hold?: KafkaHoldOptions
  /** More `run()` settings (`autoCommit`, `partitionsConsumedConcurrently`...); the bridge owns
   * `eachBatch` and `eachBatchAutoResolve: false`. */
  readonly run?: Omit<ConsumerRunConfig, 'eachBatch' | 'eachMessage' | 'eachBatchAutoResolve'>
  /**
   * Take part in the cut-over's message drain: the consumer's group id (as given to `kafka.consumer`)
   * and the unit topics it is subscribed to (default: every unit topic of `topics`). The consumer then
   * reports each barrier it passes, per partition, and the orchestrator's drain waits for them.
   */
  readonly drain?: { readonly group: string; readonly topics?: readonly string[] }
}

export class KafkaConsumer {
  readonly metrics: MqMetrics
  readonly #o: KafkaConsumerOptions
  readonly #topics: TopicTable
  readonly #names: readonly string[]
  readonly #template: AddressTemplate
  readonly #delayMs: number
  /** Held (paused) partitions → their resume timer. */
  readonly #held = new Map<string, { topic: string; partition: number; timer: NodeJS.Timeout }>()
  readonly #onApplied = () => {
    for (const key of [...this.#held.keys()]) this.#resume(key)
  }
  #closed = false
  readonly #undeclare: Array<() => void> = []

  constructor(options: KafkaConsumerOptions) {
    if (options?.agent === undefined || options.consumer === undefined || options.producer === undefined) {
      throw new InvalidArgumentError('createKafkaConsumer needs an agent, a kafkajs consumer and a producer')
    }
    if (typeof options.handler !== 'function') {
      throw new InvalidArgumentError('createKafkaConsumer needs a handler')
    }
    const delayMs = options.hold?.delayMs ?? 1000
    if (!(Number.isFinite(delayMs) && delayMs >= 0)) {
      throw new InvalidArgumentError('hold.delayMs must be a non-negative number', { delayMs })
    }
    this.#o = options
    this.#topics = topicTableOf(options.topics)
    this.#names = this.#topics.names
    this.#template = topicTemplate(options.template)
    this.#delayMs = delayMs
    this.metrics = new MqMetrics(options.agent.metrics.registry)
  }

  /** Partitions held now (paused by the bridge), as `topic:partition`. */
  get held(): readonly string[] {
    return [...this.#held.values()].map((h) => `${h.topic}:${h.partition}`)
  }

  /** Starts `consumer.run()` with the bridge's `eachBatch`. */
  async start(): Promise<void> {
    this.#o.agent.on('applied', this.#onApplied)
    const drain = this.#o.drain
    if (drain !== undefined) {
      for (const topic of drain.topics ?? this.#topics.unitTopics)
        this.#undeclare.push(this.#o.agent.messages.declareConsumer(topic, drain.group))
    }
    await this.#o.consumer.run({
      ...this.#o.run,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.#batch(payload),
    })
  }

  /** Stops the consumer (`stop()`) and the resume timers. The clients stay yours to disconnect. */
  async close(): Promise<void> {
    this.#closed = true
    for (const undeclare of this.#undeclare.splice(0)) undeclare()
    this.#o.agent.off('applied', this.#onApplied)
    for (const h of this.#held.values()) clearTimeout(h.timer)
    this.#held.clear()
    await this.#o.consumer.stop()
  }

  /** The logical topic of a Kafka topic: a listed topic the template parses it with, else itself. */
  #logical(kafkaTopic: string): string {
    for (const topic of this.#names) {
      if (this.#template.parse(kafkaTopic, topic) !== undefined) return topic
    }
    return kafkaTopic
  }

  async #batch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload
    const topic = this.#logical(batch.topic)
    for (const message of batch.messages) {
      if (this.#closed || !payload.isRunning() || payload.isStale()) break
      const done = await this.#message(batch.topic, topic, batch.partition, message)
      if (!done) {
        this.#hold(batch.topic, batch.partition, message.offset)
        break
      }
      payload.resolveOffset(message.offset)
      await payload.heartbeat()
    }
    await payload.commitOffsetsIfNecessary()
  }

  /** Handles one message; false when it is held (its offset must not be resolved). */
  async #message(
    kafkaTopic: string,
    topic: string,
    partition: number,
    message: KafkaMessage,
  ): Promise<boolean> {
    const { agent } = this.#o
    const d = decideConsume(agent, this.#topics, topic, message.headers)
    switch (d.action) {
      case 'barrier': {
        // Messages of a partition are handled one after another: everything before it is settled.
        const group = this.#o.drain?.group
        const raw = message.headers?.[BARRIER_PARTITIONS_HEADER]
        const partitions = Number(Array.isArray(raw) ? raw[0]?.toString() : raw?.toString())
        if (group !== undefined && Number.isInteger(partitions) && partitions > partition) {
          passBarrier(agent, { topic, group, origin: d.origin, version: d.version, partition, partitions })
        }
        this.metrics.count('consume', topic, 'barrier')
        return true
      }
      case 'hold':
        this.metrics.count('consume', topic, 'held')
        return false
      case 'process': {
        const info = { kafkaTopic, topic, partition, route: d.route, msgId: d.msgId }
        try {
          await runDecided(d, () => this.#o.handler(message, info))
        } catch (err) {
          const reason = handlerFailure(err)
          if (reason === undefined) {
            this.metrics.count('consume', topic, 'held')
            return false
          }
          this.metrics.count('consume', topic, 'handler_error')
          await this.#deadLetter(kafkaTopic, topic, partition, message, undefined, reason)
          return true
        }
        this.metrics.count('consume', topic, 'processed')
        return true
      }
      case 'forward': {
        await this.#o.producer.send({
          topic: this.#template.format({ topic, unit: d.unit, key: '' }),
          acks: -1,
          messages: [
            {
              key: message.key,
              value: message.value,
              headers: { ...copyHeaders(message.headers, false), ...d.headers },
            },
          ],
        })
        this.metrics.count('consume', topic, 'forwarded')
        return true
      }
      case 'dead-letter':
        await this.#deadLetter(kafkaTopic, topic, partition, message, d.code, d.reason)
        return true
    }
  }

  async #deadLetter(
    kafkaTopic: string,
    topic: string,
    partition: number,
    message: KafkaMessage,
    code: string | undefined,
    reason: string,
  ): Promise<void> {
    const { deadLetterTopic, producer, agent } = this.#o
    if (deadLetterTopic === undefined) {
      agent.logger.error(
        { topic: kafkaTopic, partition, offset: message.offset, reason },
        'kafka dead letter',
      )
    } else {
      const headers: IHeaders = {
        ...copyHeaders(message.headers, true),
        [DEAD_REASON_HEADER]: reason,
        [DEAD_TOPIC_HEADER]: kafkaTopic,
        [DEAD_OFFSET_HEADER]: `${partition}:${message.offset}`,
      }
      if (code !== undefined) headers[DEAD_CODE_HEADER] = code
      await producer.send({
        topic: deadLetterTopic,
        acks: -1,
        messages: [{ key: message.key, value: message.value, headers }],
      })
    }
    this.metrics.count('consume', topic, 'dead_lettered')
  }

  /** Pauses the partition at the held offset (redelivered from there on resume). */
  #hold(topic: string, partition: number, offset: string): void {
    const { consumer } = this.#o
    consumer.pause([{ topic, partitions: [partition] }])
    consumer.seek({ topic, partition, offset })
    const key = `${topic}\u0000${partition}`
    const prev = this.#held.get(key)
    if (prev) clearTimeout(prev.timer)
    if (this.#closed) return
    const timer = setTimeout(() => this.#resume(key), this.#delayMs)
    timer.unref()
    this.#held.set(key, { topic, partition, timer })
  }

  #resume(key: string): void {
    const h = this.#held.get(key)
    if (h === undefined) return
    clearTimeout(h.timer)
    this.#held.delete(key)
    this.#o.consumer.resume([{ topic: h.topic, partitions: [h.partition] }])
  }
}

/**
 * Creates a unit-aware consumer and starts `run()` on the kafkajs consumer you subscribed.
 * @throws InvalidArgumentError for bad options.
 */
export async function createKafkaConsumer(options: KafkaConsumerOptions): Promise<KafkaConsumer> {
  const consumer = new KafkaConsumer(options)
  await consumer.start()
  return consumer
}
