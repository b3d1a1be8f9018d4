// Shared by the demo's tests: the demo as a user runs it (`npm start`'s supervisor, demo/start.ts) as a
// real process tree in its own process group on the demo's fixed ports, checked from outside.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { request } from 'undici'

export const root = new URL('../..', import.meta.url).pathname
export const CENTER = 'http://127.0.0.1:8080'
export const UNIT = 'http://127.0.0.1:8081'
export const FIXED_PORTS = [7070, 8080, 8081]

export interface Hop {
  app: string
  unit: string
}
export interface Answer {
  status: number
  body: {
    chain: Hop[]
    ruleVersion: number
    error?: { code: string; message: string }
    route?: { id: string | null; unit: string | null; reason: string | null }
    [k: string]: unknown
  }
}

export const hops = (...spec: string[]): Hop[] =>
  spec.map((s) => {
    const [app, unit] = s.split('@') as [string, string]
    return { app, unit }
  })

export async function call(url: string, method: 'GET' | 'POST' = 'GET'): Promise<Answer> {
  const res = await request(url, { method })
  return { status: res.statusCode, body: (await res.body.json()) as Answer['body'] }
}

/** Whether a TCP port on 127.0.0.1 can be bound now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

export async function busyPorts(): Promise<number[]> {
  const busy: number[] = []
  for (const port of FIXED_PORTS) if (!(await portFree(port))) busy.push(port)
  return busy
}

/** Live (non-zombie) processes whose process group is `pgid`, from /proc. */
export function processesInGroup(pgid: number): string[] {
  const out: string[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
    const close = stat.lastIndexOf(')')
    const [state, , pgrp] = stat.slice(close + 2).split(' ')
    if (Number(pgrp) === pgid && state !== 'Z')
      out.push(`${name} ${stat.slice(stat.indexOf('(') + 1, close)}`)
  }
  return out
}

/** Runs a node script of the repo to its end. */
export async function run(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 60_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c) => {
    stdout += c
  })
  child.stderr.on('data', (c) => {
    stderr += c
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const [code] = (await once(child, 'exit')) as [number | null]
  clearTimeout(timer)
  return { code, stdout, stderr }
}

/** A running demo: its supervisor, its data dir, and what it printed so far. */
export interface Demo {
  readonly child: ChildProcess
  readonly dir: string
  /** APPACTIVE_DEMO_DIR for the demo's other scripts (demo:cutover, demo:load). */
  env(): NodeJS.ProcessEnv
  output(): string
  /** Ctrl-C: resolves with the supervisor's exit code and the processes of its group still alive after. */
  interrupt(): Promise<{ code: number | null; left: string[] }>
  /** Last resort (a failed test): SIGKILL to the whole group, and the data dir removed. */
  kill(): void
}

/**
 * Starts `npm start -- ...args` in its own process group (as a terminal gives it) and resolves once its
 * banner is printed. Fails at once when a fixed port is taken (a running demo?), naming it.
 */
export async function startDemo(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Demo> {
  const busy = await busyPorts()
  if (busy.length > 0) {
    throw new Error(
      `the demo test needs the demo's fixed ports, and ${busy.join(', ')} ${busy.length === 1 ? 'is' : 'are'} in use: stop whatever listens there (a running npm start?)`,
    )
  }
  const dir = mkdtempSync(join(tmpdir(), 'appactive-demo-'))
  let output = ''
  const child = spawn(process.execPath, ['--import', 'tsx', 'demo/start.ts', ...args], {
    cwd: root,
    detached: true,
    env: { ...process.env, NO_COLOR: '1', ...env, APPACTIVE_DEMO_DIR: dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stderr!.on('data', (c) => {
    output += c
  })
  const lines = createInterface({ input: child.stdout! })
  const demo: Demo = {
    child,
    dir,
    env: () => ({ APPACTIVE_DEMO_DIR: dir }),
    output: () => output,
    async interrupt() {
      const exited = once(child, 'exit')
      process.kill(child.pid!, 'SIGINT')
      const [code] = (await exited) as [number | null]
      // Grandchildren (tsx's esbuild service) go when their parent's pipes close: give them a moment.
      let left = processesInGroup(child.pid!)
      for (let i = 0; i < 20 && left.length > 0; i++) {
        await new Promise((r) => setTimeout(r, 100))
        left = processesInGroup(child.pid!)
      }
      return { code, left }
    },
    kill() {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid!, 'SIGKILL')
        } catch {}
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
  try {
    await new Promise<void>((resolve, reject) => {
      lines.on('line', (line) => {
        output += `${line}\n`
        if (/Ctrl-C stops every process/.test(line)) resolve() // the last line of the banner
      })
      child.once('exit', (code) =>
        reject(new Error(`the demo exited with ${code} before it was up:\n${output}`)),
      )
      setTimeout(() => reject(new Error(`the demo was not up in 90 s:\n${output}`)), 90_000).unref()
    })
  } catch (err) {
    demo.kill()
    throw err
  }
  return demo
}

/** Polls `fn` until it returns a value other than undefined, or fails after `ms` with `what`. */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = performance.now() + ms
  let last: unknown
  for (;;) {
    try {
      const value = await fn()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    if (performance.now() > deadline)
      throw new Error(`${what} did not happen in ${ms} ms${last ? `: ${last}` : ''}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
