/**
 * RabbitMQ (amqplib) failover (reference §A.3 "Failover (X lost)"). The failover target Y keeps a
 * standby copy of the lost unit X's messages: a **stream queue** `<topic>.standby.<X>` in Y's vhost,
 * bound `<X>.#` to the exchange `<topic>.standby.<X>`, which exchange federation (max-hops 1) feeds from
 * X's exchange `<topic>`. Federation copies rather than moves (X's own queue still gets every message),
 * and the binding travels upstream, so only X's unit messages cross.
 *
 * X's checkpointer records the publish time of the oldest message its consumer has not finished (from
 * the UUIDv7 message id) and the depth of the federation upstream queue (acknowledged in X, not yet
 * copied: the message RPO should X be lost now). On failover Y publishes a marker into the stream (the
 * loss point), then reads the stream from `x-stream-offset` = checkpoint time minus a margin through
 * the normal consumer decision. Messages after the marker that are older than the failover are late:
 * quarantined to `<topic>.appactive.late`. The driver is never imported: pass the channels you opened.
 */
import type { Channel, ConfirmChannel, ConsumeMessage } from 'amqplib'
import type { RoutingAgent } from '../../agent/index.js'
import { InvalidArgumentError } from '../../errors/index.js'
import type { AmqpDeliveryInfo } from './amqplib.js'
import { confirmed, publishProps } from './amqplib.js'
import {
  AddressTemplate,
  DEAD_CODE_HEADER,
  DEAD_REASON_HEADER,
  decideWithHold,
  HoldGate,
  type HoldOptions,
  handlerFailure,
  KeyedSerial,
  MqMetrics,
  newMessageId,
  orderingKey,
  type ResolvedHold,
  readMessageHeaders,
  resolveHold,
  runDecided,
  type TopicConfig,
  TopicTable,
} from './core.js'
import {
  type Checkpoint,
  Checkpointer,
  type CheckpointStore,
  FailoverMetrics,
  type FailoverReport,
  isLateMessage,
  LATE_FAILOVER_VERSION_HEADER,
  LATE_REASON_HEADER,
  lateDestination,
  messageTime,
  requireStrings,
} from './failover.js'

/** Marks the loss point in a standby stream (value: the failover's id); only on markers. */
export const FAILOVER_MARKER_HEADER = 'x-appactive-failover-marker'

// ---------------------------------------------------------------------------------------------------
// Standby copy (names, federation definitions, declarations in Y)

export interface AmqpStandbyNameOptions {
  /** The topic exchange, the same name in every unit's vhost. */
  readonly topic: string
  readonly lostUnit: string
  /** Routing key template of the producers; default `{unit}.{key}`. */
  readonly routingKey?: string
}

/** The names of X's standby copy in Y. */
export interface AmqpStandbyNames {
  /** The federated exchange in Y, `<topic>.standby.<X>`. */
  readonly exchange: string
  /** The stream queue in Y, `<topic>.standby.<X>`. */
  readonly stream: string
  /** The binding that selects X's unit messages, `<X>.#` (travels upstream to X). */
  readonly binding: string
  /** The quarantine of late messages, `<topic>.appactive.late` (exchange and queue). */
  readonly late: string
}

export function amqpStandbyNames(options: AmqpStandbyNameOptions): AmqpStandbyNames {
  requireStrings(options, ['topic', 'lostUnit'], 'amqpStandbyNames')
  const { topic, lostUnit } = options
  const template = new AddressTemplate(options.routingKey ?? '{unit}.{key}')
  const name = `${topic}.standby.${lostUnit}`
  return {
    exchange: name,
    stream: name,
    binding: template.format({ topic, unit: lostUnit, key: '#' }),
    late: lateDestination(topic),
  }
}

