import assert from 'node:assert/strict'
import { AsyncLocalStorage } from 'node:async_hooks'
import { EventEmitter } from 'node:events'
import { test } from 'node:test'
import {
  bindRoute,
  createRouteContext,
  currentRoute,
  currentRouteId,
  requireRouteId,
  runWithRoute,
} from '../../src/context/index.js'
import { AppActiveError, InvalidArgumentError, NoRouteIdError } from '../../src/errors/index.js'

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

test('outside runWithRoute there is no route context', () => {
  assert.equal(currentRoute(), undefined)
  assert.equal(currentRouteId(), undefined)
})

test('runWithRoute returns what fn returns and exposes a frozen, normalized context', () => {
  const result = runWithRoute({ routeId: 'u1', unit: 'hz', ruleVersion: 7 }, () => {
    const route = currentRoute()
    assert.deepEqual(route, { routeId: 'u1', unit: 'hz', ruleVersion: 7, hops: 0 })
    assert.ok(Object.isFrozen(route))
    assert.equal(currentRouteId(), 'u1')
    return 42
  })
  assert.equal(result, 42)
  assert.equal(currentRoute(), undefined)
})

test('an empty route id or unit is stored as absent, and absent fields are not own keys', () => {
  runWithRoute({ routeId: '', unit: '', hops: 1 }, () => {
    assert.deepEqual(currentRoute(), { routeId: undefined, hops: 1 })
    assert.equal(Object.hasOwn(currentRoute()!, 'unit'), false)
  })
})

test('runWithRoute copies its input, so later mutation of the input does not change the context', () => {
  const input = { routeId: 'a', hops: 0 }
  runWithRoute(input, () => {
    input.routeId = 'b'
    assert.equal(currentRouteId(), 'a')
  })
})

test('malformed route input throws APPACTIVE_INVALID_ARGUMENT before fn runs', () => {
  let ran = false
  const fn = (): void => {
    ran = true
  }
  const bad: unknown[] = [
    null,
    'u1',
    { routeId: 42 },
    { unit: 1 },
    { ruleVersion: -1 },
    { ruleVersion: 1.5 },
    { ruleVersion: 2 ** 53 },
    { hops: -1 },
    { hops: 256 },
    { hops: 0.5 },
    { hops: Number.NaN },
  ]
  for (const input of bad) {
    assert.throws(
      () => runWithRoute(input as never, fn),
      (err: unknown) => err instanceof InvalidArgumentError && err.code === 'APPACTIVE_INVALID_ARGUMENT',
      JSON.stringify(input),
    )
  }
  assert.throws(() => runWithRoute({}, 'nope' as never), InvalidArgumentError)
  assert.equal(ran, false)
  assert.deepEqual(createRouteContext({ hops: 255, ruleVersion: 0 }), {
    routeId: undefined,
    hops: 255,
    ruleVersion: 0,
  })
})

test('concurrent async chains never see each other’s route, across awaits, setImmediate and emitters', async () => {
  const order: number[] = []
  const emitter = new EventEmitter()
  const chain = (i: number) =>
    runWithRoute({ routeId: `user-${i}` }, async () => {
      const seen: (string | undefined)[] = []
      for (let step = 0; step < 5; step++) {
        order.push(i)
        seen.push(currentRouteId())
        await (step % 2 === 0 ? tick() : Promise.resolve())
        seen.push(
          await new Promise<string | undefined>((resolve) => setImmediate(() => resolve(currentRouteId()))),
        )
      }
      // An emitter created outside: listeners run in the emitter's caller, here this chain.
      const fromEmitter = new Promise<string | undefined>((resolve) =>
        emitter.once(`e${i}`, () => resolve(currentRouteId())),
      )
      emitter.emit(`e${i}`)
      seen.push(await fromEmitter)
      return seen
    })
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => chain(i)))
  results.forEach((seen, i) => {
    assert.equal(seen.length, 11)
    for (const id of seen) assert.equal(id, `user-${i}`)
  })
  // The chains really interleaved: chain 1 ran before chain 0 finished its steps.
  assert.ok(order.indexOf(1) < order.lastIndexOf(0))
  assert.equal(currentRoute(), undefined)
})

