/**
 * The agent's side of the control-plane channel: registers, receives every rule-set version by SSE
 * (`Last-Event-ID` = the version held, so a reconnect resumes with none skipped) or by long-poll,
 * acknowledges each applied version, reports refused ones, heartbeats to hold the lease, and reports
 * in-flight writes on fenced keys so the control plane can tell when they drained.
 */
import { PassThrough } from 'node:stream'
import { createParser } from 'eventsource-parser'
import type { Logger } from 'pino'
import { type Dispatcher, Pool } from 'undici'
import { InvalidArgumentError } from '../../errors/index.js'
import { MAX_TEXT_BYTES } from '../../rules/index.js'
import type { ApplyOutcome, RuleChannel, RuleSink } from '../types.js'
import {
  DEFAULT_PREFIX,
  type HeartbeatResponse,
  type RegisterResponse,
  type RulesResponse,
} from './protocol.js'

/** Options of `createControlChannel`. */
export interface ControlChannelOptions {
  /** Base URL of the control plane, e.g. `http://127.0.0.1:7070`. */
  readonly url: string
  /** The agent bearer token. */
  readonly token: string
  readonly identity: {
    readonly nodeId: string
    readonly app: string
    readonly unit: string
    readonly address?: string | undefined
    readonly pid?: number | undefined
  }
  readonly prefix?: string
  /** `sse` (default, falls back to long-poll when the server has no stream) or `long-poll`. */
  readonly transport?: 'sse' | 'long-poll'
  /**
   * undici dispatcher; default: a Pool of 4 connections to the control plane (the rule stream and the
   * ack stream each hold one for the session; calls share the rest).
   */
  readonly dispatcher?: Dispatcher
  readonly logger?: Logger
  /** Reconnect backoff bounds; default 100 ms .. 5 s. */
  readonly backoff?: { readonly minMs?: number; readonly maxMs?: number }
  /** Timeout of each non-streaming call; default 5 s. */
  readonly requestTimeoutMs?: number
  /** Largest rule set accepted from the control plane, in bytes; default 16 MiB. */
  readonly maxRuleBytes?: number
}

class StatusError extends Error {
  readonly status: number
  constructor(status: number, what: string) {
    super(`${what}: HTTP ${status}`)
    this.status = status
  }
}

/** Creates the control-plane channel. @throws InvalidArgumentError on a malformed URL or empty token. */
export function createControlChannel(options: ControlChannelOptions): ControlChannel {
  return new ControlChannel(options)
}

export class ControlChannel implements RuleChannel {
  readonly name: string
  readonly leasing = true
  readonly #origin: string
  readonly #prefix: string
  readonly #options: ControlChannelOptions
  readonly #dispatcher: Dispatcher
  readonly #ownsDispatcher: boolean
  #log: Logger | undefined
  readonly #minMs: number
  readonly #maxMs: number
  readonly #timeoutMs: number
  readonly #maxBytes: number
  #sink: RuleSink | undefined
  #session: string | undefined
  #heartbeatMs = 1000
  #transport: 'sse' | 'long-poll'
  #closed = false
  #abort = new AbortController()
  #heartbeatTimer: NodeJS.Timeout | undefined
  #registering: Promise<void> | undefined
  #reportedFenced = 0
  #failing = false
  #unsubscribe: (() => void) | undefined
  #unsubscribeMq: (() => void) | undefined
  #mqPosting = false
  #mqDirty = false
  /** The open ack stream's body (NDJSON lines), if any; see `#openAcks`. */
  #acks: PassThrough | undefined
  /** False once the server answered the ack stream with 404/405: it predates it; use POST /ack. */
  #ackStreams = true
  /** Ends the rule stream's reconnect backoff early (set while it sleeps). */
  #wake: (() => void) | undefined

