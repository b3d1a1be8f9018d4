import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import pino from 'pino'
import { Agent, request } from 'undici'
import { createAgent } from '../../src/agent/index.js'
import { createGateway } from '../../src/gateway/index.js'
import { rules, silent } from '../helpers/agents.js'
import { app, echoBackend, gatewayConfig } from '../helpers/gateway.js'

const root = new URL('../..', import.meta.url).pathname

async function backends(t: { after: (fn: () => Promise<void>) => void }) {
  const center = await echoBackend('center-1')
  const unit = await echoBackend('unit-1')
  t.after(async () => {
    await center.close()
    await unit.close()
  })
  return { center, unit }
}

describe('gateway server', () => {
  test('serves HTTPS with the configured certificate', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'appactive-tls-'))
    const key = join(dir, 'key.pem')
    const cert = join(dir, 'cert.pem')
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
      ],
      { stdio: 'ignore' },
    )
    const { center, unit } = await backends(t)
    const agent = createAgent({ unit: 'center', app: 'gw', logger: silent, cache: false })
    agent.apply(rules(1))
    const config = gatewayConfig([app({ center: [center.url], unit: [unit.url] })], {
      tls: { cert: await readFile(cert, 'utf8'), key: await readFile(key, 'utf8') },
    })
    const gw = createGateway(config, { agent, logger: silent })
    const { main } = await gw.listen()
    t.after(() => gw.close())
    const dispatcher = new Agent({ connect: { rejectUnauthorized: false } })
    t.after(() => dispatcher.close())
    const res = await request(`https://127.0.0.1:${main.port}/x?r_id=5`, { dispatcher })
    const body = (await res.body.json()) as { backend: string; headers: Record<string, string> }
    assert.equal(body.backend, 'unit-1')
    assert.equal(body.headers['x-forwarded-proto'], 'https')
  })

  test('admin endpoints: healthz, readyz (with reasons) and metrics', async (t) => {
    const { center, unit } = await backends(t)
    const agent = createAgent({ unit: 'center', app: 'gw', logger: silent, cache: false })
    const config = gatewayConfig([app({ center: [center.url], unit: [unit.url] })], {
      admin: { host: '127.0.0.1', port: 0 },
    })
    const gw = createGateway(config, { agent, logger: silent })
    const { main, admin } = await gw.listen()
    t.after(() => gw.close())
    const base = `http://127.0.0.1:${admin!.port}`
    assert.equal((await request(`${base}/healthz`)).statusCode, 200)
    const notReady = await request(`${base}/readyz`)
    assert.equal(notReady.statusCode, 503)
    assert.deepEqual(((await notReady.body.json()) as { reasons: string[] }).reasons, ['no rule set applied'])
    agent.apply(rules(1))
    assert.equal((await request(`${base}/readyz`)).statusCode, 200)
    await (await request(`http://127.0.0.1:${main.port}/x?r_id=5`)).body.dump()
    await (await request(`http://127.0.0.1:${main.port}/x?r_id=abc`)).body.dump()
    const text = await (await request(`${base}/metrics`)).body.text()
    assert.match(text, /appactive_gateway_requests_total\{app="shop",unit="unit",code="2xx"\} 1/)
    assert.match(text, /appactive_route_decisions_total\{unit="center",reason="not_numeric"\} 1/)
    assert.match(text, /appactive_agent_rule_version 1/)
    assert.equal((await request(`${base}/nope`)).statusCode, 404)
    assert.equal(
      (await request(`http://127.0.0.1:${main.port}/metrics`)).statusCode,
      200,
      'the main port proxies /metrics like any path',
    )
  })

  test('the access log names the fallback reason; hop-by-hop headers are not forwarded', async (t) => {
    const { center, unit } = await backends(t)
    const lines: Array<Record<string, unknown>> = []
    const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) })
    const agent = createAgent({ unit: 'center', app: 'gw', logger: silent, cache: false })
    agent.apply(rules(1))
    const gw = createGateway(
      gatewayConfig([app({ center: [center.url], unit: [unit.url] })], { accessLog: true }),
      { agent, logger },
    )
    const { main } = await gw.listen()
    t.after(() => gw.close())
    // node:http, because undici's client refuses to send a custom Connection header.
    const req = httpRequest({
      host: '127.0.0.1',
      port: main.port,
      path: '/x?r_id=12.5',
      headers: {
        connection: 'x-secret, keep-alive',
        'x-secret': 'drop me',
        'proxy-authorization': 'Basic x',
        te: 'trailers',
      },
    })
    req.end()
    const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage]
    let text = ''
    for await (const chunk of res) text += chunk
    const seen = JSON.parse(text) as { headers: Record<string, string> }
    assert.equal(seen.headers['x-secret'], undefined)
    assert.equal(seen.headers['proxy-authorization'], undefined)
    assert.equal(seen.headers.te, undefined)
    const access = lines.find((l) => l.log === 'access')
    assert.equal(access?.reason, 'not_numeric')
    assert.equal(access?.unit, 'center')
    assert.equal(access?.status, 200)
  })
})

