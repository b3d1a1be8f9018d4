/**
 * The server side of the control-plane channel: registers agents, pushes every published rule-set
 * version to them (SSE, with a long-poll fallback), collects acknowledgements, heartbeats (leases) and
 * in-flight write counts. The control plane mounts `handle()` under its HTTP server; tests and small
 * deployments can `listen()` it standalone. See protocol.ts for the wire format.
 */
import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { InvalidArgumentError, type RuleIssue } from '../../errors/index.js'
import { assertRuleSet, type RuleSet } from '../../rules/index.js'
import { bearer, HttpError, intField, readJson, send, sendError, TokenSet, textField } from './http-util.js'
import { type MqDrainTarget, readMqReport, undrainedGroups } from './mq-drain.js'
import { type NodeRecord, NodeTable, type NodeView, type WaitResult } from './node-table.js'
import { DEFAULT_PREFIX, MAX_AGENT_BODY_BYTES, type RegistryResponse } from './protocol.js'

/** Options of `createRuleServer`. */
export interface RuleServerOptions {
  /** Bearer token(s) agents register with. Required: the server never runs open. */
  readonly tokens: readonly string[]
  /** Lease granted per heartbeat; default 10 s. */
  readonly leaseMs?: number
  /** How often agents heartbeat; default leaseMs / 4. */
  readonly heartbeatMs?: number
  /** Versions kept for in-order replay after a reconnect; default 256. */
  readonly historySize?: number
  /** URL prefix; default `/v1/agent`. */
  readonly prefix?: string
  /** SSE keep-alive comment interval; default 15 s. */
  readonly keepAliveMs?: number
  /** Monotonic clock in ms; default performance.now(). */
  readonly now?: () => number
}

/** Server events: `ack` (nodeId, version), `rejected` (nodeId, version, issues), `node` (view, 'joined'|'left'). */
export interface RuleServerEvents {
  ack: [nodeId: string, version: number]
  rejected: [nodeId: string, version: number | undefined, issues: readonly RuleIssue[]]
  node: [node: NodeView, change: 'joined' | 'left']
}

const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/
const ADDRESS = /^[\x21-\x7e]{1,512}$/
const MAX_WAIT_MS = 60_000

interface Poll {
  readonly rec: NodeRecord
  readonly since: number
  readonly res: ServerResponse
  timer: NodeJS.Timeout | undefined
}

interface Version {
  readonly version: number
  readonly ruleSet: RuleSet
  /** `id: V\nevent: rules\ndata: ...\n\n`, built once per version. */
  readonly frame: string
  readonly json: string
}

/** Creates the server side of the control-plane channel. @throws InvalidArgumentError without tokens. */
export function createRuleServer(options: RuleServerOptions): RuleServer {
  return new RuleServer(options)
}

export class RuleServer extends EventEmitter<RuleServerEvents> {
  readonly prefix: string
  readonly leaseMs: number
  readonly heartbeatMs: number
  readonly #tokens: TokenSet
  readonly #history: Version[] = []
  readonly #historySize: number
  readonly #table: NodeTable
  readonly #streams = new Map<ServerResponse, NodeRecord>()
  readonly #polls = new Set<Poll>()
  /** Open ack streams, and how to end each (with a 503 when the server closes). */
  readonly #ackStreams = new Map<ServerResponse, (err?: HttpError) => void>()
  readonly #keepAlive: NodeJS.Timeout
  #server: Server | undefined

