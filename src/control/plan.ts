/**
 * Planning a cut-over or a failover (DESIGN §4 step 1): from the rule set in force and a request (a
 * whole target rule set, or a list of moves), compute what moves, the fence, the catch-up pairs, the
 * steps with their expected versions, the checks and a readable transcript (the dry run). Every
 * problem is listed, never only the first. Pure: the caller passes the topology and the live nodes.
 */

import type { NodeView } from '../channels/index.js'
import { RuleInvalidError, type RuleIssue } from '../errors/index.js'
import {
  applyDiff,
  diffRuleSets,
  formatRange,
  type KeyRange,
  maxKeyOf,
  ownershipOf,
  parseRange,
  type RuleDiff,
  type RuleSet,
  validateRuleSet,
} from '../rules/index.js'
import type { OperationKind, Plan, PlanCheck, PlanIssue, PlanStep, Topology } from './model.js'
import { ruleSetTopologyIssues } from './topology.js'

/** Keys (ranges of the key space) and labels to give to unit `to`. */
export interface Move {
  readonly ranges?: readonly string[] | undefined
  readonly labels?: readonly string[] | undefined
  readonly to: string
}

export interface CutoverRequest {
  /** The whole rule set wanted after the cut-over (its version and fence are ignored / must be empty). */
  readonly target?: unknown
  readonly moves?: readonly Move[] | undefined
}

export interface FailoverRequest {
  /** The lost unit. */
  readonly unit: string
  /** Give every key of the lost unit to this survivor... */
  readonly to?: string | undefined
  /** ...or these keys to these survivors... */
  readonly moves?: readonly Move[] | undefined
  /** ...or this whole rule set. */
  readonly target?: unknown
  /** Do not wait out the lost unit's agent leases (they may still accept writes until they lapse). */
  readonly force?: boolean | undefined
}

/** What planning needs to know about the world. */
export interface PlanContext {
  /** The rule set in force (the latest published). */
  readonly current: RuleSet
  readonly topology: Topology | undefined
  /** The live node table of the channel server. */
  readonly nodes: readonly NodeView[]
}

export type PlanResult =
  | { readonly ok: true; readonly plan: Plan }
  | { readonly ok: false; readonly issues: PlanIssue[] }

const healthy = (n: NodeView) => n.connected && !n.lapsed

/** Plans a cut-over: fence, drain, catch up, switch, unfence. */
export function planCutover(request: CutoverRequest, ctx: PlanContext): PlanResult {
  return plan('cutover', request, ctx)
}

/** Plans a failover of `request.unit`: wait out its leases, then switch (no fence, no catch-up). */
export function planFailover(request: FailoverRequest, ctx: PlanContext): PlanResult {
  return plan('failover', request, ctx)
}

