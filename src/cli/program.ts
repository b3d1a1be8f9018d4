/**
 * The command tree. Commander parses; usage errors are printed as `appactive: APPACTIVE_INVALID_ARGUMENT:
 * ...` on stderr and end with exit code 2 (see `Output.fail`), help goes to stdout.
 */
import { Command } from 'commander'
import { addAuditCommand } from './commands/audit.js'
import { addControlCommand } from './commands/control.js'
import { addCutoverCommand } from './commands/cutover.js'
import { addDiffCommand } from './commands/diff.js'
import { addExportCommand } from './commands/export.js'
import { addFailoverCommand } from './commands/failover.js'
import { addGatewayCommand } from './commands/gateway.js'
import { addImportCommand } from './commands/import.js'
import { addPublishCommand } from './commands/publish.js'
import { addRouteCommand } from './commands/route.js'
import { addStatusCommand } from './commands/status.js'
import { addValidateCommand } from './commands/validate.js'
import type { CommandContext } from './context.js'
import { examples } from './options.js'
import { type CliIO, USAGE_CODE } from './output.js'
import { packageVersion } from './version.js'

/** Builds the `appactive` command for one run. Subcommands inherit the output and exit settings. */
export function buildProgram(ctx: CommandContext, io: CliIO): Command {
  const program = new Command('appactive')
    .description(
      'Multi-active disaster recovery for Node.js: route ids, check and convert rule sets, run the gateway and the control plane, publish rule sets, run cut-overs and failovers.',
    )
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand(false)
    // Options after a subcommand belong to it: `rules import --version 3` is not the program's --version.
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) => write(`appactive: ${USAGE_CODE}: ${text.replace(/^error: /, '')}`),
    })
    .showHelpAfterError('(see "appactive --help")')
    .addHelpText('after', examples('appactive route --rules rules.yaml 42'))
  addRouteCommand(program, ctx)
  addGatewayCommand(program, ctx)
  addControlCommand(program, ctx)
  addPublishCommand(program, ctx)
  addCutoverCommand(program, ctx)
  addFailoverCommand(program, ctx)
  addStatusCommand(program, ctx)
  addAuditCommand(program, ctx)
  const rules = program
    .command('rules')
    .description('validate, diff, import and export rule sets')
    .helpCommand(false)
    .showHelpAfterError('(see "appactive rules --help")')
    .addHelpText('after', examples('appactive rules validate rules.yaml'))
  addValidateCommand(rules, ctx)
  addDiffCommand(rules, ctx)
  addImportCommand(rules, ctx)
  addExportCommand(rules, ctx)
  return program
}
