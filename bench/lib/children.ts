/**
 * Child processes of a bench: started with their output in files, waited for, measured (/proc), and always
 * stopped, on success and on failure alike: SIGTERM, then SIGKILL after a grace period, descendants
 * (cluster workers) included. Linux only (reads /proc).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'

/** A started child and where its output goes. */
export interface Child {
  readonly name: string
  readonly proc: ChildProcess
  readonly pid: number
  /** stdout and stderr of the child, together. */
  readonly logFile: string
}

export interface SpawnOptions {
  readonly cwd: string
  readonly env?: NodeJS.ProcessEnv
  /** Directory for the child's log file (`<name>.log`). */
  readonly logDir: string
}

/** True while `pid` exists (and is not a zombie we could still reap). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))
  } catch {
    return false
  }
}

/** Pids of every descendant of `pid` (children, their children...), from /proc/<pid>/stat. */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // The command name (2nd field) may hold spaces; the fields after its closing ')' do not.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      parent.set(Number(entry), ppid)
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = []
  const walk = (p: number): void => {
    for (const [child, ppid] of parent) {
      if (ppid === p) {
        out.push(child)
        walk(child)
      }
    }
  }
  walk(pid)
  return out
}

/**
 * A field of /proc/<pid>/status in MB (`VmRSS`, `VmHWM` its peak, `RssAnon` the private heap part), or of
 * /proc/<pid>/smaps_rollup (`Pss`: shared pages, such as the node binary, divided among their users), or
 * undefined when unreadable.
 */
export function memoryMb(pid: number, field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'Pss'): number | undefined {
  try {
    const file = field === 'Pss' ? `/proc/${pid}/smaps_rollup` : `/proc/${pid}/status`
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(file, 'utf8'))
    return m?.[1] === undefined ? undefined : Number(m[1]) / 1024
  } catch {
    return undefined
  }
}

/** Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`; 100 on Linux when that fails). */
export const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })
  const n = Number(r.stdout?.trim())
  return Number.isInteger(n) && n > 0 ? n : 100
})()

/** CPU seconds (user + system, all threads) used so far by the given processes; exited ones count 0. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      // After the command name: state is field 3, utime field 14, stime field 15.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // exited
    }
  }
  return ticks / CLK_TCK
}

/** A TCP port free on 127.0.0.1 right now (the OS picks it; a tiny race with other processes remains). */
export async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject)
    s.listen(0, '127.0.0.1', resolve)
  })
  const { port } = s.address() as { port: number }
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

/** The last `lines` lines of a file, for error messages. */
export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no output)'
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Every child a bench started; `stopAll()` ends them (and their descendants). */
export class Children {
  readonly #children: Child[] = []

  /** Starts `command args` with stdout and stderr appended to `<logDir>/<name>.log`. */
  spawn(name: string, command: string, args: readonly string[], options: SpawnOptions): Child {
    const logFile = join(options.logDir, `${name}.log`)
    const fd = openSync(logFile, 'a')
    try {
      const proc = spawn(command, args, {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: ['ignore', fd, fd],
      })
      if (proc.pid === undefined) throw new Error(`could not start ${name}: ${command} ${args.join(' ')}`)
      const child: Child = { name, proc, pid: proc.pid, logFile }
      this.#children.push(child)
      return child
    } finally {
      closeSync(fd)
    }
  }

  /** Stops one child: SIGTERM, then SIGKILL (to it and its descendants) after `graceMs`. */
  async stop(child: Child, graceMs = 5000): Promise<void> {
    const family = [child.pid, ...descendants(child.pid)]
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGTERM')
    const deadline = Date.now() + graceMs
    while (Date.now() < deadline && family.some(alive)) await sleep(50)
    for (const pid of family) {
      if (!alive(pid)) continue
      process.stderr.write(`bench: ${child.name} (pid ${pid}) ignored SIGTERM; sending SIGKILL\n`)
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone meanwhile
      }
    }
    const i = this.#children.indexOf(child)
    if (i >= 0) this.#children.splice(i, 1)
  }

  /** Stops every child still registered, in parallel. */
  async stopAll(graceMs = 5000): Promise<void> {
    await Promise.all([...this.#children].map((c) => this.stop(c, graceMs)))
  }

  /** Last resort from a `process.on('exit')` handler (synchronous): SIGKILL to every child and descendant. */
  killAllNow(): void {
    for (const child of this.#children) {
      for (const pid of [...descendants(child.pid), child.pid]) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
    }
    this.#children.length = 0
  }
}