function plan(kind: OperationKind, request: CutoverRequest | FailoverRequest, ctx: PlanContext): PlanResult {
  const { current } = ctx
  const issues: PlanIssue[] = []
  const warnings: string[] = []
  const add = (path: string, message: string) => issues.push({ path, message })
  const N = current.version
  const finalVersion = kind === 'cutover' ? N + 3 : N + 1
  const failed = kind === 'failover' ? (request as FailoverRequest).unit : undefined

  const fence = current.fence
  const fenced = [...(fence?.ranges ?? []), ...(fence?.labels ?? [])]
  if (fenced.length > 0) {
    // A cut-over from a fenced version would fence on top of an unfinished one; a failover is an
    // emergency and its target (no fence) lifts it.
    const message = `version ${N} still carries a fence (${fenced.join(', ')}): an operation did not finish`
    if (kind === 'cutover')
      add('current.fence', `${message}; roll it back or publish version ${N} without the fence first`)
    else warnings.push(`${message}; the failover's target lifts it`)
  }
  const units = new Set(current.units.map((u) => u.name))
  if (failed !== undefined && !units.has(failed)) {
    add('unit', `unknown unit "${failed}" (units: ${[...units].join(', ')})`)
    return { ok: false, issues }
  }

  const target = targetOf(kind, request, ctx, finalVersion, add)
  if (target === undefined) return { ok: false, issues }

  let diff: RuleDiff
  try {
    diff = diffRuleSets(current, target)
  } catch (err) {
    if (!(err instanceof RuleInvalidError)) throw err
    for (const i of err.issues) add(`target.${i.path}`, i.message)
    return { ok: false, issues }
  }
  if (diff.movedKeys === 0 && diff.labels.length === 0)
    add('target', `nothing moves: the target owns every key and label exactly as version ${N} does`)
  if (diff.center) warnings.push(`the center moves from ${diff.center.from} to ${diff.center.to}`)

  if (ctx.topology)
    for (const i of ruleSetTopologyIssues(target, ctx.topology, 'target')) add(i.path, i.message)
  else
    warnings.push('no topology is stored: units and replication probes cannot be checked (PUT /v1/topology)')

  if (failed !== undefined) failoverChecks(failed, diff, target, add)

  // Where keys go, and who must be ready there.
  const targets = new Set<string>()
  for (const m of diff.moved) if (m.to !== null) targets.add(m.to)
  for (const l of diff.labels) if (l.to !== null) targets.add(l.to)
  const checks: PlanCheck[] = []
  for (const unit of [...targets].sort()) {
    const live = ctx.nodes.filter((n) => n.unit === unit && healthy(n)).length
    checks.push({
      name: `healthy nodes in ${unit}`,
      ok: live > 0,
      message:
        live > 0 ? `${live} healthy node(s) in unit ${unit}` : `no healthy node in target unit ${unit}`,
    })
    if (live === 0)
      add('nodes', `no healthy node in target unit "${unit}": nothing would serve the moved keys`)
  }
  const behind = ctx.nodes.filter((n) => healthy(n) && n.appliedVersion !== N).map((n) => n.nodeId)
  checks.push({
    name: `agents on version ${N}`,
    ok: behind.length === 0,
    message:
      behind.length === 0
        ? `every live agent applied version ${N}`
        : `${behind.length} live agent(s) not on version ${N}: ${behind.slice(0, 5).join(', ')}`,
  })
  if (behind.length > 0)
    warnings.push(`agents not on version ${N} (checked again when the run starts): ${behind.join(', ')}`)
  const lapsed = ctx.nodes.filter((n) => n.lapsed && n.unit !== failed).map((n) => n.nodeId)
  if (lapsed.length > 0)
    warnings.push(`agents with a lapsed lease (self-fenced, waited out): ${lapsed.join(', ')}`)

  const catchUp: { source: string; target: string; probes: Plan['catchUp'][number]['probes'] }[] = []
  if (kind === 'cutover') {
    const pairs = new Set<string>()
    for (const m of [...diff.moved, ...diff.labels])
      if (m.from !== null && m.to !== null) pairs.add(`${m.from}\n${m.to}`)
    for (const pair of [...pairs].sort()) {
      const [source, to] = pair.split('\n') as [string, string]
      const probes = ctx.topology?.probes.filter((p) => p.source === source && p.target === to) ?? []
      catchUp.push({ source, target: to, probes })
      checks.push({
        name: `replication probe ${source} -> ${to}`,
        ok: probes.length > 0,
        message: probes.length > 0 ? probes.map((p) => p.kind).join(', ') : 'none declared',
      })
      if (probes.length === 0) {
        add(
          'topology.probes',
          `no replication probe from ${source} to ${to}: declare one in the topology (kind "none" if they share no data)`,
        )
      }
    }
  } else {
    const force = (request as FailoverRequest).force === true
    const alive = ctx.nodes.filter((n) => n.unit === failed && !n.lapsed).length
    if (alive > 0) {
      warnings.push(
        force
          ? `unit ${failed} still has ${alive} agent(s) with a running lease, and force skips waiting them out: they may accept writes until their lease lapses`
          : `unit ${failed} still has ${alive} agent(s) with a running lease: they are waited out (at most one lease) before the switch`,
      )
    }
  }

  const fenceOut = kind === 'cutover' ? diff.fence : { ranges: [], labels: [] }
  const steps = stepsOf(kind, N, fenceOut, (request as FailoverRequest).force === true)
  const draft: Plan = {
    kind,
    fromVersion: N,
    target,
    moved: diff.moved,
    labels: diff.labels,
    movedKeys: diff.movedKeys,
    fence: fenceOut,
    catchUp,
    ...(failed !== undefined
      ? { failedUnit: failed, force: (request as FailoverRequest).force === true }
      : {}),
    steps,
    checks,
    warnings,
    transcript: [],
  }
  if (issues.length > 0) return { ok: false, issues }
  return { ok: true, plan: { ...draft, transcript: transcriptOf(draft) } }
}