  constructor(options: RuleServerOptions) {
    super()
    const tokens = options.tokens.filter((t) => typeof t === 'string' && t.length > 0)
    if (tokens.length === 0) throw new InvalidArgumentError('the rule server needs at least one agent token')
    if (tokens.some((t) => t.length < 16))
      throw new InvalidArgumentError('agent tokens must be at least 16 characters')
    this.#tokens = new TokenSet(tokens)
    this.prefix = (options.prefix ?? DEFAULT_PREFIX).replace(/\/$/, '')
    this.leaseMs = options.leaseMs ?? 10_000
    this.heartbeatMs = options.heartbeatMs ?? Math.max(50, Math.floor(this.leaseMs / 4))
    if (!(this.heartbeatMs < this.leaseMs))
      throw new InvalidArgumentError('heartbeatMs must be shorter than leaseMs')
    this.#historySize = options.historySize ?? 256
    const now = options.now ?? (() => performance.now())
    this.#table = new NodeTable(this.leaseMs, now)
    this.#keepAlive = setInterval(() => {
      for (const res of this.#streams.keys()) res.write(': keep-alive\n\n')
    }, options.keepAliveMs ?? 15_000)
    this.#keepAlive.unref()
  }

  /** The latest published version, or -1. */
  get latestVersion(): number {
    return this.#history.at(-1)?.version ?? -1
  }

  get latest(): RuleSet | undefined {
    return this.#history.at(-1)?.ruleSet
  }

  /**
   * Validates and publishes a rule set, pushing it to every connected agent.
   * @throws RuleInvalidError when invalid; InvalidArgumentError when its version is not above the latest.
   */
  publish(input: unknown): number {
    const ruleSet = assertRuleSet(input)
    if (ruleSet.version <= this.latestVersion) {
      throw new InvalidArgumentError(
        `version ${ruleSet.version} is not above the latest published version ${this.latestVersion}`,
      )
    }
    const json = JSON.stringify(ruleSet)
    const v: Version = {
      version: ruleSet.version,
      ruleSet,
      json,
      frame: `id: ${ruleSet.version}\nevent: rules\ndata: ${json}\n\n`,
    }
    this.#history.push(v)
    if (this.#history.length > this.#historySize) this.#history.shift()
    for (const res of this.#streams.keys()) res.write(v.frame)
    for (const poll of this.#polls) this.#answerPoll(poll)
    return v.version
  }

  /** Every known node. */
  nodes(): NodeView[] {
    return this.#table.list()
  }

  /** Resolves when every node (passing `filter`) acknowledged `version` or lapsed, or on timeout. */
  waitForAcks(
    version: number,
    options: { timeoutMs: number; filter?: (n: NodeView) => boolean },
  ): Promise<WaitResult> {
    const filter = options.filter
    return this.#table.waitFor((n) => n.appliedVersion >= version, {
      timeoutMs: options.timeoutMs,
      ...(filter ? { filter: (n) => filter(this.#table.view(n)) } : {}),
    })
  }

  /**
   * Resolves when no node (passing `filter`) reports an in-flight guarded write on a fenced key and,
   * with `messages`, when every consumer group of a source unit passed the fence's barrier from every
   * live producer (see mq-drain.ts).
   */
  async waitForDrain(options: {
    timeoutMs: number
    filter?: (n: NodeView) => boolean
    messages?: MqDrainTarget
  }): Promise<WaitResult> {
    const { filter, messages } = options
    const table = this.#table
    const live = (n: NodeRecord) => !table.isLapsed(n)
    const test = (n: NodeRecord) =>
      n.inflightFenced === 0 &&
      (messages === undefined || undrainedGroups(n, table.records(), live, messages).length === 0)
    // A producer that lapses changes other nodes' answers without an event of its own: look again.
    const recheck = messages === undefined ? undefined : setInterval(() => table.changed(), 250)
    try {
      return await table.waitFor(test, {
        timeoutMs: options.timeoutMs,
        ...(filter ? { filter: (n) => filter(table.view(n)) } : {}),
      })
    } finally {
      clearInterval(recheck)
    }
  }

  /** The consumer groups of source units still waiting for barriers, per node (for progress and errors). */
  undrainedMessages(messages: MqDrainTarget): string[] {
    const table = this.#table
    const live = (n: NodeRecord) => !table.isLapsed(n)
    const out = new Set<string>()
    for (const n of table.records())
      if (live(n)) for (const g of undrainedGroups(n, table.records(), live, messages)) out.add(g)
    return [...out]
  }

  /** Starts a standalone HTTP server (for tests, benchmarks and small deployments). */
  async listen(port = 0, host = '127.0.0.1'): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      if (!this.handle(req, res))
        send(res, 404, { error: { code: 'NOT_FOUND', message: 'no such endpoint' } })
    })
    server.keepAliveTimeout = 65_000
    // Ack streams are requests that last as long as a session: no whole-request deadline.
    server.requestTimeout = 0
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ port, host, backlog: 4096 }, () => resolve())
    })
    return server.address() as AddressInfo
  }

  /** Handles a request under the prefix; returns false (and does nothing) for any other path. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '/'
    if (!url.startsWith(`${this.prefix}/`)) return false
    const q = url.indexOf('?')
    const path = url.slice(this.prefix.length, q === -1 ? undefined : q)
    const query = new URLSearchParams(q === -1 ? '' : url.slice(q + 1))
    this.#route(req, res, `${req.method} ${path}`, query).catch((err: unknown) => {
      sendError(res, err instanceof HttpError ? err : new HttpError(500, 'INTERNAL', 'internal error'))
    })
    return true
  }

  async #route(
    req: IncomingMessage,
    res: ServerResponse,
    route: string,
    query: URLSearchParams,
  ): Promise<void> {
    if (route === 'POST /register') return this.#register(req, res)
    if (route === 'GET /registry') return this.#registry(req, res, query)
    const rec = this.#session(req)
    switch (route) {
      case 'GET /stream':
        return this.#stream(req, res, rec)
      case 'GET /rules':
        return this.#poll(res, rec, query)
      case 'POST /ack':
        this.#ack(rec, await readJson(req, MAX_AGENT_BODY_BYTES))
        return send(res, 204)
      case 'POST /acks':
        return this.#ackStream(req, res, rec)
      case 'POST /heartbeat': {
        const body = await readJson(req, MAX_AGENT_BODY_BYTES)
        this.#checkNode(body, rec)
        const version = Math.min(intField(body, 'version', -1)!, this.latestVersion)
        this.#table.heartbeat(rec, version, intField(body, 'inflightFenced', 0)!)
        return send(res, 200, { leaseMs: this.leaseMs, latestVersion: this.latestVersion })
      }
      case 'POST /inflight': {
        const body = await readJson(req, MAX_AGENT_BODY_BYTES)
        this.#checkNode(body, rec)
        rec.inflightFenced = intField(body, 'fenced', 0)!
        this.#table.changed(rec)
        return send(res, 204)
      }
      case 'POST /mq': {
        const body = await readJson(req, MAX_AGENT_BODY_BYTES * 8)
        this.#checkNode(body, rec)
        rec.mq = readMqReport(body)
        // Barriers one member passed change the answer for every member of its group.
        this.#table.changed()
        return send(res, 204)
      }
      case 'POST /report': {
        const body = await readJson(req, MAX_AGENT_BODY_BYTES)
        this.#checkNode(body, rec)
        const issues = Array.isArray(body.issues) ? (body.issues.slice(0, 100) as RuleIssue[]) : []
        const version = intField(body, 'version', -1, true)
        rec.lastError = { version, issues }
        this.emit('rejected', rec.nodeId, version, issues)
        return send(res, 204)
      }
      case 'DELETE /session':
        this.#table.remove(rec)
        this.emit('node', this.#table.view(rec), 'left')
        return send(res, 204)
      default:
        throw new HttpError(404, 'NOT_FOUND', `no endpoint ${route}`)
    }
  }

  /** Records one acknowledgement. @throws HttpError 403 (another node's), 409 (never published) */
  #ack(rec: NodeRecord, body: Record<string, unknown>): void {
    this.#checkNode(body, rec)
    const version = intField(body, 'version', -1)!
    if (version > this.latestVersion)
      throw new HttpError(409, 'UNKNOWN_VERSION', `version ${version} was never published`)
    this.#table.ack(rec, version, intField(body, 'inflightFenced', 0, true))
    this.emit('ack', rec.nodeId, version)
  }

  /**
   * The ack stream of a session: a long-lived chunked request whose body is one JSON ack per line
   * (newline-delimited). Each line is handled as `POST /ack`; the answer (204) comes when the agent ends
   * the body. A bad line, an over-long line or a replaced session ends the stream with its error.
   */
  #ackStream(req: IncomingMessage, res: ServerResponse, rec: NodeRecord): Promise<void> {
    const session = rec.session
    return new Promise<void>((resolve) => {
      let buffered = ''
      const finish = (err?: HttpError) => {
        req.removeAllListeners('data')
        this.#ackStreams.delete(res)
        if (err !== undefined) {
          sendError(res, err)
          req.resume()
        } else if (!res.headersSent) send(res, 204)
        resolve()
      }
      this.#ackStreams.set(res, finish)
      req.setEncoding('utf8')
      req.on('data', (chunk: string) => {
        buffered += chunk
        let nl = buffered.indexOf('\n')
        while (nl !== -1) {
          const line = buffered.slice(0, nl)
          buffered = buffered.slice(nl + 1)
          nl = buffered.indexOf('\n')
          if (line.trim() === '') continue
          if (this.#table.bySession(session) !== rec) {
            return finish(new HttpError(401, 'UNAUTHORIZED', 'missing, wrong or replaced session token'))
          }
          try {
            this.#ack(rec, parseLine(line))
          } catch (err) {
            return finish(err instanceof HttpError ? err : new HttpError(400, 'BAD_BODY', String(err)))
          }
        }
        if (buffered.length > MAX_AGENT_BODY_BYTES) {
          finish(
            new HttpError(413, 'BODY_TOO_LARGE', `an ack line is longer than ${MAX_AGENT_BODY_BYTES} bytes`),
          )
        }
      })
      req.once('end', () => finish())
      res.once('close', () => {
        this.#ackStreams.delete(res)
        resolve()
      })
    })
  }

  async #register(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.#tokens.has(bearer(req)))
      throw new HttpError(401, 'UNAUTHORIZED', 'missing or wrong bearer token')
    const body = await readJson(req, MAX_AGENT_BODY_BYTES)
    const rec = this.#table.register({
      nodeId: textField(body, 'nodeId', NODE_ID)!,
      app: textField(body, 'app', NAME)!,
      unit: textField(body, 'unit', NAME)!,
      address: textField(body, 'address', ADDRESS, true),
      pid: intField(body, 'pid', 0, true),
      appliedVersion: Math.min(intField(body, 'version', -1)!, this.latestVersion),
      session: randomBytes(24).toString('base64url'),
    })
    this.emit('node', this.#table.view(rec), 'joined')
    send(res, 200, {
      session: rec.session,
      leaseMs: this.leaseMs,
      heartbeatMs: this.heartbeatMs,
      latestVersion: this.latestVersion,
    })
  }

  /**
   * Who serves `app`, for service clients (`ControlPlaneRegistry`). Read-only, so either credential
   * will do: the shared agent token (checked in constant time) or the session of any live node.
   * @throws HttpError 401 / 400
   */
  #registry(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void {
    const token = bearer(req)
    if (!this.#tokens.has(token) && (token === undefined || this.#table.bySession(token) === undefined))
      throw new HttpError(401, 'UNAUTHORIZED', 'missing or wrong bearer token')
    const app = query.get('app')
    if (app === null || !NAME.test(app)) throw new HttpError(400, 'BAD_QUERY', 'app must be an app name')
    const body: RegistryResponse = {
      nodes: this.#table
        .list()
        .filter((n) => n.app === app)
        .map((n) => ({
          nodeId: n.nodeId,
          app: n.app,
          unit: n.unit,
          ...(n.address === undefined ? {} : { address: n.address }),
          version: n.appliedVersion,
          // A node that left is no longer listed; one that stopped heartbeating is listed as unhealthy.
          healthy: !n.lapsed,
        })),
    }
    send(res, 200, body)
  }

  /** The node of a session token. @throws HttpError 401 */
  #session(req: IncomingMessage): NodeRecord {
    const token = bearer(req)
    const rec = token === undefined ? undefined : this.#table.bySession(token)
    if (rec === undefined)
      throw new HttpError(401, 'UNAUTHORIZED', 'missing, wrong or replaced session token')
    return rec
  }

  /** A node may speak only for itself. @throws HttpError 403 */
  #checkNode(body: Record<string, unknown>, rec: NodeRecord): void {
    if (body.nodeId !== undefined && body.nodeId !== rec.nodeId) {
      throw new HttpError(
        403,
        'FORBIDDEN',
        `session of node ${rec.nodeId} cannot speak for node ${String(body.nodeId)}`,
      )
    }
  }

  /** The versions after `since`, in order; only the latest when `since` is older than the history. */
  #after(since: number): Version[] {
    const h = this.#history
    if (h.length === 0 || since >= h.at(-1)!.version) return []
    if (since < h[0]!.version - 1) return [h.at(-1)!]
    return h.filter((v) => v.version > since)
  }

  #stream(req: IncomingMessage, res: ServerResponse, rec: NodeRecord): void {
    const last = Number(req.headers['last-event-id'] ?? rec.appliedVersion)
    const since = Number.isSafeInteger(last) ? last : -1
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    })
    res.write(`retry: 1000\n\n`)
    for (const v of this.#after(since)) res.write(v.frame)
    rec.streams++
    this.#streams.set(res, rec)
    res.on('close', () => {
      this.#streams.delete(res)
      rec.streams--
    })
  }

  #poll(res: ServerResponse, rec: NodeRecord, query: URLSearchParams): void {
    const since = Number(query.get('since') ?? rec.appliedVersion)
    const waitMs = Math.min(Number(query.get('waitMs') ?? 30_000), MAX_WAIT_MS)
    if (!Number.isSafeInteger(since) || !Number.isFinite(waitMs) || waitMs < 0) {
      throw new HttpError(400, 'BAD_QUERY', 'since must be a whole number and waitMs a duration in ms')
    }
    const poll: Poll = { rec, since, res, timer: undefined }
    poll.timer = setTimeout(() => this.#endPoll(poll, 204), waitMs)
    rec.streams++
    this.#polls.add(poll)
    res.on('close', () => this.#endPoll(poll))
    this.#answerPoll(poll)
  }

  #answerPoll(poll: Poll): void {
    const next = this.#after(poll.since)[0]
    if (next === undefined) return
    this.#endPoll(poll)
    const body = `{"version":${next.version},"ruleSet":${next.json}}`
    poll.res
      .writeHead(200, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
      })
      .end(body)
  }

  #endPoll(poll: Poll, status?: number): void {
    if (!this.#polls.delete(poll)) return
    clearTimeout(poll.timer)
    poll.rec.streams--
    if (status !== undefined && !poll.res.headersSent) send(poll.res, status)
  }

  async close(): Promise<void> {
    clearInterval(this.#keepAlive)
    this.#table.close()
    for (const res of this.#streams.keys()) res.end()
    for (const finish of [...this.#ackStreams.values()]) {
      finish(new HttpError(503, 'SHUTTING_DOWN', 'the control plane is shutting down'))
    }
    for (const poll of [...this.#polls]) this.#endPoll(poll, 503)
    const server = this.#server
    if (server) {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/** One line of an ack stream as a JSON object. @throws HttpError 400 */
function parseLine(line: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new HttpError(400, 'BAD_JSON', 'an ack line is not valid JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpError(400, 'BAD_BODY', 'an ack line must be a JSON object')
  }
  return value as Record<string, unknown>
}
