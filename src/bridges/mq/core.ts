/**
 * The driver-free core of the message layer (reference §A.3), shared by the amqplib, NATS and kafkajs
 * adapters: the topic-type table, unit-addressed destination templates, the message headers, the
 * producer decision (route → destination unit, or hold / fail), the consumer decision per message
 * (process / forward / hold / dead-letter), the bounded fence hold, and per-outcome metrics.
 * Adapters only translate these answers into their client's calls.
 */
import { randomBytes } from 'node:crypto'
import { Counter, type Registry } from 'prom-client'
import type { RoutingAgent } from '../../agent/index.js'
import {
  createRouteContext,
  currentRouteId,
  HOPS_HEADER,
  headerValues,
  isRouteHeader,
  ROUTE_ID_HEADER,
  type RouteContext,
  RULE_VERSION_HEADER,
  readRouteHeaders,
  UNIT_HEADER,
  writeRouteHeaders,
} from '../../context/index.js'
import {
  AppActiveError,
  type ErrorCode,
  FencedError,
  InvalidArgumentError,
  LeaseExpiredError,
  NoRouteIdError,
} from '../../errors/index.js'

// ---------------------------------------------------------------------------------------------------
// Topic types

/** How a topic is consumed, like the service types: by the owner of the route id, in the center, anywhere. */
export type TopicType = 'unit' | 'center' | 'normal'

/** One topic's settings. */
export interface TopicSettings {
  readonly type: TopicType
  /**
   * Publish even while the key is fenced (pure notifications that write nothing). Default false: a
   * message is a guarded write and is held, then fails with APPACTIVE_FENCED.
   */
  readonly allowDuringFence?: boolean
}

/** Topic name → type, or settings. Topics not listed are `normal` (unchanged behaviour). */
export type TopicConfig = Readonly<Record<string, TopicType | TopicSettings>>

const TOPIC_TYPES: ReadonlySet<string> = new Set(['unit', 'center', 'normal'])

/** The validated topic table. */
export class TopicTable {
  readonly #topics: ReadonlyMap<string, Required<TopicSettings>>

  /** @throws InvalidArgumentError listing every problem of the config (in `details.problems`). */
  constructor(config: TopicConfig = {}) {
    const problems: string[] = []
    const topics = new Map<string, Required<TopicSettings>>()
    if (typeof config !== 'object' || config === null || Array.isArray(config)) {
      throw new InvalidArgumentError('topics must be an object of topic name → type', {
        problems: ['topics: not an object'],
      })
    }
    for (const [name, value] of Object.entries(config)) {
      if (name === '') problems.push('topics: an empty topic name')
      const settings = typeof value === 'string' ? { type: value } : value
      if (typeof settings !== 'object' || settings === null) {
        problems.push(`topics.${name}: expected "unit", "center", "normal" or { type }, got ${typeof value}`)
        continue
      }
      const { type, allowDuringFence = false } = settings as { type?: unknown; allowDuringFence?: unknown }
      if (typeof type !== 'string' || !TOPIC_TYPES.has(type)) {
        problems.push(`topics.${name}: unknown topic type ${JSON.stringify(type)} (unit, center or normal)`)
        continue
      }
      if (typeof allowDuringFence !== 'boolean') {
        problems.push(`topics.${name}.allowDuringFence: must be a boolean`)
        continue
      }
      topics.set(name, { type: type as TopicType, allowDuringFence })
    }
    if (problems.length > 0) {
      throw new InvalidArgumentError(`invalid topic config: ${problems.join('; ')}`, { problems })
    }
    this.#topics = topics
  }

