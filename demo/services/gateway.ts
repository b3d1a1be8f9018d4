/**
 * The gateway of one unit (APPACTIVE_UNIT): the shop's public entry. It takes its rule sets from the
 * control plane, sends each user to the unit that owns them, and hands requests owned by the other unit
 * to that unit's gateway (forwarding: gateway), so units reach each other only through their gateways.
 * Writes for users being moved by a cut-over are held, not failed.
 */
import { createGateway, resolveGatewayConfig } from 'appactive/gateway'
import { onStop } from '../lib/lifecycle.js'
import {
  GATEWAY_PORTS,
  gatewayAdminPort,
  gatewayUrl,
  serviceUrl,
  UNITS,
  type UnitName,
} from '../lib/topology.js'

const unit = process.env.APPACTIVE_UNIT as UnitName
if (!UNITS.includes(unit)) throw new Error(`APPACTIVE_UNIT must be one of ${UNITS.join(', ')}`)

const config = resolveGatewayConfig(
  {
    unit,
    listen: `127.0.0.1:${GATEWAY_PORTS[unit]}`,
    admin: `127.0.0.1:${gatewayAdminPort(unit)}`,
    rules: process.env.APPACTIVE_CONTROL_URL,
    apps: [{ name: 'shop', upstreams: { [unit]: [serviceUrl('frontend', unit)] } }],
    forwarding: 'gateway',
    peerToken: process.env.DEMO_PEER_TOKEN,
    units: Object.fromEntries(UNITS.map((u) => [u, { gateway: gatewayUrl(u) }])),
    hold: { enabled: true, methods: 'writes', maxWait: '3s', maxQueue: 1000, retryAfter: 1 },
    accessLog: process.env.DEMO_ACCESS_LOG === '1',
  },
  { env: process.env },
)
const gateway = createGateway(config, { nodeId: `gateway-${unit}` })
onStop(() => gateway.close())
await gateway.listen()
