import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import { request } from 'undici'
import { createAgent } from '../../src/agent/index.js'
import { createControlChannel } from '../../src/channels/control/client.js'
import { createRuleServer } from '../../src/channels/control/server.js'
import { AppActiveError } from '../../src/errors/index.js'
import { applied, controlledAgent, rules, TOKEN, until } from '../helpers/agents.js'

async function server(
  t: { after: (fn: () => Promise<void>) => void },
  opts: { leaseMs?: number; port?: number } = {},
) {
  const s = createRuleServer({ tokens: [TOKEN], leaseMs: opts.leaseMs ?? 2000 })
  const addr = await s.listen(opts.port ?? 0)
  t.after(() => s.close())
  return { s, url: `http://127.0.0.1:${addr.port}`, port: addr.port }
}

async function call(
  url: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  token?: string,
  body?: unknown,
) {
  const res = await request(`${url}/v1/agent${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, json: text ? JSON.parse(text) : undefined }
}

async function register(url: string, nodeId: string, token = TOKEN) {
  return call(url, 'POST', '/register', token, { nodeId, app: 'shop', unit: 'center', version: -1 })
}

describe('control-plane channel', () => {
  test('delivers every published version; the server sees each acknowledged', async (t) => {
    const { s, url } = await server(t)
    s.publish(rules(1))
    const agent = controlledAgent({ url, nodeId: 'n1' })
    t.after(() => agent.close())
    const seen: number[] = []
    agent.on('applied', (v) => seen.push(v))
    await agent.start()
    await applied(agent, 1)
    for (const v of [2, 3, 4]) {
      s.publish(rules(v, 1999 + v))
      const r = await s.waitForAcks(v, { timeoutMs: 5000 })
      assert.deepEqual(r, { ok: true, satisfied: ['n1'], lapsed: [], pending: [] })
    }
    assert.deepEqual(seen, [1, 2, 3, 4])
    assert.equal(agent.router?.route('2003').unit, 'unit')
    const [node] = s.nodes()
    assert.equal(node?.appliedVersion, 4)
    assert.equal(node?.connected, true)
  })

  test('after a server restart the agent re-registers and resumes in order, none skipped', async (t) => {
    const first = createRuleServer({ tokens: [TOKEN] })
    const { port } = await first.listen(0)
    const url = `http://127.0.0.1:${port}`
    for (const v of [1, 2, 3]) first.publish(rules(v))
    const agent = controlledAgent({ url, nodeId: 'n1' })
    t.after(() => agent.close())
    const seen: number[] = []
    agent.on('applied', (v) => seen.push(v))
    await agent.start()
    await applied(agent, 3)
    await first.close()

    // A new server process (sessions lost) that has the history up to 6.
    const second = createRuleServer({ tokens: [TOKEN] })
    for (const v of [1, 2, 3, 4, 5, 6]) second.publish(rules(v))
    await second.listen(port)
    t.after(() => second.close())
    await applied(agent, 6)
    // A new agent gets the latest whole rule set (3); after the restart, 4, 5 and 6 in order.
    assert.deepEqual(seen, [3, 4, 5, 6])
    const r = await second.waitForAcks(6, { timeoutMs: 5000 })
    assert.equal(r.ok, true)
  })

  test('duplicate and out-of-order deliveries are ignored', async (t) => {
    const { s, url } = await server(t)
    s.publish(rules(1))
    s.publish(rules(2, 2999))
    const agent = controlledAgent({ url, nodeId: 'n1' })
    t.after(() => agent.close())
    await agent.start()
    await applied(agent, 2)
    assert.equal(agent.apply(rules(2, 2999)).status, 'duplicate')
    assert.deepEqual(agent.apply(rules(1)), { status: 'stale', version: 1, current: 2 })
    const conflicting = agent.apply(rules(2, 1000))
    assert.equal(conflicting.status, 'rejected')
    assert.equal(agent.version, 2)
    assert.equal(agent.router?.route('2500').unit, 'unit', 'the version in force is unchanged')
  })

  test('a rule set the agent cannot apply is rejected, reported, and the last good one stays', async (t) => {
    const { s, url } = await server(t)
    s.publish(rules(1))
    const agent = controlledAgent({ url, nodeId: 'n1', unit: 'center' })
    t.after(() => agent.close())
    await agent.start()
    await applied(agent, 1)
    // Valid for the server, but it drops the agent's own unit.
    const reported = once(s, 'rejected', { signal: AbortSignal.timeout(5000) })
    s.publish({
      ...rules(2),
      units: [{ name: 'unit', center: true }],
      mapping: [{ unit: 'unit', ranges: ['0~9999'] }],
    })
    const [nodeId, version, issues] = await reported
    assert.equal(nodeId, 'n1')
    assert.equal(version, 2)
    assert.match(issues[0].message, /localUnit "center" is not a unit/)
    assert.equal(agent.version, 1)
    assert.equal(agent.state().lastError?.version, 2)
    assert.equal(s.nodes()[0]?.lastError?.version, 2)
  })

  test('a malformed pushed payload is rejected and reported', async (t) => {
    const reports: unknown[] = []
    const fake = createServer(async (req: IncomingMessage, res: ServerResponse) => {
      const body = await new Promise<string>((resolve) => {
        let b = ''
        req.on('data', (c) => (b += c)).on('end', () => resolve(b))
      })
      if (req.url?.endsWith('/register')) {
        res.writeHead(200, { 'content-type': 'application/json' })
        return res.end(JSON.stringify({ session: 's', leaseMs: 5000, heartbeatMs: 1000, latestVersion: 1 }))
      }
      if (req.url?.endsWith('/stream')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        return res.write('id: 1\nevent: rules\ndata: {"version": 1, oops\n\n')
      }
      if (req.url?.endsWith('/report')) reports.push(JSON.parse(body))
      if (req.url?.endsWith('/heartbeat')) {
        res.writeHead(200, { 'content-type': 'application/json' })
        return res.end('{"leaseMs":5000,"latestVersion":1}')
      }
      res.writeHead(204).end()
    })
    fake.listen(0, '127.0.0.1')
    await once(fake, 'listening')
    t.after(() => {
      fake.closeAllConnections()
      fake.close()
    })
    const agent = controlledAgent({
      url: `http://127.0.0.1:${(fake.address() as AddressInfo).port}`,
      nodeId: 'n1',
    })
    t.after(() => agent.close())
    const rejected = once(agent, 'rejected', { signal: AbortSignal.timeout(5000) })
    await agent.start()
    await rejected
    await until(() => reports.length > 0, 5000, 'the report')
    assert.equal(agent.version, -1)
    assert.match(JSON.stringify(reports[0]), /not valid JSON/)
  })

  test('401 without or with a wrong token; a session cannot speak for another node', async (t) => {
    const { s, url } = await server(t)
    s.publish(rules(1))
    assert.equal((await call(url, 'POST', '/register', undefined, { nodeId: 'n1' })).status, 401)
    const wrong = await register(url, 'n1', 'wrong-token-0123456789')
    assert.equal(wrong.status, 401)
    assert.equal(wrong.headers['www-authenticate'], 'Bearer')
    assert.equal((await call(url, 'GET', '/stream', 'no-such-session')).status, 401)
    assert.equal((await call(url, 'POST', '/ack', undefined, { version: 1 })).status, 401)

    const a = (await register(url, 'a')).json.session
    await register(url, 'b')
    const forged = await call(url, 'POST', '/ack', a, { nodeId: 'b', version: 1 })
    assert.equal(forged.status, 403)
    assert.equal(s.nodes().find((n) => n.nodeId === 'b')?.appliedVersion, -1)
    // A re-registration replaces the old session.
    const a2 = (await register(url, 'a')).json.session
    assert.notEqual(a2, a)
    assert.equal((await call(url, 'POST', '/ack', a, { version: 1 })).status, 401)
    assert.equal((await call(url, 'POST', '/ack', a2, { version: 1 })).status, 204)
  })

  test('bad input: oversized bodies, unknown versions, malformed fields, unknown paths', async (t) => {
    const { s, url } = await server(t)
    s.publish(rules(1))
    const session = (await register(url, 'n1')).json.session
    const big = await call(
      url,
      'POST',
      '/report',
      session,
      JSON.stringify({ issues: [], pad: 'x'.repeat(70_000) }),
    )
    assert.equal(big.status, 413)
    assert.equal((await call(url, 'POST', '/ack', session, { version: 7 })).status, 409)
    assert.equal((await call(url, 'POST', '/ack', session, { version: 'one' })).status, 400)
    assert.equal((await call(url, 'POST', '/ack', session, '{not json')).status, 400)
    const badId = await call(url, 'POST', '/register', TOKEN, {
      nodeId: '../etc',
      app: 'shop',
      unit: 'c',
      version: -1,
    })
    assert.equal(badId.status, 400)
    assert.equal((await call(url, 'GET', '/nope', session)).status, 404)
    // Acks never move backwards.
    await call(url, 'POST', '/ack', session, { version: 1 })
    await call(url, 'POST', '/ack', session, { version: 0 })
    assert.equal(s.nodes()[0]?.appliedVersion, 1)
    assert.throws(() => s.publish(rules(1)), /not above the latest/)
    assert.throws(
      () => s.publish({ version: 2 }),
      (e: unknown) => e instanceof AppActiveError && e.code === 'APPACTIVE_RULE_INVALID',
    )
    assert.throws(() => createRuleServer({ tokens: [] }), /at least one agent token/)
  })

  test('long-poll transport delivers and acknowledges', async (t) => {
    const { s, url } = await server(t)
    s.publish(rules(1))
    const agent = controlledAgent({ url, nodeId: 'lp', transport: 'long-poll' })
    t.after(() => agent.close())
    await agent.start()
    await applied(agent, 1)
    s.publish(rules(2, 2999))
    await applied(agent, 2)
    assert.equal((await s.waitForAcks(2, { timeoutMs: 5000 })).ok, true)
  })

  test('a lapsed lease refuses guarded writes; recovery needs the latest version', async (t) => {
    const first = createRuleServer({ tokens: [TOKEN], leaseMs: 300 })
    const { port } = await first.listen(0)
    const url = `http://127.0.0.1:${port}`
    first.publish(rules(1))
    const agent = controlledAgent({ url, nodeId: 'n1', unit: 'center' })
    t.after(() => agent.close())
    await agent.start()
    await applied(agent, 1)
    await until(() => agent.state().lease === 'valid', 5000, 'the lease')
    agent.checkWrite('2500') // owned by center

    await first.close()
    await until(() => agent.state().lease === 'expired', 5000, 'the lease to lapse')
    assert.throws(
      () => agent.checkWrite('2500'),
      (e: unknown) => e instanceof AppActiveError && e.code === 'APPACTIVE_LEASE_EXPIRED',
    )

    const second = createRuleServer({ tokens: [TOKEN], leaseMs: 300 })
    second.publish(rules(1))
    second.publish(rules(2, 2999, ['2000~2999']))
    await second.listen(port)
    t.after(() => second.close())
    await applied(agent, 2)
    await until(() => agent.state().lease === 'valid', 5000, 'the lease to be granted again')
    assert.throws(
      () => agent.checkWrite('2500'),
      (e: unknown) => e instanceof AppActiveError && e.code === 'APPACTIVE_FENCED',
    )
    agent.checkWrite('5000')
  })

  test('the server waits out a node whose lease lapses instead of its ack', async (t) => {
    const { s, url } = await server(t, { leaseMs: 300 })
    s.publish(rules(1))
    const session = (await register(url, 'silent-node')).json.session
    assert.ok(session)
    s.publish(rules(2))
    const started = performance.now()
    const r = await s.waitForAcks(2, { timeoutMs: 5000 })
    assert.deepEqual(r, { ok: true, satisfied: [], lapsed: ['silent-node'], pending: [] })
    assert.ok(performance.now() - started < 2000)
    assert.equal(s.nodes()[0]?.lapsed, true)
  })

  test('drain: the server sees in-flight writes on fenced keys end', async (t) => {
    const { s, url } = await server(t)
    s.publish(rules(1))
    const agent = controlledAgent({ url, nodeId: 'n1', unit: 'center' })
    t.after(() => agent.close())
    await agent.start()
    await applied(agent, 1)
    await until(() => agent.state().lease === 'valid', 5000, 'the lease')
    const write = agent.beginWrite('2500')
    s.publish(rules(2, 1999, ['2000~2999']))
    assert.equal((await s.waitForAcks(2, { timeoutMs: 5000 })).ok, true)
    assert.equal(s.nodes()[0]?.inflightFenced, 1)
    const early = await s.waitForDrain({ timeoutMs: 50 })
    assert.deepEqual(early.pending, ['n1'])
    const drained = s.waitForDrain({ timeoutMs: 5000 })
    write.end()
    assert.equal((await drained).ok, true)
  })

  test('an agent whose control plane is down starts with its cached rules and says so', async (t) => {
    const { mkdtemp } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const dir = await mkdtemp(join(tmpdir(), 'appactive-cache-'))
    const cache = join(dir, 'rules.json')
    const { s, url, port } = await server(t)
    s.publish(rules(3, 2999))
    const a1 = controlledAgent({ url, nodeId: 'c1', cache })
    await a1.start()
    await applied(a1, 3)
    await a1.close()
    await s.close()

    const logs: string[] = []
    const channel = createControlChannel({
      url: `http://127.0.0.1:${port}`,
      token: TOKEN,
      identity: { nodeId: 'c1', app: 'shop', unit: 'center' },
      backoff: { minMs: 20, maxMs: 100 },
    })
    const pino = (await import('pino')).default
    const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(line) })
    const a2 = createAgent({ unit: 'center', app: 'shop', nodeId: 'c1', channels: [channel], logger, cache })
    t.after(() => a2.close())
    await a2.start()
    assert.equal(a2.version, 3)
    assert.equal(a2.router?.route('2500').unit, 'unit')
    assert.equal(a2.state().lease, 'pending')
    assert.throws(
      () => a2.checkWrite('5000'),
      (e: unknown) => e instanceof AppActiveError && e.code === 'APPACTIVE_LEASE_EXPIRED',
    )
    assert.ok(logs.some((l) => l.includes('starting with cached rule set v3')))
    assert.ok(logs.some((l) => l.includes('control plane unreachable')))
  })
})

