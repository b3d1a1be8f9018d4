/**
 * NATS JetStream adapter of the message layer. A producer publishes `<topic>.<key>` to the subject
 * `<topic>.<ownerUnit>.<key>` (template `{topic}.{unit}.{key}`) with `Nats-Msg-Id` = the message id and
 * resolves on the PubAck; each unit's durable pull consumer filters `<topic>.<unit>.>` (one
 * `filter_subject`, server 2.9). The consumer decides per message with the shared core: process (ack),
 * forward once to the owner's subject (ack after the forward's PubAck), hold (never acked: `working()`
 * keeps it, past `hold.maxMs` it is `nak(delayMs)`ed), or dead-letter to `deadLetterSubject` (ack) or
 * `term()` without one. No driver is imported at load: pass the JetStream client you created; message
 * headers are built with `@nats-io/transport-node`'s `headers()`, loaded on first use.
 * One file like amqplib.ts: producer and consumer share the subject and header translation.
 */
import type { ConsumerMessages, JetStreamClient, JsMsg, PubAck } from '@nats-io/jetstream'
import type { MsgHdrs } from '@nats-io/transport-node'
import type { RoutingAgent } from '../../agent/index.js'
import { HOPS_HEADER, isRouteHeader, type RouteContext } from '../../context/index.js'
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
  MSG_ID_HEADER,
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

/** The subject a dead letter was delivered on, on dead letters only. */
export const DEAD_SUBJECT_HEADER = 'x-appactive-dead-subject'

const DEFAULT_TEMPLATE = '{topic}.{unit}.{key}'

let headersFactory: Promise<() => MsgHdrs> | undefined

/** `headers()` of the NATS client, imported on first use so that loading this module needs no driver. */
function natsHeaders(): Promise<() => MsgHdrs> {
  headersFactory ??= import('@nats-io/transport-node').then((m) => m.headers as () => MsgHdrs)
  return headersFactory
}

function subjectTemplate(template: string | undefined): AddressTemplate {
  const t = new AddressTemplate(template ?? DEFAULT_TEMPLATE)
  if (!t.template.includes('{topic}') || !t.template.includes('{key}')) {
    throw new InvalidArgumentError(
      `NATS subject template needs {topic}, {unit} and {key}, got ${JSON.stringify(t.template)}`,
    )
  }
  return t
}

/** The listed topic a logical subject `<topic>[.<key>]` belongs to (longest match), else its first token. */
function splitSubject(names: readonly string[], subject: string): { topic: string; key: string } {
  for (const name of names) {
    if (subject === name || subject.startsWith(`${name}.`)) {
      return { topic: name, key: subject.slice(name.length + 1) }
    }
  }
  const dot = subject.indexOf('.')
  return dot === -1
    ? { topic: subject, key: '' }
    : { topic: subject.slice(0, dot), key: subject.slice(dot + 1) }
}

/** The `x-appactive-*` headers of a delivery for the core: names lower-cased, repeated values kept. */
function routeHeaders(h: MsgHdrs | undefined): Record<string, string[]> | undefined {
  if (h === undefined) return undefined
  const out: Record<string, string[]> = {}
  for (const [name, values] of h) {
    if (!isRouteHeader(name)) continue // any case; only these are lower-cased and copied
    const lower = name.toLowerCase()
    const prev = out[lower]
    out[lower] = prev === undefined ? values.slice() : prev.concat(values)
  }
  return out
}

/** Copies headers, leaving out the reserved `Nats-*` ones (and the appactive ones unless `keepRoute`). */
function copyHeaders(
  make: () => MsgHdrs,
  from: MsgHdrs | Readonly<Record<string, string>> | undefined,
  keepRoute: boolean,
): MsgHdrs {
  const out = make()
  if (from === undefined) return out
  const entries: Iterable<readonly [string, string | readonly string[]]> =
    typeof (from as MsgHdrs).keys === 'function' && Symbol.iterator in from
      ? (from as MsgHdrs)
      : Object.entries(from as Record<string, string>)
  for (const [name, value] of entries) {
    if (/^nats-/i.test(name) || (!keepRoute && isRouteHeader(name))) continue
    for (const v of typeof value === 'string' ? [value] : value) out.append(name, v)
  }
  return out
}

