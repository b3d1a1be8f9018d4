/** Builders for agent and control-channel tests. */
import { once } from 'node:events'
import pino from 'pino'
import { createAgent, type RoutingAgent } from '../../src/agent/index.js'
import { createControlChannel } from '../../src/channels/control/client.js'
import type { RuleSet } from '../../src/rules/index.js'

export const TOKEN = 'test-agent-token-0123456789'
export const silent = pino({ level: 'silent' })

/** The AppActive baseline (mod 10000: unit 0~1999, center 2000~9999) at `version`, with an optional fence. */
export function rules(version: number, unitUpTo = 1999, fence: string[] = []): RuleSet {
  return {
    version,
    units: [{ name: 'center', center: true }, { name: 'unit' }],
    idSource: [{ from: 'query', name: 'r_id' }],
    transform: [{ type: 'mod', divisor: 10000 }],
    mapping: [
      { unit: 'unit', ranges: [`0~${unitUpTo}`] },
      { unit: 'center', ranges: [`${unitUpTo + 1}~9999`] },
    ],
    ...(fence.length ? { fence: { ranges: fence } } : {}),
    fallback: 'local',
  }
}

export interface ControlledAgentOptions {
  readonly url: string
  readonly nodeId: string
  readonly unit?: string
  readonly transport?: 'sse' | 'long-poll'
  readonly cache?: string | false
  readonly token?: string
}

/** An agent with one control-plane channel, not started. */
export function controlledAgent(o: ControlledAgentOptions): RoutingAgent {
  const unit = o.unit ?? 'center'
  const channel = createControlChannel({
    url: o.url,
    token: o.token ?? TOKEN,
    identity: { nodeId: o.nodeId, app: 'shop', unit },
    backoff: { minMs: 20, maxMs: 200 },
    ...(o.transport ? { transport: o.transport } : {}),
    logger: silent,
  })
  return createAgent({
    unit,
    app: 'shop',
    nodeId: o.nodeId,
    channels: [channel],
    logger: silent,
    cache: o.cache ?? false,
  })
}

/** Resolves when `agent` has applied `version` (or at once when it already has). */
export async function applied(agent: RoutingAgent, version: number, timeoutMs = 5000): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs)
  while (agent.version < version) await once(agent, 'applied', { signal })
}

/** Polls `predicate` on each turn of the event loop until it holds (bounded). */
export async function until(predicate: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}
