/**
 * NATS JetStream failover (reference §A.3 "Failover (X lost)"). The lost unit X's stream `<topic>_X`
 * has a standby copy in the failover target Y: a **mirror** in Y's JetStream domain (same sequence
 * numbers, across a leaf node or cluster link). X's checkpointer saves its consumer's ack floor and its
 * stream's last sequence to a store outside X. On failover, Y reads the mirror from the ack floor + 1
 * through the normal consumer (Y now owns X's ranges, so messages are processed; the inbox absorbs
 * what X had processed after its last checkpoint) and reports the message RPO. Messages the mirror
 * copies after the loss point (X came back) are late: quarantined to `<topic>.appactive.late` by default.
 * No driver is imported at load: pass the clients you made.
 */
import type {
  AckPolicy,
  ConsumerInfo,
  DeliverPolicy,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  StorageType,
} from '@nats-io/jetstream'
import type { MsgHdrs } from '@nats-io/transport-node'
import type { RoutingAgent } from '../../agent/index.js'
import { isRouteHeader } from '../../context/index.js'
import { InvalidArgumentError } from '../../errors/index.js'
import { readMessageHeaders, type TopicConfig, type TopicTable } from './core.js'
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
  requireStrings,
  sequenceRpo,
} from './failover.js'
import { createNatsConsumer, type NatsConsumer, type NatsDeliveryInfo, type NatsHoldOptions } from './nats.js'

function isNotFound(err: unknown): boolean {
  return (err as { status?: unknown })?.status === 404
}

// ---------------------------------------------------------------------------------------------------
// Standby copy

export interface NatsStandbyOptions {
  /** The lost-unit stream to copy, `<topic>_X` in X's domain. */
  readonly stream: string
  /** X's JetStream domain (the mirror reads `$JS.<domain>.API`). */
  readonly domain: string
  /** The mirror's name in Y; default the same name as X's stream. */
  readonly name?: string
  /** Default `file`: the copy must survive a restart of Y. */
  readonly storage?: 'file' | 'memory'
  /** Keep copied messages this long; default as long as the stream limits allow. */
  readonly maxAgeMs?: number
}

/**
 * Creates the mirror of X's unit stream in Y (call it with Y's manager), or leaves an existing one.
 * @returns the mirror's name.
 */
export async function ensureNatsStandby(jsm: JetStreamManager, options: NatsStandbyOptions): Promise<string> {
  requireStrings(options, ['stream', 'domain'], 'ensureNatsStandby')
  const name = options.name ?? options.stream
  try {
    const info = await jsm.streams.info(name)
    if (info.config.mirror?.name !== options.stream) {
      throw new InvalidArgumentError(`stream ${name} exists and is not a mirror of ${options.stream}`)
    }
    return name
  } catch (err) {
    if (!isNotFound(err)) throw err
  }
  await jsm.streams.add({
    name,
    mirror: { name: options.stream, domain: options.domain },
    storage: (options.storage ?? 'file') as StorageType,
    ...(options.maxAgeMs === undefined ? {} : { max_age: Math.round(options.maxAgeMs * 1e6) }),
  })
  return name
}

/** How far the mirror has copied. */
export interface NatsStandbyState {
  /** The last sequence copied (0 when empty). */
  readonly copiedThrough: number
  readonly firstSeq: number
  /** Messages behind, as the mirror last heard from X (stale once X is unreachable). */
  readonly lag: number | undefined
  /** Ms since the mirror last heard from X; undefined when it never did. */
  readonly lastActiveMs: number | undefined
}

export async function natsStandbyState(jsm: JetStreamManager, mirror: string): Promise<NatsStandbyState> {
  const info = await jsm.streams.info(mirror)
  const active = info.mirror?.active
  return {
    copiedThrough: info.state.last_seq,
    firstSeq: info.state.first_seq,
    lag: info.mirror?.lag,
    lastActiveMs: active === undefined || active < 0 ? undefined : active / 1e6,
  }
}

// ---------------------------------------------------------------------------------------------------
// Checkpoints (run in X)

export interface NatsCheckpointerOptions {
  /** X's manager. */
  readonly jsm: JetStreamManager
  /** X's unit stream and the durable consumer whose ack floor is the progress. */
  readonly stream: string
  readonly consumer: string
  readonly store: CheckpointStore
  /** The topic and unit the checkpoint is saved under (what the failover replay loads). */
  readonly topic: string
  readonly unit: string
  /** X's agent, for the rule version and the logger. */
  readonly agent?: RoutingAgent
  /** Default 5,000 ms; 0 = only `flush()`. */
  readonly intervalMs?: number
}

/**
 * Saves X's consumer ack floor (`seq`) and X's stream last sequence (`head`, the acknowledged
 * publishes) every `intervalMs` to a store outside X.
 */
