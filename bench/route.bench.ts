/**
 * `npm run bench:route`: the compiled router's hot path (DESIGN §2: `route()` in O(1) for `mod` key spaces up
 * to 10^6, O(log n) beyond, and no allocation in `lookup()`), next to trivial work measured in the same run.
 *
 * How it measures. One route() call takes tens of nanoseconds, about what one clock read costs, so timing
 * each call would mostly time the clock. Each tinybench iteration therefore runs a BATCH of 1024 calls
 * between two `process.hrtime.bigint()` reads and reports `elapsed / 1024` as its sample
 * (`overriddenDuration`) and `elapsed` as its cost against the time budget (`overriddenIterationCost`). The
 * median and p99 below are over those batch means: the median is the per-call cost, the p99 shows the
 * jitter between batches (GC, the scheduler, a noisy neighbour), not the slowest single call.
 *
 * Inputs are generated once from a fixed seed: 4096 ids per case, walked in order with a rotating start, so
 * the JIT sees varied values and cannot constant-fold the call. Every result is folded into `sink`, printed
 * at the end, so no call is dead code. Each loop is its own function literal, so the loops do not share
 * type feedback; the Router methods they call do, which is why cases run in a fixed order (see "run").
 * Before a case runs, its router's answers on all its inputs are checked against BigInt arithmetic, so a
 * case cannot silently measure a fallback path.
 *
 * Environment: APPACTIVE_BENCH_TIME_MS sets the time budget per case (default 1000).
 */
import { Buffer } from 'node:buffer'
import v8 from 'node:v8'
import { Bench, type FnReturnedObject } from 'tinybench'
import {
  compileRouter,
  DENSE_LIMIT,
  fnv1a32,
  type RequestLike,
  type Router,
  type RuleSet,
} from '../src/rules/index.js'
import { machineInfo } from './lib/machine.js'
import { printReport, printTable, type Row, round } from './lib/report.js'

const machine = machineInfo()

const IDS = 4096
const MASK = IDS - 1
/** Calls per timed iteration; see the header comment. */
const BATCH = 1024
const TIME_MS = Number(process.env.APPACTIVE_BENCH_TIME_MS ?? 1000)
if (!(TIME_MS > 0)) throw new Error('APPACTIVE_BENCH_TIME_MS must be a positive number of milliseconds')

// ---------------------------------------------------------------------------------------------- inputs

/** mulberry32: a small seeded PRNG, so every run benchmarks the same ids. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const random = prng(20_260_827)
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!

/**
 * A flat string, as node:http hands them out (built from bytes). Template literals and `+=` build rope
 * strings whose first read flattens them; benchmarking ropes would measure that indirection.
 */
const flat = (s: string): string => Buffer.from(s, 'utf8').toString('utf8')

/** A decimal id of `length` digits without a leading zero. */
function digits(length: number): string {
  const out: string[] = [String(1 + Math.floor(random() * 9))]
  for (let i = 1; i < length; i++) out.push(String(Math.floor(random() * 10)))
  return flat(out.join(''))
}

/** Realistic user ids: 1 to 12 digits, lengths uniform. */
const numericIds = Array.from({ length: IDS }, () => digits(1 + Math.floor(random() * 12)))
/** 20-digit ids (beyond 2^64 for about half of them): the exact decimal modulo's long path. */
const longIds = Array.from({ length: IDS }, () => digits(20))
const FIRST = ['alice', 'bob', 'chen', 'dmitri', 'eva', 'fatima', 'giulia', 'hiro', 'ines', 'jo']
const LAST = ['smith', 'wang', 'garcia', 'mueller', 'rossi', 'tanaka', 'kim', 'silva', 'nguyen', 'li']
const DOMAINS = ['example.com', 'mail.example.org', 'corp.example.net', 'shop.example.io']
const emailIds = Array.from({ length: IDS }, (_, i) =>
  flat(`${pick(FIRST)}.${pick(LAST)}${i}@${pick(DOMAINS)}`),
)

