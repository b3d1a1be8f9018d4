// The server side of the message drain over real HTTP: `POST /mq` validation, and `waitForDrain` with
// `messages` — a source unit's consumer group waits for a barrier from every live producer on every
// partition, any member's sighting counts, a lapsed producer is not waited for, other units are not.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { request } from 'undici'
import { createRuleServer } from '../../src/channels/control/server.js'
import { rules, TOKEN } from '../helpers/agents.js'

async function server(t: { after: (fn: () => Promise<void>) => void }, leaseMs = 2000) {
  const s = createRuleServer({ tokens: [TOKEN], leaseMs })
  const addr = await s.listen(0)
  t.after(() => s.close())
  s.publish(rules(1))
  return { s, url: `http://127.0.0.1:${addr.port}/v1/agent` }
}

async function post(url: string, path: string, token: string, body: unknown) {
  const res = await request(`${url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  const text = await res.body.text()
  return { status: res.statusCode, json: text ? JSON.parse(text) : undefined }
}

/** Registers a node; returns a function posting its message drain report. */
async function node(url: string, nodeId: string, unit: string) {
  const r = await post(url, '/register', TOKEN, { nodeId, app: 'shop', unit, version: -1 })
  assert.equal(r.status, 200)
  const session = r.json.session as string
  return {
    session,
    report: async (body: unknown) => post(url, '/mq', session, body),
    heartbeat: async () => post(url, '/heartbeat', session, { version: 1, inflightFenced: 0 }),
  }
}

const barrier = (origin: string, version: number, partition = 0, partitions = 1) => ({
  topic: 'orders',
  group: 'q',
  origin,
  version,
  partition,
  partitions,
})

describe('message drain (control channel server)', () => {
  test('POST /mq refuses a malformed report with 400 naming the field, and another node with 403', async (t) => {
    const { url } = await server(t)
    const n = await node(url, 'n1', 'center')
    const cases: Array<[unknown, RegExp]> = [
      [{ produces: 'orders' }, /produces must be an array/],
      [{ produces: [''] }, /produces\[0\]/],
      [{ consumes: [{ topic: 'orders' }] }, /consumes\[0\]\.group/],
      [{ barriers: [{ ...barrier('p', 1), partition: 1 }] }, /partition must be below partitions/],
      [{ barriers: [{ ...barrier('p', 1), version: -1 }] }, /barriers\[0\]\.version/],
      [{ produces: Array.from({ length: 5000 }, (_, i) => `t${i}`) }, /more than 4096/],
    ]
    for (const [body, message] of cases) {
      const r = await n.report(body)
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80))
      assert.match(r.json.error.message, message)
    }
    const other = await n.report({ nodeId: 'n2', produces: [] })
    assert.equal(other.status, 403)
    assert.equal((await n.report({ produces: ['orders'] })).status, 204)
  })

  test('a source group waits for every live producer on every partition; any member counts', async (t) => {
    const { s, url } = await server(t)
    const p1 = await node(url, 'p1', 'center')
    const p2 = await node(url, 'p2', 'unit')
    const c1 = await node(url, 'c1', 'center')
    const c2 = await node(url, 'c2', 'center')
    const u1 = await node(url, 'u1', 'unit')
    for (const p of [p1, p2]) await p.report({ produces: ['orders'] })
    for (const c of [c1, c2, u1]) await c.report({ consumes: [{ topic: 'orders', group: 'q' }] })
    const messages = { version: 5, sourceUnits: ['center'] }
    const wait = s.waitForDrain({ timeoutMs: 5000, messages })
    assert.deepEqual(s.undrainedMessages(messages), ['center/orders/q (waiting for p1, p2)'])
    // Two partitions: p1's barrier passed on both (by two members), p2's on one only, and one too old.
    await c1.report({
      consumes: [{ topic: 'orders', group: 'q' }],
      barriers: [barrier('p1', 5, 0, 2), barrier('p2', 5, 0, 2)],
    })
    await c2.report({
      consumes: [{ topic: 'orders', group: 'q' }],
      barriers: [barrier('p1', 5, 1, 2), barrier('p2', 4, 1, 2)],
    })
    assert.deepEqual(s.undrainedMessages(messages), ['center/orders/q (waiting for p2)'])
    await c2.report({
      consumes: [{ topic: 'orders', group: 'q' }],
      barriers: [barrier('p1', 5, 1, 2), barrier('p2', 6, 1, 2)],
    })
    const r = await wait
    assert.equal(r.ok, true)
    assert.deepEqual(s.undrainedMessages(messages), [])
    // The unit's group was never waited for: it is not a source.
    assert.ok(r.satisfied.includes('u1'))
  })

  test('a lapsed producer is not waited for; the drain times out naming what is missing', async (t) => {
    const { s, url } = await server(t, 600)
    const p1 = await node(url, 'p1', 'center')
    const p2 = await node(url, 'p2', 'center')
    const c1 = await node(url, 'c1', 'center')
    for (const p of [p1, p2]) await p.report({ produces: ['orders'] })
    await c1.report({ consumes: [{ topic: 'orders', group: 'q' }], barriers: [barrier('p1', 2)] })
    const messages = { version: 2, sourceUnits: ['center'] }
    const short = await s.waitForDrain({ timeoutMs: 200, messages })
    assert.equal(short.ok, false)
    assert.deepEqual(short.pending, ['c1'])
    assert.deepEqual(s.undrainedMessages(messages), ['center/orders/q (waiting for p2)'])
    // p1 and c1 keep their leases; p2 goes silent and lapses: the drain completes without it.
    const beat = setInterval(() => {
      void p1.heartbeat()
      void c1.heartbeat()
    }, 150)
    t.after(() => clearInterval(beat))
    const started = performance.now()
    const r = await s.waitForDrain({ timeoutMs: 5000, messages })
    assert.equal(r.ok, true)
    assert.ok(performance.now() - started < 3000)
  })
})
