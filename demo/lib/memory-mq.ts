/**
 * An in-process message channel for the embedded demo (`--mq memory`, the default), built on the same
 * driver-free core as appactive's amqplib and NATS adapters (`appactive/mq`): the producer decides with
 * `preparePublish` (owner unit, headers, fence hold, lease), the consumer with `decideWithHold` (process
 * in the route context, forward once, hold, dead-letter), one route id at a time (`KeyedSerial`).
 *
 * Its limit is its point: it lives in one process, so it delivers only to consumers in that process.
 * In the demo, the producer (orders) and the consumer (points) of a unit share a process, and a message
 * goes to the unit that owns the user, which is the unit that just wrote the order. A message addressed
 * to another unit (the user was moved between the order and its publish, or a consumer forwards it) has
 * no consumer here: it is kept in that unit's queue, counted `undeliverable` and logged. A broker
 * (`--mq rabbitmq`, `--mq nats`) carries it to the other unit's process.
 */
import type { RoutingAgent } from 'appactive/agent'
import {
  decideWithHold,
  HoldGate,
  handlerFailure,
  KeyedSerial,
  MqMetrics,
  orderingKey,
  preparePublish,
  type ResolvedHold,
  resolveHold,
  runDecided,
  TopicTable,
} from 'appactive/mq'

export interface MemoryMessage {
  readonly topic: string
  readonly key: string
  readonly body: Buffer
  readonly headers: Readonly<Record<string, string>>
}

type Deliver = (message: MemoryMessage) => void

/** The queues of one process: one per (topic, unit), delivered to at most one consumer each. */
export class MemoryBroker {
  readonly #queues = new Map<string, { deliver?: Deliver; backlog: MemoryMessage[] }>()
  readonly #onUndeliverable: (message: MemoryMessage, unit: string) => void

  constructor(onUndeliverable: (message: MemoryMessage, unit: string) => void = () => {}) {
    this.#onUndeliverable = onUndeliverable
  }

  #queue(topic: string, unit: string) {
    const name = `${unit}.${topic}`
    let q = this.#queues.get(name)
    if (q === undefined) {
      q = { backlog: [] }
      this.#queues.set(name, q)
    }
    return q
  }

  /** Queues `message` for `unit`; delivered on the next tick if that unit consumes here. */
  send(unit: string, message: MemoryMessage): void {
    const q = this.#queue(message.topic, unit)
    if (q.deliver === undefined) {
      q.backlog.push(message)
      this.#onUndeliverable(message, unit)
      return
    }
    const deliver = q.deliver
    queueMicrotask(() => deliver(message))
  }

  /** Consumes `unit`'s queue of `topic` (and its backlog). */
  consume(topic: string, unit: string, deliver: Deliver): () => void {
    const q = this.#queue(topic, unit)
    q.deliver = deliver
    for (const m of q.backlog.splice(0)) queueMicrotask(() => deliver(m))
    return () => {
      q.deliver = undefined
    }
  }

  /** Messages waiting for a consumer of `unit` that is not in this process. */
  backlog(topic: string, unit: string): number {
    return this.#queue(topic, unit).backlog.length
  }
}

export interface MemoryOptions {
  readonly agent: RoutingAgent
  readonly broker: MemoryBroker
  /** Topic types; unlisted topics are `normal` (delivered in the publishing unit). */
  readonly topics: ConstructorParameters<typeof TopicTable>[0]
}

/** A unit-aware producer on the in-process broker. */
export class MemoryProducer {
  readonly metrics: MqMetrics
  readonly #o: MemoryOptions
  readonly #topics: TopicTable
  readonly #hold: ResolvedHold = resolveHold(undefined, 10_000)
  readonly #gate: HoldGate

  constructor(options: MemoryOptions) {
    this.#o = options
    this.#topics = new TopicTable(options.topics)
    this.#gate = new HoldGate(options.agent, this.#hold.maxHeld)
    this.metrics = new MqMetrics(options.agent.metrics.registry)
  }

