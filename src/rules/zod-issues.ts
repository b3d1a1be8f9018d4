/**
 * zod issues as plain sentences with paths (`mapping[1].ranges[0]: ...`), for every schema-checked
 * document: rule sets, gateway configs.
 */
import type { z } from 'zod'
import type { RuleIssue } from '../errors/index.js'

/** `['mapping', 1, 'ranges', 0]` -> `mapping[1].ranges[0]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out ? `.${String(part)}` : String(part)
  }
  return out
}

/** A short description of a value for messages (never more than about 40 characters of it). */
export function typeName(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'string')
    return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`
  return `${typeof value} ${String(value).slice(0, 40)}`
}

const EXPECTED: Record<string, string> = {
  array: 'a list',
  object: 'an object',
  record: 'an object',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
}

/** Choices of the discriminated unions, by field name. */
const CHOICES: Record<string, string> = {
  from: 'must be one of "query", "header" or "cookie"',
  type: 'must be one of "mod", "hash" or "identity"',
  fallback: 'must be "local", "reject" or { unit: NAME }',
}

/** Every zod issue as a `RuleIssue` (unknown keys become one issue per key). */
export function zodIssues(error: z.ZodError): RuleIssue[] {
  const issues: RuleIssue[] = []
  for (const issue of error.issues) {
    const path = formatPath(issue.path)
    const custom = !/^(Invalid|Too (small|big))/.test(issue.message)
    switch (issue.code) {
      case 'unrecognized_keys':
        for (const key of issue.keys) {
          issues.push({ path: formatPath([...issue.path, key]), message: `unknown field "${key}"` })
        }
        break
      case 'invalid_type':
        if (issue.input === undefined) {
          issues.push({ path, message: `is required (${EXPECTED[issue.expected] ?? issue.expected})` })
        } else if (issue.expected === 'int' && typeof issue.input === 'number') {
          issues.push({ path, message: `must be a whole number, got ${issue.input}` })
        } else {
          issues.push({
            path,
            message: `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${typeName(issue.input)}`,
          })
        }
        break
      case 'invalid_value':
        issues.push({
          path,
          message: `must be ${issue.values.map((v) => JSON.stringify(v)).join(' or ')}, got ${typeName(issue.input)}`,
        })
        break
      case 'invalid_union': {
        const choices = CHOICES[String(issue.path[issue.path.length - 1])]
        if (choices !== undefined) issues.push({ path, message: choices })
        else if (custom) issues.push({ path, message: issue.message })
        else issues.push({ path, message: `is not valid: ${typeName(issue.input)}` })
        break
      }
      case 'invalid_key': {
        const reason = issue.issues[0]?.message ?? 'is not allowed'
        issues.push({ path, message: `${JSON.stringify(issue.input)} is not a valid name: ${reason}` })
        break
      }
      case 'too_small':
      case 'too_big': {
        const bound = issue.code === 'too_small' ? `at least ${issue.minimum}` : `at most ${issue.maximum}`
        const unit = issue.origin === 'array' ? ' entries' : issue.origin === 'string' ? ' characters' : ''
        issues.push({ path, message: custom ? issue.message : `must be ${bound}${unit}` })
        break
      }
      default:
        issues.push({ path, message: issue.message })
    }
  }
  return issues
}
