/**
 * Where everything of the demo runs: two units, fixed loopback ports, the state file that lets
 * `demo:cutover` and `demo:load` talk to a running demo. Every process of the demo reads this module,
 * so the addresses below are the whole contract (docs/quick-start.md lists them).
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

export const UNITS = ['center', 'unit'] as const
export type UnitName = (typeof UNITS)[number]
export type AppName = 'frontend' | 'product' | 'storage' | 'orders'

/** The repository root (demo/lib/ is two levels down). */
export const ROOT = new URL('../../', import.meta.url).pathname

export const HOST = '127.0.0.1'
export const CONTROL_PORT = 7070
/** The public entry of each unit: its gateway. */
export const GATEWAY_PORTS: Readonly<Record<UnitName, number>> = { center: 8080, unit: 8081 }
/** Each unit's services listen on its base port plus the app's offset; the gateway's admin on the base. */
const BASE_PORTS: Readonly<Record<UnitName, number>> = { center: 9100, unit: 9200 }
const OFFSETS: Readonly<Record<AppName, number>> = { frontend: 1, product: 2, storage: 3, orders: 4 }

/** The apps of each unit. storage holds center data (stock), so it runs in the center only. */
export const APPS: Readonly<Record<UnitName, readonly AppName[]>> = {
  center: ['storage', 'orders', 'product', 'frontend'],
  unit: ['orders', 'product', 'frontend'],
}

export const servicePort = (app: AppName, unit: UnitName): number => BASE_PORTS[unit] + OFFSETS[app]
export const gatewayAdminPort = (unit: UnitName): number => BASE_PORTS[unit]
export const serviceUrl = (app: AppName, unit: UnitName): string => `http://${HOST}:${servicePort(app, unit)}`
export const gatewayUrl = (unit: UnitName): string => `http://${HOST}:${GATEWAY_PORTS[unit]}`
export const controlUrl = (): string => `http://${HOST}:${CONTROL_PORT}`

/** Instance URLs of one app in every unit that runs it (a StaticRegistry entry). */
export function instancesOf(app: AppName): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const unit of UNITS) if (APPS[unit].includes(app)) out[unit] = [serviceUrl(app, unit)]
  return out
}

/** Every port the demo listens on, with what listens there (checked before anything starts). */
export function allPorts(): { port: number; what: string }[] {
  const out = [{ port: CONTROL_PORT, what: 'the control plane' }]
  for (const unit of UNITS) {
    out.push({ port: GATEWAY_PORTS[unit], what: `the ${unit} gateway` })
    out.push({ port: gatewayAdminPort(unit), what: `the ${unit} gateway's admin endpoint` })
    for (const app of APPS[unit]) out.push({ port: servicePort(app, unit), what: `${app} in unit ${unit}` })
  }
  return out
}

/** Where the demo keeps its databases and state file: APPACTIVE_DEMO_DIR, else .appactive/demo. */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.APPACTIVE_DEMO_DIR || join(ROOT, '.appactive', 'demo')
}

/** What the supervisor writes for the other demo scripts (tokens are generated per run). */
export interface DemoState {
  readonly pid: number
  readonly startedAt: string
  readonly controlUrl: string
  readonly tokens: { readonly admin: string; readonly operator: string; readonly viewer: string }
  readonly gateways: Readonly<Record<UnitName, string>>
  readonly storageUrl: string
  readonly dataDir: string
  readonly db: 'sqlite' | 'mariadb'
  /** With `--db mariadb`: the servers' temp dir and each unit's server (`mysql://root@127.0.0.1:PORT/shop`). */
  readonly mariadb?: { readonly dir: string; readonly urls: Readonly<Record<UnitName, string>> }
  /** The channel of `order.placed` and, for a broker, the run's exchange or stream. */
  readonly mq: { readonly kind: 'memory' | 'rabbitmq' | 'nats'; readonly name: string }
  readonly files: { readonly orders: string; readonly storage: string; readonly control: string }
}

export const stateFile = (dir: string): string => join(dir, 'demo.json')

/**
 * The running demo's state, or an error a person can act on.
 * @throws Error when no demo is running.
 */
export function readState(env: NodeJS.ProcessEnv = process.env): DemoState {
  const file = stateFile(dataDir(env))
  if (!existsSync(file))
    throw new Error(`no running demo found (${file} is missing): start it with npm start`)
  const state = JSON.parse(readFileSync(file, 'utf8')) as DemoState
  try {
    process.kill(state.pid, 0)
  } catch {
    throw new Error(`the demo that wrote ${file} (pid ${state.pid}) is not running: start it with npm start`)
  }
  return state
}
