import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Registry } from 'prom-client'
import { type CreateAgentOptions, createAgent, type RoutingAgent } from '../../src/agent/index.js'
import type { RuleChannel } from '../../src/channels/types.js'
import { rules, silent } from '../helpers/agents.js'

function agentOf(options: CreateAgentOptions = {}): RoutingAgent {
  return createAgent({ unit: 'unit', app: 'shop', nodeId: 'n1', cache: false, logger: silent, ...options })
}

async function scrape(agent: RoutingAgent): Promise<string> {
  return agent.metrics.registry.metrics()
}

/** The value of one sample line (`name{labels} value`), or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  }
  return undefined
}

describe('agent metrics', () => {
  test('route decisions by unit and reason, applies by outcome, version, guard rejections', async () => {
    const agent = agentOf()
    agent.apply(rules(1))
    agent.apply(rules(2))
    for (const id of ['1', '2', '3', '1999']) agent.route(id) // unit owns 0~1999
    for (const id of ['2000', '9999']) agent.route(id)
    agent.route('abc') // not numeric: local fallback
    agent.route(undefined) // missing: local fallback
    agent.apply({ version: 'junk' }) // rejected
    agent.apply(rules(2)) // duplicate
    agent.apply(rules(1)) // stale
    agent.apply(rules(3, 1999, ['10~19']))
    assert.throws(() => agent.checkWrite('15')) // fenced
    assert.throws(() => agent.checkWrite('2500')) // wrong unit
    assert.throws(() => agent.checkWrite('3000'))
    agent.checkWrite('5')

    const text = await scrape(agent)
    assert.match(text, /# TYPE appactive_route_decisions_total counter/)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="unit",reason="range"}'), 4)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="center",reason="range"}'), 2)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="unit",reason="not_numeric"}'), 1)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="unit",reason="missing"}'), 1)
    assert.ok(text.includes('appactive_agent_rule_version 3\n'), text)
    assert.ok(text.includes('appactive_agent_apply_total{outcome="rejected"} 1\n'))
    assert.equal(sample(text, 'appactive_agent_apply_total{outcome="applied"}'), 3)
    assert.equal(sample(text, 'appactive_agent_apply_total{outcome="duplicate"}'), 1)
    assert.equal(sample(text, 'appactive_agent_apply_total{outcome="stale"}'), 1)
    assert.ok(text.includes('appactive_guard_rejections_total{code="APPACTIVE_FENCED"} 1\n'))
    assert.equal(sample(text, 'appactive_guard_rejections_total{code="APPACTIVE_WRONG_UNIT"}'), 2)
    assert.ok(text.includes('appactive_agent_lease_valid 1\n')) // leasing off
    assert.ok(text.includes('appactive_agent_inflight_writes 0\n'))
  })

  test('version is -1 before the first rule set; reportError counts as rejected', async () => {
    const agent = agentOf()
    agent.reportError(undefined, [{ path: '', message: 'unreadable' }], { source: 'file:x' })
    const text = await scrape(agent)
    assert.ok(text.includes('appactive_agent_rule_version -1\n'))
    assert.equal(sample(text, 'appactive_agent_apply_total{outcome="rejected"}'), 1)
  })

  test('decisions counted under one rule set survive the swap to the next, and scrapes do not double them', async () => {
    const agent = agentOf()
    agent.apply(rules(1))
    for (let i = 0; i < 5; i++) agent.route('7')
    assert.equal(
      sample(await scrape(agent), 'appactive_route_decisions_total{unit="unit",reason="range"}'),
      5,
    )
    agent.route('7')
    // v2 moves key 7 to center: the unit/range count keeps what v1 counted.
    agent.apply(rules(2, 1))
    agent.route('7')
    agent.route('8')
    let text = await scrape(agent)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="unit",reason="range"}'), 6)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="center",reason="range"}'), 2)
    text = await scrape(agent)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="unit",reason="range"}'), 6)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="center",reason="range"}'), 2)
  })

  test('a rejected route id under a reject fallback is counted as unit "none"', async () => {
    const agent = agentOf()
    agent.apply({
      ...rules(1),
      fallback: 'reject',
      mapping: [
        { unit: 'unit', ranges: ['0~999'] },
        { unit: 'center', ranges: ['2000~9999'] },
      ],
    })
    agent.route('1500')
    agent.route('x')
    const text = await scrape(agent)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="none",reason="uncovered"}'), 1)
    assert.equal(sample(text, 'appactive_route_decisions_total{unit="none",reason="not_numeric"}'), 1)
  })

  test('lease gauge follows the lease; inflight gauge follows the writes', async () => {
    let t = 0
    const channel: RuleChannel = { name: 'fake', leasing: true, start: async () => {}, close: async () => {} }
    const agent = agentOf({ clock: { now: () => t }, channels: [channel] })
    await agent.start()
    agent.apply(rules(1))
    assert.ok((await scrape(agent)).includes('appactive_agent_lease_valid 0\n')) // pending
    agent.renewLease(0, 100, 1)
    const w = agent.beginWrite('5')
    let text = await scrape(agent)
    assert.ok(text.includes('appactive_agent_lease_valid 1\n'))
    assert.ok(text.includes('appactive_agent_inflight_writes 1\n'))
    w.end()
    t = 100
    assert.throws(() => agent.checkWrite('5'))
    text = await scrape(agent)
    assert.ok(text.includes('appactive_agent_lease_valid 0\n'))
    assert.ok(text.includes('appactive_agent_inflight_writes 0\n'))
    assert.equal(sample(text, 'appactive_guard_rejections_total{code="APPACTIVE_LEASE_EXPIRED"}'), 1)
    await agent.close()
  })

  test('two agents in one process keep separate registries', async () => {
    const a = agentOf({ nodeId: 'a' })
    const b = agentOf({ nodeId: 'b', unit: 'center' })
    assert.notEqual(a.metrics.registry, b.metrics.registry)
    a.apply(rules(1))
    b.apply(rules(2))
    a.route('5')
    a.route('6')
    b.route('5')
    const ta = await scrape(a)
    const tb = await scrape(b)
    assert.ok(ta.includes('appactive_agent_rule_version 1\n'))
    assert.ok(tb.includes('appactive_agent_rule_version 2\n'))
    assert.equal(sample(ta, 'appactive_route_decisions_total{unit="unit",reason="range"}'), 2)
    assert.equal(sample(tb, 'appactive_route_decisions_total{unit="unit",reason="range"}'), 1)
  })

  test('an agent registers into a registry it is given', async () => {
    const registry = new Registry()
    const agent = agentOf({ registry })
    assert.equal(agent.metrics.registry, registry)
    agent.apply(rules(9))
    assert.ok((await registry.metrics()).includes('appactive_agent_rule_version 9\n'))
  })
})
