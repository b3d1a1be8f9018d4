/**
 * Facts about the machine a benchmark ran on, for the `machine` object of the final JSON line
 * (DESIGN §6). Every bench reports the same shape so results from different runs can be compared.
 * Best effort: a fact that cannot be read is null, never a guess.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import os from 'node:os'

export interface MachineInfo {
  readonly node: string
  readonly v8: string
  readonly os: string
  readonly os_release: string
  readonly arch: string
  readonly cpu_model: string | null
  /** Logical CPUs this process may use. */
  readonly cpu_cores: number
  readonly total_memory_mb: number
  /** 1-minute load average when the bench started: a noisy neighbour shows here. */
  readonly loadavg_1m: number
  readonly git_commit: string | null
  /** True when the working tree has uncommitted changes; null when there is no commit to compare with. */
  readonly git_dirty: boolean | null
}

/** Collects the machine facts. Call it once, at the start of a bench (load average is read then). */
export function machineInfo(): MachineInfo {
  const commit = git(['rev-parse', 'HEAD'])
  return {
    node: process.version,
    v8: process.versions.v8,
    os: os.type(),
    os_release: os.release(),
    arch: process.arch,
    cpu_model: cpuModel(),
    cpu_cores: os.availableParallelism(),
    total_memory_mb: Math.round(os.totalmem() / 2 ** 20),
    loadavg_1m: Math.round((os.loadavg()[0] ?? 0) * 100) / 100,
    git_commit: commit,
    git_dirty: commit === null ? null : git(['status', '--porcelain']) !== '',
  }
}

/** The CPU model: /proc/cpuinfo on Linux (os.cpus() may be empty in containers), else os.cpus(). */
function cpuModel(): string | null {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (m?.[1] !== undefined) return m[1].trim()
  } catch {
    // not Linux: fall through
  }
  return os.cpus()[0]?.model.trim() || null
}

/** Output of a git command run in the current directory, trimmed; null when git or the repository is missing. */
function git(args: readonly string[]): string | null {
  try {
    return execFileSync('git', args, {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000,
    }).trim()
  } catch {
    return null
  }
}
