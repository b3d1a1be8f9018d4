/**
 * Live progress of a cut-over or failover, from the operation's event stream, in three forms:
 *
 * - on a terminal: a spinner line for the running phase with its elapsed time and the latest note
 *   ("waiting for every agent to ack version 5"), replaced by a ✓ / ✗ line when the phase ends;
 * - piped: one plain line per ended phase, `phase fence ok 123 ms (version 2, 100 acked)`;
 * - `--json`: one JSON object per line for every event (`operation`, `progress`, `phase`), then `result`.
 *
 * Phase times are the orchestrator's own (`detail.ms`); the spinner's elapsed time is counted here.
 */
import type { Operation, PhaseRecord } from '../control/index.js'
import { isTTY, type TextSink } from './output.js'

/** What the operation runner tells the progress view. */
export interface ProgressView {
  /** A line about the whole operation (started, ended): printed as is, never in `--json`. */
  line(text: string): void
  /** Every stored change of the operation, in order. */
  operation(op: Operation): void
  /** A transient note from the orchestrator. */
  note(event: { readonly message: string; readonly at?: string; readonly data?: unknown }): void
  /** The end: `--json` prints a `result` object. */
  result(result: Record<string, unknown>): void
  /** Stops the spinner. */
  close(): void
}

export type ProgressMode = 'tty' | 'plain' | 'json'

/** The mode for a run: `--json` wins, then a terminal on stdout. */
export function progressMode(stdout: TextSink, json: boolean): ProgressMode {
  if (json) return 'json'
  return isTTY(stdout) ? 'tty' : 'plain'
}

export function createProgress(mode: ProgressMode, stdout: TextSink): ProgressView {
  if (mode === 'json') return new JsonProgress(stdout)
  return new PhaseProgress(mode === 'tty' ? new Spinner(stdout) : undefined, stdout)
}

