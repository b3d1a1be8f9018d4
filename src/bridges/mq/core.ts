/**
 * The driver-free core of the message layer (reference §A.3), shared by the amqplib, NATS and kafkajs
 * adapters: the topic-type table, unit-addressed destination templates, the message headers, the
 * producer decision (route → destination unit, or hold / fail), the consumer decision per message
 * (process / forward / hold / dead-letter), the bounded fence hold, and per-outcome metrics.
 * Adapters only translate these answers into their client's calls.
 */
import { randomUUID } from 'node:crypto'
import { Counter, type Registry } from 'prom-client'
import { type RoutingAgent, runWithDrainPermit } from '../../agent/index.js'
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
  runWithRoute,
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

  /** The listed `unit` topics (producers send cut-over barriers into them). */
  get unitTopics(): readonly string[] {
    return [...this.#topics].filter(([, t]) => t.type === 'unit').map(([name]) => name)
  }

  /** The settings of `topic`; `normal` when it is not listed. */
  get(topic: string): Required<TopicSettings> {
    return this.#topics.get(topic) ?? NORMAL
  }

  typeOf(topic: string): TopicType {
    return this.get(topic).type
  }
}

/** The topic table of an adapter's `topics` option (a config, or a table shared with other adapters). */
export function topicTableOf(topics: TopicConfig | TopicTable | undefined): TopicTable {
  return topics instanceof TopicTable ? topics : new TopicTable(topics)
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
  /** `parse` patterns by topic (consumers parse every delivery with the same few topics). */
  readonly #patterns = new Map<string, RegExp>()

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
    let re = this.#patterns.get(topic)
    if (re === undefined) {
      let pattern = '^'
      for (const piece of this.#pieces) {
        if (piece === '{topic}') pattern += escapeRegExp(topic)
        else if (piece === '{unit}') pattern += '(?<unit>[^.]+)'
        else if (piece === '{key}') pattern += '(?<key>.*)'
        else pattern += escapeRegExp(piece)
      }
      re = new RegExp(`${pattern}$`, 's') // no `g` flag: exec keeps no state, so the pattern is reusable
      if (this.#patterns.size < MAX_CACHED_PATTERNS) this.#patterns.set(topic, re)
    }
    const m = re.exec(name)
    if (!m?.groups) return undefined
    return { unit: m.groups.unit ?? '', key: m.groups.key ?? '' }
  }
}

/** Topics whose `parse` pattern an AddressTemplate keeps (the configured topics; callers may pass any). */
const MAX_CACHED_PATTERNS = 256

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

/**
 * On cut-over barrier markers only: `<fence version>:<producer node id>`. A barrier is never handed to
 * a handler: the consumer settles every message before it, reports it, and acks it.
 */
export const BARRIER_HEADER = 'x-appactive-barrier'
/** On Kafka barriers: how many partitions the destination topic has (a barrier goes to each). */
export const BARRIER_PARTITIONS_HEADER = 'x-appactive-barrier-partitions'
/** The `{key}` barriers are published with (queues and streams of unit topics bind `<unit>.#`). */
export const BARRIER_KEY = 'appactive-barrier'

/** Largest value of any `x-appactive-*` message header; a longer one is malformed. */
export const MAX_HEADER_VALUE_LENGTH = 1024
const MSG_ID = /^[\x21-\x7E]{1,128}$/

