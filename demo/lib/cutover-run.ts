/**
 * Runs one cut-over through the control plane's REST API and follows it live (the operation's
 * server-sent events): plan (POST /v1/cutovers), start, then every phase as it ends. Shared by
 * `demo:cutover` and `demo:load`.
 */
import type { Operation, PhaseRecord, RuleSetRecord } from 'appactive/control'
import { compileRouter, type Router } from 'appactive/rules'
import { createParser } from 'eventsource-parser'
import { request } from 'undici'
import { controlApi } from './control-api.js'
import type { DemoState } from './topology.js'

export interface CutoverReport {
  /** The stored plan, before the run starts. */
  planned?(op: Operation): void
  /** A note of the orchestrator while a phase runs ("waiting for 2 acks"). */
  note?(message: string): void
  /** A phase that ended. */
  phase?(phase: PhaseRecord): void
}

/** The rule set in force and its router. */
export async function latestRules(state: DemoState): Promise<{ record: RuleSetRecord; router: Router }> {
  const record = await controlApi(state.controlUrl, state.tokens.viewer).call<RuleSetRecord>(
    'GET',
    '/v1/rules/latest',
  )
  return { record, router: compileRouter(record.ruleSet) }
}

const TERMINAL = new Set(['succeeded', 'failed', 'rolled-back', 'aborted'])

/** Plans, starts and follows a cut-over of `ranges` to `to`; resolves with the ended operation. */
export async function runCutover(
  state: DemoState,
  move: { readonly ranges: readonly string[]; readonly to: string },
  reason: string,
  report: CutoverReport = {},
): Promise<Operation> {
  const api = controlApi(state.controlUrl, state.tokens.operator)
  const planned = await api.call<Operation>('POST', '/v1/cutovers', {
    moves: [{ ranges: move.ranges, labels: [], to: move.to }],
    reason,
  })
  report.planned?.(planned)

  // Follow before starting, so no phase is missed.
  const shown = new Set<string>()
  let last: Operation = planned
  const onOperation = (op: Operation) => {
    last = op
    for (const p of op.phases) {
      const key = `${p.name}@${p.startedAt}`
      if (p.endedAt !== null && !shown.has(key)) {
        shown.add(key)
        report.phase?.(p)
      }
    }
  }
  const events = await request(`${state.controlUrl}/v1/operations/${planned.id}/events`, {
    headers: { authorization: `Bearer ${state.tokens.viewer}`, accept: 'text/event-stream' },
    bodyTimeout: 0,
  })
  const ended = (async () => {
    const parser = createParser({
      onEvent(e) {
        const data = JSON.parse(e.data) as Record<string, unknown>
        if (e.event === 'operation') onOperation(data as unknown as Operation)
        else if (e.event === 'progress' && typeof data.message === 'string') report.note?.(data.message)
      },
    })
    for await (const chunk of events.body) {
      parser.feed(chunk.toString())
      if (TERMINAL.has(last.state)) break
    }
  })()
  await api.call('POST', `/v1/operations/${planned.id}/start`)
  await ended.catch(() => {})
  events.body.destroy()
  // The stream ends with the operation; should it break off, ask until the operation has ended.
  while (!TERMINAL.has(last.state)) {
    await new Promise((r) => setTimeout(r, 200))
    onOperation(await api.call<Operation>('GET', `/v1/operations/${planned.id}`))
  }
  return last
}

/** `fence 41 ms ok (version 2, acked 11)`: one phase on one line. */
export function describePhase(p: PhaseRecord): string {
  const ms = p.endedAt === null ? 0 : Date.parse(p.endedAt) - Date.parse(p.startedAt)
  const facts = Object.entries(p.detail ?? {})
    .filter(([k, v]) => k !== 'ms' && ['string', 'number', 'boolean'].includes(typeof v))
    .map(([k, v]) => `${k} ${v}`)
  return `${p.name.padEnd(9)} ${`${ms} ms`.padStart(7)}  ${p.outcome}${facts.length ? `  (${facts.join(', ')})` : ''}`
}

/** Total run time of an ended operation, in ms. */
export function operationMs(op: Operation): number {
  return op.startedAt && op.endedAt ? Date.parse(op.endedAt) - Date.parse(op.startedAt) : 0
}