/** A node:http style request: lower-case header names, about ten typical headers, a 5-cookie header. */
function request(id: string, idInQuery: boolean): RequestLike {
  const session = Math.floor(random() * 2 ** 48).toString(16)
  return {
    url: flat(`/shop/item/42?ref=home${idInQuery ? `&r_id=${id}` : ''}&utm_source=x`),
    headers: {
      host: 'shop.example.com',
      'user-agent':
        'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
      accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
      'accept-encoding': 'gzip, deflate, br',
      'accept-language': 'en-US,en;q=0.9',
      connection: 'keep-alive',
      referer: 'https://shop.example.com/',
      'x-forwarded-for': '203.0.113.7',
      'x-request-id': flat(`req-${session}`),
      cookie: flat(`_ga=GA1.2.1234567890.1700000000; session=${session}; theme=dark; lang=en-US; r_id=${id}`),
    },
  }
}
const queryRequests = numericIds.map((id) => request(id, true))
const cookieRequests = numericIds.map((id) => request(id, false))

// ---------------------------------------------------------------------------------------------- routers

const ID_SOURCE: RuleSet['idSource'] = [
  { from: 'query', name: 'r_id' },
  { from: 'header', name: 'r_id' },
  { from: 'cookie', name: 'r_id' },
]

/** AppActive's baseline demo rules: mod 10000, unit 0~1999, center 2000~9999, fallback local. */
function appActiveRules(transform: RuleSet['transform']): RuleSet {
  return {
    version: 1,
    units: [{ name: 'center', center: true }, { name: 'unit' }],
    idSource: ID_SOURCE,
    transform,
    mapping: [
      { unit: 'unit', ranges: ['0~1999'] },
      { unit: 'center', ranges: ['2000~9999'] },
    ],
    fallback: 'local',
  }
}

/**
 * `count` contiguous ranges covering 0..divisor-1, dealt round-robin to 8 units, so no two neighbours share
 * a unit and the compiled table keeps every range as its own segment (10,000 segments, 14 bisection steps).
 */
function manyRangesRules(divisor: number, count: number): RuleSet {
  const units = Array.from({ length: 8 }, (_, i) => `unit${i}`)
  const width = divisor / count
  const ranges: string[][] = units.map(() => [])
  for (let i = 0; i < count; i++) ranges[i % units.length]!.push(`${i * width}~${(i + 1) * width - 1}`)
  return {
    version: 1,
    units: units.map((name, i) => (i === 0 ? { name, center: true } : { name })),
    idSource: ID_SOURCE,
    transform: [{ type: 'mod', divisor }],
    mapping: units.map((unit, i) => ({ unit, ranges: ranges[i]! })),
    fallback: 'local',
  }
}

const baseline = compileRouter(appActiveRules([{ type: 'mod', divisor: 10_000 }]), { localUnit: 'center' })
const hashed = compileRouter(appActiveRules([{ type: 'hash' }, { type: 'mod', divisor: 10_000 }]), {
  localUnit: 'center',
})
const dense = compileRouter(manyRangesRules(1_000_000, 10_000), { localUnit: 'unit0' })
const sparse = compileRouter(manyRangesRules(10_000_000, 10_000), { localUnit: 'unit0' })

// --------------------------------------------------------------------------------------- sanity checks

/** Fails before any timing when a case would not measure what its name says. */
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`bench:route sanity check failed: ${what}`)
}
const mod = (id: string, m: bigint): number => Number(((BigInt(id) % m) + m) % m)

function verifyBaseline(): void {
  for (const id of numericIds) {
    const d = baseline.route(id)
    check(d.reason === 'range' && d.key === mod(id, 10_000n), `baseline key of ${id}`)
    check(d.unit === (d.key! < 2000 ? 'unit' : 'center'), `baseline unit of ${id}`)
  }
  for (const id of longIds) check(baseline.route(id).key === mod(id, 10_000n), `20-digit key of ${id}`)
}
function verifyRequests(): void {
  for (let i = 0; i < IDS; i++) {
    const want = mod(numericIds[i]!, 10_000n)
    check(baseline.routeRequest(queryRequests[i]!).key === want, `query request ${i}`)
    check(baseline.routeRequest(cookieRequests[i]!).key === want, `cookie request ${i}`)
  }
}
function verifyRanges(router: Router, divisor: bigint, width: number): void {
  check(router.maxKey < DENSE_LIMIT === divisor <= BigInt(DENSE_LIMIT), `table kind for mod ${divisor}`)
  for (const id of numericIds)
    check(router.route(id).unit === `unit${Math.floor(mod(id, divisor) / width) % 8}`, `unit of ${id}`)
}
function verifyHashed(): void {
  for (const id of emailIds) check(hashed.route(id).key === fnv1a32(id) % 10_000, `hash key of ${id}`)
}

