// The nginx engine end to end: the gateway config run by real nginx, the sidecar agent acknowledging only
// what nginx serves, the admin endpoint, hold during fence, the loop guard, and failures shown with
// nginx's own words.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { compileNginxRules, NginxError, startNginxGateway } from '../../../src/gateway/nginx/index.js'
import type { RuleSet } from '../../../src/rules/index.js'
import { freePort } from '../../helpers/ports.js'
import { baseline } from '../../helpers/rules.js'
import {
  decisionOf,
  edgeConfig,
  needsNginx,
  quiet,
  rawRequest,
  startEdge,
  TestChannel,
  until,
} from './helpers.js'

const skip = needsNginx()

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'appactive-nginx-test-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const rules = (version: number, over: Partial<RuleSet> = {}): RuleSet =>
  baseline({
    version,
    idSource: [
      { from: 'query', name: 'r_id' },
      { from: 'header', name: 'r_id' },
    ],
    fallback: 'local',
    ...over,
  })

test('routes by the rule file, replaces client x-appactive-* headers and acknowledges after nginx serves', {
  skip,
}, async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'rules.json')
  await writeFile(file, JSON.stringify(rules(1)))
  const { config } = await edgeConfig(t, ['unit', 'center'], { rules: file })
  const edge = await startEdge(t, config, { channels: undefined, runDir: join(dir, 'run') })
  await until(() => edge.servedVersion === 1, 5000, 'v1 served')
  assert.equal(JSON.parse(readFileSync(edge.stateFile, 'utf8')).version, 1, 'state file written')

  const a = await rawRequest(edge.port, '/orders?r_id=5', [
    ['X-AppActive-Unit', 'evil'],
    ['x-appactive-hops', '9'],
    ['X-AppActive-Tenant', 'spoofed'],
    ['baggage', 'appactive.route-id=666,k=v'],
  ])
  assert.equal(a.status, 200)
  const seen = JSON.parse(a.body) as { backend: string; headers: Record<string, string>; url: string }
  assert.equal(seen.backend, 'unit')
  assert.equal(seen.url, '/orders?r_id=5')
  assert.equal(seen.headers['x-appactive-unit'], 'unit')
  assert.equal(seen.headers['x-appactive-hops'], '0')
  assert.equal(seen.headers['x-appactive-rule-version'], '1')
  assert.equal(seen.headers['x-appactive-route-id'], '5')
  assert.equal(
    seen.headers['x-appactive-tenant'],
    undefined,
    'an unknown x-appactive-* header is dropped too',
  )
  assert.equal(seen.headers.baggage, 'k=v,appactive.route-id=5')
  assert.equal(seen.headers.host, 'edge.test')
  assert.equal(seen.headers['x-forwarded-proto'], 'http')

  const b = await rawRequest(edge.port, '/', [['r_id', '2500']])
  assert.equal(JSON.parse(b.body).backend, 'center')

  // A new version in the file: nginx serves it, then (only then) the sidecar has it confirmed.
  await writeFile(file, JSON.stringify(rules(2, { mapping: [{ unit: 'center', ranges: ['0~9999'] }] })))
  await until(() => edge.servedVersion === 2, 5000, 'v2 served')
  const c = await rawRequest(edge.port, '/?r_id=5')
  assert.equal(JSON.parse(c.body).backend, 'center')
  assert.equal(decisionOf(c.headers)?.version, 2)
})

test('acks go to the channel only once nginx serves the version, never for a version nginx lacks', {
  skip,
}, async (t) => {
  const { config } = await edgeConfig(t, ['unit', 'center'])
  const channel = new TestChannel()
  const acks = channel.acks
  const edge = await startEdge(t, config, { channels: [channel] })
  channel.publish(rules(3))
  await until(() => acks.includes(3), 5000, 'ack of v3')
  assert.equal((await edge.admin.state()).version, 3, 'nginx served v3 before the ack')
  // nginx is down: the agent applies v4 but nothing is acknowledged until nginx is back and serves it.
  await edge.process.stop()
  channel.publish(rules(4))
  await new Promise((r) => setTimeout(r, 300))
  assert.deepEqual(acks, [3])
  assert.equal(edge.agent.version, 4)
})

