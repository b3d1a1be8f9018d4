import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import pino from 'pino'
import { type CreateAgentOptions, createAgent, type RoutingAgent } from '../../src/agent/index.js'
import type { RuleChannel } from '../../src/channels/types.js'
import { rules, silent } from '../helpers/agents.js'

interface LogLine {
  level: number
  msg: string
  [field: string]: unknown
}

/** A pino logger that keeps every record as an object. */
function capture() {
  const lines: LogLine[] = []
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) })
  return { logger, lines }
}

/** A channel that delivers `versions` (if any) when started, then nothing. */
function channelOf(...versions: number[]): RuleChannel {
  return {
    name: 'fake',
    leasing: false,
    async start(sink) {
      for (const v of versions) sink.apply(rules(v), { source: 'fake' })
    },
    async close() {},
  }
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'appactive-cache-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

function agentOf(options: CreateAgentOptions): RoutingAgent {
  return createAgent({ unit: 'unit', app: 'shop', nodeId: 'n1', logger: silent, ...options })
}

/** Sets environment variables for the duration of `fn`. */
async function withEnv(vars: Record<string, string | undefined>, fn: () => Promise<void>): Promise<void> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, value] of Object.entries(v)) {
      if (value === undefined) delete process.env[k]
      else process.env[k] = value
    }
  }
  apply(vars)
  try {
    await fn()
  } finally {
    apply(saved)
  }
}

