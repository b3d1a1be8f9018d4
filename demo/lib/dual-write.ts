/**
 * The dual-write check of demo:load, as a pure function: given the orders written during a run (each
 * with the unit and node that accepted it and the rule-set version that let it through), the router of
 * every version, and the orders the shop confirmed to its clients, list every violation of the
 * multi-active invariant (DESIGN §4): no route id is ever accepted for writing by two units.
 */
import type { Router } from 'appactive/rules'

export interface OrderRow {
  readonly id: number
  readonly r_id: string
  readonly unit: string
  readonly node: string
  readonly rule_version: number
}

export interface ConfirmedOrder {
  readonly id: number
  readonly rId: string
  readonly unit: string
}

/** Every violation, one sentence each; empty when the history is clean. Rows must be in commit (id) order. */
export function dualWriteViolations(
  rows: readonly OrderRow[],
  routers: ReadonlyMap<number, Router>,
  confirmed: readonly ConfirmedOrder[] = [],
): string[] {
  const violations: string[] = []
  /** Per user: the highest rule version under which each unit wrote for them so far. */
  const writers = new Map<string, Map<string, number>>()
  for (const row of rows) {
    const router = routers.get(row.rule_version)
    if (router === undefined) {
      violations.push(
        `order ${row.id}: written under rule set v${row.rule_version}, which was never published`,
      )
      continue
    }
    const d = router.route(row.r_id)
    if (d.unit !== row.unit) {
      violations.push(
        `order ${row.id} of r_id ${row.r_id}: written by ${row.node} in ${row.unit}, but v${row.rule_version} gives it to ${d.unit}`,
      )
    }
    if (d.fenced) {
      violations.push(
        `order ${row.id} of r_id ${row.r_id}: written by ${row.node} while fenced (v${row.rule_version})`,
      )
    }
    const seen = writers.get(row.r_id) ?? new Map<string, number>()
    for (const [unit, version] of seen) {
      // A unit wrote under version V; another unit writing later under an OLDER version means both
      // accepted writes for the same user in overlapping time: the dual write.
      if (unit !== row.unit && version > row.rule_version) {
        violations.push(
          `r_id ${row.r_id}: ${row.unit} wrote order ${row.id} under v${row.rule_version} after ${unit} wrote under v${version}`,
        )
      }
    }
    seen.set(row.unit, Math.max(seen.get(row.unit) ?? -1, row.rule_version))
    writers.set(row.r_id, seen)
  }
  const byId = new Map(rows.map((r) => [r.id, r]))
  for (const c of confirmed) {
    const row = byId.get(c.id)
    if (row === undefined || row.r_id !== c.rId || row.unit !== c.unit) {
      violations.push(
        `order ${c.id} of r_id ${c.rId} was confirmed by unit ${c.unit} but is not in the database as such`,
      )
    }
  }
  return violations
}
