// The conformance vectors of test/fixtures/conformance/vectors.json against the one TypeScript router. The
// nginx engine runs the same file over HTTP (test/gateway/nginx/conformance.test.ts).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { compileRouter, type Router } from '../../src/rules/index.js'
import { loadVectors, nodeHeaders } from '../fixtures/conformance/vectors.js'

const { ruleSets, vectors } = loadVectors()

test('the vector file names only rule sets it defines, and has at least 100 vectors', () => {
  assert.ok(vectors.length >= 100, `${vectors.length} vectors`)
  for (const v of vectors) assert.ok(ruleSets[v.ruleSet], `${v.name}: rule set ${v.ruleSet}`)
  for (const v of vectors)
    assert.ok((v.id !== undefined) !== (v.request !== undefined), `${v.name}: id xor request`)
})

const routers = new Map<string, Router>()
for (const [name, { local, ruleSet }] of Object.entries(ruleSets)) {
  routers.set(name, compileRouter(ruleSet, { localUnit: local }))
}

for (const [name] of Object.entries(ruleSets)) {
  const mine = vectors.filter((v) => v.ruleSet === name)
  test(`rule set ${name}: ${mine.length} vectors give their expected unit, key, fenced flag and reason`, () => {
    const router = routers.get(name)!
    for (const v of mine) {
      const got =
        v.request === undefined
          ? router.route(v.id ?? undefined)
          : router.routeRequest({
              url: v.request.query === undefined ? '/' : `/?${v.request.query}`,
              headers: nodeHeaders(v.request.headers),
            })
      assert.deepEqual({ ...got }, v.expect, v.name)
    }
  })
}
