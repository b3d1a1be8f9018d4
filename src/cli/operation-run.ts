/**
 * Running a cut-over or failover from the CLI: plan, confirm, create, start, follow to the end.
 *
 * 1. `--dry-run`: the control plane plans without storing anything; the transcript is printed, exit 0.
 * 2. Without `--yes`, the plan is made as a dry run first (bad input fails here, exit 1, and nothing is
 *    stored), then confirmed: on a terminal by a y/N question, otherwise refused (exit 2). A forced
 *    step (`failover --force`) is never confirmed by the question: it needs `--yes`.
 * 3. The operation is created (`planned`) and started. When a question was asked, the stored plan must
 *    be the one confirmed (same source version, same keys); otherwise it is aborted and nothing runs.
 * 4. The event stream is followed to the end (reconnecting with Last-Event-ID when it drops); the exit
 *    code says how it ended: 0 succeeded, 1 failed / rolled-back / aborted.
 */
import type { Operation, Plan } from '../control/index.js'
import { ask, canAsk } from './confirm.js'
import type { CommandContext } from './context.js'
import { ApiError, type ControlClient } from './control-client.js'
import {
  CliError,
  EXIT_FAILURE,
  EXIT_INTERRUPTED,
  EXIT_OK,
  EXIT_REFUSED,
  EXIT_UNREACHABLE,
} from './output.js'
import { createProgress, formatMs, type ProgressView, progressMode } from './progress.js'

const TERMINAL: ReadonlySet<string> = new Set(['succeeded', 'failed', 'rolled-back', 'aborted'])

export interface OperationRequest {
  readonly kind: 'cutover' | 'failover'
  /** The request body without `dryRun`. */
  readonly body: Readonly<Record<string, unknown>>
  readonly dryRun: boolean
  readonly yes: boolean
  readonly json: boolean
  /** Why `--yes` is required even on a terminal (a forced step), or undefined. */
  readonly forced?: string | undefined
}

const PATH = { cutover: '/v1/cutovers', failover: '/v1/failovers' } as const

/** `cut-over` / `failover of unit X`. */
function title(plan: Plan): string {
  return plan.kind === 'cutover'
    ? 'cut-over'
    : `failover of unit ${plan.failedUnit ?? '?'}${plan.force ? ' (forced)' : ''}`
}

function moves(plan: Plan): string {
  return `version ${plan.fromVersion} -> ${plan.target.version}, ${plan.movedKeys} key(s) and ${plan.labels.length} label(s) move`
}

