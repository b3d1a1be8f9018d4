/**
 * In-flight guarded writes, keyed by route id. The DB guard calls `begin` before a guarded write (or at a
 * transaction's first write) and `end` after it commits, rolls back or its connection is released. The
 * control plane's drain step (DESIGN §4 step 3) waits until no agent has one on a fenced key.
 */

/** A write in progress; `end()` is idempotent. */
export interface WriteHandle {
  readonly routeId: string
  end(): void
}

export class InflightWrites {
  readonly #counts = new Map<string, number>()
  #total = 0
  readonly #onIdle: (routeId: string) => void

  /** `onIdle` runs whenever the last write of a route id ends. */
  constructor(onIdle: (routeId: string) => void = () => {}) {
    this.#onIdle = onIdle
  }

  /** Registers a write for `routeId`. */
  begin(routeId: string): WriteHandle {
    this.#counts.set(routeId, (this.#counts.get(routeId) ?? 0) + 1)
    this.#total++
    return new Handle(this, routeId)
  }

  /** @internal The end of one write of `routeId` (called once per handle). */
  finish(routeId: string): void {
    const n = (this.#counts.get(routeId) ?? 1) - 1
    this.#total--
    if (n > 0) this.#counts.set(routeId, n)
    else {
      this.#counts.delete(routeId)
      this.#onIdle(routeId)
    }
  }

  /** Writes in progress. */
  get total(): number {
    return this.#total
  }

  /** Writes in progress whose route id satisfies `fenced` (the current rule set's fence). */
  count(fenced: (routeId: string) => boolean): number {
    let n = 0
    for (const [id, c] of this.#counts) if (fenced(id)) n += c
    return n
  }
}

/** A class, not a closure per write: `begin` runs on every guarded statement. */
class Handle implements WriteHandle {
  readonly routeId: string
  #owner: InflightWrites | undefined

  constructor(owner: InflightWrites, routeId: string) {
    this.#owner = owner
    this.routeId = routeId
  }

  end(): void {
    const owner = this.#owner
    if (owner === undefined) return
    this.#owner = undefined
    owner.finish(this.routeId)
  }
}