/** The target rule set of a request, at `version`, or undefined when it cannot be built (issues added). */
function targetOf(
  kind: OperationKind,
  request: CutoverRequest | FailoverRequest,
  ctx: PlanContext,
  version: number,
  add: (path: string, message: string) => void,
): RuleSet | undefined {
  const { current } = ctx
  const failover = kind === 'failover' ? (request as FailoverRequest) : undefined
  const given = [
    request.target !== undefined,
    request.moves !== undefined,
    failover?.to !== undefined,
  ].filter(Boolean).length
  if (given !== 1) {
    add(
      '',
      kind === 'cutover'
        ? 'give exactly one of target (a whole rule set) and moves'
        : 'give exactly one of to (one survivor), moves and target (a whole rule set)',
    )
    return undefined
  }
  if (request.target !== undefined) {
    const t = request.target
    if (typeof t !== 'object' || t === null || Array.isArray(t)) {
      add('target', 'must be a rule set (an object)')
      return undefined
    }
    const doc = t as Record<string, unknown>
    const f = doc.fence as { ranges?: unknown[]; labels?: unknown[] } | undefined
    if ((f?.ranges?.length ?? 0) + (f?.labels?.length ?? 0) > 0)
      add('target.fence', 'the run sets and lifts the fence itself: the target must have none')
    const { fence: _fence, ...rest } = doc
    const v = validateRuleSet({ ...rest, version })
    if (!v.ok) {
      for (const i of v.issues) add(prefix('target', i), i.message)
      return undefined
    }
    return v.ruleSet
  }
  let moves = request.moves
  if (failover?.to !== undefined) {
    // "Everything the lost unit owns goes to one survivor."
    const owned = ownershipOf(current).filter((o) => o.unit === failover.unit)
    const labels = current.mapping.filter((e) => e.unit === failover.unit).flatMap((e) => e.labels ?? [])
    moves = [{ ranges: owned.map(formatRange), labels, to: failover.to }]
    if (current.units.find((u) => u.name === failover.unit)?.center === true) {
      add(
        'to',
        `unit ${failover.unit} is the center: give a target rule set that names a new center instead of "to"`,
      )
      return undefined
    }
  }
  return fromMoves(current, moves ?? [], failover?.to !== undefined ? 'to' : 'moves', version, add)
}

function prefix(at: string, issue: RuleIssue): string {
  return issue.path ? `${at}.${issue.path}` : at
}

/** Applies moves to `current`: checks units, ranges, overlaps and keys already owned by the target. */
function fromMoves(
  current: RuleSet,
  moves: readonly Move[],
  at: string,
  version: number,
  add: (path: string, message: string) => void,
): RuleSet | undefined {
  const units = new Set(current.units.map((u) => u.name))
  const maxKey = maxKeyOf(current.transform)
  const owned = ownershipOf(current)
  const labelOwner = new Map<string, string>()
  for (const e of current.mapping) for (const l of e.labels ?? []) labelOwner.set(l, e.unit)
  const placed: (KeyRange & { path: string; to: string })[] = []
  const labels = new Map<string, string>()
  let bad = false
  const problem = (path: string, message: string) => {
    bad = true
    add(path, message)
  }
  if (moves.length === 0) problem(at, 'no moves given')
  for (const [i, m] of moves.entries()) {
    const path = at === 'to' ? 'to' : `${at}[${i}]`
    if (!units.has(m.to)) {
      problem(
        `${path}${at === 'to' ? '' : '.to'}`,
        `unknown unit "${m.to}" (units: ${[...units].join(', ')})`,
      )
      continue
    }
    for (const [j, text] of (m.ranges ?? []).entries()) {
      const rpath = `${path}.ranges[${j}]`
      const r = parseRange(text)
      if (typeof r === 'string') {
        problem(rpath, r)
        continue
      }
      if (r.hi > maxKey) {
        problem(rpath, `${text} is outside the key space 0~${maxKey} of the transform`)
        continue
      }
      const already = owned
        .filter((o) => o.unit === m.to && o.lo <= r.hi && r.lo <= o.hi)
        .map((o) => formatRange({ lo: Math.max(o.lo, r.lo), hi: Math.min(o.hi, r.hi) }))
      if (already.length > 0)
        problem(rpath, `keys ${already.slice(0, 3).join(', ')} are already owned by unit "${m.to}"`)
      placed.push({ ...r, path: rpath, to: m.to })
    }
    for (const [j, label] of (m.labels ?? []).entries()) {
      const lpath = `${path}.labels[${j}]`
      if (labelOwner.get(label) === m.to)
        problem(lpath, `label ${JSON.stringify(label)} is already owned by unit "${m.to}"`)
      if (labels.has(label)) problem(lpath, `label ${JSON.stringify(label)} is moved twice`)
      labels.set(label, m.to)
    }
  }
  placed.sort((a, b) => a.lo - b.lo)
  for (let i = 1; i < placed.length; i++) {
    const [a, b] = [placed[i - 1]!, placed[i]!]
    if (b.lo <= a.hi) problem(b.path, `${formatRange(b)} overlaps ${formatRange(a)} at ${a.path}`)
  }
  if (bad) return undefined
  // applyDiff reads only the moved ranges, the moved labels and the units of a diff.
  const shape: RuleDiff = {
    fromVersion: current.version,
    toVersion: version,
    moved: placed.map((p) => ({ lo: p.lo, hi: p.hi, from: null, to: p.to })),
    labels: [...labels].map(([label, to]) => ({ label, from: labelOwner.get(label) ?? null, to })),
    addedUnits: [],
    removedUnits: [],
    toUnits: current.units,
    center: undefined,
    fence: { ranges: [], labels: [] },
    movedKeys: 0,
  }
  const { fence: _fence, ...next } = applyDiff(current, shape)
  return { ...next, version }
}

