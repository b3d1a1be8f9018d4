#!/usr/bin/env node
// `npm start`: a two-minute tour of the rule engine on the example rule sets (the multi-unit shop demo
// arrives with its own issue). Every line printed comes from the real `appactive` command.
import { spawnSync } from 'node:child_process'

const bin = new URL('../bin/appactive.js', import.meta.url).pathname
const steps = [
  [
    'Where do these users live? (examples/rules/baseline.yaml: r_id mod 10000, unit 0~1999, center 2000~9999)',
    'route --rules examples/rules/baseline.yaml --unit center -- 0 1999 2000 2499 12000 -5 007 crawler abc',
  ],
  [
    'The same answers from AppActive rule files (examples/appactive-baseline)',
    'route --rules examples/appactive-baseline -- 0 2000 2499',
  ],
  ['Is the next rule set valid?', 'rules validate examples/rules/next.yaml'],
  [
    'What would the cut-over to it move, and what must be fenced meanwhile?',
    'rules diff examples/rules/baseline.yaml examples/rules/next.yaml',
  ],
  ['After the cut-over', 'route --rules examples/rules/next.yaml --unit center -- 2000 2499 3000'],
].map(([title, line]) => [title, line.split(' ')])
for (const [title, args] of steps) {
  console.log(`\n== ${title}\n$ appactive ${args.join(' ')}`)
  const r = spawnSync(process.execPath, [bin, ...args], { stdio: 'inherit' })
  if (r.status !== 0) process.exit(r.status ?? 1)
}
console.log('\nNext: docs/concepts.md explains the model; `npx appactive --help` lists the commands.')