export function createNatsCheckpointer(options: NatsCheckpointerOptions): Checkpointer {
  requireStrings(options, ['stream', 'consumer', 'topic', 'unit'], 'createNatsCheckpointer')
  const { jsm, stream, consumer, agent } = options
  return new Checkpointer({
    store: options.store,
    topic: options.topic,
    unit: options.unit,
    ...(options.intervalMs === undefined ? {} : { intervalMs: options.intervalMs }),
    onError: (err) => agent?.logger.warn({ err, stream, consumer }, 'nats checkpoint failed'),
    async sample() {
      // Ack floor first, head second: a head read later can only be higher, never hide a publish.
      const c: ConsumerInfo = await jsm.consumers.info(stream, consumer)
      const s = await jsm.streams.info(stream)
      return {
        seq: c.ack_floor.stream_seq,
        head: s.state.last_seq,
        ...(agent?.version ? { ruleVersion: agent.version } : {}),
      }
    },
  })
}

// ---------------------------------------------------------------------------------------------------
// Failover replay (run in Y)

export interface NatsFailoverOptions {
  /** Y's agent, on a rule set that gives X's ranges away. */
  readonly agent: RoutingAgent
  /** Y's JetStream client and manager. */
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
  /** The topic (first subject tokens) and the lost unit; the checkpoint is loaded under them. */
  readonly topic: string
  readonly lostUnit: string
  /** The mirror in Y (see {@link ensureNatsStandby}). */
  readonly standby: string
  readonly store: CheckpointStore
  /** The handler of Y's normal consumer of the topic (use the inbox in it: replays repeat messages). */
  readonly handler: (message: JsMsg, info: NatsDeliveryInfo) => unknown
  /** The topic table of Y's consumers; default `{ [topic]: 'unit' }`. */
  readonly topics?: TopicConfig | TopicTable
  /** Subject template of the producers; default `{topic}.{unit}.{key}`. */
  readonly template?: string
  /** Durable consumer of the replay on the mirror; default `appactive-failover-<lostUnit>`. Reused if it exists. */
  readonly consumer?: string
  /** Versions below this are late after the loss point; default the agent's version now. */
  readonly failoverVersion?: number
  /** The loss point of a replay being resumed (its report's `copiedThrough`); default the mirror's last sequence now. */
  readonly copiedThrough?: number
  /** Where late messages go; default `<topic>.appactive.late`. */
  readonly lateSubject?: string
  /** Create a stream for `lateSubject` when none captures it; default true. */
  readonly ensureLateStream?: boolean
  /** Process late messages instead of quarantining them (idempotent handlers only); default false. */
  readonly processLate?: boolean
  readonly deadLetterSubject?: string
  readonly prefetch?: number
  readonly hold?: NatsHoldOptions
}

/** A running failover replay of one lost unit's topic. */
export interface NatsFailover {
  readonly report: FailoverReport
  /** The consumer reading the mirror; its `metrics` count processed / forwarded / dead-lettered. */
  readonly consumer: NatsConsumer
  readonly metrics: FailoverMetrics
  /**
   * Resolves when every message up to the loss point is settled (the replay consumer's ack floor
   * reached it). The replay keeps running afterwards to catch late messages.
   */
  caughtUp(timeoutMs?: number): Promise<void>
  /** Stops the replay. The durable consumer stays (a restart resumes it); delete it when done. */
  close(): Promise<void>
}

let headersFactory: Promise<() => MsgHdrs> | undefined
function natsHeaders(): Promise<() => MsgHdrs> {
  headersFactory ??= import('@nats-io/transport-node').then((m) => m.headers as () => MsgHdrs)
  return headersFactory
}

/** The `x-appactive-*` headers of a message for the core reader (names lower-cased). */
function routeHeaders(h: MsgHdrs | undefined): Record<string, string[]> | undefined {
  if (h === undefined) return undefined
  const out: Record<string, string[]> = {}
  for (const [name, values] of h) {
    const lower = name.toLowerCase()
    if (isRouteHeader(lower)) out[lower] = [...(out[lower] ?? []), ...values]
  }
  return out
}

/**
 * Starts replaying X's standby copy in Y from X's last checkpoint, and reports the message RPO.
 * Call it when X is declared lost, or from {@link onUnitEvacuated}.
 * @throws InvalidArgumentError for bad options; the client's error when the mirror does not exist.
 */
