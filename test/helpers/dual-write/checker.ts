/**
 * The dual-write checker (issue 7 item 8): given every row the writers' database accepted and every
 * write they acknowledged, proves that no route id was accepted by two units in overlapping time, none
 * was accepted while fenced or outside its owner, and no acknowledged write is missing.
 */
import type { Router } from '../../../src/rules/index.js'

/** A write a writer acknowledged (it saw its COMMIT succeed). Times are epoch ms (one machine clock). */
export interface AckedWrite {
  readonly row: number
  readonly id: string
  readonly unit: string
  readonly node: string
  /** Before the agent's check. */
  readonly t0: number
  /** After COMMIT returned. */
  readonly t1: number
  readonly version: number
}

/** A row the database holds (committed). */
export interface DbRow {
  readonly row: number
  readonly id: string
  readonly unit: string
  readonly node: string
  readonly version: number
  readonly t0: number
}

export type Violation =
  | { readonly kind: 'missing'; readonly write: AckedWrite }
  | { readonly kind: 'overlap'; readonly id: string; readonly a: Interval; readonly b: Interval }
  | { readonly kind: 'fenced' | 'not-owner'; readonly row: DbRow; readonly owner: string | null }
  | { readonly kind: 'unknown-version'; readonly row: DbRow }

export interface Interval {
  readonly row: number
  readonly unit: string
  readonly node: string
  readonly t0: number
  readonly t1: number
}

export interface History {
  readonly rows: readonly DbRow[]
  readonly acks: readonly AckedWrite[]
  /** When each writer process was killed: a committed write it never acknowledged ended by then. */
  readonly killedAt: ReadonlyMap<string, readonly number[]>
  /** The router of every rule-set version published. */
  readonly routers: ReadonlyMap<number, Router>
  /** When the run ended: the upper bound for a row with no acknowledgement and no kill after it. */
  readonly endedAt: number
}

export function checkHistory(h: History): Violation[] {
  const out: Violation[] = []
  const byRow = new Map(h.rows.map((r) => [r.row, r]))
  const acked = new Map(h.acks.map((a) => [a.row, a]))
  for (const a of h.acks) if (!byRow.has(a.row)) out.push({ kind: 'missing', write: a })

  for (const r of h.rows) {
    const router = h.routers.get(r.version)
    if (router === undefined) {
      out.push({ kind: 'unknown-version', row: r })
      continue
    }
    const d = router.route(r.id)
    if (d.fenced) out.push({ kind: 'fenced', row: r, owner: d.unit })
    else if (d.unit !== r.unit) out.push({ kind: 'not-owner', row: r, owner: d.unit })
  }

  // The window of each accepted write: from the check to the end of its COMMIT.
  const byId = new Map<string, Interval[]>()
  for (const r of h.rows) {
    const ack = acked.get(r.row)
    const t1 = ack?.t1 ?? (h.killedAt.get(r.node) ?? []).find((k) => k >= r.t0) ?? h.endedAt
    const list = byId.get(r.id) ?? []
    list.push({ row: r.row, unit: r.unit, node: r.node, t0: r.t0, t1 })
    byId.set(r.id, list)
  }
  for (const [id, list] of byId) {
    list.sort((a, b) => a.t0 - b.t0)
    // Sweep: the open intervals so far; any open one of another unit overlapping the next is a violation.
    const open: Interval[] = []
    for (const cur of list) {
      for (let i = open.length - 1; i >= 0; i--) if (open[i]!.t1 <= cur.t0) open.splice(i, 1)
      const other = open.find((o) => o.unit !== cur.unit)
      if (other !== undefined) out.push({ kind: 'overlap', id, a: other, b: cur })
      open.push(cur)
    }
  }
  return out
}
