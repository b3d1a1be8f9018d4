// Three units (center, hz, sh) each run the Orders server; a unit-aware client sends each user's call
// to the user's unit. Run: node --import tsx examples/grpc/main.ts
import * as grpc from '@grpc/grpc-js'
import { createAgent, StaticRegistry } from 'appactive/agent'
import { runWithRoute } from 'appactive/context'
import { createUnitClient, routeClientInterceptor } from 'appactive/grpc'
import type { RuleSet } from 'appactive/rules'
import { Orders, type OrdersClient, type OrdersReply, startOrdersServer } from './server.js'

const rules: RuleSet = {
  version: 1,
  units: [{ name: 'center', center: true }, { name: 'hz' }, { name: 'sh' }],
  idSource: [{ from: 'header', name: 'x-user-id' }],
  transform: [{ type: 'mod', divisor: 10000 }],
  mapping: [
    { unit: 'center', ranges: ['0~3332'] },
    { unit: 'hz', ranges: ['3333~6665'] },
    { unit: 'sh', ranges: ['6666~9999'] },
  ],
  fallback: 'reject',
}
const agentOf = (unit: string) => {
  const agent = createAgent({ unit, app: 'shop', cache: false })
  agent.apply(rules) // in production a channel delivers the rule set: agent.start()
  return agent
}

const servers = {
  center: await startOrdersServer(agentOf('center')),
  hz: await startOrdersServer(agentOf('hz')),
  sh: await startOrdersServer(agentOf('sh')),
}
const registry = new StaticRegistry({
  orders: { center: [servers.center.target], hz: [servers.hz.target], sh: [servers.sh.target] },
})
const credentials = grpc.credentials.createInsecure()

// The caller runs in hz; its unit-aware client picks the target unit per call.
const orders = createUnitClient(Orders, {
  registry,
  service: 'orders',
  type: 'unit',
  agent: agentOf('hz'),
  credentials,
})
const get = (client: Pick<OrdersClient, 'Get'>) =>
  new Promise<OrdersReply>((resolve, reject) =>
    client.Get({}, (err, reply) => (err || !reply ? reject(err) : resolve(reply))),
  )

for (const user of ['1234', '4321', '8765']) {
  const reply = await runWithRoute({ routeId: user }, () => get(orders))
  console.log(`user ${user} → served by ${reply.unit} (handler saw user ${reply.userId})`)
}

// A plain client aimed at the wrong unit: the server refuses and names the owner.
const direct = new Orders(servers.sh.target, credentials, { interceptors: [routeClientInterceptor()] })
try {
  await runWithRoute({ routeId: '4321' }, () => get(direct))
} catch (err) {
  const e = err as grpc.ServiceError
  const [code] = e.metadata.get('x-appactive-code')
  const [owner] = e.metadata.get('x-appactive-unit')
  console.log(`user 4321 at sh → ${grpc.status[e.code]} ${code}, owner ${owner}`)
}

direct.close()
orders.close()
for (const server of Object.values(servers)) server.stop()
