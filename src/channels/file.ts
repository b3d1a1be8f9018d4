/**
 * The file channel: delivers the rule set kept in a canonical rule-set file (JSON or YAML) or in a
 * directory of AppActive rule files, and every later change to it. fs.watch gives sub-second pickup where
 * it works; a stat poll every `pollMs` backs it up where it does not (NFS, some containers), so a change
 * is seen within `pollMs` plus one read either way. Content is hashed: an unchanged source is never
 * applied twice. A bad update is reported to the sink and the rule set in force stays.
 */
import { createHash } from 'node:crypto'
import { type FSWatcher, type Stats, watch } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import type { Logger } from 'pino'
import { InvalidArgumentError, RuleInvalidError, type RuleIssue } from '../errors/index.js'
import {
  APPACTIVE_FILES,
  type AppActiveFiles,
  formatOf,
  fromAppActive,
  MAX_TEXT_BYTES,
  parseRuleSet,
  type RuleSet,
} from '../rules/index.js'
import { readAppActiveDir } from './load.js'
import type { RuleChannel, RuleSink } from './types.js'

/** Options of `createFileChannel`. */
export interface FileChannelOptions {
  /** A canonical rule-set file (`.json`, `.yaml`, `.yml`) or a directory of AppActive rule files. */
  readonly path: string
  /** Interval of the stat poll that backs up fs.watch, in ms; default 500. Keep it under 1000. */
  readonly pollMs?: number
  /** Quiet time after the last fs.watch event before reloading, in ms; default 50. */
  readonly debounceMs?: number
  /**
   * Use fs.watch (default true). Set false where fs.watch is unreliable or costly (network file systems,
   * some container mounts): polling alone still sees every change within `pollMs`.
   */
  readonly watch?: boolean
  readonly logger?: Logger
}

/** What was read from the source, before parsing. */
type Source =
  | { readonly kind: 'missing' }
  | { readonly kind: 'file'; readonly text: string }
  | { readonly kind: 'appactive'; readonly files: AppActiveFiles }

/** A cheap summary of the source's metadata: changes whenever a poll should reload. */
interface Stamp {
  readonly key: string
  readonly isDir: boolean
  readonly ino: number
  /** Newest mtime seen (wall-clock ms), 0 when there is none. */
  readonly mtimeMs: number
}

/**
 * File times tick coarsely (a few ms on Linux): a same-size rewrite in the same tick as the previous one
 * leaves the stat unchanged. For this long after the newest mtime, the poll also compares content hashes.
 */
const SETTLE_MS = 1000

const FILE_NAMES: readonly string[] = Object.values(APPACTIVE_FILES)
/** Kubernetes ConfigMap volumes swap this symlink to replace every file at once. */
const CONFIGMAP_LINK = '..data'

/**
 * Creates a file channel for a rule-set file or an AppActive rule directory.
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) on an empty path or a bad interval.
 */
export function createFileChannel(options: FileChannelOptions): FileChannel {
  return new FileChannel(options)
}

export class FileChannel implements RuleChannel {
  readonly name: string
  readonly leasing = false
  readonly #path: string
  readonly #pollMs: number
  readonly #debounceMs: number
  #log: Logger | undefined
  #sink: RuleSink | undefined
  #closed = false
  /** fs.watch still worth trying (false once it threw for a reason other than a missing directory). */
  #watchWanted: boolean
  #watcher: { readonly fsw: FSWatcher; readonly isDir: boolean; readonly ino: number } | undefined
  #poll: NodeJS.Timeout | undefined
  #debounce: NodeJS.Timeout | undefined
  #polling = false
  /** The running reload loop, if any; `#again` asks it for one more pass. */
  #busy: Promise<void> | undefined
  #again = false
  #stamp: Stamp | undefined
  /** sha256 of the last source text(s) processed, whatever the outcome. */
  #hash: string | undefined
  #missing = false
  /** Version given to the last AppActive directory content the sink took. */
  #dirVersion = 0

  constructor(options: FileChannelOptions) {
    if (typeof options.path !== 'string' || options.path === '') {
      throw new InvalidArgumentError('the file channel needs a path')
    }
    this.#pollMs = interval(options.pollMs, 500, 'pollMs', 1)
    this.#debounceMs = interval(options.debounceMs, 50, 'debounceMs', 0)
    this.#path = resolve(options.path)
    this.name = `file:${options.path}`
    this.#watchWanted = options.watch ?? true
    this.#log = options.logger?.child({ channel: this.name })
  }

