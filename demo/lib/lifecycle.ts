/**
 * How every demo process stops: on SIGTERM from the supervisor, or when the supervisor is gone (its IPC
 * channel closes, even when it was killed), so that no process of the demo outlives it. A terminal's
 * Ctrl-C reaches the whole process group; under the supervisor it is ignored here, because the
 * supervisor stops the processes in order (the control plane last). Run alone, Ctrl-C stops as usual.
 */
export function onStop(stop: (why: string) => Promise<void>, hardMs = 4000): void {
  let stopping = false
  const run = (why: string) => {
    if (stopping) return
    stopping = true
    setTimeout(() => process.exit(1), hardMs).unref()
    stop(why).then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`stopping failed: ${(err as Error)?.message ?? err}`)
        process.exit(1)
      },
    )
  }
  process.once('SIGTERM', () => run('SIGTERM'))
  if (process.send !== undefined) {
    process.on('SIGINT', () => {})
    process.once('disconnect', () => run('the supervisor is gone'))
  } else {
    process.once('SIGINT', () => run('SIGINT'))
  }
}