/** A failover moves the lost unit's keys, all of them, and nothing else. */
function failoverChecks(
  failed: string,
  diff: RuleDiff,
  target: RuleSet,
  add: (path: string, message: string) => void,
): void {
  const others = [
    ...diff.moved
      .filter((m) => m.from !== failed)
      .map((m) => `${formatRange(m)} (${m.from ?? 'no unit'} -> ${m.to ?? 'no unit'})`),
    ...diff.labels
      .filter((l) => l.from !== failed)
      .map((l) => `label ${JSON.stringify(l.label)} (${l.from ?? 'no unit'} -> ${l.to ?? 'no unit'})`),
  ]
  if (others.length > 0)
    add(
      'target',
      `a failover moves only unit ${failed}'s keys, but ${others.slice(0, 3).join(', ')} would move too`,
    )
  const kept = ownershipOf(target).filter((o) => o.unit === failed)
  const keptLabels = target.mapping.filter((e) => e.unit === failed).flatMap((e) => e.labels ?? [])
  if (kept.length > 0 || keptLabels.length > 0) {
    const shown = [...kept.map(formatRange), ...keptLabels.map((l) => JSON.stringify(l))]
    add(
      'target',
      `${shown.slice(0, 3).join(', ')} would still belong to the lost unit ${failed}: every key of it must move`,
    )
  }
}

function stepsOf(
  kind: OperationKind,
  N: number,
  fence: { readonly ranges: readonly string[]; readonly labels: readonly string[] },
  force: boolean,
): PlanStep[] {
  const f = [...fence.ranges, ...fence.labels].join(', ')
  if (kind === 'cutover') {
    return [
      {
        name: 'fence',
        version: N + 1,
        description: `publish v${N + 1} = mapping of v${N} + fence ${f}; wait for every ack`,
      },
      {
        name: 'drain',
        description: 'wait until no agent reports an in-flight guarded write on a fenced key',
      },
      {
        name: 'catch-up',
        description: "record each source unit's DB position, wait until its target applied it",
      },
      {
        name: 'switch',
        version: N + 2,
        description: `publish v${N + 2} = new mapping + fence ${f}; wait for every ack`,
      },
      {
        name: 'unfence',
        version: N + 3,
        description: `publish v${N + 3} = new mapping, no fence; wait for every ack`,
      },
    ]
  }
  return [
    {
      name: 'wait-leases',
      description: force
        ? "skipped (force): the lost unit's agents are not waited out"
        : 'wait until every agent of the lost unit has acked or its lease lapsed (it is then self-fenced)',
    },
    {
      name: 'switch',
      version: N + 1,
      description: `publish v${N + 1} = new mapping, no fence; wait for every ack`,
    },
  ]
}

function transcriptOf(p: Plan): string[] {
  const lines: string[] = []
  const what =
    p.kind === 'cutover' ? 'cut-over' : `failover of unit ${p.failedUnit}${p.force ? ' (forced)' : ''}`
  lines.push(
    `${what} from version ${p.fromVersion} to version ${p.target.version}: ${p.movedKeys} key(s) and ${p.labels.length} label(s) move`,
  )
  for (const m of p.moved)
    lines.push(`  ${formatRange(m)}: ${m.from ?? '(no unit)'} -> ${m.to ?? '(no unit)'}`)
  for (const l of p.labels)
    lines.push(`  label ${JSON.stringify(l.label)}: ${l.from ?? '(no unit)'} -> ${l.to ?? '(no unit)'}`)
  for (const [i, s] of p.steps.entries()) lines.push(`${i + 1}. ${s.name}: ${s.description}`)
  for (const c of p.catchUp)
    lines.push(
      `   catch-up ${c.source} -> ${c.target}: ${c.probes.map((x) => x.kind + (x.scope ? ` (${x.scope})` : '')).join(', ')}`,
    )
  if (p.kind === 'cutover')
    lines.push(`any failure before the switch rolls back to v${p.fromVersion}'s mapping without a fence`)
  else lines.push('no catch-up: the RPO is the replication lag last measured for the lost unit')
  for (const c of p.checks) lines.push(`check ${c.ok ? 'ok' : 'FAILED'}: ${c.name}: ${c.message}`)
  for (const w of p.warnings) lines.push(`warning: ${w}`)
  return lines
}
