/**
 * A rule-set document to send to the control plane, read from a file (JSON or YAML: syntax errors are
 * reported here with their line and column) or an AppActive rule directory (converted). The control
 * plane validates it and lists every problem, so the file is not validated twice.
 */
import { readFile, stat } from 'node:fs/promises'
import { loadRules } from '../channels/index.js'
import { RuleInvalidError } from '../errors/index.js'
import { formatOf, MAX_TEXT_BYTES, parseText } from '../rules/index.js'

export interface RuleDocument {
  readonly doc: Record<string, unknown>
  readonly warnings: readonly string[]
}

function fail(path: string, message: string): RuleInvalidError {
  return new RuleInvalidError([{ path: '', message, file: path }], 'rules')
}

/**
 * Reads a rule-set document. A file's `version` is kept as written (leave it out and the control plane
 * takes the next one); an AppActive directory has no version, so none is sent.
 * @throws RuleInvalidError naming the file: missing, unreadable, too large, malformed, not an object.
 */
export async function readRuleDocument(path: string): Promise<RuleDocument> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw fail(
      path,
      err.code === 'ENOENT' ? 'no such file or directory' : `cannot read (${err.code ?? err.message})`,
    )
  })
  if (info.isDirectory()) {
    const loaded = await loadRules(path)
    const { version: _v, ...doc } = loaded.ruleSet
    return { doc, warnings: loaded.warnings }
  }
  if (!info.isFile()) throw fail(path, 'is not a regular file')
  if (info.size > MAX_TEXT_BYTES) throw fail(path, `is larger than ${MAX_TEXT_BYTES} bytes`)
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw fail(path, `cannot read (${err.code ?? err.message})`)
  })
  const value = parseText(text, formatOf(path), path)
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw fail(path, 'must hold a rule set (a mapping of fields)')
  return { doc: value as Record<string, unknown>, warnings: [] }
}