export interface AmqpStandbyFederationOptions extends AmqpStandbyNameOptions {
  /** AMQP URI of X's broker and vhost, as Y's broker reaches it (`amqp://user:pass@host/vhost`). */
  readonly upstreamUri: string
  /** Name of the upstream parameter and the policy; default `appactive-standby-<X>-<topic>`. */
  readonly name?: string
  /** Seconds between reconnect attempts of the link; default 1. */
  readonly reconnectDelayS?: number
}

/**
 * The runtime parameter and policy that make Y's standby exchange federated from X's topic exchange.
 * They cannot be set over AMQP: apply them to Y's vhost with `rabbitmqctl set_parameter` /
 * `set_policy` or the management HTTP API (see `docs/integrations/messaging.md#failover`).
 */
export function amqpStandbyFederation(options: AmqpStandbyFederationOptions): {
  readonly upstream: {
    readonly component: 'federation-upstream'
    readonly name: string
    readonly value: object
  }
  readonly policy: {
    readonly name: string
    readonly pattern: string
    readonly definition: object
    readonly applyTo: 'exchanges'
  }
} {
  requireStrings(options, ['upstreamUri'], 'amqpStandbyFederation')
  const names = amqpStandbyNames(options)
  const name = options.name ?? `appactive-standby-${options.lostUnit}-${options.topic}`
  return {
    upstream: {
      component: 'federation-upstream',
      name,
      value: {
        uri: options.upstreamUri,
        exchange: options.topic,
        // A pair needs max-hops 1: a message federated once is never sent on (no copies of copies).
        'max-hops': 1,
        // The upstream queue keeps a message until Y's broker confirmed it: the copy loses nothing.
        'ack-mode': 'on-confirm',
        'reconnect-delay': options.reconnectDelayS ?? 1,
      },
    },
    policy: {
      name,
      pattern: `^${names.exchange.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`,
      definition: { 'federation-upstream': name },
      applyTo: 'exchanges',
    },
  }
}

/**
 * The name of the federation upstream queue in X's vhost that holds messages not yet copied to Y:
 * `federation: <topic> -> <Y cluster name>:<Y vhost>:<standby exchange>` (RabbitMQ 3.x naming). Y's
 * cluster name is `connection.serverProperties.cluster_name` of a connection to Y.
 */
export function federationQueueName(options: {
  readonly topic: string
  readonly lostUnit: string
  readonly downstreamClusterName: string
  readonly downstreamVhost: string
}): string {
  const { exchange } = amqpStandbyNames(options)
  return `federation: ${options.topic} -> ${options.downstreamClusterName}:${options.downstreamVhost}:${exchange}`
}

export interface DeclareAmqpStandbyOptions extends AmqpStandbyNameOptions {
  /** Retention of the stream (`x-max-age`, e.g. `7D`); default none (size limits of the broker). */
  readonly maxAge?: string
  /** Retention by size (`x-max-length-bytes`). */
  readonly maxLengthBytes?: number
}

/** Declares X's standby copy in Y's vhost (call with a channel on Y): the exchange, the stream, the binding. */
export async function declareAmqpStandby(
  channel: Channel,
  options: DeclareAmqpStandbyOptions,
): Promise<AmqpStandbyNames> {
  const names = amqpStandbyNames(options)
  await channel.assertExchange(names.exchange, 'topic', { durable: true })
  await channel.assertQueue(names.stream, {
    durable: true,
    arguments: {
      'x-queue-type': 'stream',
      ...(options.maxAge === undefined ? {} : { 'x-max-age': options.maxAge }),
      ...(options.maxLengthBytes === undefined ? {} : { 'x-max-length-bytes': options.maxLengthBytes }),
    },
  })
  await channel.bindQueue(names.stream, names.exchange, names.binding)
  return names
}

// ---------------------------------------------------------------------------------------------------
// Checkpoints (run in X)

/** Messages in a queue (ready ones), or undefined when it does not exist; opens a channel of its own. */
export async function queueDepth(
  connection: { createChannel(): Promise<Channel> },
  queue: string,
): Promise<number | undefined> {
  const channel = await connection.createChannel()
  // A passive declare of a missing queue closes the channel with 404: that error is the answer.
  channel.on('error', () => undefined)
  try {
    return (await channel.checkQueue(queue)).messageCount
  } catch {
    return undefined
  } finally {
    await channel.close().catch(() => undefined)
  }
}

