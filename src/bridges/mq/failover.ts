/**
 * The driver-free part of message failover (reference §A.3 "Failover (X lost)"): where the lost unit's
 * consumer had got to (checkpoints, kept outside that unit), the message RPO at loss, which replayed
 * messages are late, and the failover metrics. The per-client parts are `standby-nats.ts` (JetStream
 * mirror in the failover target) and `standby-amqp.ts` (stream queue fed by exchange federation).
 *
 * Vocabulary: X is the lost unit, Y the failover target that now owns X's ranges. The *standby copy*
 * is Y's copy of X's unit destination; the *loss point* is the last position of that copy when the
 * failover starts. Everything copied after the loss point surfaced late.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import type { RoutingAgent } from '../../agent/index.js'
import { InvalidArgumentError } from '../../errors/index.js'
import type { RuleSet } from '../../rules/index.js'
import type { InboxDialect } from './inbox.js'

/** @internal Throws when one of `names` is not a non-empty string option. */
export function requireStrings(options: object, names: readonly string[], what: string): void {
  for (const name of names) {
    const value = (options as Record<string, unknown> | undefined)?.[name]
    if (typeof value !== 'string' || value === '') throw new InvalidArgumentError(`${what} needs ${name}`)
  }
}

// ---------------------------------------------------------------------------------------------------
// Checkpoints

/**
 * How far the consumer of `topic` in `unit` has got, plus what the unit had accepted, at `at`.
 * NATS fills `seq` and `head`; RabbitMQ fills `time` and `backlog`.
 */
export interface Checkpoint {
  readonly topic: string
  /** The unit whose consumer this is (the one that may be lost). */
  readonly unit: string
  /** One consumer process of several (each writes its own row; readers combine them). Default `default`. */
  readonly member: string
  /** NATS: the consumer's ack floor, a stream sequence: every message at or below it was processed. */
  readonly seq?: number
  /**
   * RabbitMQ: a publish time (ms since epoch) such that every message published before it was
   * processed: the oldest message in the handler, else the newest one processed.
   */
  readonly time?: number
  /** NATS: the unit stream's last sequence, i.e. the acknowledged publishes so far. */
  readonly head?: number
  /** RabbitMQ: messages in the federation upstream queue (acknowledged in the unit, not yet copied). */
  readonly backlog?: number
  /** The rule-set version the unit ran. */
  readonly ruleVersion?: number
  /** When the checkpoint was taken, ms since epoch. */
  readonly at: number
}

/**
 * Where checkpoints are kept. It must live outside the unit it describes (a checkpoint lost with its
 * unit is no checkpoint): the failover target's database ({@link SqlCheckpointStore}), or the control
 * plane. `load` combines the rows of every member of the unit ({@link combineCheckpoints}).
 */
export interface CheckpointStore {
  save(checkpoint: Checkpoint): Promise<void>
  load(topic: string, unit: string): Promise<Checkpoint | undefined>
}

/**
 * One checkpoint for a unit from its members' rows: the lowest position (a replay from there misses no
 * member's unprocessed message), the highest head and backlog, the latest time taken.
 */
export function combineCheckpoints(rows: readonly Checkpoint[]): Checkpoint | undefined {
  if (rows.length === 0) return undefined
  if (rows.length === 1) return rows[0]
  const pick = (
    name: 'seq' | 'time' | 'head' | 'backlog' | 'ruleVersion',
    fn: (...v: number[]) => number,
  ) => {
    const values = rows.map((r) => r[name]).filter((v): v is number => v !== undefined)
    return values.length === 0 ? {} : { [name]: fn(...values) }
  }
  const first = rows[0]!
  return {
    topic: first.topic,
    unit: first.unit,
    member: rows.map((r) => r.member).join(','),
    ...pick('seq', Math.min),
    ...pick('time', Math.min),
    ...pick('head', Math.max),
    ...pick('backlog', Math.max),
    ...pick('ruleVersion', Math.min),
    at: Math.max(...rows.map((r) => r.at)),
  }
}

