/** Writing output files without clobbering: the CLI never overwrites a file unless told to (`--force`). */
import { access, mkdir, stat, writeFile } from 'node:fs/promises'
import { CliError } from './output.js'

async function exists(path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

/**
 * Fails (EEXIST, exit 1) when any of `paths` exists and `force` is not set, naming every such file, so
 * that nothing is written at all.
 */
export async function refuseOverwrite(paths: readonly string[], force: boolean): Promise<void> {
  if (force) return
  const found: string[] = []
  for (const p of paths) if (await exists(p)) found.push(p)
  if (found.length > 0) {
    throw new CliError(
      'EEXIST',
      `refusing to overwrite ${found.join(', ')}; add --force to overwrite ${found.length > 1 ? 'them' : 'it'}`,
    )
  }
}

/** Writes `text` to `path`; without `force` the write fails if the file appeared meanwhile. */
export async function writeText(path: string, text: string, force: boolean): Promise<void> {
  await writeFile(path, text, { encoding: 'utf8', flag: force ? 'w' : 'wx' })
}

/** Creates `dir` (and its parents) unless it exists; fails when it exists and is not a directory. */
export async function ensureDir(dir: string): Promise<void> {
  const info = await stat(dir).catch(() => undefined)
  if (info !== undefined && !info.isDirectory()) throw new CliError('ENOTDIR', `${dir} is not a directory`)
  await mkdir(dir, { recursive: true })
}
