/**
 * `appactive rules export --to-appactive DIR RULES`: one rule set -> AppActive rule files in DIR, for
 * AppActive Java apps and gateways that still read them. Never overwrites a file without `--force`.
 */
import { basename, join } from 'node:path'
import type { Command } from 'commander'
import { loadRules } from '../../channels/index.js'
import { toAppActive } from '../../rules/index.js'
import type { CommandContext } from '../context.js'
import { ensureDir, refuseOverwrite, writeText } from '../files.js'
import { examples } from '../options.js'

interface ExportOptions {
  readonly toAppactive: string
  readonly force?: boolean
  readonly json?: boolean
}

/** `rules export --json` output. */
export interface ExportOutput {
  readonly dir: string
  readonly files: readonly string[]
  readonly warnings: readonly string[]
}

/** Registers `rules export`. */
export function addExportCommand(rules: Command, ctx: CommandContext): void {
  rules
    .command('export')
    .description('write a rule set as AppActive rule files (idSource.json, idTransformer.json...)')
    .argument('<rules>', 'the rule set to export (file or AppActive directory)')
    .requiredOption('--to-appactive <dir>', 'the directory to write (created when missing)')
    .option('--force', 'overwrite files that already exist in DIR')
    .option('--json', 'print the written files as one JSON object')
    .showHelpAfterError('(see "appactive rules export --help")')
    .addHelpText('after', examples('appactive rules export --to-appactive ./rule rules.yaml'))
    .action(async (rulesPath: string, opts: ExportOptions) => {
      const loaded = await loadRules(rulesPath)
      const { files, warnings } = toAppActive(loaded.ruleSet)
      const all = [...loaded.warnings, ...warnings]
      ctx.out.warnings(all)
      const dir = opts.toAppactive
      const names = Object.keys(files)
      for (const name of names) {
        // toAppActive names files; a path separator would write outside DIR.
        if (basename(name) !== name || name === '..')
          throw new Error(`toAppActive produced a bad file name ${name}`)
      }
      const paths = names.map((name) => join(dir, name))
      const force = opts.force === true
      await ensureDir(dir)
      await refuseOverwrite(paths, force)
      for (const [i, name] of names.entries()) await writeText(paths[i]!, files[name]!, force)
      if (opts.json) ctx.out.json({ dir, files: paths, warnings: all } satisfies ExportOutput)
      else for (const p of paths) ctx.out.line(p)
    })
}