  constructor(options: ControlChannelOptions) {
    let url: URL
    try {
      url = new URL(options.url)
    } catch {
      throw new InvalidArgumentError(`control-plane URL ${JSON.stringify(options.url)} is not a URL`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new InvalidArgumentError(`control-plane URL must be http or https, got ${url.protocol}`)
    }
    if (!options.token)
      throw new InvalidArgumentError('the control-plane channel needs a token (APPACTIVE_TOKEN)')
    this.#options = options
    this.#origin = url.origin
    this.#prefix = (options.prefix ?? `${url.pathname.replace(/\/$/, '')}${DEFAULT_PREFIX}`).replace(
      /\/$/,
      '',
    )
    this.name = `control:${url.origin}`
    this.#transport = options.transport ?? 'sse'
    this.#ownsDispatcher = options.dispatcher === undefined
    this.#dispatcher = options.dispatcher ?? new Pool(this.#origin, { connections: 4, pipelining: 1 })
    this.#log = options.logger?.child({ channel: this.name })
    this.#minMs = options.backoff?.minMs ?? 100
    this.#maxMs = options.backoff?.maxMs ?? 5000
    this.#timeoutMs = options.requestTimeoutMs ?? 5000
    this.#maxBytes = options.maxRuleBytes ?? MAX_TEXT_BYTES
  }

