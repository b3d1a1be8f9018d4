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

/** Parses `--name value` options (all strings with defaults); `-h` prints the usage and exits 0. */
export function parseFlags<K extends string>(script: Script, defaults: Record<K, string>): Record<K, string> {
  const options = Object.fromEntries(
    Object.entries(defaults).map(([name, value]) => [
      name,
      { type: 'string' as const, default: value as string },
    ]),
  )
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      options: { ...options, help: { type: 'boolean', short: 'h', default: false } },
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
  return values as Record<K, string>
}
