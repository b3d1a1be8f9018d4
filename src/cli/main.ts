/**
 * The `appactive` command, as a function: parses `argv`, runs one command, returns the exit code.
 * It never calls `process.exit` (run.ts does), so tests and other tools can call it in-process.
 */
import type { CommandContext } from './context.js'
import { type CliIO, EXIT_OK, Output } from './output.js'
import { buildProgram } from './program.js'

export type { CliIO, TextSink } from './output.js'

/**
 * Runs the CLI. Data goes to `io.stdout`, notes, warnings and errors to `io.stderr`. Never throws.
 * @param argv the arguments after the command name, e.g. `['route', '--rules', 'rules.yaml', '42']`.
 * @returns the exit code: 0 ok, 1 failure (invalid rules, missing file...), 2 usage error or not
 *   confirmed, 3 the control plane cannot be reached or refuses the token.
 * @example
 * ```ts
 * const code = await main(['rules', 'validate', 'rules.yaml'])
 * ```
 */
export async function main(
  argv: readonly string[],
  io: CliIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
): Promise<number> {
  const out = new Output(io, process.env.APPACTIVE_DEBUG === '1')
  const ctx: CommandContext = { out, io, exitCode: EXIT_OK }
  try {
    await buildProgram(ctx, io).parseAsync([...argv], { from: 'user' })
    return ctx.exitCode
  } catch (err) {
    return out.fail(err)
  }
}