/** `123 ms` below 10 s, then `12.3 s`. */
export function formatMs(ms: number): string {
  return ms < 10_000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`
}

/** A few facts of a phase's detail, for people: `version 2, 100 acked`. */
export function phaseSummary(p: PhaseRecord): string {
  const d = (p.detail ?? {}) as Record<string, unknown>
  const parts: string[] = []
  if (typeof d.error === 'string') parts.push(d.error)
  if (typeof d.version === 'number') parts.push(`version ${d.version}`)
  if (typeof d.acked === 'number') parts.push(`${d.acked} acked`)
  if (typeof d.drained === 'number') parts.push(`${d.drained} agent(s) drained`)
  if (Array.isArray(d.lapsed) && d.lapsed.length > 0) parts.push(`${d.lapsed.length} lapsed`)
  if (d.forced === true) parts.push("forced: the lost unit's leases were not waited out")
  if (Array.isArray(d.pairs)) {
    for (const pair of d.pairs as Record<string, unknown>[]) {
      const how =
        pair.skipped === true
          ? `${String(pair.kind)}, nothing to wait for`
          : `waited ${String(pair.waitedMs)} ms`
      parts.push(`${String(pair.source)} -> ${String(pair.target)}: ${how}`)
    }
  }
  if ('rpoMs' in d) parts.push(`RPO ${typeof d.rpoMs === 'number' ? `${d.rpoMs} ms` : 'unknown'}`)
  if (typeof d.rtoMs === 'number') parts.push(`RTO ${d.rtoMs} ms`)
  return parts.join(', ')
}

function phaseMs(p: PhaseRecord): number {
  const ms = (p.detail as { ms?: unknown } | undefined)?.ms
  if (typeof ms === 'number') return ms
  return p.endedAt === null ? 0 : Date.parse(p.endedAt) - Date.parse(p.startedAt)
}

const MARK: Record<string, string> = { ok: '✓', skipped: '-', compensated: '↺', failed: '✗' }

/** Finds phases that started or ended in each new version of the operation record. */
class PhaseTracker {
  readonly #seen = new Map<string, 'running' | 'ended'>()

  changes(op: Operation): { started: string[]; ended: PhaseRecord[] } {
    const started: string[] = []
    const ended: PhaseRecord[] = []
    for (const p of op.phases) {
      // A phase is one record, named and timed: a re-run of the same step has another start time.
      const key = `${p.name}@${p.startedAt}`
      const was = this.#seen.get(key)
      if (p.outcome === 'running') {
        if (was === undefined) {
          this.#seen.set(key, 'running')
          started.push(p.name)
        }
      } else if (was !== 'ended') {
        this.#seen.set(key, 'ended')
        ended.push(p)
      }
    }
    return { started, ended }
  }
}

/** The spinner line of the running phase (terminal only). */
class Spinner {
  static readonly FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
  readonly #out: TextSink
  #phase: { name: string; t0: number; note: string } | undefined
  #timer: NodeJS.Timeout | undefined
  #frame = 0

  constructor(out: TextSink) {
    this.#out = out
  }

  start(name: string): void {
    this.#phase = { name, t0: performance.now(), note: '' }
    this.#timer ??= setInterval(() => this.#render(), 100)
    this.#render()
  }

  note(message: string): void {
    if (this.#phase === undefined) return
    this.#phase.note = message
    this.#render()
  }

  /** Clears the spinner line, writes `text`, and draws the spinner again below it. */
  print(text: string): void {
    this.#out.write(`\r\x1b[2K${text}\n`)
    this.#render()
  }

  /** The running phase ended: its line is replaced by `text`. */
  end(text: string): void {
    this.#phase = undefined
    clearInterval(this.#timer)
    this.#timer = undefined
    this.#out.write(`\r\x1b[2K${text}\n`)
  }

  close(): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    if (this.#phase !== undefined) this.#out.write('\r\x1b[2K')
    this.#phase = undefined
  }

  #render(): void {
    const p = this.#phase
    if (p === undefined) return
    const frame = Spinner.FRAMES[this.#frame++ % Spinner.FRAMES.length]
    const elapsed = ((performance.now() - p.t0) / 1000).toFixed(1)
    const columns = (this.#out as { columns?: number }).columns || 100
    const text = `${frame} ${p.name.padEnd(9)} ${elapsed} s${p.note ? `  ${p.note}` : ''}`
    this.#out.write(`\r\x1b[2K${text.slice(0, Math.max(20, columns - 1))}`)
  }
}

/** Terminal (with a spinner) and plain output: one line per ended phase. */
class PhaseProgress implements ProgressView {
  readonly #spinner: Spinner | undefined
  readonly #out: TextSink
  readonly #phases = new PhaseTracker()

  constructor(spinner: Spinner | undefined, out: TextSink) {
    this.#spinner = spinner
    this.#out = out
  }

  line(text: string): void {
    if (this.#spinner) this.#spinner.print(text)
    else this.#out.write(`${text}\n`)
  }

  operation(op: Operation): void {
    const { started, ended } = this.#phases.changes(op)
    for (const p of ended) {
      const summary = phaseSummary(p)
      if (this.#spinner) {
        const mark = MARK[p.outcome] ?? '?'
        this.#spinner.end(
          `${mark} ${p.name.padEnd(9)} ${formatMs(phaseMs(p)).padStart(7)}  ${p.outcome}${summary ? `  ${summary}` : ''}`,
        )
      } else {
        this.#out.write(
          `phase ${p.name} ${p.outcome} ${Math.round(phaseMs(p))} ms${summary ? ` (${summary})` : ''}\n`,
        )
      }
    }
    for (const name of started) this.#spinner?.start(name)
  }

  note(event: { readonly message: string }): void {
    this.#spinner?.note(event.message)
  }

  result(): void {}

  close(): void {
    this.#spinner?.close()
  }
}

/** `--json`: one object per line; the operation records as they are stored. */
class JsonProgress implements ProgressView {
  readonly #out: TextSink
  readonly #phases = new PhaseTracker()

  constructor(out: TextSink) {
    this.#out = out
  }

  #write(value: unknown): void {
    this.#out.write(`${JSON.stringify(value)}\n`)
  }

  line(): void {}

  operation(op: Operation): void {
    this.#write({ type: 'operation', operation: op })
    for (const p of this.#phases.changes(op).ended) {
      this.#write({
        type: 'phase',
        operationId: op.id,
        name: p.name,
        outcome: p.outcome,
        ms: phaseMs(p),
        startedAt: p.startedAt,
        endedAt: p.endedAt,
        detail: p.detail ?? {},
      })
    }
  }

  note(event: { readonly message: string; readonly at?: string; readonly data?: unknown }): void {
    this.#write({ type: 'progress', ...event })
  }

  result(result: Record<string, unknown>): void {
    this.#write({ type: 'result', ...result })
  }

  close(): void {}
}
