/**
 * `appactive route --rules PATH [--unit NAME] [--json] ID...`: where each route id goes (DESIGN §6).
 * Ids that look like negative numbers (`-5`) are ids, not options; any other id that starts with `-`
 * goes after `--`.
 */
import { type Command, Option } from 'commander'
import { loadRules } from '../../channels/index.js'
import { compileRouter, type RouteDecision } from '../../rules/index.js'
import type { CommandContext } from '../context.js'
import { table } from '../format.js'
import { examples } from '../options.js'
import { type Output, usageError } from '../output.js'

interface RouteOptions {
  readonly rules: string
  readonly unit?: string
  readonly json?: boolean
}

/** One line of `route --json` output. */
export interface RouteLine extends RouteDecision {
  readonly id: string
  readonly version: number
}

/** Registers `route` on the program. */
export function addRouteCommand(program: Command, ctx: CommandContext): void {
  program
    .command('route')
    .description('print the unit, key, fenced flag and reason of each route id')
    .argument('<id...>', 'route ids; put ids that start with "-" (other than numbers) after --')
    .addOption(
      new Option('--rules <path>', 'a rule-set file (JSON or YAML) or an AppActive rule directory')
        .env('APPACTIVE_RULES')
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        '--unit <name>',
        'the local (entry) unit that a "local" fallback resolves to (default: machine.json of an AppActive directory)',
      ).env('APPACTIVE_UNIT'),
    )
    .option('--json', 'print one JSON object per id, one per line (JSON Lines)')
    .showHelpAfterError('(see "appactive route --help"; an id like -abc goes after --)')
    .addHelpText('after', examples('appactive route --rules rules.yaml --unit hz 42 -5 -- -abc'))
    .action(async (ids: string[], opts: RouteOptions, cmd: Command) => {
      const fromEnv = cmd.getOptionValueSource('unit') === 'env'
      ctx.exitCode = await route(ids, opts, fromEnv, ctx.out)
    })
}

async function route(
  ids: readonly string[],
  opts: RouteOptions,
  unitFromEnv: boolean,
  out: Output,
): Promise<number> {
  const loaded = await loadRules(opts.rules)
  out.warnings(loaded.warnings)
  const units = loaded.ruleSet.units.map((u) => u.name)
  let localUnit = unitFromEnv && opts.unit === '' ? undefined : opts.unit
  if (localUnit !== undefined && !units.includes(localUnit)) {
    const what = unitFromEnv
      ? `APPACTIVE_UNIT=${JSON.stringify(localUnit)}`
      : `--unit ${JSON.stringify(localUnit)}`
    throw usageError(`${what} is not a unit of ${opts.rules}${suggestUnit(localUnit, units)}`)
  }
  if (localUnit === undefined && loaded.localUnit !== undefined) {
    if (units.includes(loaded.localUnit)) localUnit = loaded.localUnit
    else
      out.warn(
        `machine.json names unit ${JSON.stringify(loaded.localUnit)}, which ${opts.rules} does not have; ignoring it`,
      )
  }
  const router = compileRouter(loaded.ruleSet, localUnit !== undefined ? { localUnit } : {})
  const lines: RouteLine[] = ids.map((id) => ({ id, ...router.route(id), version: router.version }))

  if (opts.json) for (const line of lines) out.json(line)
  else printTable(lines, out)

  const unresolved = router.fallback === 'local' && router.localUnit === undefined
  if (unresolved && lines.some((l) => l.unit === null)) {
    out.note('the fallback is "local" and no local unit is known: pass --unit NAME to resolve it')
  }
  return 0
}

function suggestUnit(name: string, units: readonly string[]): string {
  const same = units.find((u) => u.toLowerCase() === name.toLowerCase())
  return same !== undefined ? ` (did you mean "${same}"?)` : ` (units: ${units.join(', ')})`
}

/** An id as shown in the table: quoted when empty or when it has spaces or control characters. */
function showId(id: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
  return id === '' || /[\s"\\\u0000-\u001f\u007f]/.test(id) ? JSON.stringify(id) : id
}

function printTable(lines: readonly RouteLine[], out: Output): void {
  const rows = lines.map((l) => [
    showId(l.id),
    l.unit ?? '-',
    l.key === null ? '-' : String(l.key),
    l.fenced ? 'yes' : 'no',
    l.reason,
  ])
  for (const line of table([['ID', 'UNIT', 'KEY', 'FENCED', 'REASON'], ...rows])) out.line(line)
}
