import assert from 'node:assert/strict'
import { describe, type TestContext, test } from 'node:test'
import pino from 'pino'
import { Agent, type Dispatcher, request } from 'undici'
import { ControlPlaneRegistry, createAgent, type RoutingAgent } from '../../src/agent/index.js'
import { createControlChannel } from '../../src/channels/control/client.js'
import type { RegistryResponse } from '../../src/channels/control/protocol.js'
import { createRuleServer } from '../../src/channels/control/server.js'
import { InvalidArgumentError } from '../../src/errors/index.js'
import { silent, TOKEN, until } from '../helpers/agents.js'

async function ruleServer(t: TestContext, leaseMs = 2000, port = 0) {
  const s = createRuleServer({ tokens: [TOKEN], leaseMs })
  const addr = await s.listen(port)
  t.after(() => s.close())
  return { s, url: `http://127.0.0.1:${addr.port}`, port: addr.port }
}

/** A started agent that registered with `address` under app `app`. */
async function agentAt(
  t: TestContext,
  url: string,
  nodeId: string,
  unit: string,
  address: string | undefined,
  app = 'product',
): Promise<RoutingAgent> {
  const channel = createControlChannel({
    url,
    token: TOKEN,
    identity: { nodeId, app, unit, address },
    backoff: { minMs: 20, maxMs: 200 },
    logger: silent,
  })
  const agent = createAgent({ unit, app, nodeId, channels: [channel], logger: silent, cache: false })
  t.after(() => agent.close())
  await agent.start()
  return agent
}

async function getRegistry(url: string, app: string | undefined, token?: string) {
  const res = await request(`${url}/v1/agent/registry${app === undefined ? '' : `?app=${app}`}`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  })
  const text = await res.body.text()
  return { status: res.statusCode, json: text ? JSON.parse(text) : undefined }
}

/** Registers a node by hand (no heartbeats follow, so its lease runs out); returns its session. */
async function registerRaw(url: string, nodeId: string, unit: string, address: string): Promise<string> {
  const res = await request(`${url}/v1/agent/register`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ nodeId, app: 'product', unit, address, version: -1 }),
  })
  return ((await res.body.json()) as { session: string }).session
}

/** A logger whose lines the test can read. */
function recordingLogger() {
  const lines: { level: number; msg: string }[] = []
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) })
  return { logger, lines }
}

