/**
 * Hosts a share of the propagation bench's agents in the current process (a worker process, or the bench
 * process itself for the in-process table). Three kinds of agent, one per measurement:
 *
 * - `agent`: a real RoutingAgent with its own ControlChannel (the channel's default undici Pool of 2
 *   connections), no disk cache, a silent logger: what every gateway and application embeds. It
 *   receives each version by SSE, validates and compiles it, swaps it in and POSTs `/ack`.
 * - `ack`: a bare protocol client: registers, holds the SSE stream and POSTs `/ack` the moment a frame
 *   has arrived, with no parse, validation or compilation. Publish-to-all-acks with these is what the
 *   server and the wire cost when every agent's own apply is free (in production each agent applies in
 *   its own process, in parallel).
 * - `receive`: the same bare client without acks; it only timestamps each frame's arrival. The
 *   fan-out baseline: publish until every agent has RECEIVED the frame.
 *
 * Bare clients heartbeat like the real channel, so the server sees the same background load. Timestamps
 * are on `clock()` (wall-based, sub-millisecond), comparable across processes once offsets are measured.
 */
import { EventEmitter } from 'node:events'
import pino from 'pino'
import { Pool } from 'undici'
import { createAgent, type RoutingAgent } from '../../src/agent/index.js'
import { createControlChannel } from '../../src/channels/control/client.js'
import { compileRouter, type RuleSet } from '../../src/rules/index.js'

export type HostMode = 'agent' | 'ack' | 'receive'

export interface HostSpec {
  readonly url: string
  readonly token: string
  readonly mode: HostMode
  /** Index of this host's first agent (node ids are global: `bench-00042`). */
  readonly first: number
  readonly count: number
}

/** A process-independent clock in ms: the process's time origin (wall clock) plus monotonic time since. */
export const clock = (): number => performance.timeOrigin + performance.now()

/** The two units every bench rule set has; agents alternate between them. */
export const UNITS = ['center', 'unit'] as const

/** Ids each agent's answers are checked on: both units, the fence band, and the `local` fallback. */
export const CHECK_IDS = ['0', '1999', '2000', '2500', '2999', '3000', '9999', '-1', 'abc'] as const

/**
 * The bench's rule sets: AppActive's baseline (`mod 10000`), the unit owning `0~unitUpTo` and the center
 * the rest, with an optional fence. Versions alternate between two mappings.
 */
export function benchRules(version: number, unitUpTo: number, fence: readonly string[] = []): RuleSet {
  return {
    version,
    units: [{ name: 'center', center: true }, { name: 'unit' }],
    idSource: [{ from: 'query', name: 'r_id' }],
    transform: [{ type: 'mod', divisor: 10000 }],
    mapping: [
      { unit: 'unit', ranges: [`0~${unitUpTo}`] },
      { unit: 'center', ranges: [`${unitUpTo + 1}~9999`] },
    ],
    ...(fence.length > 0 ? { fence: { ranges: [...fence] } } : {}),
    fallback: 'local',
  }
}

/** `unit/fenced` per check id, as a router compiled from `ruleSet` for `unit` answers. */
export function answers(ruleSet: RuleSet | undefined, unit: string): string {
  if (ruleSet === undefined) return 'none'
  const router = compileRouter(ruleSet, { localUnit: unit })
  return CHECK_IDS.map((id) => {
    const d = router.route(id)
    return `${d.unit}/${d.fenced}`
  }).join(',')
}

const silent = pino({ level: 'silent' })

interface Hosted {
  readonly nodeId: string
  readonly unit: string
  start(): Promise<void>
  close(): Promise<void>
  /** The version in force (agents) or last received (bare clients). */
  readonly version: number
  /** What this agent answers for CHECK_IDS (bare clients: 'none'). */
  answers(): string
}

/** Events: `received` (version, at): every client of this host has received the frame of `version`. */
export interface AgentHostEvents {
  received: [version: number, at: number]
}

export class AgentHost extends EventEmitter<AgentHostEvents> {
  readonly spec: HostSpec
  readonly #hosted: Hosted[] = []
  /** Per version: how many clients received it, and when the last one did. */
  readonly #arrivals = new Map<number, { count: number; last: number }>()

  constructor(spec: HostSpec) {
    super()
    this.spec = spec
    for (let i = spec.first; i < spec.first + spec.count; i++) {
      const nodeId = `bench-${String(i).padStart(5, '0')}`
      const unit = UNITS[i % 2]!
      this.#hosted.push(
        spec.mode === 'agent'
          ? new FullAgent(spec, nodeId, unit)
          : new BareClient(spec, nodeId, unit, (v, at) => this.#arrived(v, at)),
      )
    }
  }

