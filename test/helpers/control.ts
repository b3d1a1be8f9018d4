// The control plane over real HTTP for tests: a fastify server on 127.0.0.1:0 over a SQLite store,
// real agents on the mounted channel, undici requests.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import type { RoutingAgent } from '../../src/agent/index.js'
import {
  type ControlPlane,
  type ControlPlaneOptions,
  createControlPlane,
  openStore,
  type Store,
} from '../../src/control/index.js'
import { applied, controlledAgent, rules, TOKEN, until } from './agents.js'

export const ADMIN = 'admin-token-0123456789'
export const OPERATOR = 'operator-token-0123456789'
export const VIEWER = 'viewer-token-0123456789'
export const TOKENS = {
  tokens: [
    { name: 'alice', role: 'admin' as const, token: ADMIN },
    { name: 'olga', role: 'operator' as const, token: OPERATOR },
    { name: 'vic', role: 'viewer' as const, token: VIEWER },
  ],
  agentTokens: [TOKEN],
}
export const TOPOLOGY = {
  units: [{ name: 'center', center: true }, { name: 'unit' }],
  apps: [{ name: 'shop', services: [{ name: 'orders', type: 'unit' }] }],
  dbScopes: [{ name: 'orders', app: 'shop', engine: 'postgres' }],
  probes: [
    {
      source: 'center',
      target: 'unit',
      scope: 'orders',
      kind: 'postgres',
      options: { source: 'env:PG_CENTER' },
    },
    { source: 'unit', target: 'center', scope: 'orders', kind: 'postgres' },
  ],
}

/** The topology of a shared database: catch-up has nothing to wait for (`none` probes). */
export const SHARED_DB = {
  units: [{ name: 'center', center: true }, { name: 'unit' }],
  apps: [{ name: 'shop', services: [{ name: 'orders', type: 'unit' }] }],
  dbScopes: [{ name: 'orders', app: 'shop', engine: 'postgres' }],
  probes: [
    { source: 'center', target: 'unit', kind: 'none' },
    { source: 'unit', target: 'center', kind: 'none' },
  ],
}

export type T = { after(fn: () => Promise<void> | void): void }

export interface Started {
  readonly cp: ControlPlane
  readonly url: string
  readonly store: Store
  readonly dir: string
}

export async function start(
  t: T,
  options: Partial<ControlPlaneOptions> = {},
  dir?: string,
): Promise<Started> {
  const home = dir ?? (await mkdtemp(join(tmpdir(), 'appactive-api-')))
  const store = await openStore(`sqlite:${join(home, 'control.db')}`)
  const cp = await createControlPlane({
    store,
    tokens: TOKENS,
    listen: { port: 0 },
    leaseMs: 2000,
    ...options,
  })
  const { url } = await cp.listen()
  t.after(async () => {
    await cp.close()
    await store.close()
    if (dir === undefined) await rm(home, { recursive: true, force: true })
  })
  return { cp, url, store, dir: home }
}

export interface Answer {
  readonly status: number
  readonly headers: Record<string, string | string[] | undefined>
  // biome-ignore lint/suspicious/noExplicitAny: test answers are read field by field
  readonly json: any
}

export async function call(
  url: string,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
): Promise<Answer> {
  const res = await request(`${url}${path}`, {
    method: method as 'GET',
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, json: text ? JSON.parse(text) : undefined }
}

/** The rule set of tests/helpers without its version (the control plane takes the next one). */
export function doc(unitUpTo = 1999) {
  const { version: _v, ...rest } = rules(0, unitUpTo)
  return rest
}

export async function agent(t: T, url: string, nodeId: string, unit = 'center'): Promise<RoutingAgent> {
  const a = controlledAgent({ url, nodeId, unit })
  t.after(() => a.close())
  await a.start()
  return a
}

/** Publishes v1 and sets the topology; returns the two agents (one per unit), on v1. */
export async function world(t: T, s: Started, topology: object = TOPOLOGY): Promise<RoutingAgent[]> {
  assert.equal((await call(s.url, 'PUT', '/v1/topology', ADMIN, { topology, reason: 'setup' })).status, 200)
  assert.equal(
    (await call(s.url, 'POST', '/v1/rules', OPERATOR, { ruleSet: doc(), reason: 'v1' })).status,
    201,
  )
  const agents = [await agent(t, s.url, 'c1', 'center'), await agent(t, s.url, 'u1', 'unit')]
  for (const a of agents) await applied(a, 1)
  await until(() => s.cp.rules.nodes().every((n) => n.connected && n.appliedVersion === 1), 5000, 'agents')
  return agents
}

/** Reads a server-sent event stream to its end. */
export async function events(url: string, path: string, token: string, opened: () => Promise<void>) {
  const res = await request(`${url}${path}`, {
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(10_000),
  })
  assert.equal(res.statusCode, 200)
  assert.match(String(res.headers['content-type']), /^text\/event-stream/)
  const done = (async () => {
    let text = ''
    for await (const chunk of res.body) text += chunk
    return text
  })()
  await opened()
  const text = await done
  return text
    .split('\n\n')
    .filter((block) => block.includes('data: '))
    .map((block) => {
      const field = (name: string) => block.match(new RegExp(`^${name}: (.*)$`, 'm'))?.[1]
      return { event: field('event'), id: field('id'), data: JSON.parse(field('data')!) }
    })
}
