/**
 * The message side of the cut-over's drain step (reference messaging-and-drills §A.3): which unit topics
 * this process publishes to and consumes (per consumer group), and which barrier markers its consumers
 * passed. The control channel reports it; the control plane's drain waits until every consumer group of
 * a source unit passed a barrier from every live producer, on every partition.
 *
 * Also the drain permit: while a fence is up, the old owner still processes the messages for moving keys
 * that were published before the fence (they sit ahead of the barriers). Their guarded writes run under
 * a permit for the fence's version; any other write on a fenced key is refused as before.
 */
import { AsyncLocalStorage } from 'node:async_hooks'

/** A unit topic consumed by a consumer group (an amqplib queue, a NATS durable, a kafkajs group). */
export interface TopicGroup {
  readonly topic: string
  readonly group: string
}

/** A consumer passed a barrier: every message before it on that partition was settled. */
export interface BarrierSighting extends TopicGroup {
  /** The node id of the producer that published the barrier. */
  readonly origin: string
  /** The rule-set version (the fence) the barrier was published for. */
  readonly version: number
  /** The partition it was seen on, and how many the destination has (1 for queues and streams). */
  readonly partition: number
  readonly partitions: number
}

/** What the control channel reports. */
export interface MessageDrainState {
  readonly produces: readonly string[]
  readonly consumes: readonly TopicGroup[]
  readonly barriers: readonly BarrierSighting[]
}

/** Most barrier sightings kept (the newest versions win). */
export const MAX_BARRIER_SIGHTINGS = 4096
/** Most topics or groups a node declares. */
export const MAX_DECLARED = 256

export class MessageDrain {
  readonly #produces = new Map<string, number>()
  readonly #consumes = new Map<string, { group: TopicGroup; count: number }>()
  readonly #barriers = new Map<string, BarrierSighting>()
  readonly #changed: () => void

  constructor(onChange: () => void) {
    this.#changed = onChange
  }

  /** Declares unit topics this process publishes to; returns the undeclare function. */
  declareProducer(topics: readonly string[]): () => void {
    const added = topics.filter((t) => this.#produces.has(t) || this.#produces.size < MAX_DECLARED)
    for (const t of added) this.#produces.set(t, (this.#produces.get(t) ?? 0) + 1)
    if (added.length > 0) this.#changed()
    let done = false
    return () => {
      if (done) return
      done = true
      for (const t of added) {
        const n = (this.#produces.get(t) ?? 1) - 1
        if (n > 0) this.#produces.set(t, n)
        else this.#produces.delete(t)
      }
      if (added.length > 0) this.#changed()
    }
  }

  /** Declares a consumer group of a unit topic in this process; returns the undeclare function. */
  declareConsumer(topic: string, group: string): () => void {
    const key = `${topic}\n${group}`
    const entry = this.#consumes.get(key)
    if (entry !== undefined) entry.count++
    else if (this.#consumes.size < MAX_DECLARED)
      this.#consumes.set(key, { group: { topic, group }, count: 1 })
    else return () => {}
    this.#changed()
    let done = false
    return () => {
      if (done) return
      done = true
      const e = this.#consumes.get(key)
      if (e === undefined) return
      if (--e.count === 0) this.#consumes.delete(key)
      this.#changed()
    }
  }

  /** Records that a consumer passed a barrier (keeps the newest version per producer and partition). */
  passed(sighting: BarrierSighting): void {
    const key = `${sighting.topic}\n${sighting.group}\n${sighting.origin}\n${sighting.partition}`
    const prev = this.#barriers.get(key)
    if (prev !== undefined && prev.version >= sighting.version) return
    this.#barriers.delete(key)
    this.#barriers.set(key, { ...sighting })
    if (this.#barriers.size > MAX_BARRIER_SIGHTINGS) {
      let oldest: string | undefined
      let min = Number.POSITIVE_INFINITY
      for (const [k, s] of this.#barriers) if (s.version < min) [oldest, min] = [k, s.version]
      if (oldest !== undefined) this.#barriers.delete(oldest)
    }
    this.#changed()
  }

  state(): MessageDrainState {
    return {
      produces: [...this.#produces.keys()],
      consumes: [...this.#consumes.values()].map((e) => e.group),
      barriers: [...this.#barriers.values()],
    }
  }

  /** True when nothing was ever declared or seen (nothing to report). */
  get empty(): boolean {
    return this.#produces.size === 0 && this.#consumes.size === 0 && this.#barriers.size === 0
  }
}

// ---------------------------------------------------------------------------------------------------
// Drain permit

interface Permit {
  readonly routeId: string
  readonly version: number
}

const permits = new AsyncLocalStorage<Permit>()

/**
 * Runs `fn` with a drain permit: guarded writes for `routeId` are allowed while the rule set of
 * `version` fences it, provided this unit still owns it. Only the message layer grants it, for a
 * message published to this unit before the fence.
 */
export function runWithDrainPermit<T>(routeId: string, version: number, fn: () => T): T {
  return permits.run({ routeId, version }, fn)
}

/** True when the current async chain holds a drain permit for `routeId` under `version`. */
export function hasDrainPermit(routeId: string, version: number): boolean {
  const p = permits.getStore()
  return p !== undefined && p.routeId === routeId && p.version === version
}
