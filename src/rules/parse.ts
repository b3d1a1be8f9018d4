/**
 * Reading rule-set text: JSON or YAML, with the line and column of a syntax error, then validation.
 * Pure (no I/O): callers read files and pass the text.
 */
import { parseDocument } from 'yaml'
import { RuleInvalidError, type RuleIssue } from '../errors/index.js'
import type { RuleSet } from './schema.js'
import { validateRuleSet } from './validate.js'

/** Text formats a rule set may be written in. */
export type TextFormat = 'json' | 'yaml'

/** Largest rule-set text accepted (a 10,000-range mapping is well under 1 MiB). */
export const MAX_TEXT_BYTES = 16 * 1024 * 1024

/** Guesses the format from a file name: `.json` is JSON, anything else YAML (a superset). */
export function formatOf(fileName: string): TextFormat {
  return fileName.toLowerCase().endsWith('.json') ? 'json' : 'yaml'
}

/**
 * Parses JSON or YAML text into a plain value.
 * @throws RuleInvalidError naming the file, line and column of the syntax error.
 */
export function parseText(text: string, format: TextFormat, file?: string): unknown {
  const at = (issue: RuleIssue): RuleInvalidError =>
    new RuleInvalidError([file ? { ...issue, file } : issue], 'file')
  if (text.length > MAX_TEXT_BYTES) throw at({ path: '', message: `is larger than ${MAX_TEXT_BYTES} bytes` })
  if (text.trim() === '') throw at({ path: '', message: 'is empty' })
  if (format === 'json') {
    try {
      return JSON.parse(text)
    } catch (err) {
      throw at({ path: '', message: `malformed JSON: ${jsonReason(err)}`, ...jsonPosition(text, err) })
    }
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, strict: true })
  const error = doc.errors[0]
  if (error) {
    const pos = error.linePos?.[0]
    throw at({
      path: '',
      message: `malformed YAML: ${firstLine(error.message)}`,
      ...(pos ? { line: pos.line, column: pos.col } : {}),
    })
  }
  try {
    return doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    throw at({
      path: '',
      message: `malformed YAML: ${firstLine(err instanceof Error ? err.message : String(err))}`,
    })
  }
}

/**
 * Parses and validates rule-set text.
 * @throws RuleInvalidError (APPACTIVE_RULE_INVALID) with every problem found.
 */
export function parseRuleSet(text: string, format: TextFormat = 'yaml', file?: string): RuleSet {
  const value = parseText(text, format, file)
  const v = validateRuleSet(value)
  if (!v.ok) throw new RuleInvalidError(file ? v.issues.map((i) => ({ ...i, file })) : v.issues)
  return v.ruleSet
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')
}

function jsonReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  // V8 quotes the whole input in some messages; keep only the reason.
  return message
    .replace(/, (?:\.\.\.)?".*"(?:\.\.\.)? is not valid JSON$/s, '')
    .replace(/ in JSON at position \d+.*$/s, '')
    .replace(/^JSON\.parse: /, '')
}

/** Line and column of a JSON syntax error: from V8's position when given, else by re-scanning. */
function jsonPosition(text: string, err: unknown): { line?: number; column?: number } {
  const message = err instanceof Error ? err.message : ''
  const m = /position (\d+)/.exec(message)
  let offset = m ? Number(m[1]) : -1
  if (offset < 0) {
    // V8 omits the position for "Unexpected token 'x'": find where a strict scanner stops.
    offset = scanJsonError(text)
  }
  if (offset < 0) return {}
  let line = 1
  let col = 1
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++
      col = 1
    } else col++
  }
  return { line, column: col }
}

/** Offset of the first character a JSON parser rejects, or -1 (bisects with JSON.parse on prefixes). */
function scanJsonError(text: string): number {
  // The longest prefix that is still a valid *beginning* of JSON is found with V8's own messages:
  // a prefix that ends early gives "Unexpected end of JSON input"; one past the error gives another message.
  let lo = 0
  let hi = text.length
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    try {
      JSON.parse(text.slice(0, mid))
      lo = mid
    } catch (e) {
      const atEnd = new RegExp(`position ${mid}(?!\\d)`).test((e as Error).message)
      if (e instanceof SyntaxError && (atEnd || /end of JSON input|Unterminated string/.test(e.message)))
        lo = mid
      else hi = mid - 1
    }
  }
  return lo < text.length ? lo : -1
}
