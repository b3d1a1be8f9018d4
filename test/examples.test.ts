// The runnable examples in examples/ are run as users would run them (through the package's own
// `appactive/*` exports, so `npm run build` must have run: `npm ci` does it) and checked from outside.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { describe, test } from 'node:test'
import { request } from 'undici'
import { NATS, needs, RABBITMQ } from './helpers/services.js'

const root = new URL('..', import.meta.url).pathname
const noRabbitmq = await needs(RABBITMQ)
const noNats = await needs(NATS)

function run(file: string, env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: root,
    env: { ...process.env, APPACTIVE_CACHE: 'off', APPACTIVE_LOG_LEVEL: 'warn', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

/** The first stdout line matching `pattern`, or a failure carrying stderr. */
async function lineMatching(
  child: ChildProcess,
  pattern: RegExp,
  timeoutMs = 20_000,
): Promise<RegExpExecArray> {
  let stderr = ''
  child.stderr!.on('data', (c) => {
    stderr += c
  })
  const lines = createInterface({ input: child.stdout! })
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`exited with ${code} before printing ${pattern}: ${stderr}`)
  })
  const timer = new Promise<never>((_, reject) =>
    setTimeout(
      () => reject(new Error(`no line matching ${pattern} in ${timeoutMs} ms: ${stderr}`)),
      timeoutMs,
    ),
  )
  const found = (async () => {
    for await (const line of lines) {
      const m = pattern.exec(line)
      if (m) return m
    }
    throw new Error(`stdout ended without ${pattern}: ${stderr}`)
  })()
  return Promise.race([found, exited, timer])
}

async function get(url: string) {
  const res = await request(url)
  return {
    status: res.statusCode,
    headers: res.headers,
    body: (await res.body.json()) as Record<string, unknown>,
  }
}

describe('examples', () => {
  for (const name of ['express', 'fastify', 'koa', 'node-http']) {
    test(`examples/${name}/server.ts protects unit and center services`, async (t) => {
      const child = run(`examples/${name}/server.ts`, { APPACTIVE_UNIT: 'unit' })
      t.after(() => child.kill('SIGKILL'))
      const [, base] = await lineMatching(child, /listening on (http:\/\/\S+)/)
      const own = await get(`${base}/orders/1?r_id=10042`)
      assert.equal(own.status, 200)
      assert.deepEqual([own.body.unit, own.body.user], ['unit', '10042'])
      const other = await get(`${base}/orders/1?r_id=15000`)
      assert.equal(other.status, 421)
      assert.equal(other.headers['x-appactive-unit'], 'center')
      assert.equal((await get(`${base}/orders/1`)).status, 400)
      const stock = await get(`${base}/stock/1?r_id=1`)
      assert.equal(stock.status, 421)
      assert.equal((stock.body.error as { code: string }).code, 'APPACTIVE_NOT_CENTER')
    })
  }

  test('examples/undici/client.ts propagates the route id through undici and fetch', async (t) => {
    const child = run('examples/undici/client.ts')
    t.after(() => child.kill('SIGKILL'))
    const [line] = await lineMatching(child, /undici sent route id .*/)
    assert.equal(line, 'undici sent route id 10001; fetch sent route id 10001')
  })

  test('examples/amqplib/main.ts consumes each message in the unit owning its route id', {
    skip: noRabbitmq,
  }, async (t) => {
    const child = run('examples/amqplib/main.ts')
    t.after(() => child.kill('SIGKILL'))
    const exited = once(child, 'exit')
    const [line] = await lineMatching(child, /^amqplib: .*/)
    assert.equal(line, 'amqplib: center consumed 15000 (center.placed); unit consumed 10042 (unit.placed)')
    assert.equal((await exited)[0], 0, 'the example cleans up (queues, stream) and exits 0')
  })

  test('examples/nats/main.ts consumes each message in the unit owning its route id', {
    skip: noNats,
  }, async (t) => {
    const child = run('examples/nats/main.ts')
    t.after(() => child.kill('SIGKILL'))
    const exited = once(child, 'exit')
    const [line] = await lineMatching(child, /^nats: .*/)
    assert.equal(line, 'nats: center consumed 15000 (center.placed); unit consumed 10042 (unit.placed)')
    assert.equal((await exited)[0], 0, 'the example cleans up (queues, stream) and exits 0')
  })
})