describe('ack stream', () => {
  test('acks travel as lines of one long-lived request, not one request each', async (t) => {
    const s = createRuleServer({ tokens: [TOKEN], leaseMs: 2000 })
    const seen: string[] = []
    const http = createServer((req, res) => {
      seen.push(`${req.method} ${req.url?.replace(/\?.*/, '')}`)
      s.handle(req, res)
    })
    http.requestTimeout = 0
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r))
    t.after(async () => {
      await s.close()
      http.closeAllConnections()
      await new Promise((r) => http.close(r))
    })
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`
    s.publish(rules(1))
    const agent = controlledAgent({ url, nodeId: 'n1' })
    t.after(() => agent.close())
    await agent.start()
    for (const v of [2, 3, 4, 5]) {
      s.publish(rules(v, 1999 + v))
      assert.equal((await s.waitForAcks(v, { timeoutMs: 5000 })).ok, true)
    }
    assert.equal(seen.filter((r) => r === 'POST /v1/agent/acks').length, 1)
    assert.equal(seen.filter((r) => r === 'POST /v1/agent/ack').length, 0)
  })

  test('a bad line, another node id or a replaced session ends the stream with its error', async (t) => {
    const { s, url } = await server(t)
    s.publish(rules(1))
    const stream = async (session: string, body: string) => {
      const res = await request(`${url}/v1/agent/acks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${session}`, 'content-type': 'application/x-ndjson' },
        body,
      })
      return { status: res.statusCode, json: (await res.body.text()) || undefined }
    }
    const first = (await register(url, 'n1')).json.session as string
    assert.equal((await stream(first, '{"version":1}\n\n')).status, 204)
    assert.equal(s.nodes()[0]!.appliedVersion, 1)
    assert.equal((await stream(first, 'not json\n')).status, 400)
    assert.equal((await stream(first, '{"version":1,"nodeId":"n2"}\n')).status, 403)
    assert.equal((await stream(first, '{"version":9}\n')).status, 409)
    assert.equal((await stream(first, `{"x":"${'a'.repeat(70_000)}`)).status, 413)
    await register(url, 'n1') // replaces the session
    assert.equal((await stream(first, '{"version":1}\n')).status, 401)
    assert.equal((await stream('nope', '{"version":1}\n')).status, 401)
  })
})
