/**
 * wrk (Debian's package) for `bench:gateway`: installing it when missing, running it, and reading its
 * `--latency` report. Progress goes to stderr so stdout stays the bench's table and JSON line.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'

/** What one wrk run measured. */
export interface WrkResult {
  readonly rps: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly requests: number
  /** Connect, read, write and timeout errors together. */
  readonly socketErrors: number
  readonly non2xx: number
}

const log = (line: string): void => void process.stderr.write(`${line}\n`)

/** The `wrk -v` banner (`wrk 4.1.0 [epoll] ...`), or undefined when wrk is not installed. */
function wrkVersion(): string | undefined {
  const r = spawnSync('wrk', ['-v'], { encoding: 'utf8' })
  if (r.error !== undefined) return undefined
  // `wrk -v` prints its banner and usage, and exits 1.
  return /^wrk \S+/m.exec(`${r.stdout}${r.stderr}`)?.[0] ?? 'wrk (unknown version)'
}

/** Runs apt-get with its stdout sent to stderr (stdout is the bench's table and JSON line); true on success. */
function apt(args: readonly string[]): boolean {
  log(`bench:gateway: running apt-get ${args.join(' ')}`)
  const r = spawnSync('apt-get', args, {
    stdio: ['ignore', process.stderr, process.stderr],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  })
  log(
    `bench:gateway: apt-get ${args.join(' ')} ${r.error ? `could not run (${r.error.message})` : `exited ${r.status}`}`,
  )
  return r.status === 0
}

/**
 * Returns wrk's version, installing Debian's package first when wrk is missing (`apt-get install -y wrk`,
 * and once more after `apt-get update` if that failed).
 * @throws Error saying how to install wrk by hand when it cannot be installed.
 */
export function ensureWrk(): string {
  const have = wrkVersion()
  if (have !== undefined) return have
  log("bench:gateway: wrk is not installed; installing Debian's package")
  if (!apt(['install', '-y', 'wrk']) && apt(['update'])) apt(['install', '-y', 'wrk'])
  const now = wrkVersion()
  if (now !== undefined) return now
  throw new Error(
    'bench:gateway needs wrk and could not install it (apt-get install -y wrk failed; it needs root and ' +
      'network access). Install it by hand (Debian/Ubuntu: sudo apt-get install wrk) and run the bench again.',
  )
}

/** Milliseconds from a wrk duration (`812.00us`, `3.41ms`, `1.20s`, `1.00m`). */
export function wrkMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim())
  if (m === null) throw new Error(`not a wrk duration: ${JSON.stringify(text)}`)
  const scale = { us: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 }[m[2] as 'us' | 'ms' | 's' | 'm' | 'h']
  return Number(m[1]) * scale
}

/** Reads wrk's report (run with `--latency`). @throws Error when a figure is missing. */
export function parseWrk(out: string): WrkResult {
  const need = (re: RegExp, what: string): string => {
    const m = re.exec(out)
    if (m?.[1] === undefined) throw new Error(`wrk output has no ${what}:\n${out}`)
    return m[1]
  }
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  return {
    rps: Number(need(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec')),
    p50Ms: wrkMs(need(/^\s+50%\s+(\S+)/m, '50% latency (was --latency given?)')),
    p99Ms: wrkMs(need(/^\s+99%\s+(\S+)/m, '99% latency')),
    requests: Number(need(/^\s+(\d+) requests in /m, 'request count')),
    socketErrors: errors === null ? 0 : errors.slice(1).reduce((n, v) => n + Number(v), 0),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
  }
}

/** Where a running wrk can be stopped from (the bench's cleanup). */
export const runningWrk = new Set<ChildProcess>()

/** Runs `wrk -t1 -c64 -dNs [--latency] URL` and returns its report. */
export function runWrk(url: string, seconds: number, connections = 64): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', url]
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    runningWrk.add(child)
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d
    })
    child.stderr.on('data', (d: Buffer) => {
      err += d
    })
    child.on('error', (e) => {
      runningWrk.delete(child)
      reject(e)
    })
    child.on('close', (code, signal) => {
      runningWrk.delete(child)
      if (code !== 0) return reject(new Error(`wrk ${args.join(' ')} exited ${code ?? signal}: ${err}${out}`))
      try {
        resolve(parseWrk(out))
      } catch (e) {
        reject(e)
      }
    })
  })
}
