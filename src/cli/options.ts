/**
 * Parsers of option values. They throw commander's InvalidArgumentError, so a bad value is a usage
 * error (exit 2) printed with the option's name, e.g. `option '--version <n>' argument '1e99' is invalid`.
 */
import { InvalidArgumentError as OptionValueError } from 'commander'
import type { Fallback } from '../rules/index.js'

const UNIT_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/

/** `--version N`: a whole number from 0 to 2^53 - 1, written in decimal digits. */
export function parseVersionOption(value: string): number {
  const n = Number(value)
  if (!/^\d{1,16}$/.test(value) || n > Number.MAX_SAFE_INTEGER) {
    throw new OptionValueError(`must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}`)
  }
  return n
}

/** `--fallback local|reject|UNIT`. */
export function parseFallbackOption(value: string): Fallback {
  if (value === 'local' || value === 'reject') return value
  if (!UNIT_NAME.test(value)) throw new OptionValueError('must be "local", "reject" or a unit name')
  return { unit: value }
}

/** Appended to a command's help: one example, as `$ appactive ...` lines. */
export function examples(...lines: string[]): string {
  return `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`
}
