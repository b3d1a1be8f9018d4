/**
 * The control plane of the demo, through `appactive/control`: an SQLite store in the demo's data
 * directory, the REST API and the agent channel on 127.0.0.1:7070, the cut-over orchestrator. The
 * same-city shared database needs no replication probe (the topology declares `none`). Tokens come
 * from the supervisor, generated for each run.
 */
import { createControlPlane, createOrchestrator, openStore } from 'appactive/control'
import pino from 'pino'
import { dbFiles } from '../lib/db.js'
import { onStop } from '../lib/lifecycle.js'
import { CONTROL_PORT, dataDir, HOST } from '../lib/topology.js'

const need = (name: string): string => {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}
const logger = pino(
  { name: 'appactive-control', level: process.env.APPACTIVE_LOG_LEVEL ?? 'info' },
  pino.destination(2),
)
const store = await openStore(`sqlite:${dbFiles(dataDir()).control}`)
const cp = await createControlPlane({
  store,
  tokens: {
    tokens: [
      { name: 'demo-admin', role: 'admin', token: need('DEMO_ADMIN_TOKEN') },
      { name: 'demo-operator', role: 'operator', token: need('DEMO_OPERATOR_TOKEN') },
      { name: 'demo-viewer', role: 'viewer', token: need('DEMO_VIEWER_TOKEN') },
    ],
    agentTokens: [need('APPACTIVE_TOKEN')],
  },
  listen: { host: HOST, port: CONTROL_PORT },
  logger,
  leaseMs: Number(process.env.DEMO_LEASE_MS ?? 3000),
  orchestrator: createOrchestrator(),
})
onStop(async () => {
  await cp.close()
  await store.close()
})
const { url } = await cp.listen()
console.log(`control plane on ${url} (store ${store.location})`)