  /** Registers every agent (all at once); resolves when each registered. Streams open right after. */
  async start(): Promise<void> {
    await Promise.all(this.#hosted.map((h) => h.start()))
  }

  async close(): Promise<void> {
    await Promise.all(this.#hosted.map((h) => h.close()))
  }

  /** The agents that do not hold `ruleSet` or answer differently from it; empty when all agree. */
  check(ruleSet: RuleSet): string[] {
    const want = Object.fromEntries(UNITS.map((u) => [u, answers(ruleSet, u)]))
    const wrong: string[] = []
    for (const h of this.#hosted) {
      if (h.version !== ruleSet.version) wrong.push(`${h.nodeId}: v${h.version}, want v${ruleSet.version}`)
      else if (this.spec.mode === 'agent' && h.answers() !== want[h.unit])
        wrong.push(`${h.nodeId}: ${h.answers()}`)
    }
    return wrong
  }

  #arrived(version: number, at: number): void {
    const a = this.#arrivals.get(version) ?? { count: 0, last: 0 }
    a.count++
    a.last = Math.max(a.last, at)
    this.#arrivals.set(version, a)
    if (a.count === this.#hosted.length) {
      this.#arrivals.delete(version)
      this.emit('received', version, a.last)
    }
  }
}

/** A real agent: RoutingAgent + ControlChannel, as in production. */
class FullAgent implements Hosted {
  readonly nodeId: string
  readonly unit: string
  readonly #agent: RoutingAgent

  constructor(spec: HostSpec, nodeId: string, unit: string) {
    this.nodeId = nodeId
    this.unit = unit
    const channel = createControlChannel({
      url: spec.url,
      token: spec.token,
      identity: { nodeId, app: 'shop', unit },
      logger: silent,
    })
    this.#agent = createAgent({
      unit,
      app: 'shop',
      nodeId,
      channels: [channel],
      logger: silent,
      cache: false,
    })
  }

  start(): Promise<void> {
    return this.#agent.start()
  }

  close(): Promise<void> {
    return this.#agent.close()
  }

  get version(): number {
    return this.#agent.version
  }

  answers(): string {
    const router = this.#agent.router
    if (router === undefined) return 'none'
    return CHECK_IDS.map((id) => {
      const d = router.route(id)
      return `${d.unit}/${d.fenced}`
    }).join(',')
  }
}

/**
 * A bare protocol client (see the header): register, SSE stream, optional ack per frame, heartbeats.
 * Frames are recognised by their `id:` line; the data is never parsed.
 */
class BareClient implements Hosted {
  readonly nodeId: string
  readonly unit: string
  version = -1
  readonly #spec: HostSpec
  readonly #origin: string
  readonly #prefix = '/v1/agent'
  readonly #pool: Pool
  readonly #abort = new AbortController()
  readonly #onFrame: (version: number, at: number) => void
  #session = ''
  #heartbeat: NodeJS.Timeout | undefined
  #closed = false

  constructor(spec: HostSpec, nodeId: string, unit: string, onFrame: (version: number, at: number) => void) {
    this.#spec = spec
    this.nodeId = nodeId
    this.unit = unit
    this.#origin = new URL(spec.url).origin
    this.#pool = new Pool(this.#origin, { connections: 2, pipelining: 1 })
    this.#onFrame = onFrame
  }

  async start(): Promise<void> {
    const r = (await this.#call('POST', '/register', this.#spec.token, {
      nodeId: this.nodeId,
      app: 'shop',
      unit: this.unit,
      version: -1,
    })) as { session: string; heartbeatMs: number; latestVersion: number }
    this.#session = r.session
    this.version = r.latestVersion
    this.#heartbeat = setInterval(() => {
      this.#call('POST', '/heartbeat', this.#session, { version: this.version, inflightFenced: 0 }).catch(
        () => {},
      )
    }, r.heartbeatMs)
    this.#heartbeat.unref()
    this.#stream().catch((err: unknown) => {
      if (!this.#closed) process.emitWarning(`bench client ${this.nodeId}: stream ended: ${String(err)}`)
    })
  }

  async #stream(): Promise<void> {
    const res = await this.#pool.request({
      origin: this.#origin,
      path: `${this.#prefix}/stream`,
      method: 'GET',
      headers: {
        authorization: `Bearer ${this.#session}`,
        accept: 'text/event-stream',
        'last-event-id': String(this.version),
      },
      signal: this.#abort.signal,
      bodyTimeout: 0,
    })
    if (res.statusCode !== 200) throw new Error(`stream: HTTP ${res.statusCode}`)
    const decoder = new TextDecoder()
    let buffer = ''
    for await (const chunk of res.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true })
      let end = buffer.indexOf('\n\n')
      if (end === -1) continue
      const at = clock()
      while (end !== -1) {
        const event = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        if (event.startsWith('id: ')) this.#frame(Number(event.slice(4, event.indexOf('\n'))), at)
        end = buffer.indexOf('\n\n')
      }
    }
  }

  #frame(version: number, at: number): void {
    if (!(version > this.version)) return
    this.version = version
    if (this.#spec.mode === 'ack') {
      this.#call('POST', '/ack', this.#session, { version }).catch((err: unknown) =>
        process.emitWarning(`bench client ${this.nodeId}: ack ${version} failed: ${String(err)}`),
      )
    }
    this.#onFrame(version, at)
  }

  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#heartbeat)
    this.#abort.abort()
    await this.#call('DELETE', '/session', this.#session).catch(() => {})
    await this.#pool.close()
  }

  answers(): string {
    return 'none'
  }

  async #call(method: 'POST' | 'DELETE', path: string, token: string, body?: unknown): Promise<unknown> {
    const text = body === undefined ? undefined : JSON.stringify(body)
    const res = await this.#pool.request({
      origin: this.#origin,
      path: `${this.#prefix}${path}`,
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(text === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(text === undefined ? {} : { body: text }),
    })
    if (res.statusCode === 204) {
      await res.body.dump()
      return undefined
    }
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new Error(`${method} ${path}: HTTP ${res.statusCode}`)
    }
    return res.body.json()
  }
}
