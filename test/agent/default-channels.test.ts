// DESIGN §6: APPACTIVE_RULES / APPACTIVE_CONTROL_URL / APPACTIVE_TOKEN (or the same options) configure
// any process's channels with no channel code.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { createAgent } from '../../src/agent/index.js'
import { createRuleServer } from '../../src/channels/control/server.js'
import { applied, rules, silent, TOKEN, until } from '../helpers/agents.js'

test('a rules file given as an option or APPACTIVE_RULES is watched', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'aa-default-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'rules.json')
  await writeFile(file, JSON.stringify(rules(3)))
  const byOption = createAgent({ unit: 'unit', rules: file, logger: silent, cache: false })
  t.after(() => byOption.close())
  await byOption.start()
  assert.equal(byOption.version, 3)

  const saved = process.env.APPACTIVE_RULES
  process.env.APPACTIVE_RULES = file
  t.after(() => {
    if (saved === undefined) delete process.env.APPACTIVE_RULES
    else process.env.APPACTIVE_RULES = saved
  })
  const byEnv = createAgent({ unit: 'unit', logger: silent, cache: false })
  t.after(() => byEnv.close())
  await byEnv.start()
  assert.equal(byEnv.version, 3)
  await writeFile(file, JSON.stringify(rules(4)))
  await until(() => byEnv.version === 4, 5000, 'the file change') // the watcher is unref'd
})

test('a control-plane URL with a token registers with the control plane', async (t) => {
  const server = createRuleServer({ tokens: [TOKEN], leaseMs: 2000 })
  const { port } = await server.listen(0)
  t.after(() => server.close())
  server.publish(rules(7))
  const agent = createAgent({
    unit: 'unit',
    app: 'shop',
    nodeId: 'env-node',
    controlUrl: `http://127.0.0.1:${port}`,
    token: TOKEN,
    logger: silent,
    cache: false,
  })
  t.after(() => agent.close())
  await agent.start()
  await applied(agent, 7)
  assert.equal((await server.waitForAcks(7, { timeoutMs: 2000 })).ok, true)
})

test('a control-plane URL without a token is refused when the agent is built', () => {
  assert.throws(
    () => createAgent({ unit: 'unit', rules: 'http://127.0.0.1:1', logger: silent, cache: false }),
    { code: 'APPACTIVE_INVALID_ARGUMENT', message: /needs a token: pass \{ token \} or set APPACTIVE_TOKEN/ },
  )
})
