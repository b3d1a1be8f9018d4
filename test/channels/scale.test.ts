/**
 * 1,000 agents in one process against one rule server on loopback (issue 3, item 7): every published
 * version reaches every agent, every agent acknowledges it, and every agent then answers exactly what
 * the published rule set answers; agents that leave are forgotten by the server.
 *
 * Each agent is a real RoutingAgent with its own ControlChannel and the channel's default dispatcher (an
 * undici Pool of 2 connections: one held by the SSE stream, one for acks and heartbeats), as in
 * production. So this process holds about 2,000 client and 2,000 server sockets (4,027 descriptors
 * measured; `ulimit -n` must allow that) and 1,000 registrations arrive at once (the server's listen
 * backlog is 4,096). One shared undici Agent with 1,100 connections also works (2,227 descriptors, about
 * 130 MB less RSS, the same ack latency) but is not what an agent process does.
 *
 * Most of the ~20 s goes to the server's per-ack rescans of every node (NodeTable.changed: O(nodes) per
 * ack while a wait is pending, so O(nodes^2) per version) and to 1,000 agents compiling each version on
 * one event loop; see docs/benchmarks.md, bench:propagation.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { RoutingAgent } from '../../src/agent/index.js'
import { createRuleServer, type RuleServer } from '../../src/channels/control/server.js'
import { compileRouter, type RuleSet } from '../../src/rules/index.js'
import { controlledAgent, rules, TOKEN } from '../helpers/agents.js'

const AGENTS = 1000
const LEAVING = 100
const UNITS = ['center', 'unit'] as const
/** Ids on both sides of every boundary used, the fenced band, a negative id, and `abc` (the `local` fallback). */
const IDS = ['0', '1999', '2000', '2500', '2999', '3000', '4999', '5000', '9999', '12345', '-1', 'abc']

/** A cut-over and back (DESIGN §4): fence, switch, unfence, then another move. */
const VERSIONS: readonly RuleSet[] = [
  rules(1),
  rules(2, 1999, ['2000~2999']),
  rules(3, 2999, ['2000~2999']),
  rules(4, 2999),
  rules(5, 4999),
]

/** Resolves when `count` nodes hold their rule stream open (polled every 50 ms: nodes() is O(nodes)). */
async function streamsOpen(server: RuleServer, count: number): Promise<void> {
  const deadline = performance.now() + 20_000
  while (server.nodes().filter((n) => n.connected).length < count) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${count} open rule streams`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** What every agent of `unit` must answer under `ruleSet`, id by id: `unit/fenced`. */
function expected(ruleSet: RuleSet, unit: string): string[] {
  const router = compileRouter(ruleSet, { localUnit: unit })
  return IDS.map((id) => {
    const d = router.route(id)
    return `${d.unit}/${d.fenced}`
  })
}

describe('control-plane channel at scale', () => {
  test(`${AGENTS} agents stay consistent across 5 versions; ${LEAVING} leave`, async (t) => {
    const server = createRuleServer({ tokens: [TOKEN], leaseMs: 20_000 })
    const { port } = await server.listen(0)
    t.after(() => server.close())
    const url = `http://127.0.0.1:${port}`

    const agents: RoutingAgent[] = Array.from({ length: AGENTS }, (_, i) =>
      controlledAgent({ url, nodeId: `node-${String(i).padStart(4, '0')}`, unit: UNITS[i % 2] }),
    )
    const closed = new Set<RoutingAgent>()
    t.after(() => Promise.all(agents.filter((a) => !closed.has(a)).map((a) => a.close())))

    // Register all at once (start() resolves after registration), then wait until every stream is open.
    await Promise.all(agents.map((a) => a.start()))
    await streamsOpen(server, AGENTS)

    for (const ruleSet of VERSIONS) {
      const v = server.publish(ruleSet)
      const r = await server.waitForAcks(v, { timeoutMs: 30_000 })
      assert.equal(r.ok, true, `v${v}: pending ${r.pending.length}, lapsed ${r.lapsed.length}`)
      assert.equal(r.satisfied.length, AGENTS, `v${v}: every agent acknowledged`)
      assert.deepEqual(r.lapsed, [])

      const want = Object.fromEntries(UNITS.map((u) => [u, expected(ruleSet, u)]))
      const wrong: string[] = []
      for (const a of agents) {
        const got = IDS.map((id) => {
          const d = a.router!.route(id)
          return `${d.unit}/${d.fenced}`
        })
        if (a.version !== v || got.join() !== want[a.identity.unit]!.join())
          wrong.push(`${a.identity.nodeId}: v${a.version} ${got.join()}`)
      }
      assert.deepEqual(wrong, [], `v${v}: agents that disagree with the published rule set`)
      assert.ok(
        server.nodes().every((n) => n.appliedVersion === v && !n.lapsed),
        `v${v}: the server sees every node on it`,
      )
    }

    // 100 agents leave gracefully (DELETE /session): the server forgets them; the rest stay in sync.
    const leaving = agents.slice(0, LEAVING)
    await Promise.all(leaving.map((a) => a.close()))
    for (const a of leaving) closed.add(a)
    const gone = new Set(leaving.map((a) => a.identity.nodeId))
    const nodes = server.nodes()
    assert.equal(nodes.length, AGENTS - LEAVING)
    assert.ok(nodes.every((n) => !gone.has(n.nodeId)))

    const v = server.publish(rules(6))
    const r = await server.waitForAcks(v, { timeoutMs: 30_000 })
    assert.equal(r.ok, true)
    assert.equal(r.satisfied.length, AGENTS - LEAVING)
    assert.ok(leaving.every((a) => a.version === 5))
    assert.ok(agents.slice(LEAVING).every((a) => a.version === 6))
  })
})
