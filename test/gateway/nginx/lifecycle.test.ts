// The nginx edge over time: hot rule updates under load without a failed request, nginx killed and
// restarted on the last acknowledged version, a whole edge restarted from its state file, and a cut-over
// through the control plane with an nginx edge next to a Node edge, both behaving the same.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { Pool } from 'undici'
import { createAgent } from '../../../src/agent/index.js'
import { createOrchestrator, type Operation } from '../../../src/control/index.js'
import { createGateway } from '../../../src/gateway/index.js'
import { compileRouter, type Router, type RuleSet } from '../../../src/rules/index.js'
import { rules as cpRules, silent, TOKEN } from '../../helpers/agents.js'
import { call, OPERATOR, SHARED_DB, start, world } from '../../helpers/control.js'
import { freePort } from '../../helpers/ports.js'
import { decisionOf, edgeConfig, needsNginx, startEdge, TestChannel, until } from './helpers.js'

const skip = needsNginx()

/** Pids of live (not zombie) processes in process group `pgid` (Linux /proc). */
function liveInGroup(pgid: number): number[] {
  const out: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8')
    } catch {
      continue
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(Number(name))
  }
  return out
}

/** mod 10000; r_id 2500 belongs to `unit` in odd versions and to `center` in even ones. */
function flipping(version: number): RuleSet {
  return cpRules(version, version % 2 === 1 ? 2999 : 1999)
}

interface LoadResult {
  total: number
  failures: string[]
}

/** Keeps `connections` requests in flight on `pool` until `signal`; checks each answer with `check`. */
async function load(
  pool: Pool,
  connections: number,
  signal: AbortSignal,
  path: (i: number) => string,
  check: (
    i: number,
    status: number,
    headers: Record<string, string | string[] | undefined>,
    body: string,
  ) => string | undefined,
  method: 'GET' | 'POST' = 'GET',
): Promise<LoadResult> {
  const result: LoadResult = { total: 0, failures: [] }
  let i = 0
  const worker = async () => {
    while (!signal.aborted) {
      const n = i++
      try {
        const res = await pool.request({ path: path(n), method, ...(method === 'POST' ? { body: 'x' } : {}) })
        const body = await res.body.text()
        const problem = check(n, res.statusCode, res.headers, body)
        if (problem !== undefined) result.failures.push(problem)
      } catch (err) {
        result.failures.push(`request ${n}: ${(err as Error).message}`)
      }
      result.total++
    }
  }
  await Promise.all(Array.from({ length: connections }, worker))
  return result
}

