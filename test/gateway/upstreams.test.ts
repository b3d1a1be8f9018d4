import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { AppConfig, HealthCheckConfig } from '../../src/gateway/types.js'
import {
  type Instance,
  isUpstreamFailure,
  UpstreamRegistry,
  UpstreamSet,
  type UpstreamSetOptions,
} from '../../src/gateway/upstreams.js'
import { app as appConfig } from '../helpers/gateway.js'

const timeouts = { connectMs: 1000, headersMs: 5000, bodyMs: 5000 }
const WAIT = 5000

interface Backend {
  readonly url: string
  readonly port: number
  readonly server: Server
  /** Requests per path. */
  readonly hits: Map<string, number>
  /** `/hold` requests not answered yet. */
  readonly held: ServerResponse[]
  /** Status `/health` answers. */
  health: number
  close(): Promise<void>
}

/** A node:http backend on `port` (0: any): `/` answers its name, `/hold` waits for `release`, `/health` answers `health`. */
async function backend(name: string, port = 0): Promise<Backend> {
  const hits = new Map<string, number>()
  const held: ServerResponse[] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/'
    hits.set(path, (hits.get(path) ?? 0) + 1)
    if (path === '/hold') held.push(res)
    else if (path === '/health') res.writeHead(b.health).end()
    else res.end(name)
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  const actual = (server.address() as AddressInfo).port
  const b: Backend = {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    server,
    hits,
    held,
    health: 200,
    close: () =>
      new Promise((resolve, reject) => {
        for (const res of held.splice(0)) res.end()
        server.close((err) => (err ? reject(err) : resolve()))
        server.closeAllConnections()
      }),
  }
  return b
}

/** A loopback port nothing listens on (connections are refused). */
async function refusedPort(): Promise<number> {
  const b = await backend('gone')
  await b.close()
  return b.port
}

function set(urls: readonly string[], options: Partial<UpstreamSetOptions> = {}): UpstreamSet {
  const s = new UpstreamSet(urls, { balance: 'round-robin', timeouts, name: 'shop/center', ...options })
  after(() => s.close())
  return s
}

/** Forwards one GET as the proxy does: pick, begin, request, end. The body text, the error, or undefined (no instance). */
async function send(s: UpstreamSet, path = '/'): Promise<string | Error | undefined> {
  const instance = s.pick()
  if (instance === undefined) return undefined
  instance.begin()
  try {
    const { body } = await instance.pool.request({ method: 'GET', path })
    const text = await body.text()
    instance.end(true)
    return text
  } catch (err) {
    instance.end(false, err)
    return err as Error
  }
}

/** Polls `check` (every 5 ms) until it returns a value, for at most `ms`. */
async function until<T>(check: () => T | undefined, ms = WAIT): Promise<T> {
  const deadline = performance.now() + ms
  for (;;) {
    const value = check()
    if (value !== undefined) return value
    if (performance.now() > deadline) throw new Error(`condition not met within ${ms} ms`)
    await sleep(5)
  }
}

const signal = () => AbortSignal.timeout(WAIT)

