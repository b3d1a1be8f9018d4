// Real nginx edges for tests: Debian's nginx + the Lua modules (.ci/run installs them), echo backends per
// unit, raw HTTP requests. A machine without nginx skips with the reason, or fails under CI=true.
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { connect } from 'node:net'
import pino from 'pino'
import type { RuleChannel, RuleSink } from '../../../src/channels/types.js'
import { findNginx, type NginxGatewayOptions, startNginxGateway } from '../../../src/gateway/nginx/index.js'
import type { AppConfig, GatewayConfig } from '../../../src/gateway/types.js'
import { app, gatewayConfig } from '../../helpers/gateway.js'
import { freePort } from '../../helpers/ports.js'

export type T = { after(fn: () => Promise<void> | void): void }

/** undefined when nginx and its Lua modules are installed; else a skip reason (throws under CI=true). */
export function needsNginx(): string | undefined {
  const found = findNginx()
  if (typeof found !== 'string') return undefined
  if (process.env.CI === 'true' || process.env.CI === '1')
    throw new Error(`${found} (CI needs it: see .ci/run)`)
  console.log(`# skipped: ${found}`)
  return found
}

/** A quiet logger for edges under test (APPACTIVE_LOG_LEVEL=info to see them). */
export const quiet = pino({ level: process.env.APPACTIVE_LOG_LEVEL ?? 'silent' })

export interface Echo {
  readonly url: string
  readonly server: Server
  /** Requests answered. */
  count: number
}

/** A backend answering JSON `{ backend, method, url, headers }` (the headers it got), as `name`. */
export async function echoBackend(t: T, name: string, delayMs = 0): Promise<Echo> {
  const echo = { url: '', server: undefined as unknown as Server, count: 0 }
  const server = createServer((req, res) => {
    echo.count++
    const reply = () => {
      const body = JSON.stringify({ backend: name, method: req.method, url: req.url, headers: req.headers })
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name })
      res.end(body)
    }
    req.resume()
    req.on('end', () => (delayMs > 0 ? setTimeout(reply, delayMs) : reply()))
  })
  server.keepAliveTimeout = 65_000
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  echo.server = server
  echo.url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  return echo
}

/** An edge config: one app `shop` with an echo backend for each unit (same backend when `shared`). */
export async function edgeConfig(
  t: T,
  units: readonly string[],
  extra: Partial<GatewayConfig> = {},
  appExtra: Partial<AppConfig> = {},
): Promise<{ config: GatewayConfig; backends: Record<string, Echo> }> {
  const backends: Record<string, Echo> = {}
  for (const u of units) backends[u] = await echoBackend(t, u)
  const upstreams = Object.fromEntries(units.map((u) => [u, [backends[u]!.url]]))
  const config = gatewayConfig([app(upstreams, appExtra)], {
    listen: { host: '127.0.0.1', port: await freePort() },
    ...extra,
  })
  return { config, backends }
}

/** Starts an nginx edge that stops after the test. */
export async function startEdge(
  t: T,
  config: GatewayConfig,
  options: NginxGatewayOptions & { channels?: readonly RuleChannel[] } = {},
) {
  const edge = await startNginxGateway(config, { logger: quiet, debug: true, channels: [], ...options })
  t.after(() => edge.stop())
  return edge
}

export interface RawAnswer {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

/**
 * One request on its own connection, written byte for byte: `headers` values are latin1 (one character per
 * byte), names as given, repeats kept.
 */
export function rawRequest(
  port: number,
  path: string,
  headers: ReadonlyArray<readonly [string, string]> = [],
  method = 'GET',
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (c) => chunks.push(c))
    socket.on('error', reject)
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const split = text.indexOf('\r\n\r\n')
      const head = text.slice(0, split).split('\r\n')
      const status = Number(head[0]!.split(' ')[1])
      const out: Record<string, string> = {}
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':')
        out[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
      }
      let body = text.slice(split + 4)
      if (out['transfer-encoding'] === 'chunked') body = unchunk(body)
      resolve({ status, headers: out, body: Buffer.from(body, 'latin1').toString('utf8') })
    })
    const lines = [`${method} ${path} HTTP/1.1`, 'Connection: close']
    if (!headers.some(([n]) => n.toLowerCase() === 'host')) lines.push('Host: edge.test')
    for (const [n, v] of headers) lines.push(`${n}: ${v}`)
    socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'))
  })
}

function unchunk(text: string): string {
  let out = ''
  let at = 0
  for (;;) {
    const eol = text.indexOf('\r\n', at)
    const size = Number.parseInt(text.slice(at, eol), 16)
    if (!(size > 0)) return out
    out += text.slice(eol + 2, eol + 2 + size)
    at = eol + 2 + size + 2
  }
}

/** The decision an edge reports in `x-appactive-decision` (debug mode), key as a number. */
export interface EdgeDecision {
  readonly unit: string | null
  readonly key: number | null
  readonly fenced: boolean
  readonly reason: string
  readonly version: number
}

export function decisionOf(headers: Record<string, string | string[] | undefined>): EdgeDecision | undefined {
  const raw = headers['x-appactive-decision']
  if (typeof raw !== 'string') return undefined
  const d = JSON.parse(raw) as {
    unit: string | null
    key: string | null
    fenced: boolean
    reason: string
    version: number
  }
  return { ...d, key: d.key === null ? null : Number(d.key) }
}

/** Polls `check` every 10 ms until it is truthy or `ms` pass. */
export async function until<V>(
  check: () => Promise<V> | V,
  ms = 5000,
  what = 'condition',
): Promise<NonNullable<V>> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await check()
    if (v) return v as NonNullable<V>
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

/** A channel a test drives: `publish` delivers a rule set; `acks` records what the channel acknowledged. */
export class TestChannel implements RuleChannel {
  readonly name = 'test'
  readonly leasing = false
  readonly acks: number[] = []
  #sink: RuleSink | undefined

  async start(sink: RuleSink): Promise<void> {
    this.#sink = sink
  }

  publish(ruleSet: unknown) {
    return this.#sink!.apply(ruleSet, { source: this.name })
  }

  applied(version: number): void {
    this.acks.push(version)
  }

  async close(): Promise<void> {}
}