/** Checkpoints in this process's memory: tests, and one process holding both sides. */
export class MemoryCheckpointStore implements CheckpointStore {
  readonly #rows = new Map<string, Checkpoint>()

  async save(checkpoint: Checkpoint): Promise<void> {
    this.#rows.set(JSON.stringify([checkpoint.topic, checkpoint.unit, checkpoint.member]), checkpoint)
  }

  async load(topic: string, unit: string): Promise<Checkpoint | undefined> {
    return combineCheckpoints([...this.#rows.values()].filter((r) => r.topic === topic && r.unit === unit))
  }
}

/** Runs one parameterised statement; returns the rows of a SELECT. */
export interface CheckpointExecutor {
  query(
    sql: string,
    params: readonly unknown[],
  ): { rows: readonly Record<string, unknown>[] } | Promise<{ rows: readonly Record<string, unknown>[] }>
}

export const DEFAULT_CHECKPOINT_TABLE = 'appactive_mq_checkpoints'
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/

function checkpointTable(dialect: InboxDialect, table: string): string {
  if (!['postgres', 'mysql', 'sqlite'].includes(dialect)) {
    throw new InvalidArgumentError(`unknown checkpoint dialect ${JSON.stringify(dialect)}`, { dialect })
  }
  if (typeof table !== 'string' || !IDENTIFIER.test(table)) {
    throw new InvalidArgumentError(`invalid checkpoint table name ${JSON.stringify(table)}`, { table })
  }
  return table
}

/** `CREATE TABLE IF NOT EXISTS` for checkpoints: one row per (topic, unit, member), the checkpoint as JSON. */
export function checkpointTableSql(dialect: InboxDialect, table: string = DEFAULT_CHECKPOINT_TABLE): string {
  const t = checkpointTable(dialect, table)
  const text = dialect === 'sqlite' ? 'TEXT' : 'VARCHAR(255)'
  const body = dialect === 'mysql' ? 'LONGTEXT' : 'TEXT'
  return (
    `CREATE TABLE IF NOT EXISTS ${t} (topic ${text} NOT NULL, unit ${text} NOT NULL, ` +
    `member ${text} NOT NULL, data ${body} NOT NULL, PRIMARY KEY (topic, unit, member))`
  )
}

function placeholders(dialect: InboxDialect, n: number): string[] {
  return Array.from({ length: n }, (_, i) => (dialect === 'postgres' ? `$${i + 1}` : '?'))
}

/**
 * Checkpoints in a SQL table of the failover target's database (PostgreSQL, MySQL/MariaDB, SQLite),
 * written by the unit's checkpointer every few seconds over the cross-site link. Create the table with
 * {@link checkpointTableSql}. Broker-neutral on purpose: one store for NATS, RabbitMQ and Kafka, next
 * to the inbox table, and the same shape the control plane's store can take over.
 */
export class SqlCheckpointStore implements CheckpointStore {
  readonly #db: CheckpointExecutor
  readonly #upsert: string
  readonly #select: string

  constructor(options: { executor: CheckpointExecutor; dialect: InboxDialect; table?: string }) {
    const { dialect } = options
    const t = checkpointTable(dialect, options.table ?? DEFAULT_CHECKPOINT_TABLE)
    const [a, b, c, d] = placeholders(dialect, 4)
    this.#db = options.executor
    this.#upsert =
      `INSERT INTO ${t} (topic, unit, member, data) VALUES (${a}, ${b}, ${c}, ${d}) ` +
      (dialect === 'mysql'
        ? 'ON DUPLICATE KEY UPDATE data = VALUES(data)'
        : 'ON CONFLICT (topic, unit, member) DO UPDATE SET data = excluded.data')
    this.#select = `SELECT data FROM ${t} WHERE topic = ${a} AND unit = ${b}`
  }

  async save(checkpoint: Checkpoint): Promise<void> {
    const { topic, unit, member } = checkpoint
    await this.#db.query(this.#upsert, [topic, unit, member, JSON.stringify(checkpoint)])
  }

  async load(topic: string, unit: string): Promise<Checkpoint | undefined> {
    const { rows } = await this.#db.query(this.#select, [topic, unit])
    return combineCheckpoints(rows.map((r) => JSON.parse(String(r.data)) as Checkpoint))
  }
}

/** A checkpoint executor on a better-sqlite3 database. */
export function checkpointSqlite(db: {
  prepare(sql: string): { run(...p: unknown[]): unknown; all(...p: unknown[]): unknown[]; reader: boolean }
}): CheckpointExecutor {
  return {
    query(sql, params) {
      const stmt = db.prepare(sql)
      if (!stmt.reader) {
        stmt.run(...params)
        return { rows: [] }
      }
      return { rows: stmt.all(...params) as Record<string, unknown>[] }
    },
  }
}

/** A checkpoint executor on a pg `Pool` or `Client`. */
export function checkpointPg(client: {
  query(text: string, values: unknown[]): Promise<{ rows: Record<string, unknown>[] }>
}): CheckpointExecutor {
  return { query: (sql, params) => client.query(sql, [...params]) }
}

/** A checkpoint executor on a mysql2 promise pool or connection. */
export function checkpointMysql2(connection: {
  query(sql: string, values: unknown[]): Promise<unknown>
}): CheckpointExecutor {
  return {
    async query(sql, params) {
      const [rows] = (await connection.query(sql, [...params])) as [unknown]
      return { rows: Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [] }
    },
  }
}

/** What a checkpointer samples: the position part of a checkpoint. */
export type CheckpointSample = Omit<Checkpoint, 'topic' | 'unit' | 'member' | 'at'>

export interface CheckpointerOptions {
  readonly store: CheckpointStore
  readonly topic: string
  readonly unit: string
  readonly member?: string
  /** How often to save; default 5,000 ms. 0: only on `flush()`. */
  readonly intervalMs?: number
  /** Reads the position; `undefined` skips this round (nothing known yet). */
  readonly sample: () => Promise<CheckpointSample | undefined>
  /** Where a failed round is reported (it never throws from the timer). */
  readonly onError?: (err: unknown) => void
}

/** Saves a unit consumer's position every `intervalMs` to a store outside the unit. */
export class Checkpointer {
  readonly #o: CheckpointerOptions
  readonly #member: string
  #timer: NodeJS.Timeout | undefined
  #running: Promise<Checkpoint | undefined> | undefined
  #last: Checkpoint | undefined

  constructor(options: CheckpointerOptions) {
    if (options?.store === undefined || typeof options.sample !== 'function') {
      throw new InvalidArgumentError('a checkpointer needs a store and a sample function')
    }
    for (const name of ['topic', 'unit'] as const) {
      if (typeof options[name] !== 'string' || options[name] === '') {
        throw new InvalidArgumentError(`a checkpointer needs a ${name}`)
      }
    }
    const intervalMs = options.intervalMs ?? 5000
    if (!(Number.isFinite(intervalMs) && intervalMs >= 0)) {
      throw new InvalidArgumentError('checkpoint intervalMs must be a non-negative number', { intervalMs })
    }
    this.#o = { ...options, intervalMs }
    this.#member = options.member ?? 'default'
    if (intervalMs > 0) {
      this.#timer = setInterval(() => {
        this.flush().catch((err) => this.#o.onError?.(err))
      }, intervalMs)
      this.#timer.unref()
    }
  }

  /** The last checkpoint saved by this checkpointer. */
  get last(): Checkpoint | undefined {
    return this.#last
  }

  /** Samples and saves now (rounds never overlap). @throws the sample's or the store's error. */
  flush(): Promise<Checkpoint | undefined> {
    this.#running ??= this.#round().finally(() => {
      this.#running = undefined
    })
    return this.#running
  }

  async #round(): Promise<Checkpoint | undefined> {
    const sample = await this.#o.sample()
    if (sample === undefined) return undefined
    const checkpoint: Checkpoint = {
      ...sample,
      topic: this.#o.topic,
      unit: this.#o.unit,
      member: this.#member,
      at: Date.now(),
    }
    await this.#o.store.save(checkpoint)
    this.#last = checkpoint
    return checkpoint
  }

  /** Stops the timer and waits for a round in progress. The last checkpoint stays in the store. */
  async close(): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    await this.#running?.catch(() => undefined)
  }
}