describe('UpstreamSet: balancing', () => {
  test('round-robin spreads requests evenly over the instances', async (t) => {
    const backends = await Promise.all(['a', 'b', 'c'].map((n) => backend(n)))
    t.after(() => Promise.all(backends.map((b) => b.close())))
    const s = set(backends.map((b) => b.url))
    const seen = new Map<string, number>()
    for (let i = 0; i < 30; i++) {
      const text = await send(s)
      assert.equal(typeof text, 'string')
      seen.set(text as string, (seen.get(text as string) ?? 0) + 1)
    }
    assert.deepEqual(Object.fromEntries(seen), { a: 10, b: 10, c: 10 })
    assert.equal(s.healthy, 3)
    assert.deepEqual(
      s.snapshot().map((i) => [i.healthy, i.inflight, i.failures]),
      [
        [true, 0, 0],
        [true, 0, 0],
        [true, 0, 0],
      ],
    )
  })

  test('least-busy prefers the idle instance; ties rotate', async (t) => {
    const backends = await Promise.all(['a', 'b'].map((n) => backend(n)))
    t.after(() => Promise.all(backends.map((b) => b.close())))
    const s = set(
      backends.map((b) => b.url),
      { balance: 'least-busy' },
    )
    const [a, b] = s.instances as [Instance, Instance]
    // Idle ties rotate.
    assert.deepEqual([s.pick(), s.pick(), s.pick(), s.pick()], [a, b, a, b])

    // Two requests held open on `a`.
    const busy = [0, 1].map(async () => {
      a.begin()
      const { body } = await a.pool.request({ method: 'GET', path: '/hold' })
      await body.text()
      a.end(true)
    })
    await until(() => (backends[0]!.held.length === 2 ? true : undefined))
    assert.equal(a.inflight, 2)
    for (let i = 0; i < 5; i++) assert.equal(s.pick(), b)
    // One on `b` still leaves it the least busy.
    b.begin()
    assert.equal(s.pick(), b)
    b.end(true)

    for (const res of backends[0]!.held.splice(0)) res.end('done')
    await Promise.all(busy)
    assert.equal(a.inflight, 0)
    assert.deepEqual(new Set([s.pick(), s.pick()]), new Set([a, b]))
  })

  test('a set with no instances picks nothing', () => {
    const s = set([])
    assert.equal(s.pick(), undefined)
    assert.equal(s.healthy, 0)
  })
})

describe('UpstreamSet: passive ejection', () => {
  test('connection failures eject the instance; the set keeps serving from the rest', async (t) => {
    const backends = await Promise.all(['a', 'c'].map((n) => backend(n)))
    t.after(() => Promise.all(backends.map((b) => b.close())))
    const dead = `http://127.0.0.1:${await refusedPort()}`
    const s = set([backends[0]!.url, dead, backends[1]!.url], { ejectBackoffMs: 60_000 })
    const ejected = once(s, 'ejected', { signal: signal() })

    const answers: (string | Error | undefined)[] = []
    for (let i = 0; i < 9; i++) answers.push(await send(s))
    const [instance] = (await ejected) as [Instance]
    assert.equal(instance.url, dead)
    assert.equal(instance.healthy, false)
    assert.equal(instance.consecutiveFailures, 3)
    assert.match(instance.lastError ?? '', /ECONNREFUSED/)
    assert.equal(s.healthy, 2)
    // Exactly the three requests sent to the dead instance failed, and each was a connection failure.
    const failed = answers.filter((a) => a instanceof Error)
    assert.equal(failed.length, 3)
    assert.ok(failed.every(isUpstreamFailure))

    // From now on, only the live instances answer, evenly.
    const later: (string | Error | undefined)[] = []
    for (let i = 0; i < 20; i++) later.push(await send(s))
    assert.deepEqual(later.filter((a) => a === 'a').length, 10)
    assert.deepEqual(later.filter((a) => a === 'c').length, 10)
    assert.deepEqual(
      s.snapshot().map((i) => i.healthy),
      [true, false, true],
    )
  })

  test('HTTP errors count as answers and client aborts are neutral; failures must be consecutive', async (t) => {
    const b = await backend('a')
    t.after(() => b.close())
    const s = set([b.url])
    const [i] = s.instances as [Instance]
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    for (let n = 0; n < 2; n++) {
      i.begin()
      i.end(false, refused)
    }
    // A 5xx is still an answer: the count restarts.
    i.begin()
    i.end(true)
    assert.equal(i.consecutiveFailures, 0)
    for (let n = 0; n < 5; n++) {
      i.begin()
      i.end(false, Object.assign(new Error('aborted'), { code: 'UND_ERR_ABORTED' }))
    }
    assert.equal(i.consecutiveFailures, 0)
    assert.equal(i.inflight, 0)
    assert.equal(i.healthy, true)
    assert.equal(isUpstreamFailure(new AggregateError([refused])), true)
    assert.equal(isUpstreamFailure(new Error('plain')), false)
  })

  test('half-open: after the backoff one trial goes through; failure doubles the backoff, success restores', async (t) => {
    const port = await refusedPort()
    const backoff = 150
    const s = set([`http://127.0.0.1:${port}`], { ejectBackoffMs: backoff })
    const [instance] = s.instances as [Instance]
    // At the ejection, every instance is down and the backoff has not passed: nothing to pick.
    let picked: Instance | undefined | null = null
    s.once('ejected', () => {
      picked = s.pick()
    })
    let lastSent = 0 // the ejection (and its backoff) starts after the last send began
    for (let n = 0; n < 3; n++) {
      lastSent = performance.now()
      assert.ok((await send(s)) instanceof Error)
    }
    assert.equal(picked, undefined)
    assert.equal(s.healthy, 0)

    // The first trial fails (still refused): the instance stays ejected, and only one trial is given.
    let again: Instance | undefined
    const trial = await until(() => {
      const first = s.pick()
      if (first !== undefined) again = s.pick()
      return first
    })
    assert.ok(performance.now() - lastSent >= backoff, 'the trial waited for the backoff')
    assert.equal(trial, instance)
    assert.equal(again, undefined)
    trial.begin()
    const failedAt = performance.now()
    trial.end(false, Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))
    assert.equal(instance.healthy, false)

    // The backend comes back; the next trial (after a doubled backoff) restores the instance.
    const b = await backend('back', port)
    t.after(() => b.close())
    const restored = once(s, 'restored', { signal: signal() })
    const second = await until(() => s.pick())
    assert.ok(performance.now() - failedAt >= 2 * backoff, 'the backoff doubled')
    second.begin()
    const { body } = await second.pool.request({ method: 'GET', path: '/' })
    assert.equal(await body.text(), 'back')
    second.end(true)
    await restored
    assert.equal(instance.healthy, true)
    assert.equal(s.healthy, 1)
    assert.equal(await send(s), 'back')
  })
})