  /** The listed topic names, longest first (for adapters that find a topic by subject prefix, like NATS). */
  get names(): readonly string[] {
    return [...this.#topics.keys()].sort((a, b) => b.length - a.length || (a < b ? -1 : 1))
  }

  /** The settings of `topic`; `normal` when it is not listed. */
  get(topic: string): Required<TopicSettings> {
    return this.#topics.get(topic) ?? NORMAL
  }

  typeOf(topic: string): TopicType {
    return this.get(topic).type
  }
}

const NORMAL: Required<TopicSettings> = Object.freeze({ type: 'normal', allowDuringFence: false })

// ---------------------------------------------------------------------------------------------------
// Destination templates

/** The parts of a unit-addressed destination name. */
export interface AddressParts {
  readonly topic: string
  readonly unit: string
  readonly key: string
}

/**
 * A destination name template with `{topic}`, `{unit}` and `{key}` placeholders: amqplib routing keys
 * `{unit}.{key}`, NATS subjects `{topic}.{unit}.{key}`, kafkajs topics `{topic}.{unit}`.
 */
export class AddressTemplate {
  readonly template: string
  readonly #pieces: readonly string[]

  /** @throws InvalidArgumentError when the template has no `{unit}` or an unknown placeholder. */
  constructor(template: string) {
    if (typeof template !== 'string' || !template.includes('{unit}')) {
      throw new InvalidArgumentError(
        `destination template must contain {unit}, got ${JSON.stringify(template)}`,
      )
    }
    const unknown = template.match(/\{(?!topic\}|unit\}|key\})[^}]*\}/)
    if (unknown) throw new InvalidArgumentError(`destination template: unknown placeholder ${unknown[0]}`)
    this.template = template
    this.#pieces = template.split(/(\{topic\}|\{unit\}|\{key\})/)
  }

  format(parts: AddressParts): string {
    let out = ''
    for (const piece of this.#pieces) {
      if (piece === '{topic}') out += parts.topic
      else if (piece === '{unit}') out += parts.unit
      else if (piece === '{key}') out += parts.key
      else out += piece
    }
    return out
  }

  /** The unit and key a name was formatted with, for `topic`; undefined when it does not match. */
  parse(name: string, topic: string): { unit: string; key: string } | undefined {
    let pattern = '^'
    for (const piece of this.#pieces) {
      if (piece === '{topic}') pattern += escapeRegExp(topic)
      else if (piece === '{unit}') pattern += '(?<unit>[^.]+)'
      else if (piece === '{key}') pattern += '(?<key>.*)'
      else pattern += escapeRegExp(piece)
    }
    const m = new RegExp(`${pattern}$`, 's').exec(name)
    if (!m?.groups) return undefined
    return { unit: m.groups.unit ?? '', key: m.groups.key ?? '' }
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

// ---------------------------------------------------------------------------------------------------
// Headers

/** The unit the message was published in. */
export const ORIGIN_UNIT_HEADER = 'x-appactive-origin-unit'
/** A unique message id (UUIDv7), kept across forwarding; also sent as `Nats-Msg-Id` on JetStream. */
export const MSG_ID_HEADER = 'x-appactive-msg-id'
/** Why a message was dead-lettered (text), on dead letters only. */
export const DEAD_REASON_HEADER = 'x-appactive-dead-reason'
/** The DESIGN §3 code a message was dead-lettered with, on dead letters only. */
export const DEAD_CODE_HEADER = 'x-appactive-dead-code'

/** Largest value of any `x-appactive-*` message header; a longer one is malformed. */
export const MAX_HEADER_VALUE_LENGTH = 1024
const MSG_ID = /^[\x21-\x7E]{1,128}$/

/** A new message id: a UUIDv7 (time-ordered, random tail). */
export function newMessageId(): string {
  const b = randomBytes(16)
  const ms = Date.now()
  b.writeUIntBE(ms, 0, 6)
  b[6] = (b[6]! & 0x0f) | 0x70
  b[8] = (b[8]! & 0x3f) | 0x80
  const h = b.toString('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

/** The appactive headers a message carries (all values strings). */
export interface MessageRoute {
  readonly routeId?: string | undefined
  /** Owner unit computed at publish (or the forwarding target). */
  readonly unit?: string | undefined
  readonly originUnit?: string | undefined
  readonly ruleVersion?: number | undefined
  readonly hops: number
  readonly msgId: string
}

/**
 * The appactive headers for a message as a plain record. Route id, unit, version and hops use the hop
 * codecs of `appactive/context`; the origin unit is encoded exactly like the unit.
 */
export function messageHeaders(route: MessageRoute): Record<string, string> {
  const out: Record<string, string> = {}
  const set = (name: string, value: string) => {
    out[name] = value
  }
  writeRouteHeaders(route, set)
  // The origin unit travels with the unit codec: write it as a unit, under its own name.
  writeRouteHeaders({ unit: route.originUnit }, (name, value) => {
    if (name === UNIT_HEADER) out[ORIGIN_UNIT_HEADER] = value
  })
  if (MSG_ID.test(route.msgId)) out[MSG_ID_HEADER] = route.msgId
  return out
}

/** Message headers as adapters hand them in: node-style records (amqplib, kafkajs) or a getter (NATS). */
export type MessageHeaderSource =
  | Readonly<Record<string, unknown>>
  | { get(name: string): string | null | undefined }

/** What a consumer read from a message; `malformed` names the first bad appactive header. */
export type ReadMessage =
  | { readonly ok: true; readonly route: Omit<MessageRoute, 'msgId'> & { readonly msgId?: string } }
  | { readonly ok: false; readonly malformed: string }

/**
 * Normalizes a record of client header values (strings, Buffers, numbers, arrays) to strings; a value of
 * any other type (objects, booleans...) is kept as a marker so that a present-but-bad header is seen.
 */
function normalize(source: MessageHeaderSource): Record<string, string | string[]> | MessageHeaderSource {
  if (typeof (source as { get?: unknown }).get === 'function') return source
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(source as Record<string, unknown>)) {
    const lower = name.toLowerCase()
    if (!isRouteHeader(lower)) continue
    const text = (v: unknown): string =>
      typeof v === 'string'
        ? v
        : Buffer.isBuffer(v) || v instanceof Uint8Array
          ? Buffer.from(v).toString('utf8')
          : typeof v === 'number' && Number.isFinite(v)
            ? String(v)
            : '\u0000' // malformed marker: never a valid header value
    out[lower] = Array.isArray(value) ? value.map(text) : text(value)
  }
  return out
}

const READ_HEADERS = [ROUTE_ID_HEADER, UNIT_HEADER, RULE_VERSION_HEADER, HOPS_HEADER, ORIGIN_UNIT_HEADER]

/**
 * Reads the appactive headers of one message. A header that is present but malformed, repeated,
 * oversized or of the wrong type makes the whole message malformed (it is dead-lettered, never guessed).
 */
export function readMessageHeaders(source: MessageHeaderSource | undefined): ReadMessage {
  if (source === undefined || source === null) return { ok: true, route: { hops: 0 } }
  const headers = normalize(source) as Parameters<typeof readRouteHeaders>[0]
  for (const name of [...READ_HEADERS, MSG_ID_HEADER]) {
    const values = headerValues(headers, name)
    if (values.length > 1 || values.some((v) => v.length > MAX_HEADER_VALUE_LENGTH)) {
      return { ok: false, malformed: name }
    }
  }
  const hop = readRouteHeaders(headers)
  const present = (name: string) => headerValues(headers, name).length > 0
  if (present(ROUTE_ID_HEADER) && hop.routeId === undefined) return { ok: false, malformed: ROUTE_ID_HEADER }
  if (present(UNIT_HEADER) && hop.unit === undefined) return { ok: false, malformed: UNIT_HEADER }
  if (present(RULE_VERSION_HEADER) && hop.ruleVersion === undefined) {
    return { ok: false, malformed: RULE_VERSION_HEADER }
  }
  if (present(HOPS_HEADER) && headerValues(headers, HOPS_HEADER)[0]!.trim() !== String(hop.hops)) {
    return { ok: false, malformed: HOPS_HEADER }
  }
  let originUnit: string | undefined
  if (present(ORIGIN_UNIT_HEADER)) {
    const value = headerValues(headers, ORIGIN_UNIT_HEADER)[0]!
    // Read with the unit codec, under the unit's name.
    originUnit = readRouteHeaders({ [UNIT_HEADER]: value }).unit
    if (originUnit === undefined) return { ok: false, malformed: ORIGIN_UNIT_HEADER }
  }
  let msgId: string | undefined
  if (present(MSG_ID_HEADER)) {
    msgId = headerValues(headers, MSG_ID_HEADER)[0]!.trim()
    if (!MSG_ID.test(msgId)) return { ok: false, malformed: MSG_ID_HEADER }
  }
  return {
    ok: true,
    route: {
      routeId: hop.routeId,
      unit: hop.unit,
      originUnit,
      ruleVersion: hop.ruleVersion,
      hops: hop.hops,
      ...(msgId === undefined ? {} : { msgId }),
    },
  }
}

// ---------------------------------------------------------------------------------------------------
// Producer decision

/** What a producer asks to publish. */
export interface PublishRequest {
  readonly topic: string
  /** The route id; default: the current route context's. */
  readonly routeId?: string | undefined
  /** Keep a message id (a retry of the same message); default: a new UUIDv7. */
  readonly msgId?: string | undefined
}

/** The producer decision. */
export type PublishDecision =
  | {
      readonly action: 'send'
      readonly type: TopicType
      /** The destination unit; undefined for `normal` topics (destination unchanged). */
      readonly unit: string | undefined
      readonly msgId: string
      /** The appactive headers to set. */
      readonly headers: Readonly<Record<string, string>>
    }
  | { readonly action: 'hold'; readonly routeId: string }
  | { readonly action: 'fail'; readonly error: AppActiveError }

/** Decides one publish with the rule set in force. Never throws. */
export function decidePublish(agent: RoutingAgent, topics: TopicTable, req: PublishRequest): PublishDecision {
  const settings = topics.get(req.topic)
  const routeId = req.routeId ?? currentRouteId()
  const msgId = req.msgId ?? newMessageId()
  if (!MSG_ID.test(msgId)) {
    return { action: 'fail', error: new InvalidArgumentError(`message id must be 1..128 visible ASCII`) }
  }
  const origin = agent.identity.unit
  const router = agent.router
  const base = { routeId, originUnit: origin, ruleVersion: router?.version, hops: 0, msgId }
  if (settings.type === 'normal') {
    return { action: 'send', type: 'normal', unit: undefined, msgId, headers: messageHeaders(base) }
  }
  try {
    agent.assertLease()
    if (router === undefined) throw new LeaseExpiredError({ reason: 'no rule set applied yet' })
  } catch (err) {
    return { action: 'fail', error: err as AppActiveError }
  }
  if (settings.type === 'center') {
    const unit = router.centerUnit
    return { action: 'send', type: 'center', unit, msgId, headers: messageHeaders({ ...base, unit }) }
  }
  const decision = agent.route(routeId)
  if (decision.unit === null) {
    return {
      action: 'fail',
      error: new NoRouteIdError(
        routeId === undefined
          ? `unit topic ${req.topic} needs a route id and the fallback rejects a missing one`
          : `route id ${routeId} maps to no unit (${decision.reason}) and the fallback rejects it`,
        { topic: req.topic, reason: decision.reason },
      ),
    }
  }
  if (decision.fenced && !settings.allowDuringFence) return { action: 'hold', routeId: routeId ?? '' }
  const unit = decision.unit
  return { action: 'send', type: 'unit', unit, msgId, headers: messageHeaders({ ...base, unit }) }
}

// ---------------------------------------------------------------------------------------------------
// Consumer decision

/** The consumer decision for one message. */
export type ConsumeDecision =
  | { readonly action: 'process'; readonly route: RouteContext; readonly msgId: string | undefined }
  | {
      readonly action: 'forward'
      /** The unit whose destination the message goes to, once. */
      readonly unit: string
      readonly msgId: string
      /** The appactive headers of the forwarded copy (same msg id, hops + 1). */
      readonly headers: Readonly<Record<string, string>>
    }
  | { readonly action: 'hold'; readonly reason: 'fenced' | 'lease' }
  | {
      readonly action: 'dead-letter'
      readonly code: ErrorCode
      readonly reason: string
    }

/** Decides what to do with one delivered message, with the rule set in force. Never throws. */
export function decideConsume(
  agent: RoutingAgent,
  topics: TopicTable,
  topic: string,
  headers: MessageHeaderSource | undefined,
): ConsumeDecision {
  const read = readMessageHeaders(headers)
  if (!read.ok) {
    return {
      action: 'dead-letter',
      code: 'APPACTIVE_NO_ROUTE_ID',
      reason: `malformed ${read.malformed} header`,
    }
  }
  const msg = read.route
  const router = agent.router
  const local = agent.identity.unit
  const type = topics.typeOf(topic)
  const admit = (unit: string | undefined): ConsumeDecision => ({
    action: 'process',
    route: createRouteContext({ routeId: msg.routeId, unit, ruleVersion: router?.version, hops: msg.hops }),
    msgId: msg.msgId,
  })
  if (type === 'normal') return admit(msg.unit)
  if (router === undefined || !leaseAllows(agent)) return { action: 'hold', reason: 'lease' }
  const forward = (unit: string, code: ErrorCode, what: string): ConsumeDecision => {
    if (msg.hops >= 1) {
      return {
        action: 'dead-letter',
        code,
        reason: `${what} belongs to unit ${unit}, not ${local}, after ${msg.hops} hop(s)`,
      }
    }
    const msgId = msg.msgId ?? newMessageId()
    const headers = messageHeaders({ ...msg, unit, ruleVersion: router.version, hops: msg.hops + 1, msgId })
    return { action: 'forward', unit, msgId, headers }
  }
  if (type === 'center') {
    if (router.centerUnit === local) return admit(local)
    return forward(router.centerUnit, 'APPACTIVE_NOT_CENTER', `center topic ${topic}`)
  }
  const code = router.lookup(msg.routeId)
  const owner = router.unitAt(code)
  if (owner === null) {
    return {
      action: 'dead-letter',
      code: 'APPACTIVE_NO_ROUTE_ID',
      reason:
        msg.routeId === undefined
          ? `no route id on unit topic ${topic} and the fallback rejects it`
          : `route id maps to no unit (${router.reasonAt(code)}) and the fallback rejects it`,
    }
  }
  if (router.fencedAt(code)) return { action: 'hold', reason: 'fenced' }
  if (owner === local) return admit(local)
  return forward(owner, 'APPACTIVE_WRONG_UNIT', `route id ${msg.routeId ?? '(none)'}`)
}

function leaseAllows(agent: RoutingAgent): boolean {
  try {
    agent.assertLease()
    return true
  } catch {
    return false
  }
}

/** True when a handler's error means "hold and decide again" (a fenced key or a lapsed lease), not poison. */
export function isHoldError(err: unknown): boolean {
  return (
    err instanceof AppActiveError &&
    (err.code === 'APPACTIVE_FENCED' || err.code === 'APPACTIVE_LEASE_EXPIRED')
  )
}

// ---------------------------------------------------------------------------------------------------
// Fence hold

/** Bounds of the fence hold. */
export interface HoldOptions {
  /** Longest a message is held, in ms; default 10,000 for producers, 30,000 for consumers. */
  readonly maxMs?: number
  /** Most messages held at once (producers only; a consumer's bound is its prefetch); default 1,000. */
  readonly maxHeld?: number
  /** While held, decide again at least this often (a lease renewal emits no event); default 250. */
  readonly recheckMs?: number
}

/** Why a wait ended. */
export type WaitOutcome = 'changed' | 'timeout' | 'overflow' | 'aborted'

/**
 * Parks callers until the agent applies a new rule set (`changed`), the wait times out, or at once
 * when `maxHeld` callers already wait (`overflow`).
 */
export class HoldGate {
  readonly #agent: RoutingAgent
  readonly #maxHeld: number
  readonly #waiters = new Set<(o: WaitOutcome) => void>()
  readonly #onApplied = () => {
    for (const w of [...this.#waiters]) w('changed')
  }

  constructor(agent: RoutingAgent, maxHeld = 1000) {
    if (!(Number.isInteger(maxHeld) && maxHeld > 0)) {
      throw new InvalidArgumentError('hold maxHeld must be a positive integer', { maxHeld })
    }
    this.#agent = agent
    this.#maxHeld = maxHeld
  }

  get held(): number {
    return this.#waiters.size
  }

  wait(ms: number, signal?: AbortSignal): Promise<WaitOutcome> {
    if (this.#waiters.size >= this.#maxHeld) return Promise.resolve('overflow')
    if (ms <= 0) return Promise.resolve('timeout')
    if (signal?.aborted) return Promise.resolve('aborted')
    return new Promise((resolve) => {
      const done = (outcome: WaitOutcome) => {
        if (!this.#waiters.delete(done)) return
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        if (this.#waiters.size === 0) this.#agent.off('applied', this.#onApplied)
        resolve(outcome)
      }
      const onAbort = () => done('aborted')
      const timer = setTimeout(() => done('timeout'), ms)
      if (this.#waiters.size === 0) this.#agent.on('applied', this.#onApplied)
      this.#waiters.add(done)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Ends every wait as aborted (shutdown). */
  close(): void {
    for (const w of [...this.#waiters]) w('aborted')
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback
  if (!(Number.isFinite(v) && v >= 0))
    throw new InvalidArgumentError(`${name} must be a non-negative number`, { [name]: v })
  return v
}

/** Resolved hold bounds. */
export interface ResolvedHold {
  readonly maxMs: number
  readonly maxHeld: number
  readonly recheckMs: number
}

export function resolveHold(options: HoldOptions | undefined, defaultMaxMs: number): ResolvedHold {
  return {
    maxMs: positive(options?.maxMs, defaultMaxMs, 'hold.maxMs'),
    maxHeld: positive(options?.maxHeld, 1000, 'hold.maxHeld'),
    recheckMs: Math.max(1, positive(options?.recheckMs, 250, 'hold.recheckMs')),
  }
}

/**
 * Decides a publish, holding a fenced key until a new rule set is applied (then deciding again) or the
 * hold ends. Resolves to the `send` decision.
 * @throws FencedError (APPACTIVE_FENCED) when the hold ends with the key still fenced;
 *   LeaseExpiredError, NoRouteIdError, InvalidArgumentError as decided.
 */
export async function preparePublish(
  agent: RoutingAgent,
  topics: TopicTable,
  gate: HoldGate,
  hold: ResolvedHold,
  req: PublishRequest,
  metrics?: MqMetrics,
): Promise<Extract<PublishDecision, { action: 'send' }>> {
  // Pin the route id and message id before any wait: the context may be gone after an await.
  const pinned = { ...req, routeId: req.routeId ?? currentRouteId(), msgId: req.msgId ?? newMessageId() }
  const started = performance.now()
  let counted = false
  for (;;) {
    const d = decidePublish(agent, topics, pinned)
    if (d.action === 'send') return d
    if (d.action === 'fail') {
      metrics?.count('publish', req.topic, 'failed')
      throw d.error
    }
    if (!counted) metrics?.count('publish', req.topic, 'held')
    counted = true
    const remaining = hold.maxMs - (performance.now() - started)
    const outcome = remaining > 0 ? await gate.wait(Math.min(remaining, hold.recheckMs)) : 'timeout'
    if (outcome === 'overflow' || outcome === 'aborted' || remaining <= 0) {
      metrics?.count('publish', req.topic, 'failed')
      throw new FencedError(d.routeId, { topic: req.topic, held: outcome, version: agent.version })
    }
  }
}

/** How a consumer's wait for a held message ended. */
export type HoldResult = Exclude<ConsumeDecision, { action: 'hold' }> | { readonly action: 'delay' }

/**
 * Decides a delivered message; while the decision is `hold`, waits (calling `heartbeat` every recheck,
 * e.g. NATS `working()`) and decides again, up to `hold.maxMs`, then answers `delay` (the adapter parks
 * the message outside the consumer: amqplib delay queue, NATS `nak(delay)`, kafkajs pause).
 */
export async function decideWithHold(
  agent: RoutingAgent,
  topics: TopicTable,
  topic: string,
  headers: MessageHeaderSource | undefined,
  gate: HoldGate,
  hold: ResolvedHold,
  options: {
    readonly heartbeat?: () => void
    readonly signal?: AbortSignal
    readonly metrics?: MqMetrics
  } = {},
): Promise<HoldResult> {
  const started = performance.now()
  let counted = false
  for (;;) {
    const d = decideConsume(agent, topics, topic, headers)
    if (d.action !== 'hold') return d
    if (!counted) options.metrics?.count('consume', topic, 'held')
    counted = true
    const remaining = hold.maxMs - (performance.now() - started)
    if (remaining <= 0 || options.signal?.aborted) return { action: 'delay' }
    // The gate's own count bound does not apply to consumers: the prefetch bounds them.
    await gate.wait(Math.min(remaining, hold.recheckMs), options.signal)
    options.heartbeat?.()
  }
}

// ---------------------------------------------------------------------------------------------------
// Per-key order

/**
 * Runs tasks one after another per key (a held message blocks later messages of the same route id)
 * and concurrently across keys. Tasks with an undefined key run at once.
 */
export class KeyedSerial {
  readonly #tails = new Map<string, Promise<void>>()

  run(key: string | undefined, task: () => Promise<void>): Promise<void> {
    if (key === undefined) return task()
    const prev = this.#tails.get(key) ?? Promise.resolve()
    const next = prev.then(task, task)
    const tail = next.then(
      () => undefined,
      () => undefined,
    )
    this.#tails.set(key, tail)
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    })
    return next
  }

  /** Resolves when every queued task has ended. */
  async idle(): Promise<void> {
    while (this.#tails.size > 0) await Promise.all([...this.#tails.values()])
  }
}

/** The route id header of a message, raw, for ordering (not validated). */
export function orderingKey(headers: MessageHeaderSource | undefined): string | undefined {
  if (headers === undefined || headers === null) return undefined
  const read = readMessageHeaders(headers)
  return read.ok ? read.route.routeId : undefined
}

// ---------------------------------------------------------------------------------------------------
// Metrics

/** Outcomes counted per topic. */
export type MqOutcome =
  | 'published'
  | 'held'
  | 'failed'
  | 'processed'
  | 'forwarded'
  | 'delayed'
  | 'dead_lettered'
  | 'handler_error'

const METRIC = 'appactive_mq_messages_total'

/** Message counts by side (publish/consume), topic and outcome, on prom-client and in memory. */
export class MqMetrics {
  readonly #counter: Counter<'side' | 'topic' | 'outcome'>
  readonly #counts = new Map<string, number>()

  constructor(registry: Registry) {
    const existing = registry.getSingleMetric(METRIC)
    this.#counter =
      (existing as Counter<'side' | 'topic' | 'outcome'> | undefined) ??
      new Counter({
        name: METRIC,
        help: 'Messages by side (publish, consume), topic and outcome.',
        labelNames: ['side', 'topic', 'outcome'],
        registers: [registry],
      })
  }

  count(side: 'publish' | 'consume', topic: string, outcome: MqOutcome): void {
    this.#counter.inc({ side, topic, outcome })
    const k = `${side}/${outcome}`
    this.#counts.set(k, (this.#counts.get(k) ?? 0) + 1)
  }

  /** Counts of this bridge object since it was made, as `{ 'consume/processed': 3, ... }`. */
  snapshot(): Readonly<Record<string, number>> {
    return Object.fromEntries(this.#counts)
  }
}
