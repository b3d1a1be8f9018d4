// Context correctness across two hops (issue 5 item 4): 1,000 concurrent requests with different route
// ids go client → Express (hop 1) → Fastify (hop 2); hop 1 crosses an await, a timer, a request-body
// stream, an EventEmitter callback and a stream pipeline before calling hop 2 through an undici
// interceptor. Every hop must see its own id, never a neighbour's.
import assert from 'node:assert/strict'
import { EventEmitter, once } from 'node:events'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { PassThrough, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import express from 'express'
import Fastify from 'fastify'
import { Agent, request } from 'undici'
import { createAgent } from '../../src/agent/index.js'
import { routeInterceptor } from '../../src/bridges/http-client/index.js'
import { appactiveMiddleware, appactivePlugin } from '../../src/bridges/http-server/index.js'
import { currentRouteId } from '../../src/context/index.js'
import { silent } from '../helpers/agents.js'
import { threeUnits } from '../helpers/topology.js'

const N = 1000

test(`${N} concurrent requests keep their own route id across two hops`, async (t) => {
  const agent = createAgent({ unit: 'hz', app: 'shop', logger: silent, cache: false })
  agent.apply(threeUnits(1))

  const second = Fastify()
  await second.register(appactivePlugin, { agent, services: { '/stock/**': 'normal' } })
  second.get('/stock/:id', async () => {
    await sleep(Math.random() * 5)
    return { routeId: currentRouteId() ?? null }
  })
  await second.listen({ port: 0, host: '127.0.0.1' })
  t.after(() => second.close())
  const secondUrl = `http://127.0.0.1:${(second.server.address() as AddressInfo).port}`

  const dispatcher = new Agent({ connections: 64 }).compose(routeInterceptor())
  t.after(() => dispatcher.close())

  const app = express()
  app.use(appactiveMiddleware({ agent, services: { '/orders/**': 'unit' } }))
  app.post('/orders/:id', async (req, res) => {
    const seen: Record<string, string | null> = {}
    const look = (where: string) => {
      seen[where] = currentRouteId() ?? null
    }
    await new Promise((r) => setImmediate(r))
    look('await')
    await new Promise((r) => setTimeout(r, Math.random() * 5))
    look('timer')
    for await (const _chunk of req) look('body stream')
    const events = new EventEmitter()
    const heard = once(events, 'done')
    events.on('tick', () => look('emitter'))
    setTimeout(() => {
      events.emit('tick')
      events.emit('done')
    }, 1)
    await heard
    let transformed = ''
    await pipeline(
      ['a', 'b'],
      new Transform({
        transform(chunk, _enc, done) {
          look('pipeline')
          done(null, chunk)
        },
      }),
      new PassThrough().on('data', (c) => {
        transformed += c
      }),
    )
    const hop = await request(`${secondUrl}/stock/${req.params.id}`, { dispatcher })
    const downstream = (await hop.body.json()) as { routeId: string | null }
    res.json({ seen, downstream: downstream.routeId, transformed })
  })
  const first: Server = app.listen(0, '127.0.0.1')
  await once(first, 'listening')
  t.after(() => new Promise<void>((r) => first.close(() => r())))
  const firstUrl = `http://127.0.0.1:${(first.address() as AddressInfo).port}`

  // ids owned by hz (3333~6665 of uid mod 10000), all different.
  const ids = Array.from({ length: N }, (_, i) => String(3333 + i + 10_000 * (i % 7)))
  const client = new Agent({ connections: 128 })
  t.after(() => client.close())
  const answers = await Promise.all(
    ids.map(async (id) => {
      const res = await request(`${firstUrl}/orders/${id}?uid=${id}`, {
        method: 'POST',
        body: `payload-${id}`,
        dispatcher: client,
      })
      assert.equal(res.statusCode, 200, `request ${id}`)
      return (await res.body.json()) as {
        seen: Record<string, string>
        downstream: string
        transformed: string
      }
    }),
  )
  let wrong = 0
  answers.forEach((answer, i) => {
    const id = ids[i]!
    for (const where of ['await', 'timer', 'body stream', 'emitter', 'pipeline']) {
      if (answer.seen[where] !== id) wrong++
    }
    if (answer.downstream !== id) wrong++
    assert.equal(answer.transformed, 'ab')
  })
  assert.equal(wrong, 0, `${wrong} observations saw another request's route id`)
  assert.deepEqual(Object.keys(answers[0]!.seen).sort(), [
    'await',
    'body stream',
    'emitter',
    'pipeline',
    'timer',
  ])
})