describe('UpstreamSet: active health checks', () => {
  const hc: HealthCheckConfig = {
    path: '/health',
    intervalMs: 10,
    timeoutMs: 500,
    unhealthyAfter: 2,
    healthyAfter: 3,
  }

  test('a failing probe ejects; healthyAfter good probes restore', async (t) => {
    const [good, flaky] = await Promise.all([backend('good'), backend('flaky')])
    t.after(() => Promise.all([good.close(), flaky.close()]))
    flaky.health = 500
    const s = set([good.url, flaky.url], { healthCheck: hc })
    const ejected = once(s, 'ejected', { signal: signal() })
    s.start()
    s.start() // idempotent
    const [out] = (await ejected) as [Instance]
    assert.equal(out.url, flaky.url)
    assert.match(out.lastError ?? '', /answered 500/)
    for (let i = 0; i < 6; i++) assert.equal(await send(s), 'good')

    // Good probes restore it, only after `healthyAfter` of them.
    const restored = once(s, 'restored', { signal: signal() })
    const before = flaky.hits.get('/health') ?? 0
    flaky.health = 200
    await restored
    assert.ok((flaky.hits.get('/health') ?? 0) - before >= hc.healthyAfter)
    assert.equal(s.healthy, 2)
    const answers = new Set<string | Error | undefined>()
    for (let i = 0; i < 4; i++) answers.add(await send(s))
    assert.deepEqual(answers, new Set(['good', 'flaky']))
  })

  test('a probe that times out or is refused counts as a failure; every instance down: pick() is undefined', async (t) => {
    const hang = createServer(() => {}) // accepts, never answers
    hang.listen(0, '127.0.0.1')
    await once(hang, 'listening')
    t.after(
      () =>
        new Promise<void>((resolve) => {
          hang.close(() => resolve())
          hang.closeAllConnections()
        }),
    )
    const hangUrl = `http://127.0.0.1:${(hang.address() as AddressInfo).port}`
    const dead = `http://127.0.0.1:${await refusedPort()}`
    const s = set([hangUrl, dead], { healthCheck: { ...hc, timeoutMs: 250 } })
    const out: Instance[] = []
    s.on('ejected', (i) => out.push(i))
    s.start()
    await until(() => (out.length === 2 ? true : undefined))
    assert.equal(s.healthy, 0)
    assert.equal(s.pick(), undefined)
    const byUrl = new Map(s.snapshot().map((i) => [i.url, i]))
    assert.match(byUrl.get(hangUrl)?.lastError ?? '', /timed out/)
    assert.match(byUrl.get(dead)?.lastError ?? '', /ECONNREFUSED/)
  })

  test('close() stops the probes and closes the pools; it is idempotent and leaves no handles', async (t) => {
    const b = await backend('a')
    t.after(() => b.server.close())
    const s = new UpstreamSet([b.url], { balance: 'round-robin', timeouts, name: 'x/y', healthCheck: hc })
    s.start()
    await until(() => ((b.hits.get('/health') ?? 0) >= 3 ? true : undefined))
    assert.equal(await send(s), 'a')
    await Promise.all([s.close(), s.close()])
    await s.close()
    const [instance] = s.instances as [Instance]
    assert.equal(instance.pool.closed, true)
    await assert.rejects(instance.pool.request({ method: 'GET', path: '/' }), {
      code: /^UND_ERR_(CLOSED|DESTROYED)$/,
    })
    s.start() // no-op once closed
    const probes = b.hits.get('/health')
    await sleep(hc.intervalMs * 5) // proving an absence: no probe may arrive after close()
    assert.equal(b.hits.get('/health'), probes)
    // The backend closes cleanly: no pooled connection holds it open.
    await new Promise<void>((resolve, reject) => b.server.close((err) => (err ? reject(err) : resolve())))
    // libuv releases closed handles a loop turn or two later; none may stay.
    const tcp = () => process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP'))
    await until(() => (tcp().length === 0 ? true : undefined), 1000)
  })
})

