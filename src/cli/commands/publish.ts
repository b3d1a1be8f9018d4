/**
 * `appactive publish FILE [--reason TEXT] [--expected-version N] [--force --yes] [--json]`: publishes a
 * rule set through the control plane (POST /v1/rules), which validates it against the topology, stores
 * it as the next version and pushes it to every agent. A rule set that moves keys is refused (use
 * `appactive cutover`); an admin may force it, which needs `--yes` since two units could then accept
 * the same id.
 */
import type { Command } from 'commander'
import type { RuleSetRecord } from '../../control/index.js'
import type { CommandContext } from '../context.js'
import { addConnectionOptions, ControlClient } from '../control-client.js'
import { examples, parseVersionOption } from '../options.js'
import { CliError, EXIT_OK, EXIT_REFUSED } from '../output.js'
import { readRuleDocument } from '../rule-file.js'

interface PublishOptions {
  readonly reason?: string
  readonly expectedVersion?: number
  readonly force?: boolean
  readonly yes?: boolean
  readonly json?: boolean
}

/** Registers `publish`. */
export function addPublishCommand(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('publish')
    .description('publish a rule set through the control plane (validated, stored, pushed to every agent)')
    .argument(
      '<file>',
      'a rule-set file (JSON or YAML; without a version the next one is taken) or an AppActive rule directory',
    )
    .option('--reason <text>', 'why (kept in the audit log)')
    .option('--expected-version <n>', 'refuse unless this is still the latest version', parseVersionOption)
    .option('--force', 'publish even though keys change owner without a cut-over (admin; needs --yes)')
    .option('-y, --yes', 'confirm a forced publish')
    .option('--json', 'print the stored record as one JSON object')
  addConnectionOptions(cmd)
    .showHelpAfterError('(see "appactive publish --help")')
    .addHelpText('after', examples('appactive publish rules.yaml --reason "add unit sh"'))
    .action(async (file: string, opts: PublishOptions, command: Command) => {
      ctx.exitCode = await publish(file, opts, ControlClient.of(command), ctx)
    })
}

async function publish(
  file: string,
  opts: PublishOptions,
  client: ControlClient,
  ctx: CommandContext,
): Promise<number> {
  const { out } = ctx
  if (opts.force && !opts.yes)
    throw new CliError(
      'CONFIRMATION_REQUIRED',
      'not published: --force lets keys change owner without a fence, so two units could accept the same id; add --yes to publish anyway (or use appactive cutover)',
      EXIT_REFUSED,
    )
  const { doc, warnings } = await readRuleDocument(file)
  out.warnings(warnings)
  const record = await client.post<RuleSetRecord>('/v1/rules', {
    ruleSet: doc,
    reason: opts.reason ?? `publish ${file} (appactive CLI)`,
    ...(opts.expectedVersion !== undefined ? { expectedVersion: opts.expectedVersion } : {}),
    ...(opts.force ? { force: true } : {}),
  })
  if (opts.json) out.json(record)
  else
    out.line(`published version ${record.version} (sha256 ${record.digest.slice(0, 12)}) by ${record.author}`)
  return EXIT_OK
}
