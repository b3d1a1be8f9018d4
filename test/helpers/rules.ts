/**
 * Shared builders for the rule-engine tests. Every builder returns a fresh object, so tests may mutate.
 */
import assert from 'node:assert/strict'
import type { RuleIssue } from '../../src/errors/index.js'
import { type RuleSet, validateRuleSet } from '../../src/rules/index.js'

/** The two-unit baseline: `mod 10000`, unit 0~1999, center 2000~9999, route id in query `r_id`. */
export function baseline(overrides: Partial<RuleSet> = {}): RuleSet {
  return {
    version: 1,
    units: [{ name: 'unit' }, { name: 'center', center: true }],
    idSource: [{ from: 'query', name: 'r_id' }],
    transform: [{ type: 'mod', divisor: 10000 }],
    mapping: [
      { unit: 'unit', ranges: ['0~1999'] },
      { unit: 'center', ranges: ['2000~9999'] },
    ],
    ...overrides,
  }
}

/** A three-unit rule set with labels and a fence (mod 10000). */
export function threeUnits(overrides: Partial<RuleSet> = {}): RuleSet {
  return {
    version: 7,
    units: [{ name: 'hz', center: true }, { name: 'sh' }, { name: 'bj' }],
    idSource: [
      { from: 'query', name: 'r_id' },
      { from: 'header', name: 'x-r-id' },
      { from: 'cookie', name: 'r_id' },
    ],
    transform: [{ type: 'mod', divisor: 10000 }],
    mapping: [
      { unit: 'hz', ranges: ['0~3999'], labels: ['crawler'] },
      { unit: 'sh', ranges: ['4000~6999'], labels: ['vip-1', '12345'] },
      { unit: 'bj', ranges: ['7000~9999'] },
    ],
    ...overrides,
  }
}

/** Any value as a plain JSON clone (drops undefined fields), typed as unknown. */
export function clone<T>(value: T): T {
  return structuredClone(value)
}

/** The issues of an invalid value; fails the test when the value is valid. */
export function issuesOf(input: unknown): RuleIssue[] {
  const v = validateRuleSet(input)
  assert.equal(v.ok, false, 'expected the rule set to be rejected')
  return v.ok ? [] : v.issues
}

/** `path: message` lines of an invalid value, in order. */
export function problems(input: unknown): string[] {
  return issuesOf(input).map((i) => `${i.path}: ${i.message}`)
}

/** Asserts a value is a valid rule set and returns it. */
export function valid(input: unknown): RuleSet {
  const v = validateRuleSet(input)
  if (!v.ok) assert.fail(`expected a valid rule set, got ${JSON.stringify(v.issues)}`)
  return v.ruleSet
}

/** Floor modulus of a decimal string by m, with BigInt (the reference). */
export function bigMod(id: string, m: number): number {
  const b = BigInt(m)
  return Number(((BigInt(id) % b) + b) % b)
}

/** FNV-1a 32-bit over the UTF-8 bytes TextEncoder produces (the reference). */
export function referenceFnv1a32(s: string): number {
  let h = 0x811c9dc5
  for (const byte of new TextEncoder().encode(s)) {
    h ^= byte
    h = Number((BigInt(h) * 0x01000193n) & 0xffffffffn)
  }
  return h >>> 0
}
