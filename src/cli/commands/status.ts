/**
 * `appactive status [--json]`: one screen about the control plane: the rule set in force (version,
 * author, time, fence), the units and what they own, every node with its version, lease and status,
 * and the running operation with its phase (or the last one).
 */
import type { Command } from 'commander'
import type { Operation, RuleSetRecord, TopologyRecord } from '../../control/index.js'
import type { CommandContext } from '../context.js'
import { addConnectionOptions, ControlClient } from '../control-client.js'
import { table } from '../format.js'
import { examples } from '../options.js'
import { EXIT_OK, type Output } from '../output.js'
import { formatMs } from '../progress.js'

interface StatusOptions {
  readonly json?: boolean
}

/** A node as `GET /v1/nodes` answers. */
export interface NodeLine {
  readonly nodeId: string
  readonly app: string
  readonly unit: string
  readonly appliedVersion: number
  readonly status: 'live' | 'disconnected' | 'lapsed' | 'offline' | 'left'
  readonly leaseRemainingMs: number | null
  readonly inflightFenced: number
  readonly lastSeenAt: string | null
}

/** `status --json`. */
export interface StatusOutput {
  readonly controlUrl: string
  readonly store: string | null
  readonly orchestrator: boolean | null
  readonly ruleSet: {
    readonly version: number
    readonly author: string
    readonly reason: string
    readonly createdAt: string
    readonly digest: string
    readonly operationId: string | null
    readonly fence: { readonly ranges: readonly string[]; readonly labels: readonly string[] } | null
  } | null
  readonly topologyRevision: number | null
  readonly units: readonly {
    readonly name: string
    readonly center: boolean
    readonly region: string | null
    readonly ranges: readonly string[]
    readonly labels: readonly string[]
    readonly nodes: number
    readonly liveNodes: number
  }[]
  readonly nodes: readonly NodeLine[]
  readonly operation: OperationSummary | null
  readonly lastOperation: OperationSummary | null
}

export interface OperationSummary {
  readonly id: string
  readonly kind: string
  readonly state: string
  readonly phase: string | null
  readonly phaseStartedAt: string | null
  readonly fromVersion: number
  readonly toVersion: number | null
  readonly startedBy: string | null
  readonly startedAt: string | null
  readonly endedAt: string | null
  readonly error: { readonly code: string; readonly message: string } | null
}

/** Registers `status`. */
export function addStatusCommand(program: Command, ctx: CommandContext): void {
  const cmd = program
    .command('status')
    .description('the rule set in force, units, nodes (version, lease) and the running operation')
    .option('--json', 'print one JSON object')
  addConnectionOptions(cmd)
    .showHelpAfterError('(see "appactive status --help")')
    .addHelpText(
      'after',
      examples('appactive status', 'APPACTIVE_CONTROL_URL=http://cp:7070 appactive status --json'),
    )
    .action(async (opts: StatusOptions, command: Command) => {
      const status = await collect(ControlClient.of(command))
      if (opts.json) ctx.out.json(status)
      else print(status, ctx.out)
      ctx.exitCode = EXIT_OK
    })
}

function summary(op: Operation | undefined): OperationSummary | null {
  if (op === undefined) return null
  const running = op.phases.findLast((p) => p.name === op.phase)
  return {
    id: op.id,
    kind: op.kind,
    state: op.state,
    phase: op.phase,
    phaseStartedAt: running?.startedAt ?? null,
    fromVersion: op.fromVersion,
    toVersion: op.toVersion,
    startedBy: op.startedBy,
    startedAt: op.startedAt,
    endedAt: op.endedAt,
    error: op.error,
  }
}