export interface AmqpCheckpointerOptions {
  readonly store: CheckpointStore
  readonly topic: string
  readonly unit: string
  /** This consumer process, when several consume the unit's queue; default `default`. */
  readonly member?: string
  /** X's agent, for the rule version and the logger. */
  readonly agent?: RoutingAgent
  /** Default 5,000 ms; 0 = only `flush()`. */
  readonly intervalMs?: number
  /** The messages not yet copied (e.g. `() => queueDepth(conn, federationQueueName(...))`). */
  readonly backlog?: () => Promise<number | undefined>
}

/** X's checkpointer: wrap the consumer's handler with `track` so it knows what is processed. */
export interface AmqpCheckpointer {
  readonly checkpointer: Checkpointer
  track<M extends ConsumeMessage>(
    handler: (message: M, info: AmqpDeliveryInfo) => unknown,
  ): (message: M, info: AmqpDeliveryInfo) => Promise<unknown>
  flush(): Promise<Checkpoint | undefined>
  close(): Promise<void>
}

/**
 * Saves the publish time below which X's consumer has finished every message (the oldest message in
 * its handler, else the newest it finished) and the copy backlog, every `intervalMs`, outside X.
 * Messages held by a fence never reach the handler, so keep the replay margin above the fence hold.
 */
export function createAmqpCheckpointer(options: AmqpCheckpointerOptions): AmqpCheckpointer {
  requireStrings(options, ['topic', 'unit'], 'createAmqpCheckpointer')
  const inflight = new Map<number, number>()
  let next = 0
  let newest: number | undefined
  const checkpointer = new Checkpointer({
    store: options.store,
    topic: options.topic,
    unit: options.unit,
    ...(options.member === undefined ? {} : { member: options.member }),
    ...(options.intervalMs === undefined ? {} : { intervalMs: options.intervalMs }),
    onError: (err) => options.agent?.logger.warn({ err, topic: options.topic }, 'amqp checkpoint failed'),
    async sample() {
      const time = inflight.size > 0 ? Math.min(...inflight.values()) : newest
      const backlog = await options.backlog?.()
      if (time === undefined && backlog === undefined) return undefined
      return {
        ...(time === undefined ? {} : { time }),
        ...(backlog === undefined ? {} : { backlog }),
        ...(options.agent?.version ? { ruleVersion: options.agent.version } : {}),
      }
    },
  })
  return {
    checkpointer,
    track(handler) {
      return async (message, info) => {
        const stamp = message.properties.timestamp
        const time =
          messageTime(info.msgId, typeof stamp === 'number' ? stamp * 1000 : undefined) ?? Date.now()
        const id = next++
        inflight.set(id, time)
        try {
          return await handler(message, info)
        } finally {
          inflight.delete(id)
          newest = Math.max(newest ?? time, time)
        }
      }
    },
    flush: () => checkpointer.flush(),
    close: () => checkpointer.close(),
  }
}

// ---------------------------------------------------------------------------------------------------
// Failover replay (run in Y)

