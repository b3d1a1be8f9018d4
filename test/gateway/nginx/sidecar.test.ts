// The nginx edge acknowledges a version only once nginx serves it: not through the agent's own ack, not
// through a heartbeat or a registration, not through a redelivery. No nginx is needed: the channel wrapper
// runs against the real rule server, and "nginx serves" is the sidecar's callback.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createAgent } from '../../../src/agent/index.js'
import { createControlChannel } from '../../../src/channels/control/client.js'
import { createRuleServer } from '../../../src/channels/control/server.js'
import { NginxAckChannel } from '../../../src/gateway/nginx/sidecar.js'
import { applied, rules, silent, TOKEN, until } from '../../helpers/agents.js'

test('an nginx edge is acknowledged only for what nginx serves, heartbeats included', async (t) => {
  const server = createRuleServer({ tokens: [TOKEN], leaseMs: 600, heartbeatMs: 50 })
  const addr = await server.listen(0)
  t.after(() => server.close())
  server.publish(rules(1))
  let served = -1
  const inner = createControlChannel({
    url: `http://127.0.0.1:${addr.port}`,
    token: TOKEN,
    identity: { nodeId: 'edge-1', app: 'gateway', unit: 'center' },
    backoff: { minMs: 20, maxMs: 200 },
    logger: silent,
  })
  const channel = new NginxAckChannel(
    inner,
    () => undefined,
    () => served,
  )
  const agent = createAgent({
    unit: 'center',
    app: 'gateway',
    nodeId: 'edge-1',
    channels: [channel],
    cache: false,
    logger: silent,
  })
  t.after(() => agent.close())
  await agent.start()
  await applied(agent, 1)
  const node = () => server.nodes().find((n) => n.nodeId === 'edge-1')!
  // Applied by the agent, not served by nginx: many heartbeats later, still not acknowledged.
  await new Promise((r) => setTimeout(r, 400))
  assert.equal(node().appliedVersion, -1)
  assert.equal((await server.waitForAcks(1, { timeoutMs: 100 })).ok, false)
  // nginx serves it: the sidecar acknowledges it.
  served = 1
  channel.ack(1)
  await until(() => node().appliedVersion === 1, 2000, 'the ack of v1')
  // The next version: the heartbeat reports only what nginx serves, then catches up with it.
  server.publish(rules(2, 2999))
  await applied(agent, 2)
  await new Promise((r) => setTimeout(r, 300))
  assert.equal(node().appliedVersion, 1)
  served = 2
  await until(() => node().appliedVersion === 2, 2000, 'the heartbeat carrying v2 once served')
})
