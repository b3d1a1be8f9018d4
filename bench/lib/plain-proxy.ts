/**
 * The baseline of `bench:gateway`: the plainest fair Node reverse proxy, with no routing, run in its own
 * process: `node --import tsx bench/lib/plain-proxy.ts PORT UPSTREAM_ORIGIN`.
 * node:http in front, one undici Pool with `stream()` behind, in its callback form (the fastest Node
 * option measured in ecosystem.md §2; the callback form creates no promise per request, as in the
 * gateway), the same pool settings as the gateway's (128 connections, no pipelining, 60 s keep-alive),
 * hop-by-hop headers removed both ways and X-Forwarded-For, -Proto and -Host set, as any proxy must.
 * It differs from the gateway only by routing: no id extraction, no decision, no hop headers.
 */
import { createServer, type IncomingMessage } from 'node:http'
import { type Dispatcher, Pool } from 'undici'

const [portArg, upstream] = process.argv.slice(2)
const port = Number(portArg)
if (!Number.isInteger(port) || port <= 0 || upstream === undefined)
  throw new Error('usage: plain-proxy.ts PORT UPSTREAM_ORIGIN')

/** RFC 9110 §7.6.1, the same list as the gateway's. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])

function endToEnd(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value
  }
  return out
}

const hasBody = (req: IncomingMessage): boolean =>
  req.headers['transfer-encoding'] !== undefined ||
  (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0')

const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
const server = createServer((req, res) => {
  const headers = endToEnd(req.headers)
  const prior = req.headers['x-forwarded-for']
  headers['x-forwarded-for'] = prior
    ? `${prior}, ${req.socket.remoteAddress}`
    : (req.socket.remoteAddress ?? '')
  // X-Forwarded-Proto and -Host too, as any proxy done right (issue 4 item 5 asks them of the gateway).
  if (req.headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = 'http'
  if (req.headers['x-forwarded-host'] === undefined && req.headers.host !== undefined)
    headers['x-forwarded-host'] = req.headers.host
  const options = {
    path: req.url ?? '/',
    method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
    headers,
    body: hasBody(req) ? req : null,
    opaque: res,
  }
  // The callback form of stream(): no promise per request, as the gateway forwards.
  pool.stream(
    options,
    ({ statusCode, headers: upstreamHeaders }) => res.writeHead(statusCode, endToEnd(upstreamHeaders)),
    (err) => {
      if (err !== null) res.headersSent ? res.destroy() : res.writeHead(502).end()
    },
  )
})
server.keepAliveTimeout = 65_000
server.listen({ host: '127.0.0.1', port, backlog: 4096 })
process.on('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => void pool.close().then(() => process.exit(0)))
})
