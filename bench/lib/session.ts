/**
 * The process plumbing of a bench that runs children and wrk: a temp dir, the child registry, an HTTP
 * client, a cleanup that runs once (on success, failure, SIGINT or SIGTERM), and the run wrapper that
 * reports a failure and keeps the temp dir (every process's log) for it.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { type Child, Children, tail } from './children.js'
import { runningWrk } from './wrk.js'

export interface BenchSession {
  /** A progress line on stderr (stdout is the table and the JSON line). */
  readonly log: (line: string) => void
  readonly children: Children
  readonly tmp: string
  readonly client: Agent
  /** Stops wrk and every child process, closes the client, removes the temp dir (kept on failure or with `keep`). Runs once. */
  cleanup(): Promise<void>
  /** GET `url` with the session's client; status 0 when nothing answers (yet). */
  get(url: string): Promise<Answer>
  /**
   * Waits until `url` answers (with `status`, when given), or fails with the child's log when the child
   * exits or `timeoutMs` passes.
   */
  untilAnswer(child: Child, url: string, status?: number, timeoutMs?: number): Promise<void>
  /** Runs the bench; on failure logs it, cleans up, says where the logs are and exits 1. */
  run(main: () => Promise<void>): void
}

/** An HTTP answer as the benches read it. */
export interface Answer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: string
}

export function benchSession(name: string, keep: boolean): BenchSession {
  const log = (line: string): void => void process.stderr.write(`bench:${name}: ${line}\n`)
  const children = new Children()
  const tmp = mkdtempSync(join(tmpdir(), `appactive-bench-${name}-`))
  const client = new Agent({ connections: 4 })
  /** Set on failure: the temp dir is kept. */
  let failed = false
  /** Set by SIGINT / SIGTERM: the failures that follow (wrk killed...) are the interruption's, not the bench's. */
  let interrupted = false
  let cleaning: Promise<void> | undefined
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      for (const w of runningWrk) w.kill('SIGTERM')
      await children.stopAll()
      await client.close()
      if (!keep && !failed) rmSync(tmp, { recursive: true, force: true })
    })()
    return cleaning
  }
  process.on('exit', () => {
    for (const w of runningWrk) w.kill('SIGKILL')
    children.killAllNow()
  })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping every child process`)
      interrupted = true
      void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
    })
  }
  const get = async (url: string): Promise<Answer> => {
    try {
      const res = await request(url, { dispatcher: client, headersTimeout: 5000, bodyTimeout: 5000 })
      return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
    } catch {
      return { status: 0, headers: {}, body: '' }
    }
  }
  const untilAnswer = async (child: Child, url: string, status?: number, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs
    const what = status === undefined ? 'answer' : `answer ${status}`
    for (;;) {
      const got = (await get(url)).status
      if (status === undefined ? got !== 0 : got === status) return
      if (child.proc.exitCode !== null || child.proc.signalCode !== null)
        throw new Error(
          `${child.name} exited (${child.proc.exitCode ?? child.proc.signalCode}):\n${tail(child.logFile)}`,
        )
      if (Date.now() > deadline)
        throw new Error(`${child.name} did not ${what} on ${url}:\n${tail(child.logFile)}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  return {
    log,
    children,
    tmp,
    client,
    cleanup,
    get,
    untilAnswer,
    run(main) {
      main().catch(async (err: unknown) => {
        if (interrupted) return // the signal handler stops everything and exits
        failed = true
        log(`failed: ${err instanceof Error ? err.message : String(err)}`)
        await cleanup().catch(() => undefined)
        log(`logs kept in ${tmp}`)
        process.exit(1)
      })
    },
  }
}
