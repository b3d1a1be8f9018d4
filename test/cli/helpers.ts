/**
 * Runs the `appactive` command for tests. `cli()` spawns the real command as a child process, from the
 * sources through tsx (no build needed); each spawn costs about a second of CPU (tsx, zod), so the many
 * edge cases run through `cliInProcess()`, which calls the same `main()` with captured streams.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { main } from '../../src/cli/main.js'

/** The repository root: the children run there, so fixture paths are relative and stable in messages. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** What one run of the CLI produced. */
export interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** The path of a fixture, relative to ROOT (the children's working directory). */
export function fixture(name: string): string {
  return `test/fixtures/cli/${name}`
}

/** The environment of a child: ours without APPACTIVE_* (they would change defaults) or node:test's. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('APPACTIVE_') && k !== 'NODE_TEST_CONTEXT' && k !== 'NODE_OPTIONS') env[k] = v
  }
  return { ...env, ...extra }
}

/** Runs `appactive ...args` and waits for it to exit. */
export function cli(
  args: readonly string[],
  options: { env?: Record<string, string>; entry?: readonly string[] } = {},
): Promise<Run> {
  const entry = options.entry ?? ['--import', 'tsx', 'src/cli/run.ts']
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...entry, ...args], {
      cwd: ROOT,
      env: childEnv(options.env ?? {}),
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 120_000,
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s))
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

// In-process runs resolve fixture paths like the children do, from the repository root.
process.chdir(ROOT)

/** Runs `appactive ...args` through `main()` in this process (same parsing, output and exit codes). */
export async function cliInProcess(args: readonly string[]): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const code = await main(args, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  })
  return { code, stdout, stderr }
}

/** Asserts the run printed no stack trace (a line starting with "at "). */
export function assertNoStack(run: Run): void {
  assert.doesNotMatch(run.stderr, /\n\s+at /, `stack trace in stderr:\n${run.stderr}`)
  assert.doesNotMatch(run.stdout, /\n\s+at /, `stack trace in stdout:\n${run.stdout}`)
}

/** Asserts the exit code, showing both streams when it differs. */
export function assertExit(run: Run, code: number): void {
  assert.equal(
    run.code,
    code,
    `exit ${run.code}, wanted ${code}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`,
  )
  assertNoStack(run)
}

/** Parses JSON Lines output: one JSON value per non-empty line. */
export function jsonLines(stdout: string): unknown[] {
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown)
}

/** The non-empty lines of a text. */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '')
}

/** A fresh temporary directory, removed when the test ends. */
export async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'appactive-cli-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}
