// The file channel against a real RoutingAgent and real files in a temporary directory. Every wait is on an
// agent event, a channel log line or an apply outcome, each with a timeout: no fixed sleeps.
import assert from 'node:assert/strict'
import { EventEmitter, once } from 'node:events'
import { mkdtemp, rename, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import pino from 'pino'
import { createAgent, type RoutingAgent } from '../../src/agent/index.js'
import { createFileChannel, type FileChannel, type FileChannelOptions } from '../../src/channels/file.js'
import type { ApplyOutcome } from '../../src/channels/types.js'

const TIMEOUT_MS = 3000

/** A canonical rule set in YAML: `unit` owns 0~unitHi, `center` the rest of mod 10000. */
function rules(version: number, unitHi = 1999): string {
  return [
    `version: ${version}`,
    'units:',
    '  - { name: center, center: true }',
    '  - { name: unit }',
    'idSource:',
    '  - { from: query, name: r_id }',
    'transform:',
    '  - { type: mod, divisor: 10000 }',
    'mapping:',
    `  - { unit: unit, ranges: ["0~${unitHi}"] }`,
    `  - { unit: center, ranges: ["${unitHi + 1}~9999"] }`,
    '',
  ].join('\n')
}

function mapping(unitHi: number): string {
  return JSON.stringify({
    itemType: 'UnitRuleItem',
    items: [
      { name: 'unit', conditions: [{ '@userIdBetween': [`0~${unitHi}`] }] },
      { name: 'center', conditions: [{ '@userIdBetween': [`${unitHi + 1}~9999`] }] },
    ],
  })
}

interface LogLine {
  readonly level: number
  readonly msg: string
  readonly [key: string]: unknown
}

interface Rig {
  readonly dir: string
  readonly agent: RoutingAgent
  readonly channel: FileChannel
  /** Every apply outcome the channel got from the agent, also emitted as `outcome`. */
  readonly outcomes: ApplyOutcome[]
  readonly spy: EventEmitter<{ outcome: [ApplyOutcome]; log: [LogLine] }>
  readonly logs: LogLine[]
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'appactive-file-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Starts an agent on a file channel for `path` (relative to `dir`), capturing outcomes and channel logs. */
async function rig(
  t: TestContext,
  dir: string,
  path: string,
  options: Partial<FileChannelOptions> = {},
): Promise<Rig> {
  const spy = new EventEmitter<{ outcome: [ApplyOutcome]; log: [LogLine] }>()
  const logs: LogLine[] = []
  const logger = pino(
    { level: 'debug' },
    {
      write(line: string) {
        const entry = JSON.parse(line) as LogLine
        logs.push(entry)
        spy.emit('log', entry)
      },
    },
  )
  const channel = createFileChannel({ path: join(dir, path), logger, ...options })
  const agent = createAgent({
    unit: 'center',
    app: 'test',
    channels: [channel],
    cache: false,
    logger: pino({ level: 'silent' }),
  })
  const outcomes: ApplyOutcome[] = []
  const apply = agent.apply.bind(agent)
  agent.apply = (value, meta) => {
    const outcome = apply(value, meta)
    outcomes.push(outcome)
    spy.emit('outcome', outcome)
    return outcome
  }
  t.after(() => agent.close())
  await agent.start()
  return { dir, agent, channel, outcomes, spy, logs }
}

/**
 * Settles like `promise`, or fails after TIMEOUT_MS. The timer is ref'd on purpose: the channel's own
 * watcher and timers are not, so without it the test process would exit while waiting.
 */
async function within<T>(promise: Promise<T>, what: string, abort?: AbortController): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), TIMEOUT_MS)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
    abort?.abort()
  }
}

/** Resolves with the arguments of the next `event` of `emitter`. */
function next(emitter: EventEmitter, event: string): Promise<unknown[]> {
  const abort = new AbortController()
  const waiting = once(emitter, event, { signal: abort.signal })
  waiting.catch(() => {})
  return within(waiting, event, abort)
}

/** Resolves once the channel logs a line whose message contains `text`. */
function logged(r: Rig, text: string): Promise<LogLine> {
  const seen = r.logs.find((l) => l.msg.includes(text))
  if (seen) return Promise.resolve(seen)
  let listener: ((line: LogLine) => void) | undefined
  const found = new Promise<LogLine>((resolve) => {
    listener = (line) => {
      if (line.msg.includes(text)) resolve(line)
    }
    r.spy.on('log', listener)
  })
  return within(found, `a log line with ${JSON.stringify(text)}`).finally(() => r.spy.off('log', listener!))
}

