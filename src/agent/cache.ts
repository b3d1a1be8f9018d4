/**
 * The last good rule set, kept on local disk so a process that restarts while its source (file or
 * control plane) is unreachable starts with the rules it last had, and says so. Writes are atomic
 * (temp file + rename) and coalesced: only the newest pending version is written.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import type { RuleSet } from '../rules/index.js'

/** What the cache file holds. */
export interface CachedRules {
  readonly version: number
  /** Wall-clock time of the write, ISO 8601. */
  readonly savedAt: string
  readonly source: string
  readonly ruleSet: unknown
}

export class RuleCache {
  readonly path: string
  readonly #log: Logger
  #pending: { ruleSet: RuleSet; source: string } | undefined
  #writing: Promise<void> | undefined

  constructor(path: string, logger: Logger) {
    this.path = path
    this.#log = logger
  }

  /** The cached rules, or undefined when there are none or the file is unreadable (logged). */
  async read(): Promise<CachedRules | undefined> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#log.warn({ path: this.path, err: (err as Error).message }, 'rule cache unreadable')
      }
      return undefined
    }
    try {
      const value = JSON.parse(text) as CachedRules
      if (typeof value !== 'object' || value === null || typeof value.version !== 'number')
        throw new Error('bad shape')
      return value
    } catch {
      this.#log.warn({ path: this.path }, 'rule cache is corrupt; ignoring it')
      return undefined
    }
  }

  /** Schedules a write of `ruleSet` (coalesced with later calls). */
  write(ruleSet: RuleSet, source: string): void {
    this.#pending = { ruleSet, source }
    this.#writing ??= this.#drain().finally(() => {
      this.#writing = undefined
    })
  }

  /** Resolves when every scheduled write has reached the disk. */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing
  }

  async #drain(): Promise<void> {
    while (this.#pending) {
      const { ruleSet, source } = this.#pending
      this.#pending = undefined
      const body: CachedRules = {
        version: ruleSet.version,
        savedAt: new Date().toISOString(),
        source,
        ruleSet,
      }
      const tmp = `${this.path}.${process.pid}.tmp`
      try {
        await mkdir(dirname(this.path), { recursive: true })
        await writeFile(tmp, `${JSON.stringify(body)}\n`, { mode: 0o600 })
        await rename(tmp, this.path)
      } catch (err) {
        this.#log.warn({ path: this.path, err: (err as Error).message }, 'could not write the rule cache')
      }
    }
  }
}