/** A new message id: a UUIDv7 (time-ordered, random tail). */
export function newMessageId(): string {
  // randomUUID() draws from Node's cached entropy pool (a randomBytes(16) call per id cost several µs on
  // every publish); its v4 layout already carries the RFC 9562 variant bits, so putting the 48-bit
  // millisecond time first and the version nibble 7 makes it a UUIDv7 with the same 74 random bits.
  // The time part is formatted once per millisecond (number-to-hex costs more than the UUID).
  const ms = Date.now()
  if (ms !== idPrefixMs) {
    const hex = ms.toString(16).padStart(12, '0')
    idPrefix = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7`
    idPrefixMs = ms
  }
  return idPrefix + randomUUID().slice(15)
}

let idPrefixMs = -1
let idPrefix = ''

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
  const record = source as Record<string, unknown>
  // Own enumerable keys, as Object.entries; only the appactive ones (any case) are lower-cased and kept.
  for (const name of Object.keys(record)) {
    if (!isRouteHeader(name)) continue
    const value = record[name]
    out[name.toLowerCase()] = Array.isArray(value) ? value.map(valueText) : valueText(value)
  }
  return out
}

/** One client header value as text; anything else than text, bytes or a finite number reads as malformed. */
function valueText(v: unknown): string {
  if (typeof v === 'string') return v
  if (Buffer.isBuffer(v)) return v.toString('utf8')
  if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8')
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  return '\u0000' // malformed marker: never a valid header value
}

const READ_HEADERS = [ROUTE_ID_HEADER, UNIT_HEADER, RULE_VERSION_HEADER, HOPS_HEADER, ORIGIN_UNIT_HEADER]
/** Every header a consumer reads, in the order `readMessageHeaders` checks them. */
const ALL_HEADERS = [...READ_HEADERS, MSG_ID_HEADER]

/**
 * Reads the appactive headers of one message. A header that is present but malformed, repeated,
 * oversized or of the wrong type makes the whole message malformed (it is dead-lettered, never guessed).
 */
export function readMessageHeaders(source: MessageHeaderSource | undefined): ReadMessage {
  if (source === undefined || source === null) return { ok: true, route: { hops: 0 } }
  const headers = normalize(source) as Parameters<typeof readRouteHeaders>[0]
  // Each header's single value (undefined when absent), read once: repeated or oversized is malformed.
  const raw: (string | undefined)[] = []
  for (const name of ALL_HEADERS) {
    const values = headerValues(headers, name)
    if (values.length > 1 || (values.length === 1 && values[0]!.length > MAX_HEADER_VALUE_LENGTH)) {
      return { ok: false, malformed: name }
    }
    raw.push(values[0])
  }
  const [routeIdRaw, unitRaw, versionRaw, hopsRaw, originRaw, msgIdRaw] = raw
  const hop = readRouteHeaders(headers)
  if (routeIdRaw !== undefined && hop.routeId === undefined) return { ok: false, malformed: ROUTE_ID_HEADER }
  if (unitRaw !== undefined && hop.unit === undefined) return { ok: false, malformed: UNIT_HEADER }
  if (versionRaw !== undefined && hop.ruleVersion === undefined) {
    return { ok: false, malformed: RULE_VERSION_HEADER }
  }
  if (hopsRaw !== undefined && hopsRaw.trim() !== String(hop.hops)) {
    return { ok: false, malformed: HOPS_HEADER }
  }
  let originUnit: string | undefined
  if (originRaw !== undefined) {
    // Read with the unit codec, under the unit's name.
    originUnit = readRouteHeaders({ [UNIT_HEADER]: originRaw }).unit
    if (originUnit === undefined) return { ok: false, malformed: ORIGIN_UNIT_HEADER }
  }
  let msgId: string | undefined
  if (msgIdRaw !== undefined) {
    msgId = msgIdRaw.trim()
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
  | {
      readonly action: 'process'
      readonly route: RouteContext
      readonly msgId: string | undefined
      /**
       * Set when the key is fenced and this unit, its owner until the switch, drains a message published
       * here before the fence: the handler's guarded writes run under a drain permit for this version.
       */
      readonly drain?: number | undefined
    }
  | {
      /** A cut-over barrier: settle every earlier message, report it, ack it; never run the handler. */
      readonly action: 'barrier'
      readonly version: number
      readonly origin: string
    }
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
  const barrier = readBarrier(headers)
  if (barrier !== undefined) {
    if (barrier === 'malformed')
      return {
        action: 'dead-letter',
        code: 'APPACTIVE_NO_ROUTE_ID',
        reason: `malformed ${BARRIER_HEADER} header`,
      }
    return { action: 'barrier', ...barrier }
  }
  const read = takeReadAhead(headers) ?? readMessageHeaders(headers)
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
  if (router.fencedAt(code)) {
    // Addressed to this unit under the mapping still in force, before the fence (producers hold fenced
    // keys): the old owner processes it ahead of the barriers; the drain step waits for it.
    const beforeFence = msg.unit === local && (msg.ruleVersion ?? -1) < router.version
    if (owner === local && beforeFence && msg.routeId !== undefined)
      return { ...(admit(local) as Extract<ConsumeDecision, { action: 'process' }>), drain: router.version }
    return { action: 'hold', reason: 'fenced' }
  }
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

/**
 * Runs a consumer's handler for a `process` decision: inside the message's route context and, for a
 * message drained during a fence, under the drain permit.
 */
export function runDecided<T>(d: Extract<ConsumeDecision, { action: 'process' }>, handler: () => T): T {
  const { drain, route } = d
  if (drain === undefined || route.routeId === undefined) return runWithRoute(route, handler)
  const routeId = route.routeId
  return runWithRoute(route, () => runWithDrainPermit(routeId, drain, handler))
}

/**
 * What a consumer does when its handler threw: undefined to hold and decide again (its guard saw a fenced
 * key or a lapsed lease, see `isHoldError`), else the dead-letter reason.
 */
export function handlerFailure(err: unknown): string | undefined {
  if (isHoldError(err)) return undefined
  return `handler failed: ${err instanceof Error ? err.message : String(err)}`.slice(0, 200)
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
// Cut-over barriers

const BARRIER = /^(\d{1,15}):([\x21-\x7E]{1,255})$/

/** The barrier a message carries: undefined when it is no barrier, `malformed` when it is a bad one. */
export function readBarrier(
  source: MessageHeaderSource | undefined,
): { version: number; origin: string } | 'malformed' | undefined {
  if (source === undefined || source === null) return undefined
  let raw: unknown
  if (typeof (source as { get?: unknown }).get === 'function') {
    raw = (source as { get(name: string): string | null | undefined }).get(BARRIER_HEADER) || undefined
  } else {
    raw = (source as Record<string, unknown>)[BARRIER_HEADER]
  }
  if (raw === undefined) return undefined
  if (Array.isArray(raw)) {
    if (raw.length !== 1) return 'malformed'
    raw = raw[0]
  }
  const text = Buffer.isBuffer(raw) || raw instanceof Uint8Array ? Buffer.from(raw).toString('utf8') : raw
  if (typeof text !== 'string') return 'malformed'
  const m = BARRIER.exec(text.trim())
  if (m === null) return 'malformed'
  return { version: Number(m[1]), origin: m[2]! }
}

/** The headers of a barrier published by `agent` for rule-set `version`. */
export function barrierHeaders(agent: RoutingAgent, version: number): Record<string, string> {
  const route = { originUnit: agent.identity.unit, ruleVersion: version, hops: 0, msgId: newMessageId() }
  return { ...messageHeaders(route), [BARRIER_HEADER]: `${version}:${agent.identity.nodeId}` }
}

/** Publishes one barrier of `version` into the destination of `topic` for `unit`, confirmed. */
export type BarrierPublish = (topic: string, unit: string, headers: Record<string, string>) => Promise<void>

/**
 * The producer side of the message drain: declares the producer's unit topics to its agent, and when
 * the agent applies a fence, publishes a barrier into each fenced source unit's destination of each unit
 * topic, after every publish decided before the fence was confirmed (so the barrier queues behind them).
 */
export class BarrierSender {
  readonly #agent: RoutingAgent
  readonly #topics: readonly string[]
  readonly #publish: BarrierPublish
  readonly #inflight = new Set<Promise<unknown>>()
  readonly #undeclare: () => void
  #sent = -1
  #closed = false
  readonly #onApplied = (version: number) => {
    // After the current turn: a publish decided before the fence has then reached its client.
    setImmediate(() => void this.#send(version))
  }

  constructor(agent: RoutingAgent, topics: TopicTable, publish: BarrierPublish) {
    this.#agent = agent
    this.#topics = topics.unitTopics
    this.#publish = publish
    this.#undeclare = agent.messages.declareProducer(this.#topics)
    if (this.#topics.length > 0) agent.on('applied', this.#onApplied)
    const v = agent.version
    if (v >= 0 && this.#topics.length > 0) this.#onApplied(v)
  }

  /** Tracks a publish until its confirm, so a barrier waits for it. */
  track<T>(publish: Promise<T>): Promise<T> {
    this.#inflight.add(publish)
    const done = () => this.#inflight.delete(publish)
    publish.then(done, done)
    return publish
  }

  async #send(version: number): Promise<void> {
    const router = this.#agent.router
    if (this.#closed || router === undefined || router.version !== version || version <= this.#sent) return
    const units = router.fencedUnits()
    if (units.length === 0) return
    this.#sent = version
    await Promise.allSettled([...this.#inflight])
    for (const topic of this.#topics) {
      for (const unit of units) {
        for (let attempt = 1; !this.#closed; attempt++) {
          try {
            await this.#publish(topic, unit, barrierHeaders(this.#agent, version))
            break
          } catch (err) {
            if (attempt >= 5) {
              this.#agent.logger.error(
                { err, topic, unit, version },
                'appactive: a cut-over barrier could not be published; the drain step will time out and roll back',
              )
              break
            }
            await new Promise((r) => setTimeout(r, 100 * attempt))
          }
        }
      }
    }
  }

  close(): void {
    this.#closed = true
    this.#agent.off('applied', this.#onApplied)
    this.#undeclare()
  }
}

/**
 * The consumer side: settles every message delivered before a barrier, then records it with the agent
 * (which reports it to the control plane). Adapters call `declare` for a unit topic's group at start.
 */
export function passBarrier(
  agent: RoutingAgent,
  sighting: {
    topic: string
    group: string
    origin: string
    version: number
    partition?: number
    partitions?: number
  },
): void {
  agent.messages.passed({ partition: 0, partitions: 1, ...sighting })
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
    const prev = this.#tails.get(key)
    // Nothing queued for the key: start at once, like a task without a key (saves two promises).
    const next = prev === undefined ? startTask(task) : prev.then(task, task)
    // The tail settles when the task did, and forgets the key then unless a later task queued behind it.
    const settled = (): void => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    }
    const tail: Promise<void> = next.then(settled, settled)
    this.#tails.set(key, tail)
    return next
  }

  /** Resolves when every queued task has ended. */
  async idle(): Promise<void> {
    while (this.#tails.size > 0) await Promise.all([...this.#tails.values()])
  }
}

/** Calls `task`; a synchronous throw becomes a rejection, as it would inside `then`. */
function startTask(task: () => Promise<void>): Promise<void> {
  try {
    return task()
  } catch (err) {
    return Promise.reject(err)
  }
}

/** The route id header of a message, raw, for ordering (not validated). */
export function orderingKey(headers: MessageHeaderSource | undefined): string | undefined {
  if (headers === undefined || headers === null) return undefined
  const read = readMessageHeaders(headers)
  readAhead.set(headers, read)
  return read.ok ? read.route.routeId : undefined
}

/**
 * What `orderingKey` read from a delivery's headers object, handed to the first `decideConsume` of the
 * same object (adapters call both per delivery, and reading is the consumer's largest own cost). Taken
 * once: a later decision (after a hold) reads the headers again. Weak: a delivery never decided leaves
 * nothing behind.
 */
const readAhead = new WeakMap<object, ReadMessage>()

function takeReadAhead(headers: MessageHeaderSource | undefined): ReadMessage | undefined {
  if (headers === undefined || headers === null) return undefined
  const read = readAhead.get(headers)
  if (read !== undefined) readAhead.delete(headers)
  return read
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
  | 'barrier'
  | 'drained'

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