/** Runs an ack-family call; a closed connection makes it throw, and the server redelivers anyway. */
function quietly(settle: () => void): void {
  try {
    settle()
  } catch {
    // The connection is gone: the message is redelivered after AckWait.
  }
}

// ---------------------------------------------------------------------------------------------------
// Producer

export interface NatsProducerOptions {
  readonly agent: RoutingAgent
  /** `jetstream(nc)` of `@nats-io/jetstream`. */
  readonly js: JetStreamClient
  /** Topic (first subject tokens) types; unlisted topics are `normal`, published unchanged. */
  readonly topics?: TopicConfig | TopicTable
  /** Subject of unit and center topics; default `{topic}.{unit}.{key}`. */
  readonly template?: string
  /** Fence hold of a publish; default 10 s, 1,000 messages. */
  readonly hold?: HoldOptions
}

export interface NatsPublishOptions {
  /** The route id; default: the current route context's. */
  readonly routeId?: string
  /** Keep a message id (a retry of the same message: JetStream drops the copy); default a new UUIDv7. */
  readonly msgId?: string
  /** More headers; `Nats-*` and `x-appactive-*` ones are replaced by the bridge's. */
  readonly headers?: MsgHdrs | Readonly<Record<string, string>>
  /** How long to wait for the PubAck, in ms; default the client's. */
  readonly timeoutMs?: number
}

/** A publish JetStream acknowledged. */
export interface NatsPublishResult {
  readonly msgId: string
  /** The destination unit; undefined on a `normal` topic. */
  readonly unit: string | undefined
  readonly subject: string
  readonly stream: string
  readonly seq: number
  /** True when the stream already held this message id (a retry): nothing new was stored. */
  readonly duplicate: boolean
}

export class NatsProducer {
  readonly metrics: MqMetrics
  readonly #agent: RoutingAgent
  readonly #js: JetStreamClient
  readonly #topics: TopicTable
  readonly #names: readonly string[]
  readonly #template: AddressTemplate
  readonly #hold: ResolvedHold
  readonly #gate: HoldGate
  readonly #barriers: BarrierSender

  constructor(options: NatsProducerOptions) {
    if (options?.agent === undefined || options.js === undefined) {
      throw new InvalidArgumentError('createNatsProducer needs an agent and a JetStream client')
    }
    this.#agent = options.agent
    this.#js = options.js
    this.#topics = topicTableOf(options.topics)
    this.#names = this.#topics.names
    this.#template = subjectTemplate(options.template)
    this.#hold = resolveHold(options.hold, 10_000)
    this.#gate = new HoldGate(this.#agent, this.#hold.maxHeld)
    this.metrics = new MqMetrics(this.#agent.metrics.registry)
    // Cut-over barriers go to `<topic>.<unit>.appactive-barrier`: the unit's stream captures them.
    this.#barriers = new BarrierSender(this.#agent, this.#topics, async (topic, unit, values) => {
      const headers = (await natsHeaders())()
      for (const [name, value] of Object.entries(values)) headers.set(name, value)
      const subject = this.#template.format({ topic, unit, key: BARRIER_KEY })
      await this.#js.publish(subject, new Uint8Array(0), { msgID: values[MSG_ID_HEADER], headers })
      this.metrics.count('publish', topic, 'barrier')
    })
  }

  /**
   * Publishes `data` on `subject` (`<topic>.<key>`), unit-addressed on unit and center topics, and
   * resolves on JetStream's PubAck.
   * @throws FencedError (after the hold), LeaseExpiredError, NoRouteIdError, InvalidArgumentError (a
   *   unit or center subject without a key); the client's error when no stream takes the message.
   */
  async publish(
    subject: string,
    data: Uint8Array | string,
    options: NatsPublishOptions = {},
  ): Promise<NatsPublishResult> {
    const { topic, key } = splitSubject(this.#names, subject)
    if (key === '' && this.#topics.typeOf(topic) !== 'normal') {
      throw new InvalidArgumentError(`subject ${JSON.stringify(subject)} needs a key after topic ${topic}`)
    }
    const d = await preparePublish(
      this.#agent,
      this.#topics,
      this.#gate,
      this.#hold,
      { topic, routeId: options.routeId, msgId: options.msgId },
      this.metrics,
    )
    const target = d.unit === undefined ? subject : this.#template.format({ topic, unit: d.unit, key })
    const headers = copyHeaders(await natsHeaders(), options.headers, false)
    for (const [name, value] of Object.entries(d.headers)) headers.set(name, value)
    let ack: PubAck
    try {
      ack = await this.#barriers.track(
        this.#js.publish(target, data, {
          msgID: d.msgId,
          headers,
          ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
        }),
      )
    } catch (err) {
      this.metrics.count('publish', topic, 'failed')
      throw err
    }
    this.metrics.count('publish', topic, 'published')
    return {
      msgId: d.msgId,
      unit: d.unit,
      subject: target,
      stream: ack.stream,
      seq: ack.seq,
      duplicate: ack.duplicate,
    }
  }

  /** Fails every held publish with APPACTIVE_FENCED. The connection stays yours to close. */
  close(): void {
    this.#gate.close()
    this.#barriers.close()
  }
}