test('the admin endpoint refuses a missing or wrong token, a stale version (409) and a malformed rule set', {
  skip,
}, async (t) => {
  const { config } = await edgeConfig(t, ['unit', 'center'])
  const edge = await startEdge(t, config, { adminToken: 'secret-token-0123456789' })
  const none = await edge.admin.send('GET', '/_appactive/rules', undefined, 2000, '')
  assert.equal(none.status, 401)
  const wrong = await edge.admin.send('GET', '/_appactive/rules', undefined, 2000, 'secret-token-0123456788')
  assert.equal(wrong.status, 401)
  const short = await edge.admin.send('GET', '/_appactive/rules', undefined, 2000, 'secret')
  assert.equal(short.status, 401)
  const ok = await edge.admin.send('GET', '/_appactive/rules')
  assert.equal(ok.status, 200)
  assert.equal(JSON.parse(ok.body).version, -1)

  assert.equal((await edge.admin.put(compileNginxRules(rules(5)).text)).status, 200)
  const stale = await edge.admin.put(compileNginxRules(rules(4)).text)
  assert.equal(stale.status, 409)
  assert.match(stale.body, /STALE/)
  const sameVersionOtherContent = await edge.admin.put(
    compileNginxRules(rules(5, { fallback: 'reject' })).text,
  )
  assert.equal(sameVersionOtherContent.status, 409)
  const again = await edge.admin.put(compileNginxRules(rules(5)).text)
  assert.equal(again.status, 200, 'the same version and digest again is a duplicate, not an error')
  const bad = JSON.parse(compileNginxRules(rules(6)).text)
  bad.m = 0
  assert.equal((await edge.admin.put(JSON.stringify(bad))).status, 400)
  bad.m = 10000
  bad.segs = [0, 10, 1, 5, 20, 2]
  assert.equal((await edge.admin.put(JSON.stringify(bad))).status, 400, 'overlapping ranges')
  assert.equal((await edge.admin.state()).version, 5)
  // The main listener does not serve the admin endpoint: the path goes to the app like any other.
  const viaMain = await rawRequest(edge.port, '/_appactive/rules', [
    ['authorization', 'Bearer secret-token-0123456789'],
  ])
  assert.equal(JSON.parse(viaMain.body).backend, 'center')
})

test('the admin endpoint listens on loopback only: a non-loopback admin address is refused', {
  skip,
}, async (t) => {
  const { config } = await edgeConfig(t, ['unit', 'center'])
  await assert.rejects(
    startNginxGateway(
      { ...config, admin: { host: '0.0.0.0', port: await freePort() } },
      { logger: quiet, channels: [] },
    ),
    /loopback only/,
  )
  const port = await freePort()
  const edge = await startEdge(
    t,
    { ...config, admin: { host: '127.0.0.1', port } },
    { adminToken: 'tok-0123456789abcdef' },
  )
  assert.equal(edge.adminListen, `127.0.0.1:${port}`)
  assert.equal((await edge.admin.state()).version, -1)
  const external = Object.values(networkInterfaces())
    .flat()
    .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)
  if (external === undefined) return
  // From a non-loopback address the admin port does not even accept the connection.
  const socket = (await import('node:net')).connect(port, external.address)
  const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException]
  assert.equal(err.code, 'ECONNREFUSED')
})