async function collect(client: ControlClient): Promise<StatusOutput> {
  const [health, latest, topology, nodes, running, recent] = await Promise.all([
    client.get<{ store?: string; orchestrator?: boolean }>('/healthz'),
    client.find<RuleSetRecord>('/v1/rules/latest'),
    client.find<TopologyRecord>('/v1/topology'),
    client.get<{ nodes: NodeLine[] }>('/v1/nodes'),
    client.get<{ operations: Operation[] }>('/v1/operations?state=running&limit=1'),
    client.get<{ operations: Operation[] }>('/v1/operations?limit=1'),
  ])
  const regions = new Map((topology?.topology.units ?? []).map((u) => [u.name, u.region ?? null]))
  const rs = latest?.ruleSet
  const units = (rs?.units ?? topology?.topology.units ?? []).map((u) => {
    const entries = rs?.mapping.filter((e) => e.unit === u.name) ?? []
    const mine = nodes.nodes.filter((n) => n.unit === u.name)
    return {
      name: u.name,
      center: u.center === true,
      region: regions.get(u.name) ?? null,
      ranges: entries.flatMap((e) => e.ranges ?? []),
      labels: entries.flatMap((e) => e.labels ?? []),
      nodes: mine.length,
      liveNodes: mine.filter((n) => n.status === 'live').length,
    }
  })
  const fence = rs?.fence
  const last = recent.operations[0]
  const now = running.operations[0]
  return {
    controlUrl: client.url,
    store: health.store ?? null,
    orchestrator: health.orchestrator ?? null,
    ruleSet: latest
      ? {
          version: latest.version,
          author: latest.author,
          reason: latest.reason,
          createdAt: latest.createdAt,
          digest: latest.digest,
          operationId: latest.operationId,
          fence:
            fence && (fence.ranges?.length ?? 0) + (fence.labels?.length ?? 0) > 0
              ? { ranges: fence.ranges ?? [], labels: fence.labels ?? [] }
              : null,
        }
      : null,
    topologyRevision: topology?.revision ?? null,
    units,
    nodes: nodes.nodes,
    operation: summary(now),
    lastOperation: now !== undefined && last?.id === now.id ? null : summary(last),
  }
}

/** `0~999, 2000~2999` (at most 4, then the count). */
function list(items: readonly string[]): string {
  if (items.length === 0) return '-'
  return items.length <= 4 ? items.join(', ') : `${items.slice(0, 3).join(', ')}, ... (${items.length})`
}

function lease(n: NodeLine): string {
  if (n.status === 'lapsed') return 'lapsed'
  if (n.leaseRemainingMs === null) return '-'
  return n.leaseRemainingMs > 0 ? `ok, ${formatMs(n.leaseRemainingMs)} left` : 'lapsed'
}

function print(s: StatusOutput, out: Output): void {
  const head: string[][] = []
  head.push([
    'control plane',
    `${s.controlUrl} (store ${s.store ?? '?'}, orchestrator ${s.orchestrator ? 'on' : 'off'})`,
  ])
  if (s.ruleSet) {
    const r = s.ruleSet
    head.push(['rule set', `version ${r.version}, by ${r.author} at ${r.createdAt}: ${r.reason}`])
    if (r.fence)
      head.push(['fence', `${list([...r.fence.ranges, ...r.fence.labels])} (writes refused there)`])
  } else head.push(['rule set', 'none published yet'])
  const op = s.operation
  if (op) {
    const since = op.phaseStartedAt
      ? ` for ${formatMs(Math.max(0, Date.now() - Date.parse(op.phaseStartedAt)))}`
      : ''
    head.push([
      'operation',
      `${op.kind} ${op.id} running: phase ${op.phase ?? '-'}${since}, started by ${op.startedBy ?? '?'} at ${op.startedAt ?? '?'}`,
    ])
  } else {
    const l = s.lastOperation
    const last = l
      ? `; last: ${l.kind} ${l.id} ${l.state}${l.endedAt ? ` at ${l.endedAt}` : ''}${l.error ? ` (${l.error.code})` : ''}`
      : ''
    head.push(['operation', `none running${last}`])
  }
  for (const line of table(head)) out.line(line)
  out.line()
  const units = s.units.map((u) => [
    u.name,
    u.center ? 'yes' : 'no',
    list([...u.ranges, ...u.labels.map((l) => `label ${l}`)]),
    `${u.liveNodes} live of ${u.nodes}`,
  ])
  for (const line of table([['UNIT', 'CENTER', 'OWNS', 'NODES'], ...units])) out.line(line)
  out.line()
  if (s.nodes.length === 0) {
    out.line('no nodes have registered')
    return
  }
  const current = s.ruleSet?.version
  const nodes = [...s.nodes]
    .sort((a, b) => a.unit.localeCompare(b.unit) || a.nodeId.localeCompare(b.nodeId))
    .map((n) => [
      n.nodeId,
      n.app,
      n.unit,
      `${n.appliedVersion}${current !== undefined && n.appliedVersion < current && n.status === 'live' ? ' (behind)' : ''}`,
      lease(n),
      n.status,
    ])
  for (const line of table([['NODE', 'APP', 'UNIT', 'VERSION', 'LEASE', 'STATUS'], ...nodes])) out.line(line)
}