/** Creates a unit-aware JetStream producer. @throws InvalidArgumentError for bad options. */
export function createNatsProducer(options: NatsProducerOptions): NatsProducer {
  return new NatsProducer(options)
}

// ---------------------------------------------------------------------------------------------------
// Consumer

/** What the handler gets besides the message. */
export interface NatsDeliveryInfo {
  readonly route: RouteContext
  readonly msgId: string | undefined
}

/** Consumer hold: the core's bounds plus the redelivery delay past `maxMs`. */
export interface NatsHoldOptions extends HoldOptions {
  /** Delay of the `nak` that parks a message held past `maxMs`, in ms; default 5,000. */
  readonly delayMs?: number
}

export interface NatsConsumerOptions {
  readonly agent: RoutingAgent
  readonly js: JetStreamClient
  readonly stream: string
  /**
   * A durable pull consumer of `stream` you created: `ack_policy: explicit`, one `filter_subject`
   * (`<topic>.<unit>.>`), `max_deliver: -1` (every `nak` of a hold counts as a delivery).
   */
  readonly consumer: string
  readonly topics?: TopicConfig | TopicTable
  /** Subject template of the producers; default `{topic}.{unit}.{key}`. */
  readonly template?: string
  /** Runs inside the message's route context; the message is acked after it resolves. */
  readonly handler: (message: JsMsg, info: NatsDeliveryInfo) => unknown
  /** Where dead letters go (reason headers, then ack); default `term()`. Must be a stream's subject. */
  readonly deadLetterSubject?: string
  /** Messages handled or held at once (and pulled per batch); default 16. */
  readonly prefetch?: number
  /** Consumer hold; default 30 s, re-decided every 250 ms and on each new rule set; nak delay 5 s. */
  readonly hold?: NatsHoldOptions
  /**
   * Take part in the cut-over's message drain (default true): the unit topics its filter covers are
   * declared for this consumer, and the barriers it passes are reported. False for a consumer that is
   * not the unit's live consumer group (a failover replay of another unit's copy).
   */
  readonly drain?: boolean
}

export class NatsConsumer {
  readonly metrics: MqMetrics
  readonly #o: NatsConsumerOptions
  readonly #topics: TopicTable
  readonly #names: readonly string[]
  readonly #template: AddressTemplate
  readonly #hold: ResolvedHold
  readonly #delayMs: number
  readonly #prefetch: number
  readonly #gate: HoldGate
  readonly #serial = new KeyedSerial()
  readonly #pending = new Set<Promise<void>>()
  /** Received, not settled, not in the handler: kept alive with `working()`. */
  readonly #waiting = new Set<JsMsg>()
  readonly #stop = new AbortController()
  #messages: ConsumerMessages | undefined
  #loop: Promise<void> | undefined
  #beat: NodeJS.Timeout | undefined
  #make: (() => MsgHdrs) | undefined
  readonly #undeclare: Array<() => void> = []