test('holds a write for a fenced key until the fence lifts, then sends it to the new owner', {
  skip,
}, async (t) => {
  const { config } = await edgeConfig(t, ['unit', 'center'], {
    hold: { enabled: true, methods: 'writes', maxMs: 3000, maxQueue: 10, retryAfterS: 7 },
  })
  const edge = await startEdge(t, config)
  await edge.admin.put(compileNginxRules(rules(1)).text)
  await edge.admin.put(compileNginxRules(rules(2, { fence: { ranges: ['0~999'] } })).text)
  // A read passes, marked fenced.
  const read = await rawRequest(edge.port, '/?r_id=5')
  assert.equal(read.status, 200)
  assert.equal(decisionOf(read.headers)?.fenced, true)
  // A write waits...
  const started = performance.now()
  const write = rawRequest(edge.port, '/?r_id=5', [['content-length', '0']], 'POST')
  await new Promise((r) => setTimeout(r, 300))
  const health = JSON.parse((await edge.admin.send('GET', '/_appactive/health')).body)
  assert.equal(health.held, 1, 'one request held')
  // ... the switch (still fenced) and the unfence release it, to the new owner.
  await edge.admin.put(
    compileNginxRules(
      rules(3, { mapping: [{ unit: 'center', ranges: ['0~9999'] }], fence: { ranges: ['0~999'] } }),
    ).text,
  )
  await new Promise((r) => setTimeout(r, 100))
  await edge.admin.put(
    compileNginxRules(rules(4, { mapping: [{ unit: 'center', ranges: ['0~9999'] }] })).text,
  )
  const answer = await write
  assert.equal(answer.status, 200)
  assert.equal(JSON.parse(answer.body).backend, 'center')
  assert.ok(performance.now() - started >= 300)
})

test('a write held past hold.maxWait gets 503 with Retry-After', { skip }, async (t) => {
  const { config } = await edgeConfig(t, ['unit', 'center'], {
    hold: { enabled: true, methods: 'writes', maxMs: 200, maxQueue: 10, retryAfterS: 7 },
  })
  const edge = await startEdge(t, config)
  await edge.admin.put(compileNginxRules(rules(1, { fence: { ranges: ['0~999'] } })).text)
  const started = performance.now()
  const answer = await rawRequest(edge.port, '/?r_id=5', [['content-length', '0']], 'PUT')
  assert.equal(answer.status, 503)
  assert.equal(answer.headers['retry-after'], '7')
  assert.match(answer.body, /APPACTIVE_FENCED/)
  assert.ok(performance.now() - started >= 190)
})

test('loop guard: a trusted request already forwarded once, owned by another unit, gets 508', {
  skip,
}, async (t) => {
  const peer = await freePort()
  const { config } = await edgeConfig(t, ['unit', 'center'], {
    forwarding: 'gateway',
    peerToken: 'peer-token-0123456789',
    units: { unit: { gateway: `http://127.0.0.1:${peer}` } },
  })
  const edge = await startEdge(t, config)
  await edge.admin.put(compileNginxRules(rules(1)).text)
  const trusted: Array<[string, string]> = [['x-appactive-peer', 'peer-token-0123456789']]
  const loop = await rawRequest(edge.port, '/?r_id=5', [...trusted, ['x-appactive-hops', '1']])
  assert.equal(loop.status, 508)
  assert.match(loop.body, /LOOP_DETECTED/)
  // An untrusted client's hop count is stripped: the request is forwarded to the peer (down: 502).
  const untrusted = await rawRequest(edge.port, '/?r_id=5', [['x-appactive-hops', '1']])
  assert.equal(untrusted.status, 502)
  // A trusted hop routed to this unit is served here, with the route id the peer sent.
  const here = await rawRequest(edge.port, '/', [
    ...trusted,
    ['x-appactive-hops', '1'],
    ['x-appactive-route-id', '2500'],
  ])
  assert.equal(here.status, 200)
  const seen = JSON.parse(here.body)
  assert.equal(seen.headers['x-appactive-hops'], '1')
  assert.equal(seen.headers['x-appactive-route-id'], '2500')
  assert.equal(seen.headers['x-appactive-peer'], undefined)
})

test('fallback reject answers 400, and no rule set yet answers 503 NO_RULES', { skip }, async (t) => {
  const { config } = await edgeConfig(t, ['unit', 'center'])
  const edge = await startEdge(t, config)
  const early = await rawRequest(edge.port, '/?r_id=5')
  assert.equal(early.status, 503)
  assert.match(early.body, /NO_RULES/)
  await edge.admin.put(compileNginxRules(rules(1, { fallback: 'reject' })).text)
  const rejected = await rawRequest(edge.port, '/?r_id=abc')
  assert.equal(rejected.status, 400)
  assert.match(rejected.body, /APPACTIVE_NO_ROUTE_ID/)
})

