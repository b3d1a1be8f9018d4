/**
 * A recording in-memory fake of the kafkajs CLIENT surface the bridge uses (no Kafka broker exists on
 * this machine): `producer.connect/send/disconnect`; `consumer.connect/subscribe/run({ eachBatch,
 * eachBatchAutoResolve, autoCommit })/stop/pause/resume/paused/seek/commitOffsets/disconnect`; the
 * batch payload's `resolveOffset/heartbeat/commitOffsetsIfNecessary/isRunning/isStale`. Every call is
 * recorded in `kafka.calls`. Semantics kept from kafkajs 2.x: keys are hash-partitioned; the next fetch
 * starts at the last resolved offset (unresolved messages are fetched again); `seek` with autoCommit
 * commits the sought offset and marks the partition's batch stale; autoCommit commits resolved offsets
 * after each batch. Scripted faults: `rebalance()` revokes every assignment and redelivers from the last
 * committed offset (uncommitted resolutions and pauses are dropped); `crash(consumer)` stops a consumer
 * without committing. Each consumer is assigned every partition of its subscribed topics.
 */
import type { Consumer, ConsumerRunConfig, EachBatchPayload, IHeaders, KafkaMessage, Producer } from 'kafkajs'

export interface Call {
  readonly client: string
  readonly method: string
  readonly args: Record<string, unknown>
}

export interface StoredRecord {
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers: IHeaders
  readonly offset: string
  readonly timestamp: string
}

const tpKey = (topic: string, partition: number) => `${topic}\u0000${partition}`
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const buf = (v: Buffer | string | null | undefined): Buffer | null =>
  v === null || v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(v)

/** FNV-1a of the key: a stable hash partitioner (not Kafka's murmur2; only stability matters here). */
function hash(key: Buffer): number {
  let h = 0x811c9dc5
  for (const b of key) h = Math.imul(h ^ b, 0x01000193) >>> 0
  return h
}

export class FakeKafka {
  readonly calls: Call[] = []
  readonly partitions: number
  readonly maxBatch: number
  readonly #logs = new Map<string, StoredRecord[][]>()
  readonly #committed = new Map<string, number>()
  readonly #consumers = new Set<FakeConsumer>()
  #roundRobin = 0

  constructor(options: { partitions?: number; maxBatch?: number } = {}) {
    this.partitions = options.partitions ?? 2
    this.maxBatch = options.maxBatch ?? 100
  }

  record(client: string, method: string, args: Record<string, unknown> = {}): void {
    this.calls.push({ client, method, args })
  }

  /** The recorded calls of `method` (optionally of one client). */
  callsOf(method: string, client?: string): Call[] {
    return this.calls.filter((c) => c.method === method && (client === undefined || c.client === client))
  }

  /** The partition logs of `topic` (created empty on first use). */
  log(topic: string): StoredRecord[][] {
    let log = this.#logs.get(topic)
    if (log === undefined) {
      log = Array.from({ length: this.partitions }, () => [])
      this.#logs.set(topic, log)
    }
    return log
  }