test('a nested runWithRoute shadows the outer route and restores it afterwards', async () => {
  await runWithRoute({ routeId: 'outer' }, async () => {
    const inner = runWithRoute({ routeId: 'inner', hops: 1 }, async () => {
      await tick()
      return currentRoute()
    })
    assert.equal(currentRouteId(), 'outer')
    assert.deepEqual(await inner, { routeId: 'inner', hops: 1 })
    assert.equal(currentRouteId(), 'outer')
  })
})

test('the context is cleared after fn throws synchronously (AppActive bug B15)', () => {
  assert.throws(
    () =>
      runWithRoute({ routeId: 'boom' }, () => {
        throw new Error('handler failed')
      }),
    /handler failed/,
  )
  assert.equal(currentRoute(), undefined)
  // The next "request" on the same tick starts clean.
  runWithRoute({}, () => assert.equal(currentRouteId(), undefined))
})

test('the context is cleared after an async fn rejects, and the rejection carries through', async () => {
  await assert.rejects(
    runWithRoute({ routeId: 'boom' }, async () => {
      await tick()
      throw new Error('async failure')
    }),
    /async failure/,
  )
  assert.equal(currentRoute(), undefined)
  await tick()
  assert.equal(currentRoute(), undefined)
})

test('requireRouteId returns the id, and throws APPACTIVE_NO_ROUTE_ID without one', () => {
  assert.equal(
    runWithRoute({ routeId: 'u9' }, () => requireRouteId()),
    'u9',
  )
  for (const run of [() => requireRouteId(), () => runWithRoute({ unit: 'hz' }, () => requireRouteId())]) {
    assert.throws(run, (err: unknown) => {
      assert.ok(err instanceof NoRouteIdError)
      assert.ok(err instanceof AppActiveError)
      assert.equal(err.code, 'APPACTIVE_NO_ROUTE_ID')
      return true
    })
  }
})

test('bindRoute runs a callback in the route it was bound in, wherever it is called from', async () => {
  const queue: (() => string | undefined)[] = []
  await Promise.all(
    ['a', 'b', 'c'].map((id) =>
      runWithRoute({ routeId: id }, async () => {
        await tick()
        queue.push(bindRoute(() => currentRouteId()))
      }),
    ),
  )
  // Flushed later, from inside an unrelated route.
  const flushed = runWithRoute({ routeId: 'flusher' }, () => queue.map((fn) => fn()))
  assert.deepEqual(flushed.sort(), ['a', 'b', 'c'])
})

test('a function bound outside any route runs with no route, even inside another route', () => {
  const bound = bindRoute(() => currentRoute())
  assert.equal(
    runWithRoute({ routeId: 'x' }, () => bound()),
    undefined,
  )
})

test('bindRoute keeps this, arguments and the return value, and rejects a non-function', () => {
  const target = {
    base: 10,
    add: runWithRoute({ routeId: 'r' }, () =>
      bindRoute(function (this: { base: number }, a: number, b: number) {
        return `${currentRouteId()}:${this.base + a + b}`
      }),
    ),
  }
  assert.equal(target.add(1, 2), 'r:13')
  assert.throws(() => bindRoute(42 as never), InvalidArgumentError)
})

test('the store lives on the versioned global and a second copy of the module shares it', async () => {
  runWithRoute({}, () => undefined)
  const slot = (globalThis as Record<symbol, unknown>)[Symbol.for('appactive.context.v1')]
  assert.ok(slot instanceof AsyncLocalStorage)
  // A query string makes the loader evaluate the module again: a stand-in for a second installed copy.
  const copy = (await import(
    `../../src/context/route-context.js?copy=${Date.now()}`
  )) as typeof import('../../src/context/route-context.js')
  assert.notEqual(copy.runWithRoute, runWithRoute)
  assert.equal(
    runWithRoute({ routeId: 'shared' }, () => copy.currentRouteId()),
    'shared',
  )
  assert.equal(
    copy.runWithRoute({ routeId: 'back' }, () => currentRouteId()),
    'back',
  )
})