test('hot rule updates under load: 10 versions, zero failed requests, every answer from the owner of its version', {
  skip,
}, async (t) => {
  const { config } = await edgeConfig(t, ['unit', 'center'], { workers: 2 })
  const channel = new TestChannel()
  const edge = await startEdge(t, config, { channels: [channel] })
  const routers = new Map<number, Router>()
  const publish = (v: number) => {
    routers.set(v, compileRouter(flipping(v), { localUnit: 'center' }))
    channel.publish(flipping(v))
  }
  publish(1)
  await until(() => channel.acks.includes(1), 5000, 'v1 acked')
  const pool = new Pool(`http://127.0.0.1:${edge.port}`, { connections: 32, pipelining: 1 })
  t.after(() => pool.close())
  const stop = new AbortController()
  const ids = ['2500', '5', '9000', '2999', '-7501', 'abc']
  const running = load(
    pool,
    32,
    stop.signal,
    (i) => `/?r_id=${ids[i % ids.length]}`,
    (i, status, headers, body) => {
      const d = decisionOf(headers)
      if (status !== 200 || d === undefined) return `${i}: status ${status} ${body.slice(0, 120)}`
      const want = routers.get(d.version)?.route(ids[i % ids.length]!)
      const backend = headers['x-backend']
      if (want === undefined || want.unit !== d.unit || backend !== d.unit) {
        return `${i}: v${d.version} decided ${d.unit}, backend ${backend}, route() ${want?.unit}`
      }
      return undefined
    },
  )
  const visible: number[] = []
  for (let v = 2; v <= 11; v++) {
    await new Promise((r) => setTimeout(r, 150))
    const pushed = performance.now()
    publish(v)
    await until(() => channel.acks.includes(v), 5000, `v${v} acked`)
    visible.push(performance.now() - pushed)
    const res = await pool.request({ path: '/?r_id=2500', method: 'GET' })
    await res.body.dump()
    assert.equal(decisionOf(res.headers)?.version, v, 'the acknowledged version is the one served')
  }
  stop.abort()
  const result = await running
  assert.ok(result.total > 500, `${result.total} requests under load`)
  assert.deepEqual(
    result.failures.slice(0, 10),
    [],
    `${result.failures.length} of ${result.total} requests failed`,
  )
  assert.deepEqual(channel.acks, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
  t.diagnostic(`push to ack, ms: ${visible.map((ms) => ms.toFixed(1)).join(' ')}`)
})

test('nginx killed (SIGKILL) is restarted and serves the last acknowledged version from the state file', {
  skip,
}, async (t) => {
  const { config } = await edgeConfig(t, ['unit', 'center'])
  const channel = new TestChannel()
  const edge = await startEdge(t, config, { channels: [channel] })
  channel.publish(flipping(1))
  channel.publish(flipping(2))
  await until(() => channel.acks.includes(2), 5000, 'v2 acked')
  const pid = edge.pid!
  const restarted = once(edge.process, 'restarted')
  process.kill(pid, 'SIGKILL')
  await restarted
  assert.notEqual(edge.pid, pid)
  assert.equal((await edge.admin.state()).version, 2, 'seeded from the state file')
  const pool = new Pool(`http://127.0.0.1:${edge.port}`)
  t.after(() => pool.close())
  const res = await pool.request({ path: '/?r_id=2500', method: 'GET' })
  await res.body.dump()
  assert.equal(res.statusCode, 200)
  assert.equal(decisionOf(res.headers)?.version, 2)
  assert.equal(res.headers['x-backend'], 'center')
  // The old master's workers are gone with it (no live process of the old group is left; zombies wait for
  // whatever reaps orphans here).
  assert.deepEqual(liveInGroup(pid), [])
  // Updates keep flowing to the new nginx.
  channel.publish(flipping(3))
  await until(() => channel.acks.includes(3), 5000, 'v3 acked after the restart')
})

test('a whole edge restarted on the same run directory serves its state file before any channel delivers', {
  skip,
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'appactive-nginx-run-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const { config } = await edgeConfig(t, ['unit', 'center'])
  const channel = new TestChannel()
  const first = await startEdge(t, config, { channels: [channel], runDir: dir })
  channel.publish(flipping(5))
  await until(() => channel.acks.includes(5), 5000, 'v5 acked')
  await first.stop()
  const second = await startEdge(t, config, { channels: [], runDir: dir })
  assert.equal((await second.admin.state()).version, 5)
  const pool = new Pool(`http://127.0.0.1:${second.port}`)
  t.after(() => pool.close())
  const res = await pool.request({ path: '/?r_id=2500', method: 'GET' })
  await res.body.dump()
  assert.equal(res.headers['x-backend'], 'unit')
})

// DESIGN §4 through the real control plane: an nginx edge (unit `center`) and a Node edge (unit `unit`)
// take the same writes for a moved key while 2000~2999 moves from center to unit.
test('a cut-over through the control plane with an nginx edge behaves like one with a Node edge', {
  skip,
}, async (t) => {
  const LEASE_MS = 800
  const s = await start(t, {
    leaseMs: LEASE_MS,
    heartbeatMs: 150,
    orchestrator: createOrchestrator({ ackTimeoutMs: LEASE_MS + 1000 }),
  })
  await world(t, s, SHARED_DB)
  const hold = { enabled: true, methods: 'writes' as const, maxMs: 5000, maxQueue: 1000, retryAfterS: 1 }
  const { config: nginxConfig } = await edgeConfig(t, ['unit', 'center'], {
    rules: s.url,
    token: TOKEN,
    hold,
  })
  const nginxEdge = await startEdge(t, nginxConfig, { channels: undefined, nodeId: 'edge-nginx' })
  const { config: nodeBase, backends } = await edgeConfig(t, ['unit', 'center'], {
    unit: 'unit',
    rules: s.url,
    token: TOKEN,
    hold,
  })
  // The Node edge's agent without the on-disk cache (a cached later version would shadow v1).
  const nodeAgent = createAgent({
    unit: 'unit',
    app: 'gateway',
    nodeId: 'edge-node',
    rules: s.url,
    token: TOKEN,
    cache: false,
    logger: silent,
  })
  const nodeEdge = createGateway(
    { ...nodeBase, listen: { host: '127.0.0.1', port: await freePort() } },
    { logger: silent, agent: nodeAgent },
  )
  await nodeAgent.start()
  const { main } = await nodeEdge.listen()
  t.after(async () => {
    await nodeEdge.close()
    await nodeAgent.close()
  })
  await until(
    () =>
      s.cp.rules.nodes().filter((n) => n.nodeId.startsWith('edge-') && n.appliedVersion === 1).length === 2,
    10_000,
    'both edges on v1',
  )
  void backends

  const edges = { nginx: edge(nginxEdge.port), node: edge(main.port) }
  function edge(port: number) {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 8 })
    t.after(() => pool.close())
    return pool
  }
  const stop = new AbortController()
  t.after(() => stop.abort())
  const seen: Record<string, Set<string>> = { nginx: new Set(), node: new Set() }
  const runs = Object.entries(edges).map(([name, pool]) =>
    load(
      pool,
      8,
      stop.signal,
      (i) => `/orders?r_id=${2000 + (i % 1000)}`,
      (i, status, headers, body) => {
        if (status !== 200) return `${name} ${i}: ${status} ${body.slice(0, 120)}`
        seen[name]!.add(String(headers['x-backend']))
        return undefined
      },
      'POST',
    ),
  )

  await until(
    () => seen.nginx!.has('center') && seen.node!.has('center'),
    10_000,
    'both edges serving writes',
  )
  const created = await call(s.url, 'POST', '/v1/cutovers', OPERATOR, {
    moves: [{ ranges: ['2000~2999'], to: 'unit' }],
    reason: 'nginx edge test',
  })
  assert.equal(created.status, 201, JSON.stringify(created.json))
  const id = (created.json as Operation).id
  assert.equal((await call(s.url, 'POST', `/v1/operations/${id}/start`, OPERATOR)).status, 202)
  let op = (await call(s.url, 'GET', `/v1/operations/${id}`, OPERATOR)).json as Operation
  const deadline = performance.now() + 20_000
  while (op.state === 'running' || op.state === 'planned') {
    assert.ok(performance.now() < deadline, `operation still ${op.state} in ${op.phase}`)
    await new Promise((r) => setTimeout(r, 20))
    op = (await call(s.url, 'GET', `/v1/operations/${id}`, OPERATOR)).json as Operation
  }
  await new Promise((r) => setTimeout(r, 200))
  stop.abort()
  const [nginxLoad, nodeLoad] = await Promise.all(runs)

  assert.equal(op.state, 'succeeded', JSON.stringify(op.error))
  assert.deepEqual(
    op.phases.map((p) => [p.name, p.outcome]),
    [
      ['fence', 'ok'],
      ['drain', 'ok'],
      ['catch-up', 'ok'],
      ['switch', 'ok'],
      ['unfence', 'ok'],
    ],
  )
  for (const [name, result] of [
    ['nginx', nginxLoad!],
    ['node', nodeLoad!],
  ] as const) {
    assert.ok(result.total > 20, `${name}: ${result.total} writes`)
    assert.deepEqual(
      result.failures.slice(0, 5),
      [],
      `${name}: ${result.failures.length} of ${result.total} writes failed`,
    )
  }
  // Both edges sent the moved writes to center before and to unit after: the same behaviour.
  assert.deepEqual([...seen.nginx!].sort(), ['center', 'unit'])
  assert.deepEqual([...seen.node!].sort(), ['center', 'unit'])
  // Both acknowledged every version, and the nginx one only what nginx serves.
  const nodes = s.cp.rules.nodes().filter((n) => n.nodeId.startsWith('edge-'))
  assert.deepEqual(
    nodes.map((n) => n.appliedVersion),
    [4, 4],
  )
  assert.equal((await nginxEdge.admin.state()).version, 4)
})