  /**
   * Publishes `body` on `topic` for the route id of the context (or `routeId`), to the owner's queue.
   * @throws FencedError after the hold, LeaseExpiredError, NoRouteIdError (the core's decisions).
   */
  async publish(
    topic: string,
    key: string,
    body: Buffer,
    options: { routeId?: string } = {},
  ): Promise<{ msgId: string; unit: string }> {
    const { agent, broker } = this.#o
    const d = await preparePublish(
      agent,
      this.#topics,
      this.#gate,
      this.#hold,
      { topic, routeId: options.routeId },
      this.metrics,
    )
    const unit = d.unit ?? agent.identity.unit
    broker.send(unit, { topic, key, body, headers: d.headers })
    this.metrics.count('publish', topic, 'published')
    return { msgId: d.msgId, unit }
  }

  close(): void {
    this.#gate.close()
  }
}

/** What the handler gets besides the message. */
export interface MemoryDeliveryInfo {
  readonly msgId: string | undefined
}

export interface MemoryConsumerOptions extends MemoryOptions {
  readonly topic: string
  /** Runs inside the message's route context. */
  readonly handler: (message: MemoryMessage, info: MemoryDeliveryInfo) => unknown
  /** Where a message that must not be processed goes (the caller logs it). */
  readonly deadLetter: (message: MemoryMessage, reason: string) => void
}

/** A unit-aware consumer of this unit's queue of one topic on the in-process broker. */
export class MemoryConsumer {
  readonly metrics: MqMetrics
  readonly #o: MemoryConsumerOptions
  readonly #topics: TopicTable
  readonly #hold: ResolvedHold = resolveHold(undefined, 30_000)
  readonly #gate: HoldGate
  readonly #serial = new KeyedSerial()
  readonly #stop = new AbortController()
  #cancel: (() => void) | undefined

  constructor(options: MemoryConsumerOptions) {
    this.#o = options
    this.#topics = new TopicTable(options.topics)
    this.#gate = new HoldGate(options.agent, Number.MAX_SAFE_INTEGER)
    this.metrics = new MqMetrics(options.agent.metrics.registry)
  }

  start(): void {
    const { broker, topic, agent } = this.#o
    this.#cancel = broker.consume(topic, agent.identity.unit, (m) => {
      void this.#serial.run(orderingKey(m.headers), () => this.#handle(m))
    })
  }

  /** Stops taking messages and waits for those being handled; held ones stay in memory and are lost. */
  async close(): Promise<void> {
    this.#cancel?.()
    this.#stop.abort()
    this.#gate.close()
    await this.#serial.idle()
  }

  async #handle(m: MemoryMessage): Promise<void> {
    const { agent, broker, topic } = this.#o
    const started = performance.now()
    for (;;) {
      const left = { ...this.#hold, maxMs: Math.max(0, this.#hold.maxMs - (performance.now() - started)) }
      const d = await decideWithHold(agent, this.#topics, topic, m.headers, this.#gate, left, {
        signal: this.#stop.signal,
        metrics: this.metrics,
      })
      if (this.#stop.signal.aborted) return
      switch (d.action) {
        case 'process':
          try {
            await runDecided(d, () => this.#o.handler(m, { msgId: d.msgId }))
          } catch (err) {
            const reason = handlerFailure(err)
            if (reason === undefined) {
              await this.#gate.wait(this.#hold.recheckMs, this.#stop.signal)
              continue
            }
            this.metrics.count('consume', topic, 'handler_error')
            this.metrics.count('consume', topic, 'dead_lettered')
            return this.#o.deadLetter(m, reason)
          }
          this.metrics.count('consume', topic, 'processed')
          return
        case 'forward':
          broker.send(d.unit, { ...m, headers: { ...m.headers, ...d.headers } })
          this.metrics.count('consume', topic, 'forwarded')
          return
        case 'dead-letter':
          this.metrics.count('consume', topic, 'dead_lettered')
          return this.#o.deadLetter(m, `${d.code}: ${d.reason}`)
        case 'barrier':
          return // no producer here publishes cut-over barriers
        case 'delay':
          // Held past the hold's bound: back of this unit's queue, decided again then.
          this.metrics.count('consume', topic, 'delayed')
          setTimeout(() => broker.send(agent.identity.unit, m), 1000).unref()
          return
      }
    }
  }
}