// ---------------------------------------------------------------------------------------------------
// Message time

/**
 * The publish time (ms since epoch) a message carries: the time of its UUIDv7 message id (the bridge's
 * producers make one per message), else `fallback` (e.g. AMQP's `timestamp` property, in seconds × 1000).
 */
export function messageTime(msgId: string | undefined, fallback?: number): number | undefined {
  if (msgId !== undefined && /^[0-9a-f]{8}-[0-9a-f]{4}-7/i.test(msgId)) {
    return Number.parseInt(msgId.slice(0, 8) + msgId.slice(9, 13), 16)
  }
  return fallback
}

// ---------------------------------------------------------------------------------------------------
// RPO

/** How the message RPO of a failover was measured. */
export type RpoBasis =
  /** NATS: the unit stream's last sequence from the last checkpoint and the mirror's own lag. */
  | 'checkpoint-head'
  /** RabbitMQ: the federation upstream queue's depth at the last checkpoint. */
  | 'checkpoint-backlog'
  /** No checkpoint: the mirror's last reported lag only (a lower bound). */
  | 'mirror-lag'
  | 'unknown'

/**
 * Message RPO for a sequence-numbered copy (NATS mirror): acknowledged publishes in X not copied to Y.
 * X's head is the larger of the last checkpoint's head and what the mirror last heard (`copied + lag`);
 * publishes acknowledged after both are unknowable once X is gone, so this is a lower bound whose error
 * is at most one checkpoint interval of traffic.
 */
