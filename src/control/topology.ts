/**
 * The topology document: units (one center), apps with their typed services, DB scopes and one
 * replication probe declaration per source -> target pair (and scope). Checked like a rule set: the
 * zod schema, then semantic checks, every problem listed with its path.
 */
import { z } from 'zod'
import type { RuleIssue } from '../errors/index.js'
import { type RuleSet, zodIssues } from '../rules/index.js'
import type { Topology } from './model.js'

const name = z
  .string()
  .regex(
    /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/,
    'a name is a letter then up to 62 letters, digits, "_", "." or "-"',
  )

const TopologySchema = z.strictObject({
  units: z
    .array(
      z.strictObject({
        name,
        center: z.boolean().optional(),
        description: z.string().max(500).optional(),
        region: z.string().max(100).optional(),
      }),
    )
    .min(1, 'at least one unit is needed')
    .max(250),
  apps: z
    .array(
      z.strictObject({
        name,
        services: z
          .array(
            z.strictObject({ name: z.string().min(1).max(200), type: z.enum(['unit', 'center', 'normal']) }),
          )
          .max(10_000)
          .default([]),
      }),
    )
    .max(1000)
    .default([]),
  dbScopes: z
    .array(
      z.strictObject({
        name,
        app: name.optional(),
        engine: z.enum(['postgres', 'mysql', 'mariadb', 'sqlite', 'other']),
        description: z.string().max(500).optional(),
      }),
    )
    .max(1000)
    .default([]),
  probes: z
    .array(
      z.strictObject({
        source: name,
        target: name,
        scope: name.optional(),
        kind: z.enum(['postgres', 'mariadb', 'marker', 'none']),
        options: z.record(z.string(), z.union([z.string().max(2000), z.number(), z.boolean()])).optional(),
      }),
    )
    .max(10_000)
    .default([]),
})

export type TopologyValidation = { ok: true; topology: Topology } | { ok: false; issues: RuleIssue[] }

/** Checks any value as a topology and lists every problem. Never throws. */
export function validateTopology(input: unknown): TopologyValidation {
  const parsed = TopologySchema.safeParse(input, { reportInput: true })
  if (!parsed.success) return { ok: false, issues: zodIssues(parsed.error) }
  const t = parsed.data as Topology
  const issues: RuleIssue[] = []
  const add = (path: string, message: string) => issues.push({ path, message })

  const units = new Set<string>()
  t.units.forEach((u, i) => {
    if (units.has(u.name)) add(`units[${i}].name`, `unit "${u.name}" is listed twice`)
    units.add(u.name)
  })
  const centers = t.units.filter((u) => u.center === true).map((u) => u.name)
  if (centers.length !== 1) {
    add(
      'units',
      centers.length === 0
        ? 'no unit is the center; mark exactly one with center: true'
        : `more than one center: ${centers.join(', ')}`,
    )
  }
  const apps = new Set<string>()
  t.apps.forEach((a, i) => {
    if (apps.has(a.name)) add(`apps[${i}].name`, `app "${a.name}" is listed twice`)
    apps.add(a.name)
    const services = new Set<string>()
    a.services.forEach((s, j) => {
      if (services.has(s.name)) add(`apps[${i}].services[${j}].name`, `service "${s.name}" is listed twice`)
      services.add(s.name)
    })
  })
  const scopes = new Set<string>()
  t.dbScopes.forEach((d, i) => {
    if (scopes.has(d.name)) add(`dbScopes[${i}].name`, `DB scope "${d.name}" is listed twice`)
    scopes.add(d.name)
    if (d.app !== undefined && !apps.has(d.app)) add(`dbScopes[${i}].app`, `unknown app "${d.app}"`)
  })
  const pairs = new Set<string>()
  t.probes.forEach((p, i) => {
    const at = `probes[${i}]`
    if (!units.has(p.source)) add(`${at}.source`, `unknown unit "${p.source}"`)
    if (!units.has(p.target)) add(`${at}.target`, `unknown unit "${p.target}"`)
    if (p.source === p.target) add(at, `a probe needs two different units, got ${p.source} twice`)
    if (p.scope !== undefined && !scopes.has(p.scope)) add(`${at}.scope`, `unknown DB scope "${p.scope}"`)
    const key = `${p.source}>${p.target}>${p.scope ?? ''}`
    if (pairs.has(key))
      add(
        at,
        `a probe from ${p.source} to ${p.target}${p.scope ? ` for ${p.scope}` : ''} is already declared`,
      )
    pairs.add(key)
  })
  return issues.length === 0 ? { ok: true, topology: t } : { ok: false, issues }
}

/** Problems of a rule set against the topology: units it does not know, a different center. */
export function ruleSetTopologyIssues(ruleSet: RuleSet, topology: Topology, path = ''): RuleIssue[] {
  const issues: RuleIssue[] = []
  const at = (p: string) => (path ? `${path}.${p}` : p)
  const known = new Set(topology.units.map((u) => u.name))
  ruleSet.units.forEach((u, i) => {
    if (!known.has(u.name)) {
      issues.push({
        path: at(`units[${i}].name`),
        message: `unit "${u.name}" is not in the topology (units: ${[...known].join(', ')})`,
      })
    }
  })
  const center = topology.units.find((u) => u.center === true)?.name
  const rsCenter = ruleSet.units.find((u) => u.center === true)?.name
  if (center !== undefined && rsCenter !== undefined && center !== rsCenter) {
    issues.push({
      path: at('units'),
      message: `the center is "${rsCenter}" here but "${center}" in the topology; change the topology first`,
    })
  }
  return issues
}
