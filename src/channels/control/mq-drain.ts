/**
 * The server side of the message drain (reference messaging-and-drills §A.3, DESIGN §4 drain step):
 * reading `POST /mq` reports, and deciding whether a node's consumer groups have drained the messages
 * published before a fence. A consumer group of a source unit has drained when, for every live producer
 * of its topic, some live member passed that producer's barrier of the fence version (or later) on
 * every partition. A lapsed producer is self-fenced: its stragglers are forwarded as late. A member
 * that passed a barrier and lapsed since still counts (the barrier is consumed and will not come again).
 */
import type { MqDrainReport } from '../types.js'
import { HttpError } from './http-util.js'
import type { NodeRecord } from './node-table.js'

/** Most topics, groups or barrier sightings in one report. */
const MAX_ITEMS = 4096
const NAME = /^[\x21-\x7E]{1,255}$/

function bad(message: string): HttpError {
  return new HttpError(400, 'BAD_FIELD', message)
}

function name(v: unknown, what: string): string {
  if (typeof v !== 'string' || !NAME.test(v)) throw bad(`${what} must be 1..255 visible ASCII characters`)
  return v
}

function whole(v: unknown, what: string, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw bad(`${what} must be a whole number >= ${min}`)
  return v
}

function list(body: Record<string, unknown>, field: string): unknown[] {
  const v = body[field] ?? []
  if (!Array.isArray(v)) throw bad(`${field} must be an array`)
  if (v.length > MAX_ITEMS) throw bad(`${field} has more than ${MAX_ITEMS} entries`)
  return v
}

function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} must be an object`)
  return v as Record<string, unknown>
}

/** Reads a `POST /mq` body. @throws HttpError 400 naming the first bad field */
export function readMqReport(body: Record<string, unknown>): MqDrainReport {
  const produces = list(body, 'produces').map((t, i) => name(t, `produces[${i}]`))
  const consumes = list(body, 'consumes').map((raw, i) => {
    const c = object(raw, `consumes[${i}]`)
    return { topic: name(c.topic, `consumes[${i}].topic`), group: name(c.group, `consumes[${i}].group`) }
  })
  const barriers = list(body, 'barriers').map((raw, i) => {
    const b = object(raw, `barriers[${i}]`)
    const partitions = whole(b.partitions, `barriers[${i}].partitions`, 1)
    const partition = whole(b.partition, `barriers[${i}].partition`, 0)
    if (partition >= partitions) throw bad(`barriers[${i}].partition must be below partitions`)
    return {
      topic: name(b.topic, `barriers[${i}].topic`),
      group: name(b.group, `barriers[${i}].group`),
      origin: name(b.origin, `barriers[${i}].origin`),
      version: whole(b.version, `barriers[${i}].version`, 0),
      partition,
      partitions,
    }
  })
  return { produces, consumes, barriers }
}

/** What a fence's message drain waits for. */
export interface MqDrainTarget {
  /** The fence's rule-set version: barriers of this version or later count. */
  readonly version: number
  /** The units that owned fenced keys before the switch (the sources). */
  readonly sourceUnits: readonly string[]
}

/**
 * The consumer groups of `node` that have not drained yet, as `unit/topic/group`, each with the
 * producers still missing. Empty when the node consumes nothing in a source unit.
 */
export function undrainedGroups(
  node: NodeRecord,
  nodes: Iterable<NodeRecord>,
  live: (n: NodeRecord) => boolean,
  target: MqDrainTarget,
): string[] {
  const consumes = node.mq?.consumes
  if (consumes === undefined || consumes.length === 0 || !target.sourceUnits.includes(node.unit)) return []
  const everyone = [...nodes]
  const out: string[] = []
  for (const { topic, group } of consumes) {
    const missing: string[] = []
    for (const producer of everyone) {
      if (!live(producer)) continue
      if (!producer.mq?.produces.includes(topic)) continue
      const seen = new Set<number>()
      let partitions = 1
      // A member that passed the barrier counts even if it lapsed since: the barrier is consumed.
      for (const member of everyone) {
        if (member.unit !== node.unit || member.mq === undefined) continue
        for (const b of member.mq.barriers) {
          if (b.topic !== topic || b.group !== group || b.origin !== producer.nodeId) continue
          if (b.version < target.version) continue
          seen.add(b.partition)
          if (b.partitions > partitions) partitions = b.partitions
        }
      }
      if (seen.size < partitions) missing.push(producer.nodeId)
    }
    if (missing.length > 0) out.push(`${node.unit}/${topic}/${group} (waiting for ${missing.join(', ')})`)
  }
  return out
}