export function sequenceRpo(input: {
  readonly copiedThrough: number
  readonly mirrorLag?: number | undefined
  readonly checkpointHead?: number | undefined
}): { knownHead: number; rpo: number; basis: RpoBasis } {
  const fromMirror = input.copiedThrough + Math.max(0, input.mirrorLag ?? 0)
  const knownHead = Math.max(fromMirror, input.checkpointHead ?? 0)
  const basis: RpoBasis =
    input.checkpointHead !== undefined
      ? 'checkpoint-head'
      : input.mirrorLag !== undefined
        ? 'mirror-lag'
        : 'unknown'
  return { knownHead, rpo: knownHead - input.copiedThrough, basis }
}

/** What a failover replay reports when it starts. */
export interface FailoverReport {
  readonly topic: string
  readonly lostUnit: string
  /** The unit replaying (the failover target). */
  readonly unit: string
  /** The standby copy: the mirror stream (NATS) or stream queue (RabbitMQ). */
  readonly standby: string
  /** The rule-set version that gave the lost unit's ranges away; older messages after the loss point are late. */
  readonly failoverVersion: number
  /** The lost unit's last checkpoint; undefined when none was ever saved (the replay starts at the copy's start). */
  readonly checkpoint: Checkpoint | undefined
  /** Where the replay starts: a stream sequence (NATS) or a time in ms since epoch (RabbitMQ). */
  readonly startSeq?: number
  readonly startTime?: number
  /** NATS: the mirror's last sequence at failover (the loss point). */
  readonly copiedThrough?: number
  /** NATS: the lost unit's last known head sequence. */
  readonly knownHead?: number
  /** Acknowledged publishes in the lost unit that are not in the copy; undefined when unknown. */
  readonly rpoMessages: number | undefined
  readonly rpoBasis: RpoBasis
  /** Ms since the lost unit's last checkpoint, when there is one. */
  readonly checkpointAgeMs?: number
  readonly at: number
}