test('a rule set too large for the shared dict is refused before anything is pushed', { skip }, async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'rules.json')
  await writeFile(file, JSON.stringify(rules(1)))
  const { config } = await edgeConfig(t, ['unit', 'center'], { rules: file })
  const edge = await startEdge(t, config, { channels: undefined, sharedDictMb: 1 })
  await until(() => edge.servedVersion === 1, 5000, 'v1 served')
  const ranges = Array.from({ length: 60_000 }, (_, i) => `${i * 10}~${i * 10 + 4}`)
  const big = rules(2, {
    transform: [{ type: 'mod', divisor: 1_000_000 }],
    mapping: [{ unit: 'unit', ranges }],
  })
  await writeFile(file, JSON.stringify(big))
  await until(() => edge.agent.state().lastError?.version === 2, 5000, 'v2 refused')
  assert.match(JSON.stringify(edge.agent.state().lastError), /shared dict/)
  assert.equal(edge.agent.version, 1)
  assert.equal((await edge.admin.state()).version, 1)
  assert.equal(JSON.parse(readFileSync(edge.stateFile, 'utf8')).version, 1)
})

test('a reload nginx rejects shows the nginx -t output and leaves the running edge untouched', {
  skip,
}, async (t) => {
  const { config } = await edgeConfig(t, ['unit', 'center'])
  const edge = await startEdge(t, config)
  await edge.admin.put(compileNginxRules(rules(1)).text)
  const pid = edge.pid
  const broken = {
    ...config,
    apps: [
      {
        ...config.apps[0]!,
        upstreams: { ...config.apps[0]!.upstreams, unit: ['http://no-such-host.invalid:80'] },
      },
    ],
  }
  const err = await edge.reload(broken).then(
    () => assert.fail('reload should fail'),
    (e: unknown) => e,
  )
  assert.ok(err instanceof NginxError)
  assert.equal(err.failure, 'config')
  assert.match(err.message, /host not found in upstream/)
  assert.equal(edge.pid, pid)
  const still = await rawRequest(edge.port, '/?r_id=5')
  assert.equal(JSON.parse(still.body).backend, 'unit')
})

test('a topology change regenerates the config and reloads gracefully: new upstreams, same rules', {
  skip,
}, async (t) => {
  const { config, backends } = await edgeConfig(t, ['unit', 'center'])
  const edge = await startEdge(t, config)
  await edge.admin.put(compileNginxRules(rules(1)).text)
  const pid = edge.pid
  const { backends: more } = await edgeConfig(t, ['unit'])
  await edge.reload({
    ...config,
    apps: [{ ...config.apps[0]!, upstreams: { unit: [more.unit!.url], center: [backends.center!.url] } }],
  })
  assert.equal(edge.pid, pid, 'the same master: a reload, not a restart')
  const a = await rawRequest(edge.port, '/?r_id=5')
  assert.equal(a.status, 200)
  assert.equal(more.unit!.count, 1, 'the new unit instance answered')
  assert.equal(decisionOf(a.headers)?.version, 1, 'the rule set survived the reload')
})

test('an nginx that cannot start shows its error log and the start fails', { skip }, async (t) => {
  const busy = createServer()
  busy.listen(0, '127.0.0.1')
  await once(busy, 'listening')
  t.after(() => busy.close())
  const { config } = await edgeConfig(t, ['unit', 'center'], {
    listen: { host: '127.0.0.1', port: (busy.address() as { port: number }).port },
  })
  const err = await startNginxGateway(config, { logger: quiet, channels: [] }).then(
    () => assert.fail('start should fail'),
    (e: unknown) => e,
  )
  assert.ok(err instanceof NginxError, String(err))
  assert.equal(err.failure, 'start')
  assert.match(err.message, /Address already in use/)
})

test('a missing nginx is reported with how to install it', async () => {
  const err = await startNginxGateway((await import('../../helpers/gateway.js')).gatewayConfig([]), {
    logger: quiet,
    binary: '/nonexistent/nginx',
  }).then(
    () => assert.fail('start should fail'),
    (e: unknown) => e,
  )
  assert.ok(err instanceof NginxError)
  assert.equal(err.failure, 'missing')
  assert.match(err.message, /apt-get install nginx libnginx-mod-http-lua lua-cjson/)
})

