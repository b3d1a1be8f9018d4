/**
 * Process entry of the `appactive` command (bin/appactive.js loads it): runs `main` on the process
 * arguments and sets the exit code. A closed stdout (`appactive route ... | head -1`) ends quietly.
 */
import { main } from './main.js'

for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    // Nowhere left to report to: end with the code so far (EPIPE: the reader has what it wanted).
    process.exit(err.code === 'EPIPE' ? (process.exitCode ?? 0) : 1)
  })
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    // main never rejects; this is the last line of defence against a stack trace.
    process.stderr.write(`appactive: internal error: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  },
)