// ---------------------------------------------------------------------------------------------------
// Late messages

/** The default quarantine destination of late messages of `topic`. */
export function lateDestination(topic: string): string {
  return `${topic}.appactive.late`
}

/** Why a message was quarantined, on quarantined messages only. */
export const LATE_REASON_HEADER = 'x-appactive-late-reason'
/** The failover version a quarantined message was older than. */
export const LATE_FAILOVER_VERSION_HEADER = 'x-appactive-failover-version'

/**
 * True when a message that surfaced after the loss point is late: it carries no rule version, or one
 * older than the failover's. A message stamped at or after the failover version was published under
 * the new rules and goes through the normal decision.
 */
export function isLateMessage(ruleVersion: number | undefined, failoverVersion: number): boolean {
  return ruleVersion === undefined || ruleVersion < failoverVersion
}

/** True when `unit` owns no range and no label in `rules` (it was evacuated). */
export function unitEvacuated(rules: RuleSet, unit: string): boolean {
  return !rules.mapping.some(
    (m) => m.unit === unit && ((m.ranges?.length ?? 0) > 0 || (m.labels?.length ?? 0) > 0),
  )
}

/**
 * Calls `listener(version)` once, when the agent applies a rule set in which `lostUnit` owns nothing and
 * the agent's own unit owns something: the moment the failover target should replay the lost unit's
 * standby copy. Fires at once when the current rule set already says so. Returns an unsubscribe.
 */
export function onUnitEvacuated(
  agent: RoutingAgent,
  lostUnit: string,
  listener: (version: number) => void,
): () => void {
  let fired = false
  const check = () => {
    const rules = agent.router?.ruleSet
    if (fired || rules === undefined) return
    if (unitEvacuated(rules, lostUnit) && !unitEvacuated(rules, agent.identity.unit)) {
      fired = true
      agent.off('applied', check)
      listener(agent.version)
    }
  }
  agent.on('applied', check)
  check()
  return () => agent.off('applied', check)
}

// ---------------------------------------------------------------------------------------------------
// Metrics

const LATE_METRIC = 'appactive_mq_late_messages_total'
const RPO_METRIC = 'appactive_mq_failover_rpo_messages'

/** Failover metrics on prom-client (late messages by action, RPO per lost unit) and in memory. */
export class FailoverMetrics {
  readonly #late: Counter<'topic' | 'unit' | 'action'>
  readonly #rpo: Gauge<'topic' | 'unit'>
  readonly #counts = new Map<string, number>()

  constructor(registry: Registry) {
    this.#late =
      (registry.getSingleMetric(LATE_METRIC) as Counter<'topic' | 'unit' | 'action'> | undefined) ??
      new Counter({
        name: LATE_METRIC,
        help: 'Messages of a lost unit that surfaced after its failover, by action (quarantined, processed).',
        labelNames: ['topic', 'unit', 'action'],
        registers: [registry],
      })
    this.#rpo =
      (registry.getSingleMetric(RPO_METRIC) as Gauge<'topic' | 'unit'> | undefined) ??
      new Gauge({
        name: RPO_METRIC,
        help: 'Acknowledged publishes of a lost unit missing from the standby copy at failover.',
        labelNames: ['topic', 'unit'],
        registers: [registry],
      })
  }

  late(topic: string, lostUnit: string, action: 'quarantined' | 'processed'): void {
    this.#late.inc({ topic, unit: lostUnit, action })
    this.#counts.set(`late/${action}`, (this.#counts.get(`late/${action}`) ?? 0) + 1)
  }

  rpo(report: FailoverReport): void {
    if (report.rpoMessages !== undefined) {
      this.#rpo.set({ topic: report.topic, unit: report.lostUnit }, report.rpoMessages)
    }
  }

  /** Counts since this object was made, as `{ 'late/quarantined': 2 }`. */
  snapshot(): Readonly<Record<string, number>> {
    return Object.fromEntries(this.#counts)
  }
}
