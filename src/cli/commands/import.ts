/**
 * `appactive rules import --from-appactive DIR`: AppActive rule files -> one canonical rule set, printed
 * as YAML (default) or JSON, or written to `--out FILE`.
 */
import { stat } from 'node:fs/promises'
import { type Command, Option } from 'commander'
import { stringify } from 'yaml'
import { loadRules } from '../../channels/index.js'
import { type Fallback, formatOf, type RuleSet, type TextFormat } from '../../rules/index.js'
import type { CommandContext } from '../context.js'
import { refuseOverwrite, writeText } from '../files.js'
import { examples, parseFallbackOption, parseVersionOption } from '../options.js'
import { usageError } from '../output.js'

interface ImportOptions {
  readonly fromAppactive: string
  readonly out?: string
  readonly format?: TextFormat
  readonly version?: number
  readonly fallback?: Fallback
  readonly force?: boolean
  readonly json?: boolean
}

/** Registers `rules import`. */
export function addImportCommand(rules: Command, ctx: CommandContext): void {
  rules
    .command('import')
    .description('convert a directory of AppActive rule files into one canonical rule set')
    .requiredOption('--from-appactive <dir>', 'the directory holding idSource.json, idUnitMapping.json...')
    .option('--out <file>', 'write the rule set to FILE instead of stdout')
    .addOption(
      new Option('--format <format>', 'yaml or json (default: from --out, else yaml)').choices([
        'yaml',
        'json',
      ]),
    )
    .option('--version <n>', 'the version of the imported rule set', parseVersionOption)
    .option(
      '--fallback <fallback>',
      'local, reject or a unit name, for ids no range covers',
      parseFallbackOption,
    )
    .option('--force', 'overwrite --out FILE if it exists')
    .option('--json', 'same as --format json')
    .showHelpAfterError('(see "appactive rules import --help")')
    .addHelpText('after', examples('appactive rules import --from-appactive ./rule --out rules.yaml'))
    .action(async (opts: ImportOptions) => {
      const dir = opts.fromAppactive
      const info = await stat(dir).catch(() => undefined)
      if (info !== undefined && !info.isDirectory()) {
        throw usageError(`--from-appactive ${dir} is a file; it takes a directory of AppActive rule files`)
      }
      const loaded = await loadRules(dir, {
        ...(opts.version !== undefined ? { version: opts.version } : {}),
        ...(opts.fallback !== undefined ? { fallback: opts.fallback } : {}),
      })
      ctx.out.warnings(loaded.warnings)
      const format =
        opts.format ?? (opts.json ? 'json' : opts.out !== undefined ? formatOf(opts.out) : 'yaml')
      const text = serialize(loaded.ruleSet, format)
      if (opts.out === undefined) {
        ctx.out.raw(text)
        return
      }
      await refuseOverwrite([opts.out], opts.force === true)
      await writeText(opts.out, text, opts.force === true)
      ctx.out.note(`wrote ${opts.out} (version ${loaded.ruleSet.version})`)
    })
}

/** A rule set as YAML or JSON text, ending with a newline. */
function serialize(ruleSet: RuleSet, format: TextFormat): string {
  return format === 'json' ? `${JSON.stringify(ruleSet, null, 2)}\n` : stringify(ruleSet, { lineWidth: 0 })
}