async function atomicWrite(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp-${process.pid}`, text)
  await rename(`${path}.tmp-${process.pid}`, path)
}

test('starts with the file, then applies a rewritten file', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'rules.yaml'), rules(1))
  const r = await rig(t, dir, 'rules.yaml')
  assert.equal(r.channel.name, `file:${join(dir, 'rules.yaml')}`)
  assert.equal(r.channel.leasing, false)
  assert.equal(r.agent.version, 1)
  assert.equal(r.agent.router?.route('2500').unit, 'center')

  const applied = next(r.agent, 'applied')
  await writeFile(join(dir, 'rules.yaml'), rules(2, 2999))
  assert.deepEqual(await applied, [2, r.channel.name])
  assert.equal(r.agent.router?.route('2500').unit, 'unit')
})

test('an atomic replace by rename is picked up', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'rules.yaml'), rules(1))
  const r = await rig(t, dir, 'rules.yaml')
  for (const version of [2, 3]) {
    const applied = next(r.agent, 'applied')
    await atomicWrite(join(dir, 'rules.yaml'), rules(version, 1999 + version))
    assert.deepEqual((await applied)[0], version)
  }
})

test('polling alone sees a change within about pollMs (watch: false)', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'rules.yaml'), rules(1))
  const r = await rig(t, dir, 'rules.yaml', { watch: false, pollMs: 100 })
  assert.equal(r.agent.version, 1)
  const started = performance.now()
  const applied = next(r.agent, 'applied')
  // Same size, same inode: only the content and mtime differ.
  await writeFile(join(dir, 'rules.yaml'), rules(2))
  await applied
  const elapsed = performance.now() - started
  assert.ok(elapsed < 1000, `applied after ${elapsed} ms`)
  assert.equal(r.agent.version, 2)
})

test('a malformed update is rejected and named; the old version stays; a fix applies', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'rules.yaml')
  await writeFile(path, rules(1))
  const r = await rig(t, dir, 'rules.yaml')

  const rejected = next(r.agent, 'rejected')
  await writeFile(path, 'version: 2\nunits:\n  - { name: center, center: true\n  - { name: unit }\n')
  await rejected
  assert.equal(r.agent.version, 1)
  const issue = r.agent.state().lastError?.issues[0]
  assert.ok(issue, 'the agent keeps the error')
  assert.equal(issue.file, path)
  assert.equal(typeof issue.line, 'number')
  assert.match(issue.message, /malformed YAML/)
  assert.equal(r.agent.router?.route('1000').unit, 'unit', 'the last good rule set stays in force')

  const applied = next(r.agent, 'applied')
  await writeFile(path, rules(2, 2999))
  assert.equal((await applied)[0], 2)
  assert.equal(r.agent.state().lastError, undefined)
})

test('an invalid rule set is rejected with its issues', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'rules.yaml')
  await writeFile(path, rules(1))
  const r = await rig(t, dir, 'rules.yaml')
  const rejected = next(r.agent, 'rejected')
  await writeFile(path, rules(2).replace('"0~1999"', '"0~2500"')) // overlaps center's 2000~9999
  await rejected
  assert.equal(r.agent.version, 1)
  assert.ok((r.agent.state().lastError?.issues.length ?? 0) > 0)
})

test('an older version is ignored as stale; the same version with other content is rejected', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'rules.yaml')
  await writeFile(path, rules(2))
  const r = await rig(t, dir, 'rules.yaml')
  assert.equal(r.agent.version, 2)

  const stale = next(r.spy, 'outcome')
  await writeFile(path, rules(1, 2999))
  assert.deepEqual((await stale)[0], { status: 'stale', version: 1, current: 2 })
  assert.equal(r.agent.router?.route('2500').unit, 'center')

  const rejected = next(r.agent, 'rejected')
  await writeFile(path, rules(2, 2999))
  const [outcome] = (await rejected) as [Extract<ApplyOutcome, { status: 'rejected' }>]
  assert.equal(outcome.issues[0]?.path, 'version')
  assert.equal(r.agent.version, 2)
  assert.equal(r.agent.router?.route('2500').unit, 'center')
})

test('an AppActive directory loads as version 1; a changed mapping applies as version 2', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'idSource.json'), '{"source":"arg,header,cookie","tokenKey":"r_id"}')
  await writeFile(join(dir, 'idTransformer.json'), '{"id":"userIdBetween","mod":"10000"}')
  await writeFile(join(dir, 'idUnitMapping.json'), mapping(1999))
  const r = await rig(t, dir, '.')
  assert.equal(r.agent.version, 1)
  assert.equal(r.agent.router?.route('2500').unit, 'center')

  const applied = next(r.agent, 'applied')
  await writeFile(join(dir, 'idUnitMapping.json'), mapping(2999))
  assert.equal((await applied)[0], 2)
  assert.equal(r.agent.router?.route('2500').unit, 'unit')

  // A file the directory ignores does not reload; a rewrite with the same content does not bump the version.
  await writeFile(join(dir, 'notes.txt'), 'hello')
  await writeFile(join(dir, 'idUnitMapping.json'), mapping(2999))
  const third = next(r.agent, 'applied')
  await atomicWrite(join(dir, 'idUnitMapping.json'), mapping(3999))
  assert.equal((await third)[0], 3)
  assert.deepEqual(
    r.outcomes.map((o) => o.status),
    ['applied', 'applied', 'applied'],
  )
})

test('a deleted file keeps the rules (one warning); a recreated file applies', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'rules.yaml')
  await writeFile(path, rules(1))
  const r = await rig(t, dir, 'rules.yaml', { pollMs: 100 })

  await unlink(path)
  await logged(r, 'deleted')
  assert.equal(r.agent.version, 1)
  assert.equal(r.agent.state().lastError, undefined)
  assert.equal(r.agent.router?.route('1000').unit, 'unit')

  const applied = next(r.agent, 'applied')
  await writeFile(path, rules(2, 2999))
  assert.equal((await applied)[0], 2)
  assert.equal(r.logs.filter((l) => l.msg.includes('deleted')).length, 1)
})

test('a missing file at start is reported; the file applies once it appears', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'rules.yaml')
  const r = await rig(t, dir, 'rules.yaml')
  assert.equal(r.agent.version, -1)
  assert.match(r.agent.state().lastError?.issues[0]?.message ?? '', /no such file/)

  const applied = next(r.agent, 'applied')
  await atomicWrite(path, rules(1))
  assert.equal((await applied)[0], 1)
})

test('close() stops watching and polling', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'rules.yaml')
  await writeFile(path, rules(1))
  const r = await rig(t, dir, 'rules.yaml', { pollMs: 50, debounceMs: 10 })
  // A second agent on the same file, slower to react, tells when the closed one would have applied.
  const witness = await rig(t, dir, 'rules.yaml', { pollMs: 200, debounceMs: 200 })
  await r.channel.close()
  await r.channel.close() // idempotent

  const applied = next(witness.agent, 'applied')
  await writeFile(path, rules(2, 2999))
  await applied
  assert.equal(witness.agent.version, 2)
  assert.equal(r.agent.version, 1)
  assert.deepEqual(
    r.outcomes.map((o) => o.version),
    [1],
  )
})

test('rejects bad options', () => {
  assert.throws(() => createFileChannel({ path: '' }), { code: 'APPACTIVE_INVALID_ARGUMENT' })
  assert.throws(() => createFileChannel({ path: 'x.yaml', pollMs: 0 }), {
    code: 'APPACTIVE_INVALID_ARGUMENT',
  })
  assert.throws(() => createFileChannel({ path: 'x.yaml', debounceMs: -1 }), {
    code: 'APPACTIVE_INVALID_ARGUMENT',
  })
})

test('the channel keeps no process alive', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'rules.yaml'), rules(1))
  const agentUrl = new URL('../../src/agent/index.ts', import.meta.url).href
  const fileUrl = new URL('../../src/channels/file.ts', import.meta.url).href
  const script = [
    `import { createAgent } from ${JSON.stringify(agentUrl)}`,
    `import { createFileChannel } from ${JSON.stringify(fileUrl)}`,
    `const channel = createFileChannel({ path: ${JSON.stringify(join(dir, 'rules.yaml'))}, pollMs: 50 })`,
    `const agent = createAgent({ unit: 'center', channels: [channel], cache: false, logger: (await import('pino')).default({ level: 'silent' }) })`,
    'await agent.start()',
    'if (agent.version !== 1) process.exit(3)',
  ].join('\n')
  const { execFile } = await import('node:child_process')
  const code = await within(
    new Promise<number | null>((resolve) => {
      const child = execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        timeout: TIMEOUT_MS,
      })
      child.on('exit', (code) => resolve(code))
    }),
    'the child process to exit',
  )
  assert.equal(code, 0)
})
