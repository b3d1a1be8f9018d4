/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`, e.g. `APPACTIVE_BENCH_CPU_PROF=DIR npm run
 * bench:gateway`): the functions with the most self time, and for appactive's own code (paths under
 * `/src/` or `/dist/`) self and inclusive time, so a hot path can be argued with numbers.
 *
 *   node --import tsx bench/lib/cpuprofile-top.ts FILE.cpuprofile [N] [REGEX]
 *
 * REGEX adds a table of the inclusive time of every function (ours or not) whose `name file:line` matches
 * it (`'counter|pino'`: what prom-client's counter and pino cost, callees included).
 */
import { readFileSync } from 'node:fs'
import { formatTable } from './report.js'

interface ProfileNode {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
  }
  readonly children?: readonly number[]
}

interface Profile {
  readonly nodes: readonly ProfileNode[]
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

const [file, topArg, pattern] = process.argv.slice(2)
if (file === undefined) throw new Error('usage: cpuprofile-top.ts FILE.cpuprofile [N] [REGEX]')
const top = Number(topArg ?? 25)
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile

const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
}
const totalUs = [...self.values()].reduce((a, b) => a + b, 0)
/** Sampled time minus `(idle)`: shares are of the time the process was busy. */
const idleUs = [...self].reduce(
  (t, [id, us]) => (byId.get(id)!.callFrame.functionName === '(idle)' ? t + us : t),
  0,
)
const busyUs = totalUs - idleUs

/** `name file:line` with the path shortened to what follows node_modules/, src/ or dist/. */
function key(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame
  const short = url
    .replace(/^.*\/node_modules\//, '')
    .replace(/^.*\/(src|dist)\//, '$1/')
    .replace(/^file:\/\//, '')
  return `${functionName || '(anonymous)'} ${short ? `${short}:${lineNumber + 1}` : ''}`.trim()
}
const ours = (n: ProfileNode): boolean =>
  /\/(src|dist)\//.test(n.callFrame.url) && !n.callFrame.url.includes('node_modules')

const selfByKey = new Map<string, number>()
for (const [id, us] of self) {
  const k = key(byId.get(id)!)
  selfByKey.set(k, (selfByKey.get(k) ?? 0) + us)
}

// Inclusive time: each node's subtree, counted once per key along a path (recursion).
const inclusive = new Map<string, number>()
const subtree = new Map<number, number>()
function total(id: number): number {
  const cached = subtree.get(id)
  if (cached !== undefined) return cached
  const n = byId.get(id)!
  let t = self.get(id) ?? 0
  for (const c of n.children ?? []) t += total(c)
  subtree.set(id, t)
  return t
}
function walk(id: number, onPath: Set<string>): void {
  const n = byId.get(id)!
  const k = key(n)
  const add = !onPath.has(k)
  if (add) {
    inclusive.set(k, (inclusive.get(k) ?? 0) + total(id))
    onPath.add(k)
  }
  for (const c of n.children ?? []) walk(c, onPath)
  if (add) onPath.delete(k)
}
walk(profile.nodes[0]!.id, new Set())

const pct = (us: number): string => `${((100 * us) / busyUs).toFixed(1)}%`
const rows = (m: Map<string, number>, filter: (k: string) => boolean) =>
  [...m]
    .filter(([k]) => filter(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, us]) => ({ function: k, ms: us / 1000, share: pct(us) }))

const oursKeys = new Set(profile.nodes.filter(ours).map(key))
process.stdout.write(
  `${file}: ${(totalUs / 1e6).toFixed(2)} s sampled, ${(busyUs / 1e6).toFixed(2)} s busy (shares below are of busy time)\n\n`,
)
process.stdout.write(
  `${formatTable(
    rows(selfByKey, (k) => k !== '(idle)'),
    'self time, all functions',
  )}\n\n`,
)
process.stdout.write(
  `${formatTable(
    rows(selfByKey, (k) => oursKeys.has(k)),
    'self time, appactive code',
  )}\n\n`,
)
process.stdout.write(
  `${formatTable(
    rows(inclusive, (k) => oursKeys.has(k)),
    'inclusive time, appactive code',
  )}\n`,
)
if (pattern !== undefined) {
  const re = new RegExp(pattern)
  process.stdout.write(
    `\n${formatTable(
      rows(inclusive, (k) => re.test(k)),
      `inclusive time, /${pattern}/`,
    )}\n`,
  )
}
