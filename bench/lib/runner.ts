/**
 * How a bench starts the gateway CLI and its helper processes (backend, plain proxy): as JavaScript
 * compiled by tsc into the bench's temp dir (default: dist/ is not touched, and no process carries tsx's
 * loader thread, about +34 MB RSS), or as TypeScript through tsx.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import ts from 'typescript'
import { compileSrc } from './build.js'
import { type Child, freePort, type SpawnOptions } from './children.js'
import type { BenchSession } from './session.js'

const ROOT = new URL('../..', import.meta.url).pathname
const TSX = import.meta.resolve('tsx')

export interface Runner {
  /** The CLI's command line, up to its arguments. */
  readonly cli: readonly string[]
  /** `node` arguments running a helper of bench/lib. */
  helper(file: string, ...args: string[]): string[]
  readonly how: string
}

/** The runner of `kind` (`APPACTIVE_BENCH_GATEWAY_RUNNER`); `built` compiles into `<tmp>/build`. */
export function benchRunner(kind: 'built' | 'tsx', tmp: string, log: (line: string) => void): Runner {
  if (kind === 'tsx') {
    return {
      cli: [process.execPath, '--import', TSX, join(ROOT, 'src/cli/run.ts')],
      helper: (file, ...args) => ['--import', TSX, join(ROOT, file), ...args],
      how: 'TypeScript through tsx (every process then carries tsx: about +34 MB RSS)',
    }
  }
  const build = join(tmp, 'build')
  mkdirSync(join(build, 'bench'), { recursive: true })
  const runJs = join(compileSrc(build, log, 'cli/run.js'), 'cli/run.js')
  // The compiled nginx engine finds appactive.lua three folders above gateway/nginx/, as in the package.
  mkdirSync(join(build, 'nginx'), { recursive: true })
  copyFileSync(join(ROOT, 'nginx/appactive.lua'), join(build, 'nginx/appactive.lua'))
  if (spawnSync(process.execPath, ['--check', runJs]).status !== 0)
    throw new Error(`the compiled CLI is broken (${runJs})`)
  return {
    cli: [process.execPath, runJs],
    helper: (file, ...args) => {
      const out = join(build, 'bench', basename(file).replace(/\.ts$/, '.js'))
      const js = ts.transpileModule(readFileSync(join(ROOT, file), 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      })
      writeFileSync(out, js.outputText)
      return [out, ...args]
    },
    how: 'JavaScript compiled by tsc from src/ and bench/lib (no tsx)',
  }
}

/**
 * Starts the loopback backend (bench/lib/backend.ts) as child `name` on a free port, and resolves with it
 * and its origin once it answers `path` with 200.
 */
export async function startBackend(
  session: Pick<BenchSession, 'children' | 'untilAnswer'>,
  run: Runner,
  name: string,
  options: SpawnOptions,
  path: string,
): Promise<{ child: Child; url: string }> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const child = session.children.spawn(
    name,
    process.execPath,
    run.helper('bench/lib/backend.ts', String(port)),
    options,
  )
  await session.untilAnswer(child, `${url}${path}`, 200)
  return { child, url }
}
