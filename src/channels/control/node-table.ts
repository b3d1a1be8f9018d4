/**
 * The control plane's view of every agent: identity, applied version, heartbeat, lease expiry and
 * in-flight guarded writes on fenced keys; plus waits on them ("every node acked version N or lapsed",
 * "no in-flight write on a fenced key"). A node whose lease lapsed is treated as self-fenced: it rejects
 * every guarded write until it is in sync again, so a cut-over may proceed without it.
 */
import type { RuleIssue } from '../../errors/index.js'
import type { MqDrainReport } from '../types.js'

/** One agent as the server sees it. */
export interface NodeView {
  readonly nodeId: string
  readonly app: string
  readonly unit: string
  readonly address: string | undefined
  readonly pid: number | undefined
  /** Highest version the node acknowledged (-1: none). */
  readonly appliedVersion: number
  readonly registeredAt: number
  readonly lastHeartbeatAt: number
  readonly leaseExpiresAt: number
  /** True when the lease lapsed: the node is self-fenced. */
  readonly lapsed: boolean
  readonly inflightFenced: number
  /** The message layer's drain state the node last reported; undefined when it has none. */
  readonly mq?: MqDrainReport | undefined
  /** True while the node holds a rule stream (SSE or long-poll) open. */
  readonly connected: boolean
  readonly lastError:
    | { readonly version: number | undefined; readonly issues: readonly RuleIssue[] }
    | undefined
}

export interface NodeRecord {
  nodeId: string
  app: string
  unit: string
  address: string | undefined
  pid: number | undefined
  session: string
  appliedVersion: number
  registeredAt: number
  lastHeartbeatAt: number
  leaseExpiresAt: number
  inflightFenced: number
  mq: MqDrainReport | undefined
  streams: number
  lastError: NodeView['lastError']
}

/** Result of a wait: who satisfied it, who was waited out (lapsed), who did not. */
export interface WaitResult {
  readonly ok: boolean
  readonly satisfied: readonly string[]
  readonly lapsed: readonly string[]
  readonly pending: readonly string[]
}

interface Waiter {
  readonly test: (n: NodeRecord) => boolean
  readonly filter: (n: NodeRecord) => boolean
  readonly resolve: (r: WaitResult) => void
  timer: NodeJS.Timeout | undefined
  /** Nodes that pass the filter, fail the test and hold a running lease: what the wait waits for. */
  readonly pending: Set<NodeRecord>
}

/** A node is gone for good (forgotten) after this many lease periods without a heartbeat. */
const FORGET_AFTER_LEASES = 60

export class NodeTable {
  readonly #nodes = new Map<string, NodeRecord>()
  readonly #sessions = new Map<string, NodeRecord>()
  readonly #waiters = new Set<Waiter>()
  readonly #now: () => number
  readonly #leaseMs: number
  #leaseTimer: NodeJS.Timeout | undefined

  constructor(leaseMs: number, now: () => number) {
    this.#leaseMs = leaseMs
    this.#now = now
  }

  get size(): number {
    return this.#nodes.size
  }