export async function startNatsFailover(options: NatsFailoverOptions): Promise<NatsFailover> {
  requireStrings(options, ['topic', 'lostUnit', 'standby'], 'startNatsFailover')
  if (typeof options.handler !== 'function')
    throw new InvalidArgumentError('startNatsFailover needs a handler')
  const { agent, js, jsm, topic, lostUnit, standby } = options
  const failoverVersion = options.failoverVersion ?? agent.version
  const name = options.consumer ?? `appactive-failover-${lostUnit}`
  const metrics = new FailoverMetrics(agent.metrics.registry)

  const checkpoint: Checkpoint | undefined = await options.store.load(topic, lostUnit)
  const state = await natsStandbyState(jsm, standby)
  const copiedThrough = options.copiedThrough ?? state.copiedThrough
  const startSeq = checkpoint?.seq !== undefined ? checkpoint.seq + 1 : Math.max(1, state.firstSeq)
  const rpo = sequenceRpo({ copiedThrough, mirrorLag: state.lag, checkpointHead: checkpoint?.head })
  const now = Date.now()
  const report: FailoverReport = {
    topic,
    lostUnit,
    unit: agent.identity.unit,
    standby,
    failoverVersion,
    checkpoint,
    startSeq,
    copiedThrough,
    knownHead: rpo.knownHead,
    rpoMessages: rpo.rpo,
    rpoBasis: rpo.basis,
    ...(checkpoint ? { checkpointAgeMs: now - checkpoint.at } : {}),
    at: now,
  }
  metrics.rpo(report)
  agent.logger.warn({ failover: report }, 'nats failover: replaying the lost unit standby copy')

  try {
    await jsm.consumers.info(standby, name)
  } catch (err) {
    if (!isNotFound(err)) throw err
    await jsm.consumers.add(standby, {
      durable_name: name,
      ack_policy: 'explicit' as AckPolicy,
      deliver_policy: 'by_start_sequence' as DeliverPolicy,
      opt_start_seq: startSeq,
      max_deliver: -1,
    })
  }

  const lateSubject = options.lateSubject ?? lateDestination(topic)
  if (!options.processLate && options.ensureLateStream !== false) await ensureLateStream(jsm, lateSubject)
  const make = await natsHeaders()

  const quarantine = async (msg: JsMsg, reason: string): Promise<void> => {
    const out = make()
    for (const [key, values] of msg.headers ?? []) {
      if (/^nats-/i.test(key)) continue
      for (const v of values) out.append(key, v)
    }
    out.set(LATE_REASON_HEADER, reason)
    out.set(LATE_FAILOVER_VERSION_HEADER, String(failoverVersion))
    const id = msg.headers?.get('Nats-Msg-Id')
    await js.publish(lateSubject, msg.data, {
      headers: out,
      msgID: id ? `${id}.late` : `${msg.info.stream}.${msg.seq}.late`,
    })
    metrics.late(topic, lostUnit, 'quarantined')
  }

  const consumer = await createNatsConsumer({
    agent,
    js,
    stream: standby,
    consumer: name,
    // A replay of the lost unit's copy is not this unit's consumer group: no part in cut-over drains.
    drain: false,
    topics: options.topics ?? { [topic]: 'unit' },
    ...(options.template === undefined ? {} : { template: options.template }),
    ...(options.deadLetterSubject === undefined ? {} : { deadLetterSubject: options.deadLetterSubject }),
    ...(options.prefetch === undefined ? {} : { prefetch: options.prefetch }),
    ...(options.hold === undefined ? {} : { hold: options.hold }),
    handler: async (msg, info) => {
      if (msg.seq > copiedThrough) {
        const read = readMessageHeaders(routeHeaders(msg.headers))
        const version = read.ok ? read.route.ruleVersion : undefined
        if (isLateMessage(version, failoverVersion)) {
          if (!options.processLate) {
            return quarantine(
              msg,
              `copied after the failover of ${lostUnit} (v${version ?? '?'} < v${failoverVersion})`,
            )
          }
          metrics.late(topic, lostUnit, 'processed')
        }
      }
      return options.handler(msg, info)
    },
  })

  return {
    report,
    consumer,
    metrics,
    async caughtUp(timeoutMs = 60_000) {
      const deadline = performance.now() + timeoutMs
      for (;;) {
        const info = await jsm.consumers.info(standby, name)
        if (info.ack_floor.stream_seq >= copiedThrough || startSeq > copiedThrough) return
        if (performance.now() > deadline) {
          throw new Error(
            `failover replay of ${lostUnit} not caught up after ${timeoutMs} ms ` +
              `(at ${info.ack_floor.stream_seq} of ${copiedThrough})`,
          )
        }
        await new Promise((r) => setTimeout(r, 50))
      }
    },
    close: () => consumer.close(),
  }
}

/** Makes sure a stream captures `subject` (a quarantine the bridge publishes to with PubAck). */
async function ensureLateStream(jsm: JetStreamManager, subject: string): Promise<void> {
  try {
    await jsm.streams.find(subject)
    return
  } catch (err) {
    if (!isNotFound(err) && !/no stream matches subject/i.test(String(err))) throw err
  }
  await jsm.streams.add({
    name: subject.replace(/[^A-Za-z0-9_-]/g, '_'),
    subjects: [subject],
    storage: 'file' as StorageType,
  })
}
