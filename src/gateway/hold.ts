/**
 * Hold during fence (DESIGN §4): while a cut-over fences a key, the gateway parks requests for it instead
 * of failing them, and releases them when the agent applies the next rule-set version; the request is
 * then routed again (to the new owner, once the switch is published). Bounded in time and in count:
 * past either bound the request gets 503 with Retry-After.
 */
import type { HoldConfig } from './types.js'

/** Why a held request stopped waiting. */
export type HoldOutcome = 'changed' | 'timeout' | 'overflow' | 'aborted'

interface Waiter {
  resolve: (outcome: HoldOutcome) => void
  timer: NodeJS.Timeout
  signal: AbortSignal | undefined
  onAbort: () => void
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

export class FenceHold {
  readonly #config: HoldConfig
  readonly #waiters = new Set<Waiter>()
  #held = 0

  constructor(config: HoldConfig) {
    this.#config = config
  }

  /** Requests parked now. */
  get held(): number {
    return this.#held
  }

  /** True when a request with this method, for a fenced key, should be held (not forwarded). */
  applies(method: string | undefined): boolean {
    if (!this.#config.enabled) return false
    return this.#config.methods === 'all' || !SAFE_METHODS.has(method ?? 'GET')
  }

  /**
   * Waits until the next rule-set version is applied (`changed`), `remainingMs` passes (`timeout`), the
   * client goes away (`aborted`), or at once when the queue is full (`overflow`).
   */
  wait(remainingMs: number, signal?: AbortSignal): Promise<HoldOutcome> {
    if (this.#held >= this.#config.maxQueue) return Promise.resolve('overflow')
    if (remainingMs <= 0) return Promise.resolve('timeout')
    if (signal?.aborted) return Promise.resolve('aborted')
    return new Promise((resolve) => {
      const waiter: Waiter = {
        resolve: (outcome) => {
          if (!this.#waiters.delete(waiter)) return
          this.#held--
          clearTimeout(waiter.timer)
          waiter.signal?.removeEventListener('abort', waiter.onAbort)
          resolve(outcome)
        },
        timer: setTimeout(() => waiter.resolve('timeout'), remainingMs),
        signal,
        onAbort: () => waiter.resolve('aborted'),
      }
      this.#waiters.add(waiter)
      this.#held++
      signal?.addEventListener('abort', waiter.onAbort, { once: true })
    })
  }

  /** A new rule-set version is in force: every held request routes again. */
  release(): void {
    for (const w of [...this.#waiters]) w.resolve('changed')
  }

  /** Ends every wait (as timed out), e.g. at shutdown. */
  close(): void {
    for (const w of [...this.#waiters]) w.resolve('timeout')
  }

  get maxMs(): number {
    return this.#config.maxMs
  }

  get retryAfterS(): number {
    return this.#config.retryAfterS
  }
}
