/**
 * `npm run demo:cutover`: moves users 2000~2999 to unit `unit` through the running demo's control plane
 * (fence, drain, catch-up, switch, unfence: DESIGN §4), printing each phase as it ends, then shows who
 * serves r_id 2000 now, through both gateways.
 *
 *   npm run demo:cutover [-- --move 2000~2999] [--to unit]
 *   npm run demo:cutover -- --to center          moves them back
 */
import { request } from 'undici'
import { fail as failWith, parseFlags } from './lib/args.js'
import { describePhase, latestRules, operationMs, runCutover } from './lib/cutover-run.js'
import { bold, dim, green, red } from './lib/logs.js'
import { readState, UNITS } from './lib/topology.js'

const USAGE = `usage: npm run demo:cutover [-- --move RANGES] [--to UNIT]

  --move RANGES   key ranges to move, comma-separated (default 2000~2999)
  --to UNIT       the unit that gets them: ${UNITS.join(' or ')} (default unit)
  -h, --help      this text`

const script = { name: 'demo:cutover', usage: USAGE }
function fail(message: string, code = 2): never {
  return failWith(script, message, code)
}
const values = parseFlags(script, { move: '2000~2999', to: 'unit' })
if (!(UNITS as readonly string[]).includes(values.to)) fail(`--to must be ${UNITS.join(' or ')}`)
const ranges = values.move.split(',').map((r) => r.trim())
if (!ranges.every((r) => /^\d+~\d+$/.test(r))) fail(`--move takes ranges such as 2000~2999`)

let state: ReturnType<typeof readState>
try {
  state = readState()
} catch (err) {
  fail((err as Error).message, 1)
}

const { router, record } = await latestRules(state)
const first = ranges[0]!.split('~')[0]!
const owner = router.route(first).unit
if (
  ranges.every(
    (r) =>
      router.route(r.split('~')[0]!).unit === values.to && router.route(r.split('~')[1]!).unit === values.to,
  )
) {
  console.log(
    `${ranges.join(', ')} already belong${ranges.length === 1 ? 's' : ''} to unit ${values.to} (rule set v${record.version}).`,
  )
  console.log(
    `Move them back with: npm run demo:cutover -- --move ${ranges.join(',')} --to ${owner === 'center' ? 'unit' : 'center'}`,
  )
  process.exit(0)
}

console.log(
  bold(`cut-over: ${ranges.join(', ')} from ${owner} to ${values.to} (rule set v${record.version} in force)`),
)
let op: Awaited<ReturnType<typeof runCutover>>
try {
  op = await runCutover(
    state,
    { ranges, to: values.to },
    `demo:cutover ${ranges.join(',')} -> ${values.to}`,
    {
      planned(p) {
        for (const line of p.plan.transcript) console.log(dim(`  ${line}`))
        console.log(`operation ${p.id} planned; starting`)
      },
      note: (message) => console.log(dim(`    · ${message}`)),
      phase: (p) =>
        console.log(
          `  ${p.outcome === 'ok' || p.outcome === 'skipped' ? green('✓') : red('✗')} ${describePhase(p)}`,
        ),
    },
  )
} catch (err) {
  fail((err as Error).message, 1)
}

if (op.state !== 'succeeded') {
  fail(`the cut-over ${op.state}${op.error ? `: ${op.error.code}: ${op.error.message}` : ''}`, 1)
}
console.log(
  green(bold(`cut-over ${op.id} succeeded in ${operationMs(op)} ms: rule set v${op.toVersion} in force`)),
)

// Who serves the first moved user now, whichever gateway they enter.
const rId = first
for (const [unit, base] of Object.entries(state.gateways)) {
  const res = await request(`${base}/api/orders?r_id=${rId}`)
  const body = (await res.body.json()) as {
    chain?: { app: string; unit: string }[]
    total?: number
    ruleVersion?: number
  }
  const chain = (body.chain ?? []).map((h) => `${h.app}(${h.unit})`).join(' → ')
  console.log(
    `  r_id ${rId} via the ${unit} gateway: ${chain}; ${body.total ?? 0} order(s), rule set v${body.ruleVersion}`,
  )
}
