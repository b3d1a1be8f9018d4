/**
 * Safety interlocks (issue 7, item 6): a step that changes who owns keys runs only when someone said
 * so, with `--yes` or by answering a y/N question on a terminal. Without a terminal and without `--yes`
 * nothing can be confirmed, so nothing runs.
 */
import { createInterface } from 'node:readline'
import { type CliIO, isTTY } from './output.js'

/** True when a question can be asked: stdin is a terminal. */
export function canAsk(io: CliIO): boolean {
  return io.stdin !== undefined && isTTY(io.stdin)
}

/**
 * Asks `question` on stderr (stdout stays data) and reads one line from stdin: true for `y` or `yes`
 * (any case), false for anything else, an empty line or the end of input.
 */
export async function ask(io: CliIO, question: string): Promise<boolean> {
  const input = io.stdin
  if (input === undefined) return false
  io.stderr.write(`${question} [y/N] `)
  const rl = createInterface({ input, terminal: false })
  try {
    const answer = await new Promise<string | undefined>((resolve) => {
      rl.once('line', resolve)
      rl.once('close', () => resolve(undefined))
    })
    if (answer === undefined) io.stderr.write('\n')
    return /^\s*y(es)?\s*$/i.test(answer ?? '')
  } finally {
    rl.close()
  }
}
