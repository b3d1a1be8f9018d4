/**
 * Where the CLI writes: data to stdout, diagnostics (notes, warnings, errors) to stderr, every line
 * prefixed `appactive:` on stderr. Errors print their code and never a stack trace (STYLE §2.7).
 */
import { CommanderError } from 'commander'
import { AppActiveError, formatIssue, RuleInvalidError } from '../errors/index.js'

/** Anything with `write(text)`: `process.stdout`, a test buffer. */
export interface TextSink {
  write(text: string): unknown
}

/** The streams the CLI writes to, and reads confirmations from. */
export interface CliIO {
  readonly stdout: TextSink
  readonly stderr: TextSink
  /** Where an interactive confirmation is read (default: none, so nothing can be confirmed). */
  readonly stdin?: NodeJS.ReadableStream | undefined
}

/** True when a stream is an interactive terminal (`process.stdout` on a TTY, a test's fake). */
export function isTTY(stream: unknown): boolean {
  return (stream as { isTTY?: unknown } | undefined)?.isTTY === true
}

/**
 * Exit codes: 0 ok, 1 failure, 2 usage error or a step not confirmed (`--yes`), 3 the control plane
 * cannot be reached or refuses the token, 130 interrupted (Ctrl-C) while following an operation.
 */
export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2
export const EXIT_REFUSED = 2
export const EXIT_UNREACHABLE = 3
/** Ctrl-C while following an operation (which keeps running on the control plane). */
export const EXIT_INTERRUPTED = 130

/** The code printed for usage errors (unknown option, missing argument, bad option value). */
export const USAGE_CODE = 'APPACTIVE_INVALID_ARGUMENT'

/**
 * An error the CLI itself raises, with the code it prints and the exit code it ends with. `details` are
 * printed after it, one indented line each (e.g. every problem the control plane found).
 */
export class CliError extends Error {
  readonly code: string
  readonly exitCode: number
  readonly details: readonly string[]
  constructor(
    code: string,
    message: string,
    exitCode: number = EXIT_FAILURE,
    details: readonly string[] = [],
  ) {
    super(message)
    this.name = 'CliError'
    this.code = code
    this.exitCode = exitCode
    this.details = details
  }
}

/** A usage error (exit 2): a bad option value found after parsing, e.g. `--unit` naming no unit. */
export function usageError(message: string): CliError {
  return new CliError(USAGE_CODE, message, EXIT_USAGE)
}

/** Writes data and diagnostics for one CLI run. */
export class Output {
  readonly #io: CliIO
  readonly #debug: boolean

  constructor(io: CliIO, debug = false) {
    this.#io = io
    this.#debug = debug
  }

  /** One line of data on stdout. */
  line(text = ''): void {
    this.#io.stdout.write(`${text}\n`)
  }

  /** One JSON value on one line of stdout (JSON Lines). */
  json(value: unknown): void {
    this.line(JSON.stringify(value))
  }

  /** Raw text on stdout, as is. */
  raw(text: string): void {
    this.#io.stdout.write(text)
  }

  /** A raw line on stderr (help after an error, issue lists). */
  diag(text: string): void {
    this.#io.stderr.write(`${text}\n`)
  }

  /** `appactive: note: ...` on stderr. */
  note(message: string): void {
    this.diag(`appactive: note: ${message}`)
  }

  /** `appactive: warning: ...` on stderr. */
  warn(message: string): void {
    this.diag(`appactive: warning: ${message}`)
  }

  /** Prints each warning of a loaded rule set. */
  warnings(warnings: readonly string[]): void {
    for (const w of warnings) this.warn(w)
  }

  /** `appactive: CODE: message` on stderr. */
  error(code: string, message: string): void {
    this.diag(`appactive: ${code}: ${message}`)
  }

  /**
   * Prints any thrown value the way a user should see it and returns the exit code. Commander's own
   * errors were printed already (see `configureOutput` in program.ts).
   */
  fail(err: unknown): number {
    if (err instanceof CommanderError) {
      const ok = err.code === 'commander.helpDisplayed' || err.code === 'commander.version'
      return ok ? EXIT_OK : EXIT_USAGE
    }
    if (err instanceof CliError) {
      this.error(err.code, err.message)
      for (const line of err.details) this.diag(`  ${line}`)
      return err.exitCode
    }
    if (err instanceof RuleInvalidError) {
      this.error(err.code, err.message)
      if (err.issues.length > 1) for (const issue of err.issues) this.diag(`  ${formatIssue(issue)}`)
      return EXIT_FAILURE
    }
    if (err instanceof AppActiveError) {
      this.error(err.code, err.message)
      return err.code === USAGE_CODE ? EXIT_USAGE : EXIT_FAILURE
    }
    const errno = systemCode(err)
    if (errno !== undefined) {
      const message = (err as Error).message.replace(new RegExp(`^${errno}: `), '')
      this.error(errno, message)
      return EXIT_FAILURE
    }
    const message = err instanceof Error ? err.message : String(err)
    this.diag(`appactive: internal error: ${message}`)
    if (this.#debug && err instanceof Error && err.stack) this.diag(err.stack)
    else this.diag('appactive: note: set APPACTIVE_DEBUG=1 to see where it happened')
    return EXIT_FAILURE
  }
}

/** The errno code (`ENOENT`, `EACCES`...) of a Node system error, else undefined. */
function systemCode(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined
  const code = (err as NodeJS.ErrnoException).code
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined
}