// ------------------------------------------------------------------------------------------------ cases

/** Folds every result so no call is dead code; printed at the end. */
let sink = 0

/** Times one batch of BATCH calls and reports the mean per call; see the header comment. */
function perCall(batch: () => void): () => FnReturnedObject {
  return () => {
    const t0 = process.hrtime.bigint()
    batch()
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    return { overriddenDuration: ms / BATCH, overriddenIterationCost: ms }
  }
}

function empty(_id: string): number {
  return 0
}
const unitOfId = new Map(numericIds.map((id, i) => [id, i & 7]))

interface Case {
  readonly name: string
  readonly metric?: string
  readonly targetNs?: number
  /** Checks the case measures what it says; runs (once) right before the case, not before all cases. */
  readonly verify?: () => void
  readonly batch: () => void
}

let at = 0
/** Start of the next batch in the id arrays: consecutive batches walk all 4096 inputs. */
const next = (): number => {
  const start = at
  at = (at + BATCH) & MASK
  return start
}

/** The baseline route() loop; a function, not a literal, so the last case can re-run the very same code. */
function routeBaseline(): void {
  const start = next()
  let s = 0
  for (let i = 0; i < BATCH; i++) {
    const d = baseline.route(numericIds[(start + i) & MASK])
    s += (d.key ?? 0) + (d.fenced ? 1 : 0) + (d.unit === 'center' ? 1 : 2)
  }
  sink += s
}

// Order matters (see the run section): the floors, then the baseline router, then the other routers, the
// hash transform (a different key function) last. Each route() loop reads all three fields of the decision.
const cases: Case[] = [
  {
    name: 'floor: loop + empty call',
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) s += empty(numericIds[(start + i) & MASK]!)
      sink += s
    },
  },
  {
    name: 'floor: Map.get(string id)',
    metric: 'baseline_map_get_median_ns',
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) s += unitOfId.get(numericIds[(start + i) & MASK]!)!
      sink += s
    },
  },
  {
    name: 'floor: Number(id) % 10000',
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) s += Number(numericIds[(start + i) & MASK]!) % 10_000
      sink += s
    },
  },
  {
    name: 'route() baseline rules, 1-12 digits',
    metric: 'route_baseline_median_ns',
    targetNs: 50,
    verify: verifyBaseline,
    batch: routeBaseline,
  },
  {
    name: 'lookup() baseline rules, 1-12 digits',
    metric: 'lookup_baseline_median_ns',
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) s += baseline.lookup(numericIds[(start + i) & MASK])
      sink += s
    },
  },
  {
    name: 'route() baseline rules, 20 digits',
    metric: 'route_20digit_median_ns',
    targetNs: 250,
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) {
        const d = baseline.route(longIds[(start + i) & MASK])
        s += (d.key ?? 0) + (d.fenced ? 1 : 0) + (d.unit === 'center' ? 1 : 2)
      }
      sink += s
    },
  },
  {
    name: 'routeRequest(), id in query (1st source)',
    metric: 'extract_route_median_ns',
    targetNs: 1000,
    verify: verifyRequests,
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) {
        const d = baseline.routeRequest(queryRequests[(start + i) & MASK]!)
        s += (d.key ?? 0) + (d.fenced ? 1 : 0) + (d.unit === 'center' ? 1 : 2)
      }
      sink += s
    },
  },
  {
    name: 'routeRequest(), id in cookie only (3rd)',
    targetNs: 1000,
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) {
        const d = baseline.routeRequest(cookieRequests[(start + i) & MASK]!)
        s += (d.key ?? 0) + (d.fenced ? 1 : 0) + (d.unit === 'center' ? 1 : 2)
      }
      sink += s
    },
  },
  {
    name: 'route() 10k ranges, mod 10^6 (dense)',
    metric: 'route_10k_ranges_median_ns',
    verify: () => verifyRanges(dense, 1_000_000n, 100),
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) {
        const d = dense.route(numericIds[(start + i) & MASK])
        s += (d.key ?? 0) + (d.fenced ? 1 : 0) + (d.unit === 'unit0' ? 1 : 2)
      }
      sink += s
    },
  },
  {
    name: 'route() 10k ranges, mod 10^7 (sparse)',
    metric: 'route_10k_ranges_sparse_median_ns',
    verify: () => verifyRanges(sparse, 10_000_000n, 1000),
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) {
        const d = sparse.route(numericIds[(start + i) & MASK])
        s += (d.key ?? 0) + (d.fenced ? 1 : 0) + (d.unit === 'unit0' ? 1 : 2)
      }
      sink += s
    },
  },
  {
    name: 'route() hash + mod 10000, emails',
    metric: 'route_hash_median_ns',
    verify: verifyHashed,
    batch: () => {
      const start = next()
      let s = 0
      for (let i = 0; i < BATCH; i++) {
        const d = hashed.route(emailIds[(start + i) & MASK])
        s += (d.key ?? 0) + (d.fenced ? 1 : 0) + (d.unit === 'center' ? 1 : 2)
      }
      sink += s
    },
  },
  {
    name: 'route() baseline rules, after all routers',
    batch: routeBaseline,
  },
]