  /** Adds or replaces a node; a re-registration invalidates its old session. */
  register(
    n: Omit<
      NodeRecord,
      | 'registeredAt'
      | 'lastHeartbeatAt'
      | 'leaseExpiresAt'
      | 'inflightFenced'
      | 'mq'
      | 'streams'
      | 'lastError'
    >,
  ): NodeRecord {
    const old = this.#nodes.get(n.nodeId)
    if (old) this.#sessions.delete(old.session)
    const now = this.#now()
    const rec: NodeRecord = {
      ...n,
      registeredAt: now,
      lastHeartbeatAt: now,
      leaseExpiresAt: now + this.#leaseMs,
      inflightFenced: 0,
      mq: undefined,
      streams: 0,
      lastError: undefined,
    }
    this.#nodes.set(n.nodeId, rec)
    this.#sessions.set(n.session, rec)
    if (old) for (const w of this.#waiters) w.pending.delete(old)
    this.changed(rec)
    return rec
  }

  /** Every node record (live or lapsed). */
  records(): IterableIterator<NodeRecord> {
    return this.#nodes.values()
  }

  bySession(session: string): NodeRecord | undefined {
    return this.#sessions.get(session)
  }

  remove(rec: NodeRecord): void {
    this.#sessions.delete(rec.session)
    if (this.#nodes.get(rec.nodeId) === rec) this.#nodes.delete(rec.nodeId)
    for (const w of this.#waiters) w.pending.delete(rec)
    this.changed(rec)
  }

  /** Records that the node applied `version` (acks only move forward). */
  ack(rec: NodeRecord, version: number, inflightFenced?: number): void {
    if (version > rec.appliedVersion) rec.appliedVersion = version
    if (inflightFenced !== undefined) rec.inflightFenced = inflightFenced
    this.changed(rec)
  }

  heartbeat(rec: NodeRecord, version: number, inflightFenced: number): void {
    const now = this.#now()
    rec.lastHeartbeatAt = now
    rec.leaseExpiresAt = now + this.#leaseMs
    this.ack(rec, version, inflightFenced)
  }

  isLapsed(rec: NodeRecord): boolean {
    return this.#now() >= rec.leaseExpiresAt
  }

  view(rec: NodeRecord): NodeView {
    const { session: _session, streams, ...rest } = rec
    return { ...rest, lapsed: this.isLapsed(rec), connected: streams > 0 }
  }

  list(): NodeView[] {
    this.#forget()
    return [...this.#nodes.values()].map((n) => this.view(n))
  }

  /**
   * Waits until every node passing `filter` satisfies `test` or has lapsed, or `timeoutMs` passes.
   * Nodes that register meanwhile count too.
   */
  waitFor(
    test: (n: NodeRecord) => boolean,
    options: { timeoutMs: number; filter?: (n: NodeRecord) => boolean },
  ): Promise<WaitResult> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        test,
        filter: options.filter ?? (() => true),
        resolve,
        timer: undefined,
        pending: new Set(),
      }
      waiter.timer = setTimeout(() => this.#settle(waiter, true), options.timeoutMs)
      this.#waiters.add(waiter)
      for (const n of this.#nodes.values()) this.#track(waiter, n)
      this.#settleIfDone(waiter)
      this.#scheduleLeaseCheck()
    })
  }

  /**
   * Re-evaluates the waits; call after any change: of `rec` only (O(waits)), or of anything (a full
   * rescan, O(waits x nodes)).
   */
  changed(rec?: NodeRecord): void {
    if (this.#waiters.size === 0) {
      this.#scheduleLeaseCheck()
      return
    }
    for (const w of [...this.#waiters]) {
      if (rec === undefined) {
        w.pending.clear()
        for (const n of this.#nodes.values()) this.#track(w, n)
      } else if (this.#nodes.get(rec.nodeId) === rec) this.#track(w, rec)
      this.#settleIfDone(w)
    }
    if (rec === undefined) this.#scheduleLeaseCheck()
  }

  #track(w: Waiter, n: NodeRecord): void {
    if (w.filter(n) && !w.test(n) && !this.isLapsed(n)) w.pending.add(n)
    else w.pending.delete(n)
  }

  #settleIfDone(w: Waiter): void {
    if (w.pending.size === 0) this.#settle(w, false)
  }

  #settle(w: Waiter, timedOut: boolean): void {
    if (!this.#waiters.has(w)) return
    const satisfied: string[] = []
    const lapsed: string[] = []
    const pending: string[] = []
    for (const n of this.#nodes.values()) {
      if (!w.filter(n)) continue
      if (w.test(n)) satisfied.push(n.nodeId)
      else if (this.isLapsed(n)) lapsed.push(n.nodeId)
      else pending.push(n.nodeId)
    }
    if (pending.length > 0 && !timedOut) return
    this.#waiters.delete(w)
    clearTimeout(w.timer)
    w.resolve({ ok: pending.length === 0, satisfied, lapsed, pending })
  }

  /** Wakes the waits when the earliest running lease lapses. */
  #scheduleLeaseCheck(): void {
    if (this.#waiters.size === 0) {
      clearTimeout(this.#leaseTimer)
      this.#leaseTimer = undefined
      return
    }
    // Leases only move forward and a pending set only shrinks between rescans, so the earliest expiry
    // among pending nodes now is never later than the next lapse: the timer cannot fire too late.
    const now = this.#now()
    let next = Number.POSITIVE_INFINITY
    for (const w of this.#waiters)
      for (const n of w.pending)
        if (n.leaseExpiresAt > now && n.leaseExpiresAt < next) next = n.leaseExpiresAt
    clearTimeout(this.#leaseTimer)
    this.#leaseTimer = undefined
    if (next === Number.POSITIVE_INFINITY) return
    this.#leaseTimer = setTimeout(() => this.changed(), Math.max(1, next - now + 1))
    this.#leaseTimer.unref()
  }

  #forget(): void {
    const cutoff = this.#now() - FORGET_AFTER_LEASES * this.#leaseMs
    for (const n of this.#nodes.values()) if (n.streams === 0 && n.lastHeartbeatAt < cutoff) this.remove(n)
  }

  /** Ends every wait (as timed out) and timer. */
  close(): void {
    for (const w of [...this.#waiters]) this.#settle(w, true)
    clearTimeout(this.#leaseTimer)
  }
}
