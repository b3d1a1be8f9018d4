/**
 * `appactive rules validate PATH [--json]`: exit 0 and a one-line summary, or exit 1 and EVERY problem,
 * one per line (DESIGN §6).
 */
import type { Command } from 'commander'
import { loadRules } from '../../channels/index.js'
import { formatIssue, RuleInvalidError, type RuleIssue } from '../../errors/index.js'
import { type RuleSet, validateRuleSet } from '../../rules/index.js'
import type { CommandContext } from '../context.js'
import { plural } from '../format.js'
import { examples } from '../options.js'
import { EXIT_FAILURE, EXIT_OK, type Output } from '../output.js'

interface ValidateOptions {
  readonly json?: boolean
}

/** `rules validate --json` output when the rule set is valid. */
export interface ValidOutput {
  readonly ok: true
  readonly path: string
  readonly version: number
  readonly units: number
  readonly ranges: number
  readonly labels: number
  readonly warnings: readonly string[]
}

/** `rules validate --json` output when it is not. */
export interface InvalidOutput {
  readonly ok: false
  readonly path: string
  readonly issues: readonly RuleIssue[]
}

/** Registers `rules validate`. */
export function addValidateCommand(rules: Command, ctx: CommandContext): void {
  rules
    .command('validate')
    .description('check a rule set and print every problem found')
    .argument('<path>', 'a rule-set file (JSON or YAML) or an AppActive rule directory')
    .option('--json', 'print the result as one JSON object')
    .showHelpAfterError('(see "appactive rules validate --help")')
    .addHelpText('after', examples('appactive rules validate rules.yaml'))
    .action(async (path: string, opts: ValidateOptions) => {
      ctx.exitCode = await validate(path, opts, ctx.out)
    })
}

async function validate(path: string, opts: ValidateOptions, out: Output): Promise<number> {
  let ruleSet: RuleSet
  let warnings: readonly string[]
  try {
    const loaded = await loadRules(path)
    ;({ ruleSet, warnings } = loaded)
  } catch (err) {
    if (err instanceof RuleInvalidError) return invalid(path, err.issues, opts, out)
    throw err
  }
  out.warnings(warnings)
  // Loading validates already; checking again keeps "ok" honest whatever the loader does.
  const v = validateRuleSet(ruleSet)
  if (!v.ok) return invalid(path, v.issues, opts, out)
  const summary: ValidOutput = {
    ok: true,
    path,
    version: ruleSet.version,
    units: ruleSet.units.length,
    ranges: ruleSet.mapping.reduce((n, e) => n + (e.ranges?.length ?? 0), 0),
    labels: ruleSet.mapping.reduce((n, e) => n + (e.labels?.length ?? 0), 0),
    warnings,
  }
  if (opts.json) out.json(summary)
  else
    out.line(
      `ok: ${path} (version ${summary.version}, ${plural(summary.units, 'unit')}, ${plural(summary.ranges, 'range')})`,
    )
  return EXIT_OK
}

function invalid(path: string, issues: readonly RuleIssue[], opts: ValidateOptions, out: Output): number {
  if (opts.json) out.json({ ok: false, path, issues } satisfies InvalidOutput)
  else for (const issue of issues) out.line(formatIssue(issue))
  out.error('APPACTIVE_RULE_INVALID', `${path}: ${plural(issues.length, 'problem')}`)
  return EXIT_FAILURE
}