// -------------------------------------------------------------------------------------------------- run

// One Bench per case, run in order. A single Bench would warm every task up before measuring any, so
// every router would have run before the first measurement and V8's type feedback for the shared Router
// methods would mix all four key functions. Run in order, each case sees the routers of the cases before
// it only: the baseline cases measure a process holding one rule set (the usual gateway or app), and the
// last case re-runs the first route() loop after all routers ran, to show what mixing costs.
interface Result {
  readonly medianNs: number
  readonly p99Ns: number
  readonly batches: number
}
function measure(c: Case): Result {
  c.verify?.()
  const bench = new Bench({ name: c.name, time: TIME_MS, warmup: true, iterations: 64 })
  bench.add(c.name, perCall(c.batch), { async: false })
  const task = bench.runSync()[0]!
  const r = task.result
  if (r.state !== 'completed')
    throw new Error(`${c.name}: ${r.state === 'errored' ? r.error.message : r.state}`)
  return { medianNs: r.latency.p50 * 1e6, p99Ns: r.latency.p99 * 1e6, batches: r.latency.samplesCount }
}
const results = new Map(cases.map((c) => [c, measure(c)]))
const resultOf = (metric: string): Result => results.get(cases.find((c) => c.metric === metric)!)!
const mapGet = resultOf('baseline_map_get_median_ns')

const rows: Row[] = cases.map((c) => {
  const r = results.get(c)!
  return {
    case: c.name,
    'median ns/call': r.medianNs,
    'p99 ns/call': r.p99Ns,
    'calls/s': 1e9 / r.medianNs,
    'x Map.get': r.medianNs / mapGet.medianNs,
    target:
      c.targetNs === undefined ? '' : `<= ${c.targetNs} ns ${r.medianNs <= c.targetNs ? 'met' : 'MISSED'}`,
    batches: r.batches,
  }
})
const loadNote =
  machine.loadavg_1m > machine.cpu_cores / 2
    ? `  WARNING: load average ${machine.loadavg_1m} on ${machine.cpu_cores} cores at start, figures are noisy`
    : ''
printTable(
  rows,
  `bench:route  ${BATCH} calls per sample, ${TIME_MS} ms per case; p99 is over batch means (jitter, not the slowest call)${loadNote}`,
)

// ---------------------------------------------------------------------------------- allocation check

/**
 * Bytes allocated per call, measured without --expose-gc or a native allocation counter (Node 20 has
 * none): the growth of V8's new space across a loop. Young objects are bump-allocated there, so with no GC
 * in between its used size grows by exactly what was allocated. A GCProfiler brackets each measurement and
 * a trial with any GC is thrown away. Each trial measures the same loop over N and over 2N calls, so
 * `(growth(2N) - growth(N)) / N` cancels what the measurement itself allocates. The first trials are
 * skipped while the loop gets optimized. Positive controls show the method sees a small object.
 * 40 trials x 3N calls: about 10^6 calls per line.
 */
const CALLS = 8192
const TRIALS = 40
const SKIP = 5

function newSpaceUsed(): number {
  for (const s of v8.getHeapSpaceStatistics()) if (s.space_name === 'new_space') return s.space_used_size
  throw new Error('no new_space in v8.getHeapSpaceStatistics()')
}

const profiler = new v8.GCProfiler()
/** New-space growth across `loop(calls)`, or NaN when a GC ran meanwhile. */
function growth(loop: (calls: number) => number, calls: number): number {
  profiler.start()
  const before = newSpaceUsed()
  sink ^= loop(calls)
  const after = newSpaceUsed()
  return profiler.stop().statistics.length === 0 ? after - before : Number.NaN
}

