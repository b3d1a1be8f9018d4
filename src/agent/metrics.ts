/**
 * Agent metrics on prom-client. Route decisions are counted in a plain Float64Array on the hot path and
 * folded into the prom-client counter only when scraped or when the rule set changes, so counting costs
 * one array increment per decision.
 */
import { Counter, Gauge, Registry } from 'prom-client'
import type { Router } from '../rules/index.js'

const REASONS = ['range', 'label', 'missing', 'not_numeric', 'uncovered'] as const

export class AgentMetrics {
  readonly registry: Registry
  readonly #decisions: Counter<'unit' | 'reason'>
  readonly #applies: Counter<'outcome'>
  readonly #version: Gauge
  readonly #leaseValid: Gauge
  readonly #inflight: Gauge
  readonly #rejections: Counter<'code'>
  #router: Router | undefined
  #counts = new Float64Array(0)
  #slots = 1

  constructor(registry: Registry | undefined, read: { inflight: () => number; leaseValid: () => number }) {
    this.registry = registry ?? new Registry()
    const registers = [this.registry]
    this.#decisions = new Counter({
      name: 'appactive_route_decisions_total',
      help: 'Route decisions by unit and reason (unit "none" = rejected).',
      labelNames: ['unit', 'reason'],
      registers,
      collect: () => this.#fold(),
    })
    this.#applies = new Counter({
      name: 'appactive_agent_apply_total',
      help: 'Rule-set deliveries by outcome: applied, duplicate, stale, rejected.',
      labelNames: ['outcome'],
      registers,
    })
    this.#version = new Gauge({
      name: 'appactive_agent_rule_version',
      help: 'Version of the rule set in force (-1 before the first).',
      registers,
      // Across cluster workers the oldest version in force is the one that matters.
      aggregator: 'min',
    })
    this.#version.set(-1)
    this.#leaseValid = new Gauge({
      name: 'appactive_agent_lease_valid',
      help: '1 when guarded writes may proceed (lease valid or leasing off), else 0.',
      registers,
      aggregator: 'min',
      collect() {
        this.set(read.leaseValid())
      },
    })
    this.#inflight = new Gauge({
      name: 'appactive_agent_inflight_writes',
      help: 'Guarded writes in progress.',
      registers,
      collect() {
        this.set(read.inflight())
      },
    })
    this.#rejections = new Counter({
      name: 'appactive_guard_rejections_total',
      help: 'Guarded writes refused, by error code.',
      labelNames: ['code'],
      registers,
    })
  }

  /** Counts one decision (the packed code of `Router.lookup`). */
  decision(code: number): void {
    const i = (code >>> 16) * this.#slots + (code & 0x7fff)
    if (i < this.#counts.length) this.#counts[i]!++
  }

  applied(outcome: 'applied' | 'duplicate' | 'stale' | 'rejected', router: Router | undefined): void {
    this.#applies.inc({ outcome })
    if (outcome !== 'applied' || router === undefined) return
    this.#fold()
    this.#router = router
    this.#slots = router.units.length + 1
    this.#counts = new Float64Array(this.#slots * REASONS.length)
    this.#version.set(router.version)
  }

  rejected(code: string): void {
    this.#rejections.inc({ code })
  }

  #fold(): void {
    const router = this.#router
    if (router === undefined) return
    const counts = this.#counts
    for (let i = 0; i < counts.length; i++) {
      const n = counts[i]!
      if (n === 0) continue
      const unit = i % this.#slots
      const reason = REASONS[Math.floor(i / this.#slots)]!
      this.#decisions.inc({ unit: unit === 0 ? 'none' : router.units[unit - 1]!, reason }, n)
      counts[i] = 0
    }
  }
}
