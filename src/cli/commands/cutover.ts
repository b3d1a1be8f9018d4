/**
 * `appactive cutover --move RANGES --to-unit UNIT [--label L] [--dry-run] [--yes] [--json]` and
 * `appactive cutover --to FILE ...`: plans a cut-over (DESIGN §4) on the control plane, confirms it,
 * starts it and follows it phase by phase to the end. See operation-run.ts for the flow.
 */
import type { Command } from 'commander'
import type { CommandContext } from '../context.js'
import { addConnectionOptions, ControlClient } from '../control-client.js'
import { runOperation } from '../operation-run.js'
import { examples } from '../options.js'
import { usageError } from '../output.js'
import { readRuleDocument } from '../rule-file.js'

interface CutoverOptions {
  readonly move?: string[]
  readonly label?: string[]
  readonly toUnit?: string
  readonly to?: string
  readonly reason?: string
  readonly dryRun?: boolean
  readonly yes?: boolean
  readonly json?: boolean
}

/** Collects a repeatable option; each value may be a comma-separated list. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [
    ...(previous ?? []),
    ...value
      .split(',')
      .map((v) => v.trim())
      .filter((v) => v !== ''),
  ]
}

/** Registers `cutover`. */
export function addCutoverCommand(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('cutover')
    .description('move keys to another unit with a fenced cut-over: plan, confirm, run, follow each phase')
    .option(
      '--move <ranges>',
      'key ranges to move, e.g. 2000~2999 (repeat, or separate with commas)',
      collect,
    )
    .option('--label <label>', 'labels to move (repeat, or separate with commas)', collect)
    .option('--to-unit <unit>', 'the unit the --move ranges and --label labels go to')
    .option(
      '--to <file>',
      'instead of moves: the whole rule set wanted afterwards (JSON, YAML or an AppActive directory)',
    )
    .option('--reason <text>', 'why (kept in the audit log)')
    .option('--dry-run', 'print the plan (every step, check and warning) and create nothing')
    .option('-y, --yes', 'start without asking')
    .option('--json', 'print one JSON object per event, one per line')
  addConnectionOptions(cmd)
    .showHelpAfterError('(see "appactive cutover --help")')
    .addHelpText(
      'after',
      examples(
        'appactive cutover --move 2000~2999 --to-unit unit --dry-run',
        'appactive cutover --move 2000~2999 --to-unit unit --yes',
        'appactive cutover --to rules-v2.yaml --yes --json',
      ),
    )
    .action(async (opts: CutoverOptions, command: Command) => {
      const client = ControlClient.of(command)
      const move = opts.move ?? []
      const label = opts.label ?? []
      const hasMoves = move.length > 0 || label.length > 0
      if (opts.to !== undefined && (hasMoves || opts.toUnit !== undefined))
        throw usageError('give either --to FILE or --move/--label with --to-unit, not both')
      let body: Record<string, unknown>
      let reason: string
      if (opts.to !== undefined) {
        const { doc, warnings } = await readRuleDocument(opts.to)
        ctx.out.warnings(warnings)
        body = { target: doc }
        reason = `cut-over to ${opts.to}`
      } else {
        if (!hasMoves)
          throw usageError(
            'say what moves: --move RANGES and/or --label LABELS with --to-unit UNIT, or --to FILE',
          )
        if (opts.toUnit === undefined) throw usageError('--move and --label need --to-unit UNIT')
        body = { moves: [{ ranges: move, labels: label, to: opts.toUnit }] }
        reason = `cut-over of ${[...move, ...label].join(', ')} to ${opts.toUnit}`
      }
      ctx.exitCode = await runOperation(ctx, client, {
        kind: 'cutover',
        body: { ...body, reason: opts.reason ?? `${reason} (appactive CLI)` },
        dryRun: opts.dryRun === true,
        yes: opts.yes === true,
        json: opts.json === true,
      })
    })
}