  /** Registers (first attempt), then runs the rule stream and heartbeats in the background. */
  async start(sink: RuleSink): Promise<void> {
    this.#sink = sink
    this.#log ??= sink.logger?.child({ channel: this.name })
    this.#unsubscribe = sink.onInflightChange?.(() => this.#inflightChanged())
    this.#unsubscribeMq = sink.onMqChange?.(() => this.#mqChanged())
    try {
      await this.#register()
    } catch (err) {
      this.#log?.warn(
        { err: errText(err), version: sink.version },
        sink.version >= 0
          ? `control plane unreachable; serving rule set v${sink.version} from cache, writes refused until the lease is granted`
          : 'control plane unreachable; no rule set yet',
      )
    }
    void this.#run()
    this.#scheduleHeartbeat(0)
  }

  /** Acknowledges a version applied by the agent (from this or any other channel). */
  applied(version: number): void {
    if (this.#session === undefined) return
    const sink = this.#sink!
    const fenced = sink.inflightFenced()
    this.#reportedFenced = fenced
    const ack = { version, inflightFenced: fenced }
    if (!this.#writeAck(ack)) {
      this.#post('/ack', ack).catch((err) =>
        this.#log?.warn({ err: errText(err), version }, 'ack failed; the next heartbeat carries the version'),
      )
    }
    // A lease that is not running is granted only once in sync: ask again right away.
    if (!sink.leaseValid()) this.#scheduleHeartbeat(0)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#unsubscribe?.()
    this.#unsubscribeMq?.()
    clearTimeout(this.#heartbeatTimer)
    this.#acks?.end()
    this.#abort.abort()
    if (this.#session !== undefined) {
      await this.#call('DELETE', '/session', undefined).catch(() => {})
    }
    if (this.#ownsDispatcher) await this.#dispatcher.close()
  }

  async #register(): Promise<void> {
    this.#registering ??= (async () => {
      const { nodeId, app, unit, address, pid } = this.#options.identity
      const body = { nodeId, app, unit, address, pid, version: this.#acked() }
      const r = (await this.#call('POST', '/register', body, this.#options.token)) as RegisterResponse
      this.#session = r.session
      this.#heartbeatMs = r.heartbeatMs
      this.#openAcks(r.session)
      // A new session starts with no message drain state on the server: send ours.
      if (this.#sink!.mqState?.() !== undefined) this.#mqChanged()
      // The control plane is back: reconnect the rule stream now, not when its backoff ends.
      this.#wake?.()
      this.#log?.info(
        { latestVersion: r.latestVersion, version: this.#sink!.version },
        'registered with the control plane',
      )
    })().finally(() => {
      this.#registering = undefined
    })
    return this.#registering
  }

  /**
   * Opens the ack stream of a session: one long-lived chunked `POST /acks` whose body is one JSON line
   * per acknowledged version. An ack then costs one small write on each side instead of an HTTP
   * exchange, which is what bounds propagation at 1,000 agents. When the stream is down (server
   * restarted, session replaced), acks go by `POST /ack` until the next registration opens a new one;
   * a lost line is repaired by the next heartbeat, which carries the version too.
   */
  #openAcks(session: string): void {
    this.#acks?.end()
    this.#acks = undefined
    if (!this.#ackStreams || this.#closed) return
    const body = new PassThrough()
    this.#acks = body
    const done = () => {
      if (this.#acks === body) this.#acks = undefined
      body.destroy()
    }
    this.#dispatcher
      .request({
        origin: this.#origin,
        path: `${this.#prefix}/acks`,
        method: 'POST',
        headers: { authorization: `Bearer ${session}`, 'content-type': 'application/x-ndjson' },
        body,
        signal: this.#abort.signal,
        headersTimeout: 0,
        bodyTimeout: 0,
      })
      .then(async (res) => {
        await res.body.dump()
        if (res.statusCode === 404 || res.statusCode === 405) this.#ackStreams = false
      })
      .catch(() => {})
      .finally(done)
  }

  /** Writes an ack on the open stream; false when there is none. */
  #writeAck(ack: { version: number; inflightFenced: number }): boolean {
    const body = this.#acks
    if (body === undefined || body.destroyed || body.writableEnded) return false
    body.write(`${JSON.stringify(ack)}\n`)
    return true
  }

  /** The delivery loop: stream (or poll), reconnecting with backoff. */
  async #run(): Promise<void> {
    let delay = this.#minMs
    while (!this.#closed) {
      try {
        if (this.#session === undefined) await this.#register()
        const delivered = this.#transport === 'sse' ? await this.#stream() : await this.#poll()
        if (delivered) delay = this.#minMs
      } catch (err) {
        if (this.#closed) return
        if (err instanceof StatusError && err.status === 401) this.#session = undefined
        else if (
          err instanceof StatusError &&
          this.#transport === 'sse' &&
          [404, 405, 406, 501].includes(err.status)
        ) {
          this.#log?.warn('the control plane has no event stream; using long-poll')
          this.#transport = 'long-poll'
          continue
        }
        const level = this.#failing ? 'debug' : 'warn'
        this.#failing = true
        this.#log?.[level](
          { err: errText(err), retryInMs: Math.round(delay) },
          'rule stream interrupted; reconnecting',
        )
      }
      if (this.#closed) return
      const woken = await new Promise<boolean>((resolve) => {
        this.#wake = () => resolve(true)
        void sleep(delay * (0.75 + Math.random() * 0.5), this.#abort.signal).then(() => resolve(false))
      })
      this.#wake = undefined
      delay = woken ? this.#minMs : Math.min(this.#maxMs, delay * 2)
    }
  }

  /** One SSE connection; returns after it ends. True when at least one event arrived. */
  async #stream(): Promise<boolean> {
    const sink = this.#sink!
    const res = await this.#dispatcher.request({
      origin: this.#origin,
      path: `${this.#prefix}/stream`,
      method: 'GET',
      headers: {
        authorization: `Bearer ${this.#session}`,
        accept: 'text/event-stream',
        'last-event-id': String(sink.version),
      },
      signal: this.#abort.signal,
      bodyTimeout: 0,
    })
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new StatusError(res.statusCode, 'rule stream')
    }
    let delivered = false
    let pending = 0 // bytes received since the last complete event
    const parser = createParser({
      onEvent: (event) => {
        pending = 0
        if (event.event !== 'rules') return
        delivered = true
        this.#deliver(event.data, event.id === undefined ? undefined : Number(event.id))
      },
    })
    if (this.#failing) {
      this.#failing = false
      this.#log?.info('rule stream connected again')
    }
    const decoder = new TextDecoder()
    for await (const chunk of res.body) {
      pending += (chunk as Uint8Array).length
      if (pending > this.#maxBytes) {
        // Drop the connection rather than buffer without bound; the next attempt starts clean.
        this.#report(undefined, `a pushed rule set is larger than ${this.#maxBytes} bytes`)
        res.body.destroy()
        throw new Error('oversized rule set')
      }
      parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }))
    }
    return delivered
  }

  /** One long-poll round; true when a version arrived. */
  async #poll(): Promise<boolean> {
    const sink = this.#sink!
    const res = await this.#dispatcher.request({
      origin: this.#origin,
      path: `${this.#prefix}/rules?since=${sink.version}&waitMs=30000`,
      method: 'GET',
      headers: { authorization: `Bearer ${this.#session}` },
      signal: this.#abort.signal,
      bodyTimeout: 40_000,
      headersTimeout: 40_000,
    })
    if (res.statusCode === 204) {
      await res.body.dump()
      return true
    }
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new StatusError(res.statusCode, 'rule poll')
    }
    const declared = Number(res.headers['content-length'])
    if (declared > this.#maxBytes) {
      res.body.destroy()
      this.#report(undefined, `a polled rule set is larger than ${this.#maxBytes} bytes`)
      throw new Error('oversized rule set')
    }
    const text = await res.body.text()
    let parsed: RulesResponse | undefined
    try {
      parsed = JSON.parse(text) as RulesResponse
    } catch {
      this.#report(undefined, 'the long-poll answer is not valid JSON')
      return false
    }
    this.#deliverValue(parsed.ruleSet, parsed.version)
    return true
  }

  #deliver(data: string, claimed: number | undefined): void {
    let value: unknown
    try {
      value = JSON.parse(data)
    } catch {
      this.#report(claimed, 'the pushed rule set is not valid JSON')
      return
    }
    this.#deliverValue(value, claimed)
  }

  #deliverValue(value: unknown, claimed: number | undefined): void {
    const outcome: ApplyOutcome = this.#sink!.apply(value, { source: this.name })
    if (outcome.status === 'duplicate') {
      if (outcome.version <= this.#acked()) this.applied(outcome.version)
    } else if (outcome.status === 'rejected') {
      this.#post('/report', {
        version: outcome.version ?? claimed,
        issues: outcome.issues.slice(0, 100),
      }).catch(() => {})
    }
    // 'applied' is acknowledged through applied(), which the agent calls for every channel.
  }

  /** A delivery that could not be read: the agent records it, and the control plane hears of it. */
  #report(version: number | undefined, message: string): void {
    const issues = [{ path: '', message }]
    this.#sink!.reportError(version, issues, { source: this.name })
    this.#post('/report', { version, issues }).catch(() => {})
  }

  #scheduleHeartbeat(inMs: number): void {
    if (this.#closed) return
    clearTimeout(this.#heartbeatTimer)
    this.#heartbeatTimer = setTimeout(() => void this.#heartbeat(), inMs)
    this.#heartbeatTimer.unref()
  }

  async #heartbeat(): Promise<void> {
    const sink = this.#sink!
    try {
      if (this.#session === undefined) await this.#register()
      const sentAt = sink.now()
      const fenced = sink.inflightFenced()
      const r = (await this.#post('/heartbeat', {
        version: this.#acked(),
        inflightFenced: fenced,
      })) as HeartbeatResponse
      this.#reportedFenced = fenced
      sink.renewLease(sentAt, r.leaseMs, r.latestVersion)
    } catch (err) {
      if (err instanceof StatusError && err.status === 401) this.#session = undefined
      this.#log?.warn({ err: errText(err) }, 'heartbeat failed')
    }
    this.#scheduleHeartbeat(this.#heartbeatMs)
  }

  /** The version this channel may report as applied (see `RuleSink.ackedVersion`). */
  #acked(): number {
    const sink = this.#sink!
    return sink.ackedVersion === undefined ? sink.version : Math.min(sink.version, sink.ackedVersion())
  }

  /** Reports a change of in-flight fenced writes while the server may be waiting for them to drain. */
  #inflightChanged(): void {
    if (this.#reportedFenced === 0 || this.#session === undefined) return
    const fenced = this.#sink!.inflightFenced()
    if (fenced === this.#reportedFenced) return
    this.#reportedFenced = fenced
    this.#post('/inflight', { fenced }).catch(() => {})
  }

  /**
   * Reports the message drain state (topics, groups, barriers passed); one request at a time, the
   * latest state wins. Lost reports are repaired by the next change or registration.
   */
  #mqChanged(): void {
    if (this.#session === undefined || this.#closed) return
    if (this.#mqPosting) {
      this.#mqDirty = true
      return
    }
    this.#mqPosting = true
    this.#mqDirty = false
    this.#post('/mq', this.#sink!.mqState?.() ?? { produces: [], consumes: [], barriers: [] })
      .catch((err) => this.#log?.warn({ err: errText(err) }, 'message drain report failed'))
      .finally(() => {
        this.#mqPosting = false
        if (this.#mqDirty) this.#mqChanged()
      })
  }

  #post(path: string, body: unknown): Promise<unknown> {
    return this.#call('POST', path, body)
  }

  async #call(
    method: 'POST' | 'DELETE',
    path: string,
    body: unknown,
    token = this.#session,
  ): Promise<unknown> {
    const text = body === undefined ? undefined : JSON.stringify(body)
    const res = await this.#dispatcher.request({
      origin: this.#origin,
      path: `${this.#prefix}${path}`,
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(text === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(text === undefined ? {} : { body: text }),
      headersTimeout: this.#timeoutMs,
      bodyTimeout: this.#timeoutMs,
    })
    if (res.statusCode === 204) {
      await res.body.dump()
      return undefined
    }
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new StatusError(res.statusCode, `${method} ${path}`)
    }
    return res.body.json()
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const done = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
