// One evaluator, proved: every conformance vector (test/fixtures/conformance/vectors.json) over real HTTP
// through real nginx running nginx/appactive.lua, then a seeded differential fuzz comparing nginx's answer
// with route() field by field (unit, key, fenced, reason) and the hop headers the upstream received with
// the ones the TypeScript side writes. Any difference fails.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Pool } from 'undici'
import { injectRoute } from '../../../src/context/index.js'
import { compileNginxRules } from '../../../src/gateway/nginx/index.js'
import { compileRouter, type RouteDecision, type Router } from '../../../src/rules/index.js'
import { loadVectors, nodeHeaders } from '../../fixtures/conformance/vectors.js'
import { decisionOf, edgeConfig, needsNginx, rawRequest, startEdge, type T } from './helpers.js'

const skip = needsNginx()
const { ruleSets, vectors } = loadVectors()
const SEED = Number(process.env.APPACTIVE_FUZZ_SEED ?? 20261127)

/** Every unit any rule set names, so one app has an upstream for each. */
const UNITS = [...new Set(Object.values(ruleSets).flatMap((r) => r.ruleSet.units.map((u) => u.name)))]

/** Starts one edge per local unit; `push(name)` makes rule set `name` the one in force (versions grow). */
async function edges(t: T) {
  const byLocal = new Map<string, Awaited<ReturnType<typeof startEdge>>>()
  let version = 100
  const routers = new Map<string, Router>()
  return {
    async push(name: string): Promise<{ port: number; router: Router }> {
      const { local, ruleSet } = ruleSets[name]!
      let edge = byLocal.get(local)
      if (edge === undefined) {
        const { config } = await edgeConfig(t, UNITS, { unit: local })
        edge = await startEdge(t, config)
        byLocal.set(local, edge)
      }
      const rs = { ...ruleSet, version: ++version }
      const res = await edge.admin.put(compileNginxRules(rs, { localUnit: local }).text)
      assert.equal(res.status, 200, `push ${name}: ${res.body}`)
      const router = compileRouter(rs, { localUnit: local })
      routers.set(name, router)
      return { port: edge.port, router }
    },
  }
}

function queryName(name: string): string {
  const q = ruleSets[name]!.ruleSet.idSource.find((s) => s.from === 'query')
  assert.ok(q, `rule set ${name} has a query source`)
  return q.name
}

function pathFor(name: string, id: string | null | undefined): string {
  return id == null ? '/' : `/?${queryName(name)}=${encodeURIComponent(id)}`
}

/** The hop headers (and baggage) the TypeScript gateway writes for a decision. */
function expectedHop(id: string | undefined, d: RouteDecision, version: number): Record<string, string> {
  const out: Record<string, string> = {}
  injectRoute({ routeId: id, unit: d.unit!, ruleVersion: version, hops: 0 }, (n, v) => {
    out[n] = v
  })
  return out
}

const HOP = [
  'x-appactive-route-id',
  'x-appactive-unit',
  'x-appactive-rule-version',
  'x-appactive-hops',
  'baggage',
]

/** Compares an edge answer with route(); returns the differences (empty: equal). */
function differences(
  got: { status: number; headers: Record<string, string | string[] | undefined>; body: string },
  want: RouteDecision,
  id: string | undefined,
  version: number,
): string[] {
  const d = decisionOf(got.headers)
  if (d === undefined) return [`no decision header (status ${got.status}: ${got.body.slice(0, 200)})`]
  const out: string[] = []
  for (const k of ['unit', 'key', 'fenced', 'reason'] as const) {
    if (d[k] !== want[k]) out.push(`${k}: nginx ${JSON.stringify(d[k])}, route() ${JSON.stringify(want[k])}`)
  }
  if (want.unit === null) {
    if (got.status !== 400) out.push(`status ${got.status}, want 400 for a rejected id`)
    return out
  }
  if (got.status !== 200) return [...out, `status ${got.status}: ${got.body.slice(0, 200)}`]
  const seen = (JSON.parse(got.body) as { headers: Record<string, string> }).headers
  const hop = expectedHop(id, want, version)
  for (const name of HOP) {
    if (seen[name] !== hop[name]) out.push(`upstream ${name}: nginx ${seen[name]}, TypeScript ${hop[name]}`)
  }
  if (seen['x-appactive-unit'] !== want.unit) out.push(`went to ${seen['x-appactive-unit']}`)
  return out
}

test('every conformance vector gives the same answer through nginx as in vectors.json', {
  skip,
}, async (t) => {
  const e = await edges(t)
  let checked = 0
  for (const name of Object.keys(ruleSets)) {
    const { port, router } = await e.push(name)
    for (const v of vectors.filter((x) => x.ruleSet === name)) {
      const path =
        v.request === undefined
          ? pathFor(name, v.id)
          : v.request.query === undefined
            ? '/'
            : `/?${v.request.query}`
      const got = await rawRequest(port, path, v.request?.headers ?? [])
      const id =
        v.request === undefined
          ? (v.id ?? undefined)
          : router.extract({ url: path, headers: nodeHeaders(v.request.headers) })
      const diff = differences(got, v.expect, id === '' ? undefined : id, router.version)
      assert.deepEqual(diff, [], `${v.name} (${path})`)
      checked++
    }
  }
  assert.equal(checked, vectors.length)
})

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const JUNK = [...' !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~azAZ09', 'é', 'ü', '租', '户', '😀', '𝄞', '\u00a0', 'ÿ']

