/** Command-line flags of the demo scripts: string options with defaults, `-h`, and exit 2 on a bad one. */
import { parseArgs } from 'node:util'

export interface Script {
  /** `demo:load`: prefixes every error line. */
  readonly name: string
  readonly usage: string
}

/** Prints `message` and the usage on stderr and exits with `code`. */
export function fail(script: Script, message: string, code = 2): never {
  process.stderr.write(`${script.name}: ${message}\n${code === 2 ? `${script.usage}\n` : ''}`)
  process.exit(code)
}

export interface FlagOptions<K extends string, S extends string> {
  /** The values a string option may take; anything else is a usage error naming them. */
  readonly choices?: Partial<Record<K, readonly string[]>>
  /** Boolean options (`--verbose`), false unless given. */
  readonly switches?: readonly S[]
}

/**
 * Parses `--name value` options (strings with defaults, some limited to `choices`) and `switches`;
 * `-h` prints the usage and exits 0; an unknown option, a missing value or a value outside its choices
 * prints the problem and the usage and exits 2.
 */
export function parseFlags<K extends string, S extends string = never>(
  script: Script,
  defaults: Record<K, string>,
  options: FlagOptions<K, S> = {},
): Record<K, string> & Record<S, boolean> {
  const strings = Object.fromEntries(
    Object.entries(defaults).map(([name, value]) => [
      name,
      { type: 'string' as const, default: value as string },
    ]),
  )
  const switches = Object.fromEntries(
    (options.switches ?? []).map((name) => [name, { type: 'boolean' as const, default: false }]),
  )
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      options: { ...strings, ...switches, help: { type: 'boolean', short: 'h', default: false } },
      strict: true,
      allowPositionals: false,
    }).values
  } catch (err) {
    fail(script, (err as Error).message)
  }
  if (values.help === true) {
    process.stdout.write(`${script.usage}\n`)
    process.exit(0)
  }
  for (const [name, allowed] of Object.entries(options.choices ?? {}) as [K, readonly string[]][]) {
    const value = values[name] as string
    if (!allowed.includes(value)) {
      fail(
        script,
        `--${name} must be ${allowed.join(', ').replace(/, ([^,]*)$/, ' or $1')}, got ${JSON.stringify(value)}`,
      )
    }
  }
  delete values.help
  return values as Record<K, string> & Record<S, boolean>
}