/** Plans, confirms, creates, starts and follows one operation; returns the exit code. */
export async function runOperation(
  ctx: CommandContext,
  client: ControlClient,
  req: OperationRequest,
): Promise<number> {
  const { out, io } = ctx
  const path = PATH[req.kind]
  const dry = async () => (await client.post<{ plan: Plan }>(path, { ...req.body, dryRun: true })).plan

  if (req.dryRun) {
    const plan = await dry()
    if (req.json) out.json({ type: 'plan', plan })
    else for (const line of plan.transcript) out.line(line)
    return EXIT_OK
  }

  let confirmed: Plan | undefined
  if (!req.yes) {
    const plan = await dry()
    if (req.forced !== undefined)
      throw new CliError(
        'CONFIRMATION_REQUIRED',
        `not started: ${req.forced}; add --yes to run it anyway (--dry-run shows the plan)`,
        EXIT_REFUSED,
      )
    if (!canAsk(io))
      throw new CliError(
        'CONFIRMATION_REQUIRED',
        `the ${title(plan)} was not started: stdin is not a terminal, so it cannot be confirmed here; add --yes to start it (--dry-run shows the plan)`,
        EXIT_REFUSED,
      )
    if (req.json) out.json({ type: 'plan', plan })
    else for (const line of plan.transcript) out.line(line)
    if (!(await ask(io, `Start this ${title(plan)} (${moves(plan)})?`)))
      throw new CliError(
        'NOT_CONFIRMED',
        `the ${title(plan)} was not confirmed: nothing was started`,
        EXIT_REFUSED,
      )
    confirmed = plan
  }

  const created = await client.post<Operation>(path, req.body)
  const id = created.id
  const abandon = async (reason: string) => {
    await client.post(`/v1/operations/${id}/abort`, { reason }).catch(() => {})
  }
  if (
    confirmed !== undefined &&
    (created.plan.fromVersion !== confirmed.fromVersion || created.plan.movedKeys !== confirmed.movedKeys)
  ) {
    await abandon('the plan changed while it was being confirmed')
    throw new CliError(
      'PLAN_CHANGED',
      `the plan changed while it was being confirmed (now ${moves(created.plan)}); operation ${id} was aborted, nothing ran: run the command again`,
    )
  }
  let started: Operation
  try {
    started = await client.post<Operation>(`/v1/operations/${id}/start`)
  } catch (err) {
    // Leave no planned operation behind that nobody will start.
    if (err instanceof ApiError) await abandon(`could not be started: ${err.code}`)
    throw err
  }

  const view = createProgress(progressMode(io.stdout, req.json), io.stdout)
  try {
    view.line(`${title(started.plan)} ${id} started by ${started.startedBy ?? '?'}: ${moves(started.plan)}`)
    // Ctrl-C stops following, not the operation: say so, and where to look.
    const interrupt = new AbortController()
    const onSigint = () => interrupt.abort()
    process.once('SIGINT', onSigint)
    let op: Operation
    try {
      op = await follow(client, id, view, interrupt.signal)
    } catch (err) {
      if (!interrupt.signal.aborted) throw err
      view.close()
      throw new CliError(
        'INTERRUPTED',
        `stopped following ${title(started.plan)} ${id}: it keeps running on the control plane`,
        EXIT_INTERRUPTED,
        [`see it with "appactive status"; abort it with POST /v1/operations/${id}/abort`],
      )
    } finally {
      process.off('SIGINT', onSigint)
    }
    const totalMs =
      op.startedAt !== null && op.endedAt !== null ? Date.parse(op.endedAt) - Date.parse(op.startedAt) : null
    const ok = op.state === 'succeeded'
    const facts = endFacts(op)
    view.line(
      `${title(op.plan)} ${id} ${op.state} ${ok ? 'in' : 'after'} ${totalMs === null ? '?' : formatMs(totalMs)}` +
        `${op.toVersion !== null ? `: version ${op.toVersion} in force` : ''}${facts ? ` (${facts})` : ''}`,
    )
    const exitCode = ok ? EXIT_OK : EXIT_FAILURE
    view.result({
      operationId: id,
      kind: op.kind,
      state: op.state,
      fromVersion: op.fromVersion,
      toVersion: op.toVersion,
      totalMs,
      error: op.error,
      phases: op.phases.map((p) => ({
        name: p.name,
        outcome: p.outcome,
        ms: (p.detail as { ms?: number } | undefined)?.ms ?? null,
      })),
      exitCode,
    })
    view.close()
    if (!ok)
      out.error(
        op.error?.code ?? op.state.toUpperCase(),
        op.error?.message ?? `the operation ended ${op.state}`,
      )
    return exitCode
  } finally {
    view.close()
  }
}

/** RTO and RPO of a failover, from its phases. */
function endFacts(op: Operation): string {
  if (op.kind !== 'failover') return ''
  let rto: string | undefined
  let rpo: string | undefined
  for (const p of op.phases) {
    const d = (p.detail ?? {}) as Record<string, unknown>
    if (typeof d.rtoMs === 'number') rto = `RTO ${d.rtoMs} ms`
    if ('rpoMs' in d) rpo = `RPO ${typeof d.rpoMs === 'number' ? `${d.rpoMs} ms` : 'unknown'}`
  }
  return [rto, rpo].filter((x) => x !== undefined).join(', ')
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Follows `/v1/operations/{id}/events` until the operation ends, and returns its last record. A stream
 * that drops is opened again with the last revision seen (at most 10 times in a row, backing off).
 */
async function follow(
  client: ControlClient,
  id: string,
  view: ProgressView,
  signal: AbortSignal,
): Promise<Operation> {
  let last: Operation | undefined
  let failures = 0
  const seen = (op: Operation) => {
    if (last !== undefined && op.revision <= last.revision) return
    last = op
    view.operation(op)
  }
  for (;;) {
    try {
      await client.stream(
        `/v1/operations/${id}/events`,
        (e) => {
          failures = 0
          if (e.event === 'operation') {
            const op = JSON.parse(e.data) as Operation
            seen(op)
            return TERMINAL.has(op.state)
          }
          if (e.event === 'progress') view.note(JSON.parse(e.data) as { message: string })
          return false
        },
        { lastEventId: last === undefined ? undefined : String(last.revision), signal },
      )
      if (last !== undefined && TERMINAL.has(last.state)) return last
      // The stream ends with the operation; if it ended otherwise, ask for the record.
      const op = await client.get<Operation>(`/v1/operations/${id}`)
      seen(op)
      if (TERMINAL.has(op.state)) return last!
    } catch (err) {
      if (!(err instanceof CliError) || err.exitCode !== EXIT_UNREACHABLE || err instanceof ApiError)
        throw err
      if (++failures > 10) {
        throw new CliError(
          'CONTROL_LOST',
          `lost the control plane while following operation ${id}: ${err.message}`,
          EXIT_UNREACHABLE,
          [`the operation may still be running there: see "appactive status" once the control plane answers`],
        )
      }
    }
    await sleep(Math.min(2000, 100 * 2 ** failures))
    if (signal.aborted) throw signal.reason
  }
}