/** Route ids of every kind: any length, both signs, leading zeros, junk, unicode, labels and near misses. */
function fuzzIds(rand: () => number, n: number, labels: readonly string[]): string[] {
  const pick = <V>(xs: readonly V[]): V => xs[Math.floor(rand() * xs.length)]!
  const digits = (len: number) => Array.from({ length: len }, () => String(Math.floor(rand() * 10))).join('')
  const ids: string[] = []
  for (let i = 0; i < n; i++) {
    const kind = rand()
    if (kind < 0.45) {
      const len = rand() < 0.8 ? 1 + Math.floor(rand() * 20) : 1 + Math.floor(rand() * 120)
      ids.push(pick(['', '', '', '+', '-']) + (rand() < 0.1 ? '000' : '') + digits(len))
    } else if (kind < 0.6) {
      ids.push(
        pick(['', '-', '+', ' ', '0x', '1e', '.', '--', '+-']) +
          digits(1 + Math.floor(rand() * 6)) +
          pick(['', '', '.5', ' ', 'e3', 'a']),
      )
    } else if (kind < 0.9) {
      const len = Math.floor(rand() * 24)
      ids.push(Array.from({ length: len }, () => pick(JUNK)).join(''))
    } else if (labels.length > 0) {
      const l = pick(labels)
      ids.push(pick([l, l, l.toUpperCase(), `${l} `, ` ${l}`, `${l}x`]))
    } else ids.push(pick(['-', '+', '', 'a', '0', '-0', '+0']))
  }
  return ids
}

test(`seeded differential fuzz: ≥3000 ids, nginx equals route() field by field (seed ${SEED})`, {
  skip,
}, async (t) => {
  const e = await edges(t)
  const rand = prng(SEED)
  const plan: Array<[string, number]> = [
    ['appactive-baseline', 500],
    ['three-units', 500],
    ['gaps-fenced', 300],
    ['hash-mod-1000', 500],
    ['hash-full', 300],
    ['identity', 400],
    ['mod-chain', 300],
    ['mod-1e14-minus-1', 300],
    ['two-units-reject', 200],
  ]
  let total = 0
  const failures: string[] = []
  for (const [name, n] of plan) {
    const { port, router } = await e.push(name)
    const rs = ruleSets[name]!.ruleSet
    const labels = [...rs.mapping.flatMap((m) => m.labels ?? []), ...(rs.fence?.labels ?? [])]
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 8 })
    t.after(() => pool.close())
    const ids = fuzzIds(rand, n, labels)
    let next = 0
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++]!
        const path = pathFor(name, id)
        const res = await pool.request({ path, method: 'GET' })
        const body = await res.body.text()
        const want = router.route(id)
        // An empty id reads as absent from the query: the same as route(undefined).
        const diff = differences(
          { status: res.statusCode, headers: res.headers, body },
          want,
          id === '' ? undefined : id,
          router.version,
        )
        if (diff.length > 0) failures.push(`${name} ${JSON.stringify(id)}: ${diff.join('; ')}`)
        total++
      }
    }
    await Promise.all(Array.from({ length: 8 }, worker))
  }
  assert.ok(total >= 3000, `${total} ids`)
  assert.deepEqual(failures.slice(0, 20), [], `${failures.length} of ${total} ids differ`)
})

test('seeded fuzz of 1,200 raw query strings: nginx reads the same id as the TypeScript extractor', {
  skip,
}, async (t) => {
  const e = await edges(t)
  const rand = prng(SEED + 1)
  const failures: string[] = []
  for (const [name, param] of [
    ['appactive-baseline', 'r_id'],
    ['hash-mod-1000', 'tenant'],
  ] as const) {
    const { port, router } = await e.push(name)
    const ALPHA = [
      param,
      `${param}=`,
      `${param}=`,
      'r',
      '_',
      'i',
      'd',
      '=',
      '&',
      '%',
      '%5F',
      '%2B',
      '%3',
      '%E7',
      '%A7',
      '%9F',
      '%C0',
      '%B1',
      '%ED',
      '%A0',
      '%80',
      '%F4',
      '%90',
      '%C3',
      '%A9',
      '%FF',
      '2',
      '5',
      'F',
      '+',
      '1',
      '0',
      '-',
      'a',
      'C',
      'R_ID',
      '9',
      '7',
    ]
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 8 })
    t.after(() => pool.close())
    for (let i = 0; i < 600; i++) {
      const len = 1 + Math.floor(rand() * 10)
      const query = Array.from({ length: len }, () => ALPHA[Math.floor(rand() * ALPHA.length)]).join('')
      const url = `/?${query}`
      const res = await pool.request({ path: url, method: 'GET' })
      const body = await res.body.text()
      const want = router.routeRequest({ url, headers: {} })
      const d = decisionOf(res.headers)
      const got = d && { unit: d.unit, key: d.key, fenced: d.fenced, reason: d.reason }
      if (JSON.stringify(got) !== JSON.stringify({ ...want })) {
        failures.push(
          `${url}: nginx ${JSON.stringify(got)} (${res.statusCode} ${body.slice(0, 80)}), TypeScript ${JSON.stringify(want)}`,
        )
      }
    }
  }
  assert.deepEqual(failures.slice(0, 20), [], `${failures.length} of 1200 queries differ`)
})