describe('control-plane registry endpoint', () => {
  test('lists the nodes of one app to the shared token or a session, and no one else', async (t) => {
    const { url } = await ruleServer(t)
    await agentAt(t, url, 'p-hz-1', 'hz', 'http://10.0.0.1:8080')
    await agentAt(t, url, 'o-hz-1', 'hz', 'http://10.0.0.9:8080', 'order')
    const session = await registerRaw(url, 'p-sh-1', 'sh', '10.0.0.2:8080')

    const byToken = await getRegistry(url, 'product', TOKEN)
    assert.equal(byToken.status, 200)
    const nodes = (byToken.json as RegistryResponse).nodes
    assert.deepEqual(
      [...nodes].sort((a, b) => a.nodeId.localeCompare(b.nodeId)),
      [
        {
          nodeId: 'p-hz-1',
          app: 'product',
          unit: 'hz',
          address: 'http://10.0.0.1:8080',
          version: -1,
          healthy: true,
        },
        {
          nodeId: 'p-sh-1',
          app: 'product',
          unit: 'sh',
          address: '10.0.0.2:8080',
          version: -1,
          healthy: true,
        },
      ],
    )
    assert.equal((await getRegistry(url, 'product', session)).status, 200)
    assert.equal((await getRegistry(url, 'product')).status, 401)
    assert.equal((await getRegistry(url, 'product', 'wrong-token-0123456789')).status, 401)
    assert.equal((await getRegistry(url, undefined, TOKEN)).status, 400)
    assert.equal((await getRegistry(url, '%20bad', TOKEN)).status, 400)
    assert.deepEqual((await getRegistry(url, 'nobody', TOKEN)).json, { nodes: [] })
  })

  test('a node that stops heartbeating turns unhealthy; one that leaves is no longer listed', async (t) => {
    const { url } = await ruleServer(t, 300)
    await agentAt(t, url, 'p-hz-1', 'hz', 'http://10.0.0.1:8080')
    const session = await registerRaw(url, 'p-hz-2', 'hz', 'http://10.0.0.2:8080')
    const health = async () => {
      const { nodes } = (await getRegistry(url, 'product', TOKEN)).json as RegistryResponse
      return Object.fromEntries(nodes.map((n) => [n.nodeId, n.healthy]))
    }
    assert.deepEqual(await health(), { 'p-hz-1': true, 'p-hz-2': true })
    // The hand-registered node never heartbeats: its lease (300 ms) lapses; the agent keeps renewing.
    let last = await health()
    const deadline = performance.now() + 5000
    while (last['p-hz-2'] !== false && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10))
      last = await health()
    }
    assert.deepEqual(last, { 'p-hz-1': true, 'p-hz-2': false })
    const res = await request(`${url}/v1/agent/session`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${session}` },
    })
    assert.equal(res.statusCode, 204)
    await res.body.dump()
    assert.deepEqual(await health(), { 'p-hz-1': true })
  })
})

describe('ControlPlaneRegistry', () => {
  test('after ready() it serves every registered node with an address, by unit, synchronously', async (t) => {
    const { url } = await ruleServer(t)
    await agentAt(t, url, 'p-center-1', 'center', 'http://127.0.0.1:9001')
    await agentAt(t, url, 'p-hz-1', 'hz', 'http://127.0.0.1:9002/api')
    await agentAt(t, url, 'p-hz-2', 'hz', undefined) // registered no address: cannot be called
    const registry = new ControlPlaneRegistry({ url, token: TOKEN, services: ['product'], refreshMs: 50 })
    t.after(() => registry.close())
    assert.deepEqual(registry.instances('product'), [])
    await registry.ready()
    const got = [...registry.instances('product')].sort((a, b) => a.url.localeCompare(b.url))
    assert.deepEqual(got, [
      { url: 'http://127.0.0.1:9001', unit: 'center', nodeId: 'p-center-1', healthy: true },
      { url: 'http://127.0.0.1:9002/api', unit: 'hz', nodeId: 'p-hz-1', healthy: true },
    ])
  })

  test('follows the fleet: a new node appears, a silent one turns unhealthy, a leaving one goes', async (t) => {
    const { url } = await ruleServer(t, 300)
    const registry = new ControlPlaneRegistry({ url, token: TOKEN, refreshMs: 20 })
    t.after(() => registry.close())
    assert.deepEqual(registry.instances('product'), [], 'a first call for a new name answers empty')
    await registry.ready()
    const leaving = await agentAt(t, url, 'p-sh-1', 'sh', 'http://127.0.0.1:9003')
    await registerRaw(url, 'p-hz-1', 'hz', 'http://127.0.0.1:9004')
    const state = () => Object.fromEntries(registry.instances('product').map((i) => [i.nodeId, i.healthy]))
    await until(() => state()['p-sh-1'] === true && state()['p-hz-1'] === true, 5000, 'both nodes')
    await until(() => state()['p-hz-1'] === false, 5000, 'the silent node to turn unhealthy')
    assert.equal(state()['p-sh-1'], true)
    await leaving.close()
    await until(() => !('p-sh-1' in state()), 5000, 'the leaving node to go')
    assert.deepEqual(state(), { 'p-hz-1': false })
  })

  test('a control plane that goes down: the last snapshot stays, one warning, backoff, then recovery', async (t) => {
    const first = await ruleServer(t, 2000)
    await agentAt(t, first.url, 'p-hz-1', 'hz', 'http://127.0.0.1:9005')
    const attempts: number[] = []
    const counting: Dispatcher = new Agent().compose((dispatch) => (opts, handler) => {
      attempts.push(performance.now())
      return dispatch(opts, handler)
    })
    const { logger, lines } = recordingLogger()
    const registry = new ControlPlaneRegistry({
      url: first.url,
      token: TOKEN,
      services: ['product'],
      refreshMs: 20,
      maxBackoffMs: 10_000,
      dispatcher: counting,
      logger,
    })
    t.after(() => registry.close())
    await registry.ready()
    const snapshot = registry.instances('product')
    assert.equal(snapshot.length, 1)

    await first.s.close()
    const down = attempts.length
    await until(() => attempts.length >= down + 5, 10_000, 'five attempts while down')
    assert.equal(registry.instances('product'), snapshot, 'the last snapshot is kept')
    // The wait doubles after each failure (20 ms refresh: 40, 80, 160, 320 ms...).
    const gaps = attempts.slice(down).map((at, i, a) => (i === 0 ? 0 : at - a[i - 1]!))
    for (let i = 2; i < gaps.length; i++) assert.ok(gaps[i]! >= gaps[i - 1]! * 1.5, `gaps ${gaps.join(', ')}`)
    const warnings = lines.filter((l) => l.level === 40)
    assert.equal(warnings.length, 1, 'the outage is logged once')
    assert.match(warnings[0]!.msg, /unreachable; keeping the last snapshot/)

    // Back on the same port, with a different fleet.
    const second = await ruleServer(t, 2000, first.port)
    await registerRaw(second.url, 'p-sh-9', 'sh', 'http://127.0.0.1:9006')
    // (The agent re-registers with the new server too; the hand-registered node proves a fresh fetch.)
    await until(
      () => registry.instances('product').some((i) => i.nodeId === 'p-sh-9'),
      10_000,
      'the new snapshot',
    )
    assert.ok(lines.some((l) => l.level === 30 && /reachable again/.test(l.msg)))
    await counting.close()
  })

  test('refuses a bad URL, an empty token and a bad service name', () => {
    assert.throws(() => new ControlPlaneRegistry({ url: 'nope', token: TOKEN }), InvalidArgumentError)
    assert.throws(() => new ControlPlaneRegistry({ url: 'ftp://x', token: TOKEN }), /http or https/)
    assert.throws(() => new ControlPlaneRegistry({ url: 'http://x', token: '' }), /needs a token/)
    assert.throws(
      () => new ControlPlaneRegistry({ url: 'http://x', token: TOKEN, services: ['no such'] }),
      /not a valid app name/,
    )
  })
})