test('appactive gateway --engine nginx serves, and SIGTERM stops nginx and exits 0', { skip }, async (t) => {
  const dir = await tempDir(t)
  const rulesFile = join(dir, 'rules.json')
  await writeFile(rulesFile, JSON.stringify(rules(1)))
  const { config } = await edgeConfig(t, ['unit', 'center'])
  const port = config.listen.port
  const yaml = [
    'unit: center',
    `listen: 127.0.0.1:${port}`,
    `rules: ${rulesFile}`,
    'workers: 1',
    'apps:',
    '  - name: shop',
    '    upstreams:',
    `      unit: [${config.apps[0]!.upstreams.unit![0]}]`,
    `      center: [${config.apps[0]!.upstreams.center![0]}]`,
  ].join('\n')
  await writeFile(join(dir, 'gateway.yaml'), yaml)
  const runDir = join(dir, 'run')
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(import.meta.dirname, '../../../src/cli/run.ts'),
      'gateway',
      '--engine',
      'nginx',
      '--config',
      join(dir, 'gateway.yaml'),
      '--run-dir',
      runDir,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, APPACTIVE_LOG_LEVEL: 'warn' } },
  )
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL')
  })
  const answer = await until(
    () =>
      rawRequest(port, '/?r_id=5').then(
        (a) => (a.status === 200 ? a : undefined),
        () => undefined,
      ),
    15_000,
    `the CLI edge to serve (${stderr})`,
  )
  assert.equal(JSON.parse(answer.body).backend, 'unit')
  const pid = Number(readFileSync(join(runDir, 'nginx.pid'), 'utf8'))
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  assert.equal(code, 0, stderr)
  assert.throws(() => process.kill(pid, 0), /ESRCH/, 'nginx is gone')
  assert.equal(existsSync(join(runDir, 'rules.state.json')), true, 'the state file stays for the next start')
})

test('apps are matched as the Node gateway matches them: host first, longest prefix, 404 NO_APP', {
  skip,
}, async (t) => {
  const { config, backends } = await edgeConfig(t, ['unit', 'center'])
  const { backends: api } = await edgeConfig(t, ['unit', 'center'])
  const { backends: local } = await edgeConfig(t, ['center'])
  const base = config.apps[0]!
  const edge = await startEdge(t, {
    ...config,
    apps: [
      { ...base, name: 'shop', match: { hosts: [], pathPrefix: '/shop' } },
      {
        ...base,
        name: 'api',
        match: { hosts: ['api.test'], pathPrefix: '/' },
        upstreams: { unit: [api.unit!.url], center: [api.center!.url] },
      },
      {
        ...base,
        name: 'static',
        match: { hosts: [], pathPrefix: '/static/' },
        unitEnabled: false,
        upstreams: { center: [local.center!.url] },
      },
    ],
  })
  await edge.admin.put(compileNginxRules(rules(1)).text)
  const shop = await rawRequest(edge.port, '/shop/cart?r_id=5')
  assert.equal(shop.status, 200)
  assert.equal(backends.unit!.count, 1)
  const query = await rawRequest(edge.port, '/shop?r_id=2500')
  assert.equal(JSON.parse(query.body).backend, 'center')
  assert.equal(backends.center!.count, 1)
  const viaHost = await rawRequest(edge.port, '/shop/cart?r_id=5', [['Host', 'API.test:8080']])
  assert.equal(viaHost.status, 200)
  assert.equal(api.unit!.count, 1, 'a host-bound app wins over a longer prefix')
  const disabled = await rawRequest(edge.port, '/static/app.js?r_id=5')
  assert.equal(disabled.status, 200)
  assert.equal(local.center!.count, 1, 'unitEnabled: false goes to the local unit')
  assert.equal(decisionOf(disabled.headers)?.reason, 'unit_disabled')
  const none = await rawRequest(edge.port, '/shopping?r_id=5')
  assert.equal(none.status, 404)
  assert.match(none.body, /NO_APP/)
})
