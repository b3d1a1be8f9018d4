/**
 * The control plane of the demo, through `appactive/control`: an SQLite store in the demo's data
 * directory, the REST API and the agent channel on 127.0.0.1:7070, the cut-over orchestrator. Its
 * catch-up step runs the replication probes the topology declares (demo/rules/): `none` for the
 * same-city shared SQLite database, the MariaDB GTID probe of `appactive/replication` with `--db
 * mariadb`, whose connections the topology names as `env:VARIABLE` (set by the supervisor). Tokens
 * come from the supervisor, generated for each run.
 */
import {
  createControlPlane,
  createOrchestrator,
  openStore,
  type ReplicationProbeConfig,
} from 'appactive/control'
import { createReplicationProbe } from 'appactive/replication'
import pino from 'pino'
import { dbFiles } from '../lib/db.js'
import { onStop } from '../lib/lifecycle.js'
import { CONTROL_PORT, dataDir, HOST } from '../lib/topology.js'

const need = (name: string): string => {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}

/** An option of a probe declaration, `env:NAME` read from the environment. */
function option(config: ReplicationProbeConfig, key: string): string {
  const raw = config.options?.[key]
  if (raw === undefined) throw new Error(`probe ${config.source} -> ${config.target} needs option ${key}`)
  const value = String(raw)
  return value.startsWith('env:') ? need(value.slice(4)) : value
}

/** The probe a topology declares (the demo's topologies declare `none` or `mariadb`). */
function probe(config: ReplicationProbeConfig) {
  if (config.kind === 'none')
    return createReplicationProbe({ kind: 'none', source: config.source, target: config.target })
  if (config.kind !== 'mariadb') throw new Error(`the demo has no ${config.kind} probe`)
  return createReplicationProbe({
    kind: 'mariadb',
    source: { unit: config.source, connection: option(config, 'source') },
    target: { unit: config.target, connection: option(config, 'target') },
  })
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
  orchestrator: createOrchestrator({ probes: probe }),
})
onStop(async () => {
  await cp.close()
  await store.close()
})
const { url } = await cp.listen()
console.log(`control plane on ${url} (store ${store.location})`)
