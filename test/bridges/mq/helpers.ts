/** Shared by the message-layer adapter tests: the moved topology and an agent holding a rule set. */
import assert from 'node:assert/strict'
import { createAgent, type RoutingAgent } from '../../../src/agent/index.js'
import type { RuleSet } from '../../../src/rules/index.js'
import { silent } from '../../helpers/agents.js'
import { threeUnits } from '../../helpers/topology.js'

/** v`version`: 5000~5099 moved from hz to sh, no fence. */
export function moved(version: number): RuleSet {
  return {
    ...threeUnits(version),
    mapping: [
      { unit: 'center', ranges: ['0~3332'] },
      { unit: 'hz', ranges: ['3333~4999', '5100~6665'] },
      { unit: 'sh', ranges: ['5000~5099', '6666~9999'] },
    ],
  }
}

/** An agent of `unit` with `rules` applied (no channel, no cache). */
export function agentIn(unit: string, rules: RuleSet): RoutingAgent {
  const agent = createAgent({ unit, app: 'shop', channels: [], cache: false, logger: silent })
  assert.equal(agent.apply(rules).status, 'applied')
  return agent
}
