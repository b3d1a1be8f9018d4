/**
 * `appactive failover --unit X --to Y [--force] [--dry-run] [--yes] [--json]`: gives every key of a
 * lost unit X to the survivor Y (DESIGN §4, failover). Without --force, X's agents' leases are waited
 * out first, so none of them can still accept writes. Confirmation as for `cutover`; a forced failover
 * needs --yes even on a terminal (no y/N question is enough for it).
 */
import type { Command } from 'commander'
import type { CommandContext } from '../context.js'
import { addConnectionOptions, ControlClient } from '../control-client.js'
import { runOperation } from '../operation-run.js'
import { examples } from '../options.js'

interface FailoverOptions {
  readonly unit: string
  readonly to: string
  readonly force?: boolean
  readonly reason?: string
  readonly dryRun?: boolean
  readonly yes?: boolean
  readonly json?: boolean
}

/** Registers `failover`. */
export function addFailoverCommand(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('failover')
    .description("give every key of a lost unit to a survivor: wait out the lost unit's leases, then switch")
    .requiredOption('--unit <unit>', 'the lost unit')
    .requiredOption('--to <unit>', 'the surviving unit that takes its keys')
    .option(
      '--force',
      "do not wait out the lost unit's agent leases (they may accept writes until they lapse); needs --yes",
    )
    .option('--reason <text>', 'why (kept in the audit log)')
    .option('--dry-run', 'print the plan and create nothing')
    .option('-y, --yes', 'start without asking (required with --force)')
    .option('--json', 'print one JSON object per event, one per line')
  addConnectionOptions(cmd)
    .showHelpAfterError('(see "appactive failover --help")')
    .addHelpText(
      'after',
      examples(
        'appactive failover --unit unit --to center --dry-run',
        'appactive failover --unit unit --to center --yes',
      ),
    )
    .action(async (opts: FailoverOptions, command: Command) => {
      const client = ControlClient.of(command)
      ctx.exitCode = await runOperation(ctx, client, {
        kind: 'failover',
        body: {
          unit: opts.unit,
          to: opts.to,
          ...(opts.force ? { force: true } : {}),
          reason: opts.reason ?? `failover of ${opts.unit} to ${opts.to} (appactive CLI)`,
        },
        dryRun: opts.dryRun === true,
        yes: opts.yes === true,
        json: opts.json === true,
        forced: opts.force
          ? `a forced failover does not wait out unit ${opts.unit}'s agent leases, so they may still accept writes until their leases lapse`
          : undefined,
      })
    })
}