export interface AmqpFailoverOptions {
  /** Y's agent, on a rule set that gives X's ranges away. */
  readonly agent: RoutingAgent
  /** A confirm channel on Y's vhost (the marker, forwards, quarantine and dead letters are confirmed). */
  readonly channel: ConfirmChannel
  /** The topic exchange in Y (it names the topic type and receives forwards). */
  readonly topic: string
  readonly lostUnit: string
  readonly store: CheckpointStore
  /** The handler of Y's normal consumer (use the inbox in it: a replay repeats messages). */
  readonly handler: (message: ConsumeMessage, info: AmqpDeliveryInfo) => unknown
  /** The standby stream; default `<topic>.standby.<X>`. */
  readonly stream?: string
  readonly routingKey?: string
  readonly topics?: TopicConfig | TopicTable
  /**
   * Start this long before the checkpoint time: clock skew between X's producers and Y's broker, the
   * stream's second resolution and chunk granularity. Default 5,000 ms.
   */
  readonly marginMs?: number
  /** Versions below this are late after the loss point; default the agent's version now. */
  readonly failoverVersion?: number
  /** Quarantine exchange (and queue bound `#`); default `<topic>.appactive.late`. */
  readonly lateExchange?: string
  /** Declare the quarantine exchange and queue; default true. */
  readonly ensureLate?: boolean
  /** Process late messages instead of quarantining them (idempotent handlers only); default false. */
  readonly processLate?: boolean
  /** Where dead letters go (reason headers); default: counted and dropped from the replay. */
  readonly deadLetterExchange?: string
  /** Unacked deliveries at once; default 16. */
  readonly prefetch?: number
  /** Hold of fenced keys (re-decided until the fence lifts; a replay has no delay queue). */
  readonly hold?: HoldOptions
}

export interface AmqpFailover {
  readonly report: FailoverReport
  readonly metrics: MqMetrics
  readonly failoverMetrics: FailoverMetrics
  /** Resolves when the replay reached the loss point marker and finished every message before it. */
  caughtUp(timeoutMs?: number): Promise<void>
  /** Stops consuming and waits for the messages being handled. */
  close(): Promise<void>
}

/**
 * Starts replaying X's standby stream in Y from X's last checkpoint time (minus the margin), through
 * the normal consumer decision, and reports the message RPO (the copy backlog at X's last checkpoint).
 * @throws InvalidArgumentError for bad options; the broker's error when the stream does not exist.
 */
export async function startAmqpFailover(options: AmqpFailoverOptions): Promise<AmqpFailover> {
  requireStrings(options, ['topic', 'lostUnit'], 'startAmqpFailover')
  if (typeof options.handler !== 'function')
    throw new InvalidArgumentError('startAmqpFailover needs a handler')
  const marginMs = options.marginMs ?? 5000
  if (!(Number.isFinite(marginMs) && marginMs >= 0)) {
    throw new InvalidArgumentError('marginMs must be a non-negative number', { marginMs })
  }
  const replay = new AmqpReplay(options, marginMs)
  await replay.start()
  return replay
}

class AmqpReplay implements AmqpFailover {
  readonly metrics: MqMetrics
  readonly failoverMetrics: FailoverMetrics
  report!: FailoverReport
  readonly #o: AmqpFailoverOptions
  readonly #marginMs: number
  readonly #topics: TopicTable
  readonly #template: AddressTemplate
  readonly #hold: ResolvedHold
  readonly #gate: HoldGate
  readonly #serial = new KeyedSerial()
  readonly #pending = new Set<Promise<void>>()
  readonly #stop = new AbortController()
  readonly #marker = newMessageId()
  readonly #failoverVersion: number
  readonly #late: string
  #stream = ''
  #passed = false
  #caughtUp: Promise<void>
  #reached!: () => void
  #tag: string | undefined
  #closed = false