describe('rule cache', () => {
  test('the applied rule set is written on close; a restart without a source starts with it', async (t) => {
    const dir = await tempDir(t)
    const cache = join(dir, 'rules.json')
    const first = agentOf({ cache })
    first.apply(rules(1), { source: 'file:/etc/rules.yaml' })
    first.apply(rules(2), { source: 'file:/etc/rules.yaml' })
    first.apply(rules(3), { source: 'file:/etc/rules.yaml' })
    first.apply({ version: 4 }) // rejected: not cached
    await first.close()
    const saved = JSON.parse(await readFile(cache, 'utf8'))
    assert.equal(saved.version, 3)
    assert.equal(saved.source, 'file:/etc/rules.yaml')
    assert.deepEqual(saved.ruleSet, rules(3))
    assert.ok(!Number.isNaN(Date.parse(saved.savedAt)))
    assert.equal((await stat(cache)).mode & 0o777, 0o600)

    const { logger, lines } = capture()
    const second = agentOf({ cache, logger, channels: [channelOf()] })
    const sources: string[] = []
    second.on('applied', (_v, source) => sources.push(source))
    await second.start()
    assert.equal(second.version, 3)
    assert.deepEqual(sources, ['cache'])
    assert.equal(second.route('1999').unit, 'unit')
    const applied = lines.find((l) => l.msg === 'rule set applied')
    assert.equal(applied?.source, 'cache')
    assert.equal(applied?.version, 3)
    const warning = lines.find((l) => l.msg.startsWith('starting with cached rule set v3'))
    assert.ok(warning, JSON.stringify(lines))
    assert.equal(warning.level, 40)
    assert.equal(warning.from, 'file:/etc/rules.yaml')
    assert.equal(warning.path, cache)
    assert.equal(warning.savedAt, saved.savedAt)
    await second.close()
    // Applying from the cache does not write the cache again.
    assert.equal(JSON.parse(await readFile(cache, 'utf8')).savedAt, saved.savedAt)
  })

  test('a corrupt or unreadable cache is ignored with a warning, and the agent starts empty', async (t) => {
    const dir = await tempDir(t)
    for (const [what, body] of [
      ['not JSON', '{"version": 3, "ruleSet": {'],
      ['a list', '[]'],
      ['no version', '{"ruleSet": {}}'],
      ['null', 'null'],
    ] as const) {
      const cache = join(dir, `${what}.json`)
      await writeFile(cache, body)
      const { logger, lines } = capture()
      const agent = agentOf({ cache, logger, channels: [channelOf()] })
      await agent.start()
      assert.equal(agent.version, -1, what)
      const warning = lines.find((l) => l.msg === 'rule cache is corrupt; ignoring it')
      assert.equal(warning?.level, 40, what)
      assert.equal(warning?.path, cache)
      await agent.close()
    }
    // A directory where the file should be: unreadable, logged, ignored.
    const asDir = join(dir, 'is-a-dir')
    await mkdir(asDir)
    const { logger, lines } = capture()
    const agent = agentOf({ cache: asDir, logger })
    await agent.start()
    assert.equal(agent.version, -1)
    assert.ok(lines.some((l) => l.msg === 'rule cache unreadable' && l.level === 40))
  })

  test('a cache holding an invalid rule set is rejected like any delivery; a channel then applies', async (t) => {
    const dir = await tempDir(t)
    const cache = join(dir, 'rules.json')
    await writeFile(
      cache,
      JSON.stringify({ version: 3, savedAt: 'x', source: 'old', ruleSet: { version: 3 } }),
    )
    const agent = agentOf({ cache, channels: [channelOf(1)] })
    await agent.start()
    assert.equal(agent.version, 1)
    assert.equal(agent.state().lastError, undefined) // cleared by the channel's version
    await agent.close()
  })

  test('a missing cache file is silent; an older cached version is superseded by a newer delivery', async (t) => {
    const dir = await tempDir(t)
    const cache = join(dir, 'sub', 'dir', 'rules.json') // directories are created on write
    const first = agentOf({ cache })
    const { logger, lines } = capture()
    const quiet = agentOf({ cache, logger })
    await quiet.start()
    assert.deepEqual(
      lines.filter((l) => l.level >= 40),
      [],
    )
    first.apply(rules(3))
    await first.close()

    const second = agentOf({ cache, channels: [channelOf(5)] })
    const seen: Array<[number, string]> = []
    second.on('applied', (v, s) => seen.push([v, s]))
    await second.start()
    assert.deepEqual(seen, [
      [3, 'cache'],
      [5, 'fake'],
    ])
    assert.equal(second.version, 5)
    await second.close()
    const saved = JSON.parse(await readFile(cache, 'utf8'))
    assert.equal(saved.version, 5)
    assert.equal(saved.source, 'fake')
  })

  test('a newer cached version wins over an older delivery (stale)', async (t) => {
    const dir = await tempDir(t)
    const cache = join(dir, 'rules.json')
    const first = agentOf({ cache })
    first.apply(rules(7))
    await first.close()
    const second = agentOf({ cache, channels: [channelOf(5)] })
    await second.start()
    assert.equal(second.version, 7)
  })

  test('writes coalesce: the newest version is what lands', async (t) => {
    const dir = await tempDir(t)
    const cache = join(dir, 'rules.json')
    const agent = agentOf({ cache })
    for (let v = 1; v <= 20; v++) agent.apply(rules(v))
    await agent.close()
    assert.equal(JSON.parse(await readFile(cache, 'utf8')).version, 20)
  })

  test('a cache that cannot be written is logged, never thrown', async (t) => {
    const dir = await tempDir(t)
    const blocker = join(dir, 'file')
    await writeFile(blocker, 'x')
    const { logger, lines } = capture()
    const agent = agentOf({ cache: join(blocker, 'rules.json'), logger }) // a file where a directory must be
    assert.equal(agent.apply(rules(1)).status, 'applied')
    await agent.close()
    assert.ok(lines.some((l) => l.msg === 'could not write the rule cache' && l.level === 40))
  })

  test('APPACTIVE_CACHE: off/false disable it; a path sets it; the default is .appactive/<app>-<unit>.rules.json', async (t) => {
    const dir = await tempDir(t)
    const cwd = process.cwd()
    process.chdir(dir)
    t.after(() => process.chdir(cwd))
    const defaultPath = join(dir, '.appactive', 'shop-unit.rules.json')

    for (const off of ['off', 'false']) {
      await withEnv({ APPACTIVE_CACHE: off }, async () => {
        const agent = agentOf({})
        agent.apply(rules(1))
        await agent.close()
        await assert.rejects(stat(join(dir, '.appactive')), { code: 'ENOENT' })
      })
    }

    const custom = join(dir, 'custom.json')
    await withEnv({ APPACTIVE_CACHE: custom }, async () => {
      const agent = agentOf({})
      agent.apply(rules(2))
      await agent.close()
      assert.equal(JSON.parse(await readFile(custom, 'utf8')).version, 2)
      // cache: false wins over the environment.
      const none = agentOf({ cache: false })
      none.apply(rules(5))
      await none.close()
      assert.equal(JSON.parse(await readFile(custom, 'utf8')).version, 2)
    })

    await withEnv({ APPACTIVE_CACHE: undefined }, async () => {
      const agent = agentOf({})
      agent.apply(rules(3))
      await agent.close()
      assert.equal(JSON.parse(await readFile(defaultPath, 'utf8')).version, 3)
    })
  })
})
