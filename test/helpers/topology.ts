/** The 3-unit topology of the bridge tests. */
import type { RuleSet } from '../../src/rules/index.js'

/** center 0~3332 (and the center), hz 3333~6665, sh 6666~9999 on `uid mod 10000`; 5000~5099 fenced when asked. */
export function threeUnits(version = 1, fenced = false): RuleSet {
  return {
    version,
    units: [{ name: 'center', center: true }, { name: 'hz' }, { name: 'sh' }],
    idSource: [{ from: 'query', name: 'uid' }],
    transform: [{ type: 'mod', divisor: 10000 }],
    mapping: [
      { unit: 'center', ranges: ['0~3332'] },
      { unit: 'hz', ranges: ['3333~6665'] },
      { unit: 'sh', ranges: ['6666~9999'] },
    ],
    ...(fenced ? { fence: { ranges: ['5000~5099'] } } : {}),
    fallback: 'reject',
  }
}