  constructor(options: NatsConsumerOptions) {
    if (options?.agent === undefined || options.js === undefined) {
      throw new InvalidArgumentError('createNatsConsumer needs an agent and a JetStream client')
    }
    for (const name of ['stream', 'consumer'] as const) {
      if (typeof options[name] !== 'string' || options[name] === '') {
        throw new InvalidArgumentError(`createNatsConsumer needs a ${name} name`)
      }
    }
    if (typeof options.handler !== 'function') {
      throw new InvalidArgumentError('createNatsConsumer needs a handler')
    }
    const prefetch = options.prefetch ?? 16
    if (!(Number.isInteger(prefetch) && prefetch > 0)) {
      throw new InvalidArgumentError('prefetch must be a positive integer', { prefetch })
    }
    const delayMs = options.hold?.delayMs ?? 5000
    if (!(Number.isFinite(delayMs) && delayMs >= 0)) {
      throw new InvalidArgumentError('hold.delayMs must be a non-negative number', { delayMs })
    }
    this.#o = options
    this.#topics = topicTableOf(options.topics)
    this.#names = this.#topics.names
    this.#template = subjectTemplate(options.template)
    this.#hold = resolveHold(options.hold, 30_000)
    this.#delayMs = delayMs
    this.#prefetch = prefetch
    this.#gate = new HoldGate(options.agent, Number.MAX_SAFE_INTEGER)
    this.metrics = new MqMetrics(options.agent.metrics.registry)
  }

