/** What every command action shares: the output, and the exit code it ends with. */
import type { CliIO, Output } from './output.js'

/** Shared by the actions of one CLI run. */
export interface CommandContext {
  readonly out: Output
  /** The raw streams: whether they are terminals decides prompts and live progress. */
  readonly io: CliIO
  /** Set by an action that ends in a reported failure (e.g. `rules validate` finding problems). */
  exitCode: number
}
