/**
 * The supervisor's view of its children's output: one line per log record, prefixed with the process
 * (`center/orders`), pino JSON records shortened to their message and the fields worth reading.
 */

import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'

const color = process.stdout.isTTY && !process.env.NO_COLOR
const paint = (code: number, text: string) => (color ? `\x1b[${code}m${text}\x1b[0m` : text)
export const dim = (text: string) => paint(2, text)
export const bold = (text: string) => paint(1, text)
export const green = (text: string) => paint(32, text)
export const red = (text: string) => paint(31, text)
export const yellow = (text: string) => paint(33, text)

const UNIT_COLORS: Record<string, number> = { center: 36, unit: 35 }
const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }
const SKIP = new Set([
  'level',
  'time',
  'pid',
  'hostname',
  'msg',
  'nodeId',
  'app',
  'unit',
  'name',
  'channel',
  'log',
])

/** Per-request records of the control plane's HTTP server: shown only with --verbose. */
const CHATTER = new Set(['incoming request', 'request completed'])

/** One log record as a readable line (plain lines stay as they are), or undefined to skip it. */
export function formatRecord(line: string, verbose = false): string | undefined {
  if (!line.startsWith('{')) return line
  let record: Record<string, unknown>
  try {
    record = JSON.parse(line) as Record<string, unknown>
  } catch {
    return line
  }
  const level = typeof record.level === 'number' ? record.level : 30
  if (!verbose && CHATTER.has(String(record.msg))) return undefined
  const extras = Object.entries(record)
    .filter(([k, v]) => !SKIP.has(k) && v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
  const text = `${LEVELS[level] ? `${LEVELS[level]} ` : ''}${String(record.msg ?? '')}${extras.length ? dim(` ${extras.join(' ')}`) : ''}`
  return level >= 50 ? red(text) : level >= 40 ? yellow(text) : text
}

/** Prints every line of `stream` with the process's prefix. */
export function pipeLines(
  stream: Readable,
  label: string,
  unit: string | undefined,
  out: (line: string) => void,
  verbose = false,
): void {
  const prefix = paint(unit ? (UNIT_COLORS[unit] ?? 0) : 33, label.padEnd(16))
  createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
    const text = line.trim() === '' ? undefined : formatRecord(line, verbose)
    if (text !== undefined) out(`${prefix} ${text}`)
  })
}