  /** Loads and applies the source once, then watches it. Resolves after that first attempt. */
  async start(sink: RuleSink): Promise<void> {
    if (this.#sink !== undefined || this.#closed) return
    this.#sink = sink
    this.#log ??= sink.logger?.child({ channel: this.name })
    const first = this.#reload(true)
    this.#busy = first
    await first
    this.#busy = undefined
    if (this.#closed) return
    if (this.#watchWanted && this.#stamp !== undefined) this.#startWatch(this.#stamp)
    this.#poll = setInterval(() => void this.#tick(), this.#pollMs)
    this.#poll.unref()
  }

  /** Stops the watcher and the timers, and waits for a reload in progress. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#poll)
    clearTimeout(this.#debounce)
    this.#poll = undefined
    this.#debounce = undefined
    this.#stopWatch()
    await this.#busy
  }

  /** Asks for a reload; coalesces with the one running. */
  #request(): void {
    if (this.#closed || this.#sink === undefined) return
    if (this.#busy !== undefined) {
      this.#again = true
      return
    }
    this.#busy = (async () => {
      do {
        this.#again = false
        await this.#reload(false)
      } while (this.#again && !this.#closed)
      this.#busy = undefined
    })()
  }

  /** One load attempt. Never throws: every failure is reported to the sink or logged. */
  async #reload(initial: boolean): Promise<void> {
    try {
      // The stamp is taken before reading, so a write that lands after the read changes it for the poll.
      this.#stamp = await this.#fingerprint()
      let source: Source
      try {
        source = await this.#read()
      } catch (err) {
        this.#fail(err, `unreadable:${err instanceof Error ? err.message : String(err)}`)
        return
      }
      if (source.kind === 'missing') {
        this.#gone(initial)
        return
      }
      if (this.#missing) {
        this.#missing = false
        this.#log?.info({ path: this.#path }, 'rule source is back')
      }
      const hash = hashOf(source)
      if (hash === this.#hash || this.#closed) return
      let ruleSet: RuleSet
      try {
        ruleSet = this.#parse(source)
      } catch (err) {
        this.#fail(err, hash)
        return
      }
      this.#hash = hash
      const outcome = this.#sink!.apply(ruleSet, { source: this.name })
      if (source.kind === 'appactive' && (outcome.status === 'applied' || outcome.status === 'duplicate')) {
        this.#dirVersion = outcome.version
      }
      this.#log?.debug({ status: outcome.status, version: outcome.version }, 'rule source loaded')
    } catch (err) {
      this.#log?.error({ err }, 'file channel failure; the rules in force stay')
    }
  }

  async #read(): Promise<Source> {
    let info: Stats
    try {
      info = await stat(this.#path)
    } catch (err) {
      if (isMissing(err)) return { kind: 'missing' }
      throw unreadable(this.#path, err)
    }
    if (info.isDirectory()) {
      try {
        return { kind: 'appactive', files: await readAppActiveDir(this.#path) }
      } catch (err) {
        if (isMissing(err)) return { kind: 'missing' }
        throw err instanceof RuleInvalidError ? err : unreadable(this.#path, err)
      }
    }
    if (!info.isFile()) throw invalid(this.#path, 'is not a regular file')
    if (info.size > MAX_TEXT_BYTES) throw invalid(this.#path, `is larger than ${MAX_TEXT_BYTES} bytes`)
    try {
      return { kind: 'file', text: await readFile(this.#path, 'utf8') }
    } catch (err) {
      if (isMissing(err)) return { kind: 'missing' }
      throw unreadable(this.#path, err)
    }
  }

  /**
   * Parses exactly the text that was hashed (not a second read), the way `loadRules` does.
   * An AppActive directory has no version: each distinct content gets the next one above the sink's.
   */
  #parse(source: Exclude<Source, { kind: 'missing' }>): RuleSet {
    if (source.kind === 'file') return parseRuleSet(source.text, formatOf(this.#path), this.#path)
    const version = Math.max(this.#sink!.version, this.#dirVersion) + 1
    const imported = fromAppActive(source.files, { version })
    for (const warning of imported.warnings) this.#log?.warn({ path: this.#path }, warning)
    return imported.ruleSet
  }

  #fail(err: unknown, hash: string): void {
    const repeated = hash === this.#hash
    this.#hash = hash
    if (repeated || this.#closed) return
    const issues: readonly RuleIssue[] =
      err instanceof RuleInvalidError
        ? err.issues
        : [{ path: '', message: err instanceof Error ? err.message : String(err), file: this.#path }]
    this.#log?.warn({ issues: issues.slice(0, 20) }, 'cannot load the rule source; the rules in force stay')
    this.#sink!.reportError(undefined, issues, { source: this.name })
  }

  #gone(initial: boolean): void {
    if (this.#missing) return
    this.#missing = true
    if (initial) {
      this.#fail(invalid(this.#path, 'no such file or directory'), 'missing')
      return
    }
    this.#log?.warn({ path: this.#path }, 'rule source deleted; the rules in force stay until it returns')
  }

  /** Polls the source's metadata and reloads on any change; also re-establishes a lost watcher. */
  async #tick(): Promise<void> {
    if (this.#polling || this.#closed) return
    this.#polling = true
    try {
      const stamp = await this.#fingerprint()
      if (this.#closed) return
      const w = this.#watcher
      if (w !== undefined && (w.isDir !== stamp.isDir || (w.isDir && w.ino !== stamp.ino))) this.#stopWatch()
      if (this.#watcher === undefined && this.#watchWanted) this.#startWatch(stamp)
      if (stamp.key !== this.#stamp?.key || Date.now() - stamp.mtimeMs < SETTLE_MS) this.#request()
    } catch (err) {
      this.#log?.error({ err }, 'file channel poll failed')
    } finally {
      this.#polling = false
    }
  }

  /** ino, size, mtime and ctime of the file, or of each AppActive file of the directory. */
  async #fingerprint(): Promise<Stamp> {
    const top = await statOf(this.#path)
    if (typeof top === 'string') return { key: top, isDir: false, ino: 0, mtimeMs: 0 }
    if (!top.isDirectory()) {
      return { key: `f:${stampOf(top)}`, isDir: false, ino: top.ino, mtimeMs: top.mtimeMs }
    }
    const stats = await Promise.all(FILE_NAMES.map((name) => statOf(join(this.#path, name))))
    const key = stats.map((info, i) => `${FILE_NAMES[i]}=${stampOf(info)}`).join(',')
    const mtimeMs = Math.max(0, ...stats.map((info) => (typeof info === 'string' ? 0 : info.mtimeMs)))
    return { key: `d:${key}`, isDir: true, ino: top.ino, mtimeMs }
  }

  /**
   * Watches the parent directory of a file (editors and atomic writers replace a file by rename, which
   * ends a watch on the file itself), or the AppActive directory itself, filtered by name.
   */
  #startWatch(stamp: Stamp): void {
    const target = stamp.isDir ? this.#path : dirname(this.#path)
    const names = new Set(stamp.isDir ? FILE_NAMES : [basename(this.#path)])
    let fsw: FSWatcher
    try {
      fsw = watch(target, { persistent: false }, (_event, file) => {
        if (file === null || names.has(String(file)) || file === CONFIGMAP_LINK) this.#changed()
      })
    } catch (err) {
      if (isMissing(err)) return // the directory may appear later: the next poll tries again
      this.#watchWanted = false
      this.#log?.warn(
        { err: String(err), path: target },
        `fs.watch unavailable; polling every ${this.#pollMs} ms`,
      )
      return
    }
    fsw.on('error', (err) => {
      this.#log?.debug({ err: String(err), path: target }, 'fs.watch ended; the poll will re-establish it')
      if (this.#watcher?.fsw === fsw) this.#stopWatch()
    })
    this.#watcher = { fsw, isDir: stamp.isDir, ino: stamp.ino }
  }

  #stopWatch(): void {
    this.#watcher?.fsw.close()
    this.#watcher = undefined
  }

  /** A watch event: reload once events have been quiet for `debounceMs`. */
  #changed(): void {
    if (this.#closed) return
    clearTimeout(this.#debounce)
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined
      this.#request()
    }, this.#debounceMs)
    this.#debounce.unref()
  }
}

function interval(value: number | undefined, fallback: number, name: string, min: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new InvalidArgumentError(`${name} must be a number >= ${min} (ms)`)
  }
  return value
}

function hashOf(source: Exclude<Source, { kind: 'missing' }>): string {
  const h = createHash('sha256')
  if (source.kind === 'file') {
    h.update('file\0').update(source.text)
  } else {
    h.update('appactive')
    for (const role of Object.keys(APPACTIVE_FILES) as Array<keyof AppActiveFiles>) {
      const text = source.files[role]
      h.update(`\0${role}\0${text === undefined ? '-' : `+${text}`}`)
    }
  }
  return h.digest('hex')
}

async function statOf(path: string): Promise<Stats | string> {
  try {
    return await stat(path)
  } catch (err) {
    return isMissing(err) ? 'missing' : `error:${(err as NodeJS.ErrnoException).code ?? String(err)}`
  }
}

function stampOf(info: Stats | string): string {
  return typeof info === 'string' ? info : `${info.ino}:${info.size}:${info.mtimeMs}:${info.ctimeMs}`
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

function invalid(path: string, message: string): RuleInvalidError {
  return new RuleInvalidError([{ path: '', message, file: path }], 'rules')
}

function unreadable(path: string, err: unknown): RuleInvalidError {
  return invalid(path, `cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
}
