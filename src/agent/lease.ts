/**
 * The agent's lease (DESIGN §4): while it holds a valid lease, the control plane may count on it to
 * obey the rule set it acknowledged. When heartbeats fail for longer than the lease, the agent rejects
 * every guarded write (APPACTIVE_LEASE_EXPIRED) until it is back in sync with the latest version; the
 * server, seeing the same lapse, treats the node as self-fenced and may proceed without it.
 *
 * Safety: the lease is measured from when a heartbeat was SENT, so it always ends no later than the
 * server's view of it (which starts when the heartbeat is received).
 */

/** A monotonic millisecond clock; injected so tests control time. */
export interface Clock {
  now(): number
}

/** `performance.now()`: monotonic, unaffected by wall-clock changes. */
export const systemClock: Clock = { now: () => performance.now() }

/** Lease states: `off` (no leasing channel), `pending` (not granted yet), `valid`, `expired`. */
export type LeaseState = 'off' | 'pending' | 'valid' | 'expired'

export class Lease {
  readonly #clock: Clock
  #enabled = false
  #expiresAt = Number.NEGATIVE_INFINITY
  #latestVersion = -1
  #everGranted = false

  constructor(clock: Clock) {
    this.#clock = clock
  }

  /** Turns leasing on (a leasing channel started). Until the first grant, writes are refused. */
  enable(): void {
    this.#enabled = true
  }

  get enabled(): boolean {
    return this.#enabled
  }

  /**
   * Records a successful heartbeat sent at `sentAt`. A lease that is not running (never granted, or
   * lapsed) is granted only when the agent is in sync (`appliedVersion >= latestVersion`); a running
   * lease is extended as long as heartbeats keep succeeding.
   */
  renew(sentAt: number, leaseMs: number, latestVersion: number, appliedVersion: number): void {
    if (latestVersion > this.#latestVersion) this.#latestVersion = latestVersion
    const running = this.#everGranted && this.#clock.now() < this.#expiresAt
    if (!running && appliedVersion < this.#latestVersion) return
    const until = sentAt + leaseMs
    if (until > this.#expiresAt) this.#expiresAt = until
    this.#everGranted = true
  }

  /** The newest version the server said exists. */
  get latestVersion(): number {
    return this.#latestVersion
  }

  /** Milliseconds of lease left (0 when lapsed; Infinity when leasing is off). */
  remainingMs(): number {
    if (!this.#enabled) return Number.POSITIVE_INFINITY
    return Math.max(0, this.#expiresAt - this.#clock.now())
  }

  /** The lease state now. */
  state(): LeaseState {
    if (!this.#enabled) return 'off'
    if (!this.#everGranted) return 'pending'
    return this.#clock.now() < this.#expiresAt ? 'valid' : 'expired'
  }

  /** True when guarded writes may proceed. */
  allowsWrites(): boolean {
    return !this.#enabled || (this.#everGranted && this.#clock.now() < this.#expiresAt)
  }
}