  /** Looks the durable consumer up and starts pulling. */
  async start(): Promise<void> {
    const { js, stream, consumer } = this.#o
    this.#make = await natsHeaders()
    const c = await js.consumers.get(stream, consumer)
    const config = (await c.info(true)).config
    const ackWaitMs = (config.ack_wait ?? 30e9) / 1e6
    // The unit topics its filter covers take part in the cut-over's message drain (barriers awaited).
    const filters = [config.filter_subject, ...(config.filter_subjects ?? [])].filter(
      (f): f is string => typeof f === 'string' && f !== '',
    )
    for (const topic of this.#o.drain === false ? [] : this.#topics.unitTopics) {
      const covered = filters.some((f) => this.#address(f.replace(/>$/, BARRIER_KEY)).topic === topic)
      if (covered) this.#undeclare.push(this.#o.agent.messages.declareConsumer(topic, consumer))
    }
    // Queued and held messages are never acked: keep them from redelivery with `working()`.
    const keepAlive = () => {
      for (const m of this.#waiting) quietly(() => m.working())
    }
    this.#beat = setInterval(keepAlive, Math.max(100, ackWaitMs / 2))
    this.#beat.unref()
    this.#messages = await c.consume({ max_messages: this.#prefetch })
    this.#loop = this.#run(this.#messages)
  }

  /**
   * Stops pulling and waits for the messages being handled. Held messages stop waiting and are
   * `nak(delayMs)`ed, never acked. The connection stays yours to close.
   */
  async close(): Promise<void> {
    for (const undeclare of this.#undeclare.splice(0)) undeclare()
    this.#stop.abort()
    this.#gate.close()
    await this.#messages?.close()
    await this.#loop
    while (this.#pending.size > 0) await Promise.all([...this.#pending])
    clearInterval(this.#beat)
  }

  async #run(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const msg of messages) {
        this.#dispatch(msg)
        while (this.#pending.size >= this.#prefetch) await Promise.race(this.#pending)
      }
    } catch (err) {
      if (!this.#stop.signal.aborted) this.#o.agent.logger.error({ err }, 'nats consumer stopped')
    }
  }

  #dispatch(msg: JsMsg): void {
    const headers = routeHeaders(msg.headers)
    this.#waiting.add(msg)
    const barrier = readBarrier(headers)
    const task =
      barrier !== undefined && barrier !== 'malformed'
        ? this.#barrier(msg, barrier, [...this.#pending])
        : this.#serial.run(orderingKey(headers), () => this.#handle(msg, headers))
    // One reaction settles the bookkeeping (a catch + finally pair cost three promises per message).
    const settle = (): void => {
      this.#waiting.delete(msg)
      this.#pending.delete(tracked)
    }
    const tracked: Promise<void> = task.then(settle, (err: unknown) => {
      try {
        this.#o.agent.logger.error({ err, subject: msg.subject }, 'nats consumer failed; redelivering later')
        quietly(() => msg.nak(this.#delayMs))
      } finally {
        settle()
      }
    })
    this.#pending.add(tracked)
  }

  /** The topic and key of a delivered subject. */
  #address(subject: string): { topic: string; key: string } {
    for (const topic of this.#names) {
      const parsed = this.#template.parse(subject, topic)
      if (parsed !== undefined) return { topic, key: parsed.key }
    }
    return splitSubject(this.#names, subject)
  }

  /** A cut-over barrier: once every message before it is settled, report it and ack it. */
  async #barrier(
    msg: JsMsg,
    barrier: { version: number; origin: string },
    before: readonly Promise<void>[],
  ): Promise<void> {
    await Promise.all(before)
    const { topic } = this.#address(msg.subject)
    if (this.#o.drain !== false) passBarrier(this.#o.agent, { topic, group: this.#o.consumer, ...barrier })
    msg.ack()
    this.metrics.count('consume', topic, 'barrier')
  }

  async #handle(msg: JsMsg, headers: Record<string, string[]> | undefined): Promise<void> {
    const { agent, js } = this.#o
    const { topic, key } = this.#address(msg.subject)
    const started = performance.now()
    for (;;) {
      // Decided at once unless it must wait (the common case needs no hold loop and no await).
      const now = decideConsume(agent, this.#topics, topic, headers)
      const left = { ...this.#hold, maxMs: Math.max(0, this.#hold.maxMs - (performance.now() - started)) }
      const d =
        now.action !== 'hold'
          ? now
          : await decideWithHold(agent, this.#topics, topic, headers, this.#gate, left, {
              signal: this.#stop.signal,
              metrics: this.metrics,
            })
      switch (d.action) {
        case 'process': {
          this.#waiting.delete(msg)
          try {
            await runDecided(d, () => this.#o.handler(msg, { route: d.route, msgId: d.msgId }))
          } catch (err) {
            const reason = handlerFailure(err)
            if (reason === undefined) {
              // A fence or lease lapse the handler's own guard saw: hold, then decide again.
              this.#waiting.add(msg)
              await this.#gate.wait(this.#hold.recheckMs, this.#stop.signal)
              continue
            }
            this.metrics.count('consume', topic, 'handler_error')
            return this.#deadLetter(msg, topic, undefined, reason)
          }
          msg.ack()
          this.metrics.count('consume', topic, 'processed')
          return
        }
        case 'forward': {
          const subject = this.#template.format({ topic, unit: d.unit, key })
          const out = copyHeaders(this.#make!, msg.headers, false)
          for (const [name, value] of Object.entries(d.headers)) out.set(name, value)
          const ack = await js.publish(subject, msg.data, { msgID: d.msgId, headers: out })
          if (ack.duplicate && ack.stream === msg.info.stream && ack.seq === msg.seq) {
            // One stream holds every unit's subjects: the id collides with this very message, so
            // the copy gets an id of its own (still stable across redeliveries of this message).
            await js.publish(subject, msg.data, {
              msgID: `${d.msgId}.hop${d.headers[HOPS_HEADER]}`,
              headers: out,
            })
          }
          msg.ack()
          this.metrics.count('consume', topic, 'forwarded')
          return
        }
        case 'dead-letter':
          return this.#deadLetter(msg, topic, d.code, d.reason)
        case 'barrier':
          msg.ack() // taken apart on delivery (#dispatch); one that got here passes unreported
          return
        case 'delay': {
          msg.nak(this.#delayMs)
          this.metrics.count('consume', topic, 'delayed')
          return
        }
      }
    }
  }

  async #deadLetter(msg: JsMsg, topic: string, code: string | undefined, reason: string): Promise<void> {
    const { js, deadLetterSubject } = this.#o
    if (deadLetterSubject === undefined) {
      msg.term(reason)
    } else {
      const out = copyHeaders(this.#make!, msg.headers, true)
      out.set(DEAD_REASON_HEADER, reason)
      out.set(DEAD_SUBJECT_HEADER, msg.subject)
      if (code !== undefined) out.set(DEAD_CODE_HEADER, code)
      const id = msg.headers?.get('Nats-Msg-Id')
      await js.publish(deadLetterSubject, msg.data, {
        headers: out,
        msgID: id ? `${id}.dead` : `${msg.info.stream}.${msg.seq}.dead`,
      })
      msg.ack()
    }
    this.metrics.count('consume', topic, 'dead_lettered')
  }
}

/**
 * Creates and starts a unit-aware consumer of a durable JetStream pull consumer.
 * @throws InvalidArgumentError for bad options; the client's error when the consumer does not exist.
 */
export async function createNatsConsumer(options: NatsConsumerOptions): Promise<NatsConsumer> {
  const consumer = new NatsConsumer(options)
  await consumer.start()
  return consumer
}
