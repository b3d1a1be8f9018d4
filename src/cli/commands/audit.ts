/**
 * `appactive audit [--after SEQ] [--limit N] [--action A] [--target T] [--json]`: the control plane's
 * audit log, oldest first as the API pages it. A full page ends with a note naming the next `--after`.
 */
import { type Command, InvalidArgumentError } from 'commander'
import type { AuditEntry } from '../../control/index.js'
import type { CommandContext } from '../context.js'
import { addConnectionOptions, ControlClient } from '../control-client.js'
import { table } from '../format.js'
import { examples } from '../options.js'
import { EXIT_OK } from '../output.js'

interface AuditOptions {
  readonly after?: number
  readonly limit: number
  readonly action?: string
  readonly target?: string
  readonly json?: boolean
}

function whole(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!/^\d{1,16}$/.test(value) || n < min || n > max)
      throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`)
    return n
  }
}

/** Registers `audit`. */
export function addAuditCommand(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('audit')
    .description('the audit log: who changed what, when and why (oldest first)')
    .option(
      '--after <seq>',
      'only entries after this sequence number (the next page)',
      whole(0, Number.MAX_SAFE_INTEGER),
    )
    .option('--limit <n>', 'at most this many entries (1 to 1000)', whole(1, 1000), 100)
    .option('--action <action>', 'only this action, e.g. ruleset.publish, operation.start')
    .option('--target <target>', 'only this target, e.g. ruleset:7, operation:<id>')
    .option('--json', 'print one JSON object: { entries, next }')
  addConnectionOptions(cmd)
    .showHelpAfterError('(see "appactive audit --help")')
    .addHelpText(
      'after',
      examples('appactive audit --action ruleset.publish', 'appactive audit --after 120 --json'),
    )
    .action(async (opts: AuditOptions, command: Command) => {
      const client = ControlClient.of(command)
      const q = new URLSearchParams({ limit: String(opts.limit) })
      if (opts.after !== undefined) q.set('after', String(opts.after))
      if (opts.action !== undefined) q.set('action', opts.action)
      if (opts.target !== undefined) q.set('target', opts.target)
      const page = await client.get<{ entries: AuditEntry[]; next: number }>(`/v1/audit?${q}`)
      if (opts.json) ctx.out.json(page)
      else if (page.entries.length === 0) ctx.out.line('no audit entries')
      else {
        const rows = page.entries.map((e) => [
          String(e.seq),
          e.at,
          e.actor,
          e.action,
          e.target,
          details(e.details),
        ])
        for (const line of table([['SEQ', 'AT', 'ACTOR', 'ACTION', 'TARGET', 'DETAILS'], ...rows]))
          ctx.out.line(line)
      }
      if (page.entries.length === opts.limit)
        ctx.out.note(`more entries may follow: appactive audit --after ${page.next}`)
      ctx.exitCode = EXIT_OK
    })
}

/** `reason=v1 changed=state,phase`: compact, one line, at most 120 characters. */
function details(d: Readonly<Record<string, unknown>>): string {
  const text = Object.entries(d)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(
      ([k, v]) =>
        `${k}=${typeof v === 'string' ? v : Array.isArray(v) && v.every((x) => typeof x === 'string') ? v.join(',') : JSON.stringify(v)}`,
    )
    .join(' ')
  return text.length > 120 ? `${text.slice(0, 117)}...` : text
}