/** Median bytes per call over the GC-free trials, and how many trials that was. */
function bytesPerCall(loop: (calls: number) => number): { bytes: number; trials: number } {
  const perCall: number[] = []
  for (let t = 0; t < TRIALS; t++) {
    const once = growth(loop, CALLS)
    const twice = growth(loop, 2 * CALLS)
    if (t >= SKIP && !Number.isNaN(once) && !Number.isNaN(twice)) perCall.push((twice - once) / CALLS)
  }
  perCall.sort((x, y) => x - y)
  return { bytes: perCall.length === 0 ? Number.NaN : perCall[perCall.length >> 1]!, trials: perCall.length }
}

let kept: unknown = null
const allocationLoops: ReadonlyArray<readonly [string, (calls: number) => number]> = [
  [
    'negative control: empty call',
    (calls) => {
      let s = 0
      for (let i = 0; i < calls; i++) s ^= empty(numericIds[i & MASK]!)
      return s
    },
  ],
  [
    'positive control: { id } kept',
    (calls) => {
      let s = 0
      for (let i = 0; i < calls; i++) {
        const o = { id: numericIds[i & MASK]! }
        kept = o
        s ^= o.id.length
      }
      return s
    },
  ],
  [
    'route() baseline, result kept',
    (calls) => {
      let s = 0
      for (let i = 0; i < calls; i++) {
        const d = baseline.route(numericIds[i & MASK])
        kept = d
        s ^= d.key ?? 0
      }
      return s
    },
  ],
  [
    'lookup() baseline, 1-12 digits',
    (calls) => {
      let s = 0
      for (let i = 0; i < calls; i++) s ^= baseline.lookup(numericIds[i & MASK])
      return s
    },
  ],
  [
    'lookup() baseline, 20 digits',
    (calls) => {
      let s = 0
      for (let i = 0; i < calls; i++) s ^= baseline.lookup(longIds[i & MASK])
      return s
    },
  ],
  [
    'lookup() 10k ranges dense',
    (calls) => {
      let s = 0
      for (let i = 0; i < calls; i++) s ^= dense.lookup(numericIds[i & MASK])
      return s
    },
  ],
  [
    'lookup() 10k ranges sparse',
    (calls) => {
      let s = 0
      for (let i = 0; i < calls; i++) s ^= sparse.lookup(numericIds[i & MASK])
      return s
    },
  ],
  [
    'lookup() hash + mod, emails',
    (calls) => {
      let s = 0
      for (let i = 0; i < calls; i++) s ^= hashed.lookup(emailIds[i & MASK])
      return s
    },
  ],
]
const allocation = allocationLoops.map(([name, loop]) => [name, bytesPerCall(loop)] as const)
printTable(
  allocation.map(([name, a]) => ({
    'allocation check': name,
    'bytes/call': a.bytes,
    'GC-free trials': `${a.trials}/${TRIALS - SKIP}`,
  })),
  'allocation: new-space growth per call, (growth over 2N calls - over N calls) / N, median of GC-free trials',
)
// Reading `kept` keeps the positive controls' objects observable, so they are really allocated.
if (kept === null) throw new Error('allocation check: the positive controls did not run')

// ---------------------------------------------------------------------------------------------- report

const heapUsedMb = process.memoryUsage().heapUsed / 2 ** 20
process.stdout.write(`checksum ${sink}  heap used ${heapUsedMb.toFixed(1)} MB\n`)

const median = (metric: string): number => round(resultOf(metric).medianNs)
const metrics = {
  route_baseline_median_ns: median('route_baseline_median_ns'),
  route_10k_ranges_median_ns: median('route_10k_ranges_median_ns'),
  route_10k_ranges_sparse_median_ns: median('route_10k_ranges_sparse_median_ns'),
  route_20digit_median_ns: median('route_20digit_median_ns'),
  route_hash_median_ns: median('route_hash_median_ns'),
  extract_route_median_ns: median('extract_route_median_ns'),
  lookup_baseline_median_ns: median('lookup_baseline_median_ns'),
  baseline_map_get_median_ns: median('baseline_map_get_median_ns'),
  route_baseline_vs_map_get_ratio: round(resultOf('route_baseline_median_ns').medianNs / mapGet.medianNs, 3),
  heap_used_mb: round(heapUsedMb, 1),
}
printReport({ bench: 'route', machine, metrics })