describe('UpstreamRegistry', () => {
  test('one set per app and unit; events carry the set; start and close cover every set', async (t) => {
    const backends = await Promise.all(['c1', 'u1'].map((n) => backend(n)))
    t.after(() => Promise.all(backends.map((b) => b.close())))
    const dead = `http://127.0.0.1:${await refusedPort()}`
    const app = (name: string, upstreams: Record<string, string[]>): AppConfig =>
      appConfig(upstreams, { name })
    const registry = new UpstreamRegistry(
      [app('shop', { center: [backends[0]!.url], unit: [backends[1]!.url, dead] }), app('cart', {})],
      timeouts,
      { ejectBackoffMs: 60_000 },
    )
    t.after(() => registry.close())
    registry.start()
    assert.equal(registry.get('shop', 'center')?.name, 'shop/center')
    assert.equal(registry.get('shop', 'sh'), undefined)
    assert.equal(registry.get('cart', 'center'), undefined)
    assert.equal(registry.get('nope', 'center'), undefined)

    const unit = registry.get('shop', 'unit')!
    const ejected = once(registry, 'ejected', { signal: signal() })
    for (let i = 0; i < 6; i++) await send(unit)
    const [instance, from] = (await ejected) as [Instance, UpstreamSet]
    assert.equal(instance.url, dead)
    assert.equal(from, unit)
    assert.deepEqual(
      registry.snapshot().map((x) => [x.app, x.unit, x.healthy, x.instances.length]),
      [
        ['shop', 'center', 1, 1],
        ['shop', 'unit', 1, 2],
      ],
    )
    await registry.close()
    assert.ok(unit.instances.every((i) => i.pool.closed))
  })
})
