/** Backends and configs for gateway tests. */
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { AppConfig, GatewayConfig } from '../../src/gateway/types.js'

/** What an echo backend saw. */
export interface Seen {
  readonly backend: string
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly bytes: number
}

export interface Backend {
  readonly name: string
  readonly url: string
  readonly server: Server
  readonly seen: Seen[]
  close(): Promise<void>
}

/** An HTTP backend that answers every request with JSON describing it (after reading the whole body). */
export async function echoBackend(name: string): Promise<Backend> {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    let bytes = 0
    req.on('data', (c: Buffer) => {
      bytes += c.length
    })
    req.on('end', () => {
      const s: Seen = {
        backend: name,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        bytes,
      }
      seen.push(s)
      const body = JSON.stringify(s)
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name }).end(body)
    })
  })
  // A raw upgrade echo: answers 101 and echoes bytes back (enough to prove the splice, no WS framing needed).
  const upgraded = new Set<import('node:stream').Duplex>()
  server.on('upgrade', (req, socket) => {
    upgraded.add(socket)
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-backend: ${name}\r\nx-route-id: ${req.headers['x-appactive-route-id'] ?? ''}\r\n\r\n`,
    )
    socket.on('data', (d) => socket.write(d))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    server,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of upgraded) socket.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** A port nobody listens on. */
export async function deadUrl(): Promise<string> {
  const s = createServer()
  s.listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return `http://127.0.0.1:${port}`
}

export function app(upstreams: Record<string, string[]>, extra: Partial<AppConfig> = {}): AppConfig {
  return {
    name: 'shop',
    match: { hosts: [], pathPrefix: '/' },
    upstreams,
    unitEnabled: true,
    fallback: undefined,
    balance: 'round-robin',
    healthCheck: undefined,
    ...extra,
  }
}

export function gatewayConfig(apps: AppConfig[], extra: Partial<GatewayConfig> = {}): GatewayConfig {
  return {
    unit: 'center',
    listen: { host: '127.0.0.1', port: 0 },
    tls: undefined,
    admin: undefined,
    rules: '/nonexistent',
    token: undefined,
    apps,
    units: {},
    forwarding: 'direct',
    peerToken: undefined,
    hold: { enabled: true, methods: 'writes', maxMs: 2000, maxQueue: 100, retryAfterS: 1 },
    timeouts: { connectMs: 1000, headersMs: 5000, bodyMs: 5000 },
    maxHeaderBytes: 16384,
    accessLog: false,
    workers: 1,
    heap: undefined,
    ...extra,
  }
}
