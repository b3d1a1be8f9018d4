/**
 * `appactive rules diff FROM TO [--json]`: the key ranges and labels that change owner, the units added
 * and removed, and the fence that protects the cut-over (DESIGN §4 step 1, §6).
 */
import type { Command } from 'commander'
import { loadRules } from '../../channels/index.js'
import { diffRuleSets, formatRange, type RuleDiff } from '../../rules/index.js'
import type { CommandContext } from '../context.js'
import { plural, table } from '../format.js'
import { examples } from '../options.js'
import type { Output } from '../output.js'

interface DiffOptions {
  readonly json?: boolean
}

/** `rules diff --json` output: one object. `from`/`to` are null where no unit owns the keys. */
export interface DiffOutput {
  readonly changed: boolean
  readonly fromVersion: number
  readonly toVersion: number
  readonly moved: ReadonlyArray<{
    range: string
    lo: number
    hi: number
    from: string | null
    to: string | null
    keys: number
  }>
  readonly labels: ReadonlyArray<{ label: string; from: string | null; to: string | null }>
  readonly addedUnits: readonly string[]
  readonly removedUnits: readonly string[]
  readonly fence: { readonly ranges: readonly string[]; readonly labels: readonly string[] }
  readonly movedKeys: number
}

/** Registers `rules diff`. */
export function addDiffCommand(rules: Command, ctx: CommandContext): void {
  rules
    .command('diff')
    .description('print what moves from one rule set to another, and the fence for the cut-over')
    .argument('<from>', 'the current rule set (file or AppActive directory)')
    .argument('<to>', 'the next rule set (file or AppActive directory)')
    .option('--json', 'print the diff as one JSON object')
    .showHelpAfterError('(see "appactive rules diff --help")')
    .addHelpText('after', examples('appactive rules diff rules-v1.yaml rules-v2.yaml'))
    .action(async (from: string, to: string, opts: DiffOptions) => {
      const [a, b] = await Promise.all([loadRules(from), loadRules(to)])
      ctx.out.warnings([...a.warnings, ...b.warnings])
      const output = toOutput(diffRuleSets(a.ruleSet, b.ruleSet))
      if (opts.json) ctx.out.json(output)
      else print(output, ctx.out)
    })
}

function toOutput(diff: RuleDiff): DiffOutput {
  const changed =
    diff.moved.length + diff.labels.length + diff.addedUnits.length + diff.removedUnits.length > 0
  return {
    changed,
    fromVersion: diff.fromVersion,
    toVersion: diff.toVersion,
    moved: diff.moved.map((m) => ({
      range: formatRange(m),
      lo: m.lo,
      hi: m.hi,
      from: m.from,
      to: m.to,
      keys: m.hi - m.lo + 1,
    })),
    labels: diff.labels.map((l) => ({ label: l.label, from: l.from, to: l.to })),
    addedUnits: diff.addedUnits.map((u) => u.name),
    removedUnits: [...diff.removedUnits],
    fence: { ranges: [...diff.fence.ranges], labels: [...diff.fence.labels] },
    movedKeys: diff.movedKeys,
  }
}

const owner = (unit: string | null): string => unit ?? '(none)'

function print(d: DiffOutput, out: Output): void {
  if (!d.changed) {
    out.line('no change')
    return
  }
  out.line(
    `version ${d.fromVersion} -> ${d.toVersion}: ${plural(d.movedKeys, 'key')} and ${plural(d.labels.length, 'label')} move`,
  )
  if (d.moved.length > 0) {
    out.line('moved:')
    const rows = d.moved.map((m) => [
      m.range,
      `${owner(m.from)} -> ${owner(m.to)}`,
      `(${plural(m.keys, 'key')})`,
    ])
    for (const line of table(rows)) out.line(`  ${line}`)
  }
  if (d.labels.length > 0) {
    out.line('labels:')
    const rows = d.labels.map((l) => [JSON.stringify(l.label), `${owner(l.from)} -> ${owner(l.to)}`])
    for (const line of table(rows)) out.line(`  ${line}`)
  }
  if (d.addedUnits.length > 0) out.line(`units added: ${d.addedUnits.join(', ')}`)
  if (d.removedUnits.length > 0) out.line(`units removed: ${d.removedUnits.join(', ')}`)
  out.line('fence:')
  out.line(`  ranges: [${d.fence.ranges.join(', ')}]`)
  out.line(`  labels: [${d.fence.labels.map((l) => JSON.stringify(l)).join(', ')}]`)
}
