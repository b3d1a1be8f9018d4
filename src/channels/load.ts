/**
 * Loading a rule set from disk: a canonical rule-set file (JSON or YAML) or a directory of AppActive rule
 * files. Used by the CLI and by the file channel. Every failure is a RuleInvalidError naming the file.
 */
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { RuleInvalidError } from '../errors/index.js'
import {
  APPACTIVE_FILES,
  type AppActiveFiles,
  type AppActiveImportOptions,
  formatOf,
  fromAppActive,
  MAX_TEXT_BYTES,
  parseRuleSet,
  type RuleSet,
} from '../rules/index.js'

/** A rule set read from disk, with where it came from. */
export interface LoadedRules {
  readonly ruleSet: RuleSet
  readonly path: string
  readonly kind: 'file' | 'appactive'
  /** machine.json's unit, for an AppActive directory that has one. */
  readonly localUnit?: string
  readonly warnings: readonly string[]
}

function fail(path: string, message: string): RuleInvalidError {
  return new RuleInvalidError([{ path: '', message, file: path }], 'rules')
}

/** `stat`, with a RuleInvalidError naming the path when it fails. */
async function statOf(path: string): Promise<Awaited<ReturnType<typeof stat>>> {
  try {
    return await stat(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw fail(path, code === 'ENOENT' ? 'no such file or directory' : `cannot read (${code ?? String(err)})`)
  }
}

async function readText(path: string): Promise<string> {
  const info = await statOf(path)
  if (!info.isFile()) throw fail(path, 'is not a regular file')
  if (info.size > MAX_TEXT_BYTES) throw fail(path, `is larger than ${MAX_TEXT_BYTES} bytes`)
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    throw fail(path, `cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
  }
}

/**
 * Reads the AppActive rule files of a directory (absent optional files stay undefined).
 * @throws RuleInvalidError when the directory has none of the AppActive files.
 */
export async function readAppActiveDir(dir: string): Promise<AppActiveFiles> {
  const names = new Set(await readdir(dir))
  const files: AppActiveFiles = {}
  for (const [role, name] of Object.entries(APPACTIVE_FILES) as Array<[keyof AppActiveFiles, string]>) {
    if (names.has(name)) files[role] = await readText(join(dir, name))
  }
  if (Object.keys(files).length === 0) {
    throw fail(
      dir,
      `is a directory without AppActive rule files (${Object.values(APPACTIVE_FILES).join(', ')})`,
    )
  }
  return files
}

/**
 * Loads a rule set from a canonical file or an AppActive rule directory.
 * @throws RuleInvalidError (APPACTIVE_RULE_INVALID) naming the file and every problem.
 */
export async function loadRules(path: string, options: AppActiveImportOptions = {}): Promise<LoadedRules> {
  const info = await statOf(path)
  if (info.isDirectory()) {
    const imported = fromAppActive(await readAppActiveDir(path), options)
    return {
      ruleSet: imported.ruleSet,
      path,
      kind: 'appactive',
      ...(imported.localUnit !== undefined ? { localUnit: imported.localUnit } : {}),
      warnings: imported.warnings,
    }
  }
  const text = await readText(path)
  return { ruleSet: parseRuleSet(text, formatOf(path), path), path, kind: 'file', warnings: [] }
}
