/**
 * Compiling src/ for a bench: users run the JavaScript tsc emits, not tsx's (which wraps every named
 * closure in a `__name()` call and adds a loader thread), so benches measure that. dist/ is not touched.
 */

import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, symlinkSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = new URL('../../', import.meta.url).pathname

/**
 * Compiles src/ with tsconfig.build.json into `<dir>/dist` (with node_modules and package.json beside it,
 * as an installed package has them) and returns that dist directory. tsc emits even on type errors
 * (someone may be mid-edit); `mustExist` (a path under dist/) missing is fatal.
 */
export function compileSrc(dir: string, log: (line: string) => void, mustExist = 'index.js'): string {
  mkdirSync(dir, { recursive: true })
  if (!existsSync(join(dir, 'node_modules')))
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  copyFileSync(join(ROOT, 'package.json'), join(dir, 'package.json'))
  log('compiling src/ with tsconfig.build.json into the temp dir (dist/ is not touched)')
  const tsc = spawnSync(
    process.execPath,
    [
      join(ROOT, 'node_modules/typescript/bin/tsc'),
      ...['-p', 'tsconfig.build.json', '--outDir', join(dir, 'dist')],
      ...['--declaration', 'false', '--declarationMap', 'false', '--sourceMap', 'false'],
    ],
    { cwd: ROOT, encoding: 'utf8' },
  )
  if (tsc.status !== 0)
    log(`tsc exited ${tsc.status}; using what it emitted:\n${(tsc.stdout + tsc.stderr).slice(0, 2000)}`)
  const dist = join(dir, 'dist')
  if (!existsSync(join(dist, mustExist)))
    throw new Error(`the compiled ${mustExist} is missing:\n${tsc.stdout}${tsc.stderr}`)
  return dist
}