describe('appactive gateway (command)', () => {
  test('a bad config lists every problem and exits 1, without a stack trace', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'appactive-gwcfg-'))
    const file = join(dir, 'gw.yaml')
    await writeFile(file, 'unit: center\nlisten: 127.0.0.1:99999\nrules: ./r.yaml\napps: []\ncolour: blue\n')
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/run.ts', 'gateway', '--config', file, '--check'],
      { cwd: root },
    )
    let stderr = ''
    let stdout = ''
    child.stderr.on('data', (d) => (stderr += d))
    child.stdout.on('data', (d) => (stdout += d))
    const [code] = await once(child, 'exit')
    assert.equal(code, 1)
    const out = stdout + stderr
    assert.match(out, /listen/)
    assert.match(out, /colour/)
    assert.match(out, /apps/)
    assert.doesNotMatch(out, /\n\s+at /)
  })

  test('runs two workers sharing the port, aggregates their metrics, and stops on SIGTERM', async (t) => {
    const { port, base, stop } = await runCli(t, [], ['--workers', '2'])
    const backendsSeen = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const r = await request(`http://127.0.0.1:${port}/x?r_id=${i * 500}`)
      backendsSeen.add(((await r.body.json()) as { backend: string }).backend)
    }
    assert.deepEqual([...backendsSeen].sort(), ['center-1', 'unit-1'])
    const metrics = await (await request(`${base}/metrics`)).body.text()
    const served = [...metrics.matchAll(/appactive_gateway_requests_total\{[^}]*code="2xx"\} (\d+)/g)].reduce(
      (n, m) => n + Number(m[1]),
      0,
    )
    assert.equal(served, 20, 'the counters of both workers add up')
    assert.match(
      metrics,
      /appactive_agent_rule_version 1\b/,
      'the version gauge is the minimum over workers, not a sum',
    )
    await stop()
  })

  test('with heap limits, even one worker is a cluster worker started with the V8 flags', async (t) => {
    const { port, pid, stop } = await runCli(t, [
      'workers: 1',
      'heap: { maxSemiSpaceMb: 8, maxOldSpaceMb: 256 }',
    ])
    const r = await request(`http://127.0.0.1:${port}/x?r_id=2500`)
    assert.equal(((await r.body.json()) as { backend: string }).backend, 'center-1')
    const cmdline = async (of: number) => (await readFile(`/proc/${of}/cmdline`, 'utf8')).split('\0')
    const workers = childPids(pid)
    assert.equal(workers.length, 1, 'one cluster worker under the primary')
    const args = await cmdline(workers[0]!)
    assert.ok(args.includes('--max-semi-space-size=8'), args.join(' '))
    assert.ok(args.includes('--max-old-space-size=256'), args.join(' '))
    assert.ok(args.includes('tsx'), "the worker keeps the primary's own flags")
    assert.ok(!(await cmdline(pid)).includes('--max-semi-space-size=8'))
    await stop()
  })
})

/**
 * Runs `appactive gateway` (the CLI, under tsx) with a config of `extra` lines plus one app over two echo
 * backends, until its admin /readyz answers 200. `stop()` sends SIGTERM and expects exit code 0.
 */
async function runCli(
  t: { after: (fn: () => Promise<void> | void) => void },
  extra: string[],
  args: string[] = [],
): Promise<{ port: number; base: string; pid: number; stop: () => Promise<void> }> {
  const { center, unit } = await backends(t)
  const dir = await mkdtemp(join(tmpdir(), 'appactive-gwrun-'))
  await writeFile(join(dir, 'rules.json'), JSON.stringify(rules(1)))
  const file = join(dir, 'gw.yaml')
  const [port, adminPort] = [await freePort(), await freePort()]
  await writeFile(
    file,
    [
      'unit: center',
      `listen: 127.0.0.1:${port}`,
      `admin: 127.0.0.1:${adminPort}`,
      'rules: ./rules.json',
      'accessLog: false',
      ...extra,
      'apps:',
      '  - name: shop',
      `    upstreams: { center: [${center.url}], unit: [${unit.url}] }`,
    ].join('\n'),
  )
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/run.ts', 'gateway', '--config', file, ...args],
    {
      cwd: root,
      env: { ...process.env, APPACTIVE_LOG_LEVEL: 'warn', APPACTIVE_CACHE: 'off' },
    },
  )
  let stderr = ''
  child.stderr.on('data', (d) => (stderr += d))
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const base = `http://127.0.0.1:${adminPort}`
  await until(async () => {
    try {
      const r = await request(`${base}/readyz`)
      await r.body.dump()
      return r.statusCode === 200
    } catch {
      return false // not listening yet
    }
  }, 20_000)
  const stop = async () => {
    child.kill('SIGTERM')
    const [code] = await once(child, 'exit', { signal: AbortSignal.timeout(10_000) })
    assert.equal(code, 0, stderr)
  }
  return { port, base, pid: child.pid!, stop }
}

/** The pids of a process's children (Linux /proc). */
function childPids(parent: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === parent) out.push(Number(entry))
    } catch {
      // exited meanwhile
    }
  }
  return out
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  const s = createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as { port: number }).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

async function until(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 100))
  }
}
