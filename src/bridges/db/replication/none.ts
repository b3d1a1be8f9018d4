import { caughtUp, checkPosition, checkTimeout } from './sql.js'
import type { CatchUp, ReplicationPosition, ReplicationProbe } from './types.js'

const KIND = 'none'

/**
 * The probe for units that share one database (or one synchronously replicated cluster): there is
 * nothing to catch up, so every wait returns at once and the lag is 0.
 */
export function noneProbe(options: { readonly source: string; readonly target: string }): ReplicationProbe {
  const { source, target } = options
  return {
    kind: KIND,
    source,
    target,
    position: async () => ({ kind: KIND, value: '', unit: source, takenAt: Date.now() }),
    waitApplied: async (position: ReplicationPosition, timeoutMs: number): Promise<CatchUp> => {
      checkPosition(position, KIND, source)
      checkTimeout(timeoutMs)
      return caughtUp(position, target, 0)
    },
    lag: async () => 0,
    close: async () => {},
  }
}