  constructor(options: AmqpFailoverOptions, marginMs: number) {
    this.#o = options
    this.#marginMs = marginMs
    this.#topics =
      options.topics instanceof TopicTable
        ? options.topics
        : new TopicTable(options.topics ?? { [options.topic]: 'unit' })
    this.#template = new AddressTemplate(options.routingKey ?? '{unit}.{key}')
    // A replay has no delay queue: a fenced key is re-decided until its fence lifts.
    this.#hold = resolveHold(options.hold, 30_000)
    this.#gate = new HoldGate(options.agent, Number.MAX_SAFE_INTEGER)
    this.#failoverVersion = options.failoverVersion ?? options.agent.version
    this.#late = options.lateExchange ?? lateDestination(options.topic)
    this.metrics = new MqMetrics(options.agent.metrics.registry)
    this.failoverMetrics = new FailoverMetrics(options.agent.metrics.registry)
    this.#caughtUp = new Promise((resolve) => {
      this.#reached = resolve
    })
  }

  async start(): Promise<void> {
    const { agent, channel, topic, lostUnit, store } = this.#o
    this.#stream = this.#o.stream ?? amqpStandbyNames(this.#o).stream
    const checkpoint = await store.load(topic, lostUnit)
    const startTime = checkpoint?.time === undefined ? undefined : checkpoint.time - this.#marginMs
    const now = Date.now()
    this.report = {
      topic,
      lostUnit,
      unit: agent.identity.unit,
      standby: this.#stream,
      failoverVersion: this.#failoverVersion,
      checkpoint,
      ...(startTime === undefined ? {} : { startTime }),
      rpoMessages: checkpoint?.backlog,
      rpoBasis: checkpoint?.backlog === undefined ? 'unknown' : 'checkpoint-backlog',
      ...(checkpoint ? { checkpointAgeMs: now - checkpoint.at } : {}),
      at: now,
    }
    this.failoverMetrics.rpo(this.report)
    agent.logger.warn({ failover: this.report }, 'amqp failover: replaying the lost unit standby stream')

    channel.once('close', () => {
      this.#closed = true
      this.#stop.abort()
    })
    if (!this.#o.processLate && this.#o.ensureLate !== false) {
      await channel.assertExchange(this.#late, 'topic', { durable: true })
      await channel.assertQueue(this.#late, { durable: true })
      await channel.bindQueue(this.#late, this.#late, '#')
    }
    // The loss point: copies appended after this marker surfaced after the failover.
    await confirmed(channel, '', this.#stream, Buffer.alloc(0), {
      headers: { [FAILOVER_MARKER_HEADER]: this.#marker },
    })
    await channel.prefetch(this.#o.prefetch ?? 16)
    const offset =
      startTime === undefined ? 'first' : { '!': 'timestamp', value: Math.floor(startTime / 1000) }
    const { consumerTag } = await channel.consume(this.#stream, (msg) => this.#onMessage(msg), {
      noAck: false,
      arguments: { 'x-stream-offset': offset },
    })
    this.#tag = consumerTag
  }

  caughtUp(timeoutMs = 60_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`failover replay of ${this.#o.lostUnit} not caught up after ${timeoutMs} ms`)),
        timeoutMs,
      )
    })
    return Promise.race([this.#caughtUp, timeout]).finally(() => clearTimeout(timer))
  }

  async close(): Promise<void> {
    if (this.#tag !== undefined && !this.#closed)
      await this.#o.channel.cancel(this.#tag).catch(() => undefined)
    this.#tag = undefined
    this.#stop.abort()
    this.#gate.close()
    while (this.#pending.size > 0) await Promise.all([...this.#pending])
  }

  #onMessage(msg: ConsumeMessage | null): void {
    if (msg === null) return
    const headers = msg.properties.headers ?? {}
    const marker = headers[FAILOVER_MARKER_HEADER]
    if (marker !== undefined) {
      // Markers of earlier failovers are skipped; ours ends the replay part once all before it settle.
      if (String(marker) === this.#marker && !this.#passed) {
        this.#passed = true
        const before = [...this.#pending]
        void Promise.all(before).then(() => this.#reached())
      }
      this.#o.channel.ack(msg)
      return
    }
    const late = this.#passed && this.#isLate(headers)
    const task = this.#serial.run(orderingKey(headers), () =>
      late && !this.#o.processLate ? this.#quarantine(msg) : this.#handle(msg, late),
    )
    const tracked = task.catch((err) => this.#o.agent.logger.error({ err }, 'amqp failover replay failed'))
    this.#pending.add(tracked)
    void tracked.finally(() => this.#pending.delete(tracked))
  }

  #isLate(headers: Record<string, unknown>): boolean {
    const read = readMessageHeaders(headers)
    return isLateMessage(read.ok ? read.route.ruleVersion : undefined, this.#failoverVersion)
  }

  async #quarantine(msg: ConsumeMessage): Promise<void> {
    const { channel, topic, lostUnit } = this.#o
    const headers = msg.properties.headers ?? {}
    const version = readMessageHeaders(headers)
    const v = version.ok ? version.route.ruleVersion : undefined
    await confirmed(channel, this.#late, msg.fields.routingKey, msg.content, {
      ...publishProps(msg),
      headers: {
        ...withoutStreamHeaders(headers),
        [LATE_REASON_HEADER]: `copied after the failover of ${lostUnit} (v${v ?? '?'} < v${this.#failoverVersion})`,
        [LATE_FAILOVER_VERSION_HEADER]: String(this.#failoverVersion),
      },
    })
    if (this.#closed) return
    channel.ack(msg)
    this.failoverMetrics.late(topic, lostUnit, 'quarantined')
  }

  async #handle(msg: ConsumeMessage, late: boolean): Promise<void> {
    const { agent, channel, topic, lostUnit } = this.#o
    const headers = withoutStreamHeaders(msg.properties.headers ?? {})
    for (;;) {
      const d = await decideWithHold(agent, this.#topics, topic, headers, this.#gate, this.#hold, {
        signal: this.#stop.signal,
        metrics: this.metrics,
      })
      if (this.#closed || this.#stop.signal.aborted) return
      switch (d.action) {
        case 'delay':
          continue // still fenced: keep holding (the stream keeps the message; nothing to park)
        case 'process': {
          try {
            await runDecided(d, () => this.#o.handler(msg, { route: d.route, msgId: d.msgId }))
          } catch (err) {
            if (this.#closed) return
            const reason = handlerFailure(err)
            if (reason === undefined) {
              await this.#gate.wait(this.#hold.recheckMs, this.#stop.signal)
              continue
            }
            this.metrics.count('consume', topic, 'handler_error')
            return this.#deadLetter(msg, undefined, reason)
          }
          if (this.#closed) return
          channel.ack(msg)
          this.metrics.count('consume', topic, 'processed')
          if (late) this.failoverMetrics.late(topic, lostUnit, 'processed')
          return
        }
        case 'forward': {
          const key = this.#template.parse(msg.fields.routingKey, topic)?.key ?? msg.fields.routingKey
          await confirmed(channel, topic, this.#template.format({ topic, unit: d.unit, key }), msg.content, {
            ...publishProps(msg),
            headers: { ...headers, ...d.headers },
          })
          if (this.#closed) return
          channel.ack(msg)
          this.metrics.count('consume', topic, 'forwarded')
          return
        }
        case 'dead-letter':
          return this.#deadLetter(msg, d.code, d.reason)
        case 'barrier':
          // A cut-over barrier of the lost unit copied into the stream: nothing to replay.
          channel.ack(msg)
          return
      }
    }
  }

  async #deadLetter(msg: ConsumeMessage, code: string | undefined, reason: string): Promise<void> {
    const { channel, topic, deadLetterExchange } = this.#o
    if (deadLetterExchange !== undefined) {
      const headers: Record<string, unknown> = {
        ...withoutStreamHeaders(msg.properties.headers ?? {}),
        [DEAD_REASON_HEADER]: reason,
      }
      if (code !== undefined) headers[DEAD_CODE_HEADER] = code
      await confirmed(channel, deadLetterExchange, msg.fields.routingKey, msg.content, {
        ...publishProps(msg),
        headers,
      })
    }
    if (this.#closed) return
    channel.ack(msg) // a stream keeps it anyway; the ack only returns the consumer's credit
    this.metrics.count('consume', topic, 'dead_lettered')
  }
}

/** Headers without the ones the stream and federation add (`x-stream-offset`, `x-received-from`). */
function withoutStreamHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const { 'x-stream-offset': _o, 'x-received-from': _r, ...rest } = headers
  return rest
}
