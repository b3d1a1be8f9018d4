/**
 * Supervising one nginx master from Node: `nginx -t` before every start and reload (its output in the
 * error), start in the foreground (`daemon off`) in its own process group, graceful reload by SIGHUP,
 * graceful stop by SIGQUIT, and a restart when nginx dies on its own.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { NginxError } from './errors.js'

/** Options of an `NginxProcess`. */
export interface NginxProcessOptions {
  readonly binary: string
  readonly runDir: string
  readonly logger: Logger
  /** Resolves true once the started nginx serves (the admin endpoint answers). */
  readonly ready: () => Promise<boolean>
  /** How long a start may take; default 10 s. */
  readonly startTimeoutMs?: number
  /** Files a dead nginx leaves behind (its unix sockets), removed before each start. */
  readonly staleFiles?: readonly string[]
  /** How long reload() waits for the old workers to exit; default 2 s. */
  readonly reloadWaitMs?: number
  /** How long a graceful stop may take before SIGTERM, then SIGKILL; default 10 s. */
  readonly stopTimeoutMs?: number
}

/** Events: `restarted` after nginx died and came back; `failed` when a restart failed (it is retried). */
export interface NginxProcessEvents {
  restarted: []
  failed: [err: Error]
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export class NginxProcess extends EventEmitter<NginxProcessEvents> {
  readonly #o: NginxProcessOptions
  #child: ChildProcess | undefined
  #exited: Promise<number | null> | undefined
  #conf = ''
  #stopping = false

  constructor(options: NginxProcessOptions) {
    super()
    this.#o = options
  }

  /** The master's pid while running. */
  get pid(): number | undefined {
    return this.#child?.pid
  }

  get errorLog(): string {
    return join(this.#o.runDir, 'error.log')
  }

  /**
   * `nginx -t` on a configuration file.
   * @throws NginxError('config') with nginx's output when it rejects the file.
   */
  async test(conf: string): Promise<void> {
    const { code, output } = await run(this.#o.binary, ['-t', '-q', '-p', this.#o.runDir, '-c', conf])
    if (code !== 0) throw new NginxError('config', `nginx rejects ${conf} (nginx -t exited ${code}):`, output)
  }

  /**
   * Tests and starts nginx on `conf`; resolves once `ready()` says it serves.
   * @throws NginxError('config') from `nginx -t`, or NginxError('start') with the error log's tail.
   */
  async start(conf: string): Promise<void> {
    const running = Number(await readFile(join(this.#o.runDir, 'nginx.pid'), 'utf8').catch(() => ''))
    if (running > 0 && alive(running)) {
      throw new NginxError(
        'start',
        `another nginx (pid ${running}) runs in ${this.#o.runDir}: one edge per run directory`,
      )
    }
    await this.test(conf)
    this.#conf = conf
    this.#stopping = false
    await this.#spawn()
  }

  async #spawn(): Promise<void> {
    for (const file of this.#o.staleFiles ?? []) await rm(file, { force: true })
    const child = spawn(this.#o.binary, ['-p', this.#o.runDir, '-c', this.#conf], {
      detached: true, // its own process group: orphaned workers of a killed master can be found and ended
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    const keep = (c: Buffer) => {
      output = (output + c.toString('utf8')).slice(-8192)
    }
    child.stdout!.on('data', keep)
    child.stderr!.on('data', keep)
    const exited = new Promise<number | null>((resolve) => {
      child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null)))
      child.once('error', (err) => {
        keep(Buffer.from(String(err)))
        resolve(127)
      })
    })
    this.#child = child
    this.#exited = exited
    // Best effort: nginx does not outlive this process when it exits (crash, process.exit).
    const onExit = () => this.#killGroup('SIGTERM', child.pid)
    process.once('exit', onExit)
    void exited.then(() => process.off('exit', onExit))
    const deadline = Date.now() + (this.#o.startTimeoutMs ?? 10_000)
    let gone = false
    void exited.then(() => {
      gone = true
    })
    while (!gone) {
      if (await this.#o.ready().catch(() => false)) break
      if (Date.now() > deadline) {
        this.#killGroup('SIGKILL')
        await exited
        throw new NginxError(
          'start',
          'nginx did not become ready in time; its error log ends with:',
          await this.#tail(output),
        )
      }
      await sleep(25)
    }
    if (gone) {
      this.#killGroup('SIGKILL')
      throw new NginxError(
        'start',
        `nginx exited while starting (code ${await exited}); its error log ends with:`,
        await this.#tail(output),
      )
    }
    void exited.then((code) => this.#died(child, code))
  }

  /** The output and the last lines of the error log. */
  async #tail(output: string): Promise<string> {
    const log = await readFile(this.errorLog, 'utf8').catch(() => '')
    return `${output.trim()}\n${log.split('\n').slice(-30).join('\n')}`.trim()
  }

  /** nginx died without being asked: clean its process group, start again (with backoff) until stopped. */
  async #died(child: ChildProcess, code: number | null): Promise<void> {
    if (this.#stopping || this.#child !== child) return
    this.#o.logger.error(
      { code, pid: child.pid, errorLog: await this.#tail('') },
      'nginx exited; restarting it',
    )
    this.#killGroup('SIGKILL', child.pid)
    for (let delay = 100; !this.#stopping; delay = Math.min(delay * 2, 5000)) {
      try {
        await this.#spawn()
        this.emit('restarted')
        return
      } catch (err) {
        this.emit('failed', err as Error)
        this.#o.logger.error({ err: (err as Error).message }, 'nginx restart failed; retrying')
        await sleep(delay)
      }
    }
  }

  /**
   * Tests `conf` and, when nginx accepts it, makes it the running configuration by SIGHUP (workers finish
   * their requests; new ones start on the new file).
   * @throws NginxError('config') with `nginx -t` output; the running nginx is untouched then.
   */
  async reload(conf: string): Promise<void> {
    await this.test(conf)
    this.#conf = conf
    const pid = this.#child?.pid
    if (pid === undefined) throw new NginxError('reload', 'nginx is not running')
    const old = await workersOf(pid)
    process.kill(pid, 'SIGHUP')
    // Old workers stop accepting at once and exit when their requests are done; wait (bounded) so that
    // new connections after reload() meet only new workers.
    const deadline = Date.now() + (this.#o.reloadWaitMs ?? 2000)
    while (Date.now() < deadline) {
      const now = await workersOf(pid)
      if (!old.some((w) => now.includes(w))) break
      await sleep(10)
    }
  }

  /** Graceful stop (SIGQUIT), then SIGTERM and SIGKILL to the process group past the timeout. */
  async stop(): Promise<void> {
    this.#stopping = true
    const child = this.#child
    const exited = this.#exited
    if (child === undefined || exited === undefined || child.exitCode !== null) return
    const timeout = this.#o.stopTimeoutMs ?? 10_000
    const within = (ms: number) => {
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), ms)
      })
      return Promise.race([exited.then(() => true), late]).finally(() => clearTimeout(timer))
    }
    try {
      process.kill(child.pid!, 'SIGQUIT')
    } catch {}
    if (!(await within(timeout))) {
      this.#killGroup('SIGTERM')
      if (!(await within(2000))) this.#killGroup('SIGKILL')
      await exited
    }
    // Workers of a master that stopped on its own have exited; any left behind are ended here.
    this.#killGroup('SIGKILL', child.pid)
  }

  #killGroup(signal: NodeJS.Signals, pid = this.#child?.pid): void {
    if (pid === undefined) return
    try {
      process.kill(-pid, signal)
    } catch {}
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Pids of the children of `pid` (Linux /proc; empty elsewhere). */
async function workersOf(pid: number): Promise<number[]> {
  const out: number[] = []
  const names = await readdir('/proc').catch(() => [] as string[])
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (ppid === pid) out.push(Number(name))
  }
  return out
}

/** Runs a command to completion; stdout and stderr together. */
function run(binary: string, args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString('utf8')
    })
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString('utf8')
    })
    child.once('error', (err) => resolve({ code: 127, output: String(err) }))
    child.once('close', (code) => resolve({ code: code ?? 1, output }))
  })
}