  topics(): string[] {
    return [...this.#logs.keys()]
  }

  /** Every stored message of `topic`, partition by partition. */
  messages(topic: string): (StoredRecord & { partition: number })[] {
    return this.log(topic).flatMap((p, partition) => p.map((r) => ({ ...r, partition })))
  }

  append(
    topic: string,
    m: {
      key?: Buffer | string | null
      value: Buffer | string | null
      headers?: IHeaders
      partition?: number
    },
  ): { partition: number; offset: string } {
    const log = this.log(topic)
    const key = buf(m.key)
    const partition =
      m.partition ?? (key === null ? this.#roundRobin++ % this.partitions : hash(key) % this.partitions)
    const headers: IHeaders = {}
    for (const [name, v] of Object.entries(m.headers ?? {})) {
      if (v !== undefined) headers[name] = Array.isArray(v) ? v.map((x) => buf(x)!) : buf(v)!
    }
    const offset = String(log[partition]!.length)
    log[partition]!.push({ key, value: buf(m.value), headers, offset, timestamp: String(Date.now()) })
    return { partition, offset }
  }

  committed(group: string, topic: string, partition: number): number | undefined {
    return this.#committed.get(`${group}\u0000${tpKey(topic, partition)}`)
  }

  commit(group: string, client: string, topic: string, partition: number, offset: number, via: string): void {
    this.record(client, 'commitOffsets', { topic, partition, offset: String(offset), via })
    this.#committed.set(`${group}\u0000${tpKey(topic, partition)}`, offset)
  }

  producer(name = 'producer'): Producer {
    return new FakeProducer(this, name) as unknown as Producer
  }

  /** A consumer of `groupId`; use `.client` where a kafkajs `Consumer` is expected. */
  consumer(groupId: string, name = `consumer:${groupId}`): FakeConsumer {
    const c = new FakeConsumer(this, groupId, name)
    this.#consumers.add(c)
    return c
  }

  /** Scripted rebalance: every consumer loses its assignment and restarts from the committed offsets. */
  rebalance(): void {
    for (const c of this.#consumers) c.revoke()
  }

  /** Scripted crash: the consumer stops at once, committing nothing more. */
  crash(consumer: FakeConsumer): void {
    consumer.crash()
    this.#consumers.delete(consumer)
  }
}

class FakeProducer {
  readonly #kafka: FakeKafka
  readonly #name: string
  /** Errors the next sends fail with, in order. */
  readonly failures: Error[] = []

  constructor(kafka: FakeKafka, name: string) {
    this.#kafka = kafka
    this.#name = name
  }

  async connect(): Promise<void> {
    this.#kafka.record(this.#name, 'connect')
  }

  async disconnect(): Promise<void> {
    this.#kafka.record(this.#name, 'disconnect')
  }

  async send(record: {
    topic: string
    messages: { key?: Buffer | string | null; value: Buffer | string | null; headers?: IHeaders }[]
    acks?: number
    timeout?: number
  }) {
    await sleep(0)
    this.#kafka.record(this.#name, 'send', { ...record })
    const failure = this.failures.shift()
    if (failure) throw failure
    return record.messages.map((m) => {
      const { partition, offset } = this.#kafka.append(record.topic, m)
      return { topicName: record.topic, partition, errorCode: 0, baseOffset: offset }
    })
  }
}

export class FakeConsumer {
  readonly groupId: string
  readonly #kafka: FakeKafka
  readonly #name: string
  readonly #subscriptions: (string | RegExp)[] = []
  readonly #position = new Map<string, number>()
  readonly #resolved = new Map<string, number>()
  readonly #paused = new Set<string>()
  readonly #seeks = new Map<string, number>()
  #config: ConsumerRunConfig | undefined
  #running = false
  #crashed = false
  #generation = 0
  #loop: Promise<void> | undefined

  constructor(kafka: FakeKafka, groupId: string, name: string) {
    this.#kafka = kafka
    this.groupId = groupId
    this.#name = name
  }

  /** This fake typed as the kafkajs consumer. */
  get client(): Consumer {
    return this as unknown as Consumer
  }

  get #autoCommit(): boolean {
    return this.#config?.autoCommit ?? true
  }

  async connect(): Promise<void> {
    this.#kafka.record(this.#name, 'connect')
  }

  async subscribe(s: {
    topics?: (string | RegExp)[]
    topic?: string | RegExp
    fromBeginning?: boolean
  }): Promise<void> {
    this.#kafka.record(this.#name, 'subscribe', { ...s })
    this.#subscriptions.push(...(s.topics ?? (s.topic === undefined ? [] : [s.topic])))
    for (const t of this.#subscriptions) if (typeof t === 'string') this.#kafka.log(t)
  }

  async run(config: ConsumerRunConfig): Promise<void> {
    this.#kafka.record(this.#name, 'run', { eachBatchAutoResolve: config.eachBatchAutoResolve })
    this.#config = config
    this.#running = true
    this.#loop = this.#run()
  }

  async stop(): Promise<void> {
    this.#kafka.record(this.#name, 'stop')
    this.#running = false
    await this.#loop
  }

  async disconnect(): Promise<void> {
    this.#kafka.record(this.#name, 'disconnect')
    this.#running = false
    await this.#loop
  }

  pause(tps: { topic: string; partitions?: number[] }[]): void {
    this.#kafka.record(this.#name, 'pause', { topics: structuredClone(tps) })
    for (const tp of this.#expand(tps)) this.#paused.add(tp)
  }

  resume(tps: { topic: string; partitions?: number[] }[]): void {
    this.#kafka.record(this.#name, 'resume', { topics: structuredClone(tps) })
    for (const tp of this.#expand(tps)) this.#paused.delete(tp)
  }

  paused(): { topic: string; partitions: number[] }[] {
    const out = new Map<string, number[]>()
    for (const tp of this.#paused) {
      const [topic, p] = tp.split('\u0000') as [string, string]
      out.set(topic, [...(out.get(topic) ?? []), Number(p)])
    }
    return [...out].map(([topic, partitions]) => ({ topic, partitions }))
  }

  seek({ topic, partition, offset }: { topic: string; partition: number; offset: string }): void {
    this.#kafka.record(this.#name, 'seek', { topic, partition, offset })
    const tp = tpKey(topic, partition)
    this.#seeks.set(tp, Number(offset))
    // kafkajs: with autoCommit the sought offset is committed; without, it is resolved.
    if (this.#autoCommit)
      this.#kafka.commit(this.groupId, this.#name, topic, partition, Number(offset), 'seek')
    else this.#resolved.set(tp, Number(offset))
  }

  async commitOffsets(list: { topic: string; partition: number; offset: string }[]): Promise<void> {
    for (const o of list)
      this.#kafka.commit(this.groupId, this.#name, o.topic, o.partition, Number(o.offset), 'api')
  }

  revoke(): void {
    this.#kafka.record(this.#name, 'rebalance')
    this.#generation++
    this.#position.clear()
    this.#resolved.clear()
    this.#paused.clear()
    this.#seeks.clear()
  }

  crash(): void {
    this.#kafka.record(this.#name, 'crash')
    this.#crashed = true
    this.#running = false
  }

  #expand(tps: { topic: string; partitions?: number[] }[]): string[] {
    return tps.flatMap(({ topic, partitions }) =>
      (partitions ?? this.#kafka.log(topic).map((_, i) => i)).map((p) => tpKey(topic, p)),
    )
  }

  #assigned(): { topic: string; partition: number }[] {
    const topics = this.#kafka
      .topics()
      .filter((t) => this.#subscriptions.some((s) => (typeof s === 'string' ? s === t : s.test(t))))
    return topics.flatMap((topic) => this.#kafka.log(topic).map((_, partition) => ({ topic, partition })))
  }

  #commitResolved(topic: string, partition: number, via: string): void {
    if (this.#crashed) return
    const resolved = this.#resolved.get(tpKey(topic, partition))
    if (resolved !== undefined && resolved !== this.#kafka.committed(this.groupId, topic, partition)) {
      this.#kafka.commit(this.groupId, this.#name, topic, partition, resolved, via)
    }
  }

  async #run(): Promise<void> {
    const config = this.#config!
    while (this.#running) {
      let worked = false
      for (const { topic, partition } of this.#assigned()) {
        if (!this.#running) break
        const tp = tpKey(topic, partition)
        if (this.#paused.has(tp)) continue
        const start = this.#position.get(tp) ?? this.#kafka.committed(this.groupId, topic, partition) ?? 0
        const log = this.#kafka.log(topic)[partition]!
        const records = log.slice(start, start + this.#kafka.maxBatch)
        if (records.length === 0) continue
        worked = true
        const generation = this.#generation
        this.#seeks.delete(tp)
        const messages = records.map((r) => ({ ...r, attributes: 0 })) as KafkaMessage[]
        const payload: EachBatchPayload = {
          batch: {
            topic,
            partition,
            highWatermark: String(log.length),
            messages,
            isEmpty: () => messages.length === 0,
            firstOffset: () => messages[0]?.offset ?? null,
            lastOffset: () => messages.at(-1)!.offset,
            offsetLag: () => String(log.length - 1 - start - messages.length + 1),
            offsetLagLow: () => String(log.length - 1 - start),
          },
          resolveOffset: (offset) => {
            this.#kafka.record(this.#name, 'resolveOffset', { topic, partition, offset })
            if (generation === this.#generation && !this.#crashed) this.#resolved.set(tp, Number(offset) + 1)
          },
          heartbeat: async () => {
            this.#kafka.record(this.#name, 'heartbeat', { topic, partition })
          },
          pause: () => {
            this.pause([{ topic, partitions: [partition] }])
            return () => this.resume([{ topic, partitions: [partition] }])
          },
          commitOffsetsIfNecessary: async () => {
            if (generation === this.#generation && this.#autoCommit)
              this.#commitResolved(topic, partition, 'batch')
          },
          uncommittedOffsets: () => ({ topics: [] }),
          isRunning: () => this.#running && !this.#crashed,
          isStale: () => generation !== this.#generation || this.#seeks.has(tp),
        }
        try {
          await config.eachBatch!(payload)
          if (config.eachBatchAutoResolve ?? true) {
            if (generation === this.#generation) this.#resolved.set(tp, Number(messages.at(-1)!.offset) + 1)
          }
        } catch (err) {
          this.#kafka.record(this.#name, 'batchError', { topic, partition, error: String(err) })
          await sleep(5)
        }
        if (generation !== this.#generation || this.#crashed) continue
        const sought = this.#seeks.get(tp)
        this.#seeks.delete(tp)
        // The next fetch: a sought offset, else the last resolved one (unresolved messages come again).
        this.#position.set(tp, sought ?? this.#resolved.get(tp) ?? start)
        if (this.#autoCommit && sought === undefined) this.#commitResolved(topic, partition, 'auto')
      }
      if (!worked) await sleep(2)
    }
  }
}
