/**
 * Agent settings from options or APPACTIVE_* environment variables (DESIGN §6). This is the only file of
 * the agent that reads the environment. Identity and safety settings fail hard; tuning knobs fall back.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Logger } from 'pino'
import { InvalidArgumentError } from '../errors/index.js'
import type { Clock } from './lease.js'

/** Options of `createAgent`. Every field may also come from the environment (shown in brackets). */
export interface AgentOptions {
  /** The unit this process stands in [APPACTIVE_UNIT]. Required. */
  readonly unit?: string
  /** The application name [APPACTIVE_APP]; default `default`. */
  readonly app?: string
  /** A stable id for this process [APPACTIVE_NODE_ID]; default `<host>-<pid>-<random>`. */
  readonly nodeId?: string
  /** Where this process serves, for the registry [APPACTIVE_ADDRESS]. */
  readonly address?: string
  /** Logger (pino); default: pino at APPACTIVE_LOG_LEVEL (info) on stderr. */
  readonly logger?: Logger
  /** Clock for leases; default `performance.now()`. */
  readonly clock?: Clock
}

/** Settings after defaults and environment. */
export interface ResolvedAgentOptions {
  readonly unit: string
  readonly app: string
  readonly nodeId: string
  readonly address: string | undefined
  readonly pid: number
}

const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$/

function pick(option: string | undefined, env: string | undefined): string | undefined {
  const v = option ?? env
  return v === undefined || v === '' ? undefined : v
}

/**
 * Resolves agent identity from options, then `env`.
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) when the unit is missing or a name is malformed.
 */
export function resolveAgentOptions(
  options: AgentOptions,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedAgentOptions {
  const unit = pick(options.unit, env.APPACTIVE_UNIT)
  if (unit === undefined) {
    throw new InvalidArgumentError('the agent needs its unit: pass { unit } or set APPACTIVE_UNIT')
  }
  if (!NAME.test(unit))
    throw new InvalidArgumentError(`unit ${JSON.stringify(unit)} is not a valid unit name`)
  const app = pick(options.app, env.APPACTIVE_APP) ?? 'default'
  if (!NAME.test(app)) throw new InvalidArgumentError(`app ${JSON.stringify(app)} is not a valid app name`)
  const nodeId =
    pick(options.nodeId, env.APPACTIVE_NODE_ID) ??
    `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
  if (!NODE_ID.test(nodeId)) {
    throw new InvalidArgumentError(`nodeId ${JSON.stringify(nodeId)} must be 1-128 letters, digits or _.:@-`)
  }
  return Object.freeze({
    unit,
    app,
    nodeId,
    address: pick(options.address, env.APPACTIVE_ADDRESS),
    pid: process.pid,
  })
}

/** Parses a duration: a number of ms, or `500ms`, `5s`, `2m`. Returns undefined for anything else. */
export function parseDuration(value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim())
  if (!m) return undefined
  const n = Number(m[1])
  const factor = m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1
  const ms = n * factor
  return Number.isFinite(ms) ? ms : undefined
}
