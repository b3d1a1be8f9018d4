/**
 * Running the gateway on several cores: node:cluster workers share the listening port, each with its own
 * agent and upstream pools. The primary restarts a worker that dies, serves the admin endpoints (metrics
 * aggregated across workers, readiness of all of them) and shuts everything down on SIGTERM / SIGINT.
 */
import cluster, { type Worker } from 'node:cluster'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { AggregatorRegistry, register } from 'prom-client'
import { createGateway, type Gateway } from './server.js'
import type { GatewayConfig, HeapConfig } from './types.js'

interface ReadyMessage {
  readonly type: 'appactive:gateway'
  readonly ready: boolean
  readonly port?: number
}

function isReady(m: unknown): m is ReadyMessage {
  return typeof m === 'object' && m !== null && (m as ReadyMessage).type === 'appactive:gateway'
}

/** How a running gateway (one process or a cluster) is stopped. */
export interface RunningGateway {
  /** The main listener's port (known once a worker listens). */
  readonly port: number
  stop(): Promise<void>
}

/**
 * Runs the gateway: in this process when `config.workers` is 1 (and no heap limit is set) or this is
 * already a cluster worker, otherwise as a cluster primary with `config.workers` workers. Resolves once
 * serving.
 */
export async function runGateway(config: GatewayConfig, logger: Logger): Promise<RunningGateway> {
  if (cluster.isWorker) return runWorker(config, logger)
  // V8 reads its heap limits only when a process starts: with any set, even one worker is forked.
  if (config.workers <= 1 && heapFlags(config.heap).length === 0) return runSingle(config, logger)
  return runPrimary(config, logger)
}

/** The node flags for `heap`, in the order given; none when V8's defaults apply. */
export function heapFlags(heap: HeapConfig | undefined): string[] {
  const flags: string[] = []
  if (heap?.maxSemiSpaceMb !== undefined) flags.push(`--max-semi-space-size=${heap.maxSemiSpaceMb}`)
  if (heap?.maxOldSpaceMb !== undefined) flags.push(`--max-old-space-size=${heap.maxOldSpaceMb}`)
  return flags
}

/** The primary's own node flags, without heap limits that `heap` replaces. */
function workerExecArgv(heap: HeapConfig | undefined): string[] {
  const flags = heapFlags(heap)
  const replaced = flags.map((f) => f.slice(0, f.indexOf('=')))
  const own = process.execArgv.filter(
    (arg) => !replaced.some((name) => arg === name || arg.startsWith(`${name}=`)),
  )
  return [...own, ...flags]
}

async function runSingle(config: GatewayConfig, logger: Logger): Promise<RunningGateway> {
  const gw = createGateway(config, { logger })
  const { main } = await gw.listen()
  return { port: main.port, stop: () => gw.close() }
}

async function runWorker(config: GatewayConfig, logger: Logger): Promise<RunningGateway> {
  // The primary serves admin endpoints; workers register on prom-client's global registry for aggregation.
  // prom-client installs the worker's answer to the primary's metrics request only in this constructor.
  new AggregatorRegistry()
  const gw: Gateway = createGateway(
    { ...config, admin: undefined },
    {
      logger: logger.child({ worker: cluster.worker?.id }),
      registry: register,
      nodeId: `gateway-${config.unit}-${process.pid}`,
    },
  )
  const { main } = await gw.listen()
  const report = () =>
    process.send?.({
      type: 'appactive:gateway',
      ready: gw.ready().ready,
      port: main.port,
    } satisfies ReadyMessage)
  report()
  const timer = setInterval(report, 1000)
  timer.unref()
  process.on('message', (m) => {
    if (m === 'appactive:shutdown') void gw.close().then(() => process.exit(0))
  })
  return {
    port: main.port,
    stop: async () => {
      clearInterval(timer)
      await gw.close()
    },
  }
}

async function runPrimary(config: GatewayConfig, logger: Logger): Promise<RunningGateway> {
  const ready = new Map<number, boolean>()
  let port = 0
  let stopping = false
  const restarts: number[] = []
  cluster.setupPrimary({ execArgv: workerExecArgv(config.heap) })
  const fork = (): Worker => {
    const worker = cluster.fork()
    worker.on('message', (m: unknown) => {
      if (!isReady(m)) return
      ready.set(worker.id, m.ready)
      if (m.port !== undefined) port = m.port
    })
    return worker
  }
  cluster.on('exit', (worker, code, signal) => {
    ready.delete(worker.id)
    if (stopping) return
    const now = Date.now()
    restarts.push(now)
    while (restarts.length > 0 && restarts[0]! < now - 60_000) restarts.shift()
    if (restarts.length > config.workers * 5) {
      logger.fatal({ code, signal }, 'workers keep dying; giving up')
      process.exitCode = 1
      return
    }
    logger.error({ worker: worker.id, code, signal }, 'gateway worker died; starting another')
    setTimeout(fork, 200 * restarts.length).unref()
  })
  for (let i = 0; i < config.workers; i++) fork()

  // Wait until the first worker listens (or all fail to start).
  await new Promise<void>((resolve, reject) => {
    const check = setInterval(() => {
      if (port !== 0) {
        clearInterval(check)
        resolve()
      } else if (Object.keys(cluster.workers ?? {}).length === 0) {
        clearInterval(check)
        reject(new Error('no gateway worker could start; see the log above'))
      }
    }, 20)
  })

  let admin: Server | undefined
  if (config.admin !== undefined) {
    const aggregator = new AggregatorRegistry()
    admin = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      if (path === '/healthz')
        return res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
      if (path === '/readyz') {
        const all = ready.size === config.workers && [...ready.values()].every(Boolean)
        const body = JSON.stringify({ ready: all, workers: Object.fromEntries(ready) })
        return res.writeHead(all ? 200 : 503, { 'content-type': 'application/json' }).end(body)
      }
      if (path === '/metrics') {
        aggregator
          .clusterMetrics()
          .then((text) => res.writeHead(200, { 'content-type': aggregator.contentType }).end(text))
          .catch((err: unknown) => {
            logger.error({ err: (err as Error).message }, 'cluster metrics failed')
            res.writeHead(500).end()
          })
        return
      }
      res.writeHead(404).end()
    })
    await new Promise<void>((resolve) => admin!.listen(config.admin!.port, config.admin!.host, resolve))
    logger.info({ admin: admin.address() as AddressInfo }, 'admin listening')
  }
  logger.info(
    { port, workers: config.workers, unit: config.unit, heap: heapFlags(config.heap) },
    'gateway cluster serving',
  )

  return {
    port,
    stop: async () => {
      stopping = true
      admin?.close()
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              const kill = setTimeout(() => w.kill('SIGKILL'), 5000)
              w.once('exit', () => {
                clearTimeout(kill)
                resolve()
              })
              w.send('appactive:shutdown')
            }),
        ),
      )
    },
  }
}
