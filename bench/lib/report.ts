/**
 * Bench output (DESIGN §6): a readable table for people, then as the LAST line of stdout one JSON object
 * `{"bench": NAME, "machine": {...}, "metrics": {METRIC: number, ...}}` for tools. Metric names carry
 * their unit, optionally followed by a size qualifier (`propagation_p99_ms_1000`: ms, at 1,000 agents);
 * `report` refuses a name without one, or a value that is not a finite number, so a broken bench fails
 * loudly instead of publishing a bad line.
 */
import type { MachineInfo } from './machine.js'

/** One table row: column name -> cell. Numbers are formatted, strings printed as they are. */
export type Row = Readonly<Record<string, string | number>>

/** The unit suffixes DESIGN §6 allows on a metric name. */
export const METRIC_UNITS = ['_ns', '_ms', '_mb', '_rps', '_ratio'] as const

/** True when `name` ends with a unit suffix, or with a unit suffix and a numeric size (`_ms_1000`). */
export function hasUnit(name: string): boolean {
  const bare = name.replace(/_\d+$/, '')
  return METRIC_UNITS.some((u) => bare.endsWith(u))
}

export interface Report {
  /** The bench name: `npm run bench:NAME`. */
  readonly bench: string
  readonly machine: MachineInfo
  readonly metrics: Readonly<Record<string, number>>
}

/** Formats a number for a table cell: 3 significant digits below 100, then grouped integers. */
export function formatCell(value: string | number): string {
  if (typeof value === 'string') return value
  if (!Number.isFinite(value)) return String(value)
  const abs = Math.abs(value)
  if (abs >= 100) return Math.round(value).toLocaleString('en-US')
  if (abs === 0) return '0'
  return value.toPrecision(3)
}

/** Renders rows as an aligned text table (numbers right-aligned) under an optional title. */
export function formatTable(rows: readonly Row[], title?: string): string {
  const columns: string[] = []
  for (const row of rows) for (const c of Object.keys(row)) if (!columns.includes(c)) columns.push(c)
  const cells = rows.map((row) => columns.map((c) => (row[c] === undefined ? '' : formatCell(row[c]!))))
  const numeric = columns.map((c) => rows.every((row) => row[c] === undefined || typeof row[c] === 'number'))
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)))
  const line = (parts: readonly string[]): string =>
    parts
      .map((p, i) => (numeric[i] ? p.padStart(widths[i]!) : p.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  const out: string[] = []
  if (title !== undefined) out.push(title)
  out.push(line(columns), widths.map((w) => '-'.repeat(w)).join('  '))
  for (const r of cells) out.push(line(r))
  return out.join('\n')
}

/** Prints a table (and a blank line after it) to stdout. */
export function printTable(rows: readonly Row[], title?: string): void {
  process.stdout.write(`${formatTable(rows, title)}\n\n`)
}

/** A row of a bench's targets table: `NAME >= LIMIT` (or `<=`), the metric's value, and met or MISSED. */
export function targetRow(
  metrics: Readonly<Record<string, number>>,
  name: string,
  op: '>=' | '<=',
  limit: number,
): Row {
  const value = metrics[name]
  if (value === undefined) throw new Error(`no metric ${name} to check against its target`)
  const met = op === '>=' ? value >= limit : value <= limit
  return { target: `${name} ${op} ${limit}`, value, '': met ? 'met' : 'MISSED' }
}

/**
 * Prints the machine-readable result. Call it last: nothing may be written to stdout after it.
 * @throws Error when a metric name lacks a unit suffix or a value is not a finite number.
 */
export function printReport(report: Report): void {
  for (const [name, value] of Object.entries(report.metrics)) {
    if (!hasUnit(name))
      throw new Error(`metric ${name} must end with one of ${METRIC_UNITS.join(', ')} (then optionally _N)`)
    if (typeof value !== 'number' || !Number.isFinite(value))
      throw new Error(`metric ${name} is ${String(value)}, not a finite number`)
  }
  process.stdout.write(
    `${JSON.stringify({ bench: report.bench, machine: report.machine, metrics: report.metrics })}\n`,
  )
}

/** Rounds to `digits` decimals, for metric values (sub-ns digits of a noisy median are noise). */
export function round(value: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
