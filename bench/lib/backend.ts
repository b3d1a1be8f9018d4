/**
 * The loopback backend of `bench:gateway`, run in its own process: `node --import tsx bench/lib/backend.ts PORT`.
 * A single-process node:http server answering every request with a small JSON body on a keep-alive
 * connection, so every target of the bench (direct, plain proxy, gateway) ends at the same server.
 *
 * `GET /_seen...` answers with the request headers it received instead, so the bench can check, before
 * timing anything, what a proxy forwarded (hop headers set, hop-by-hop headers gone). The hot path costs
 * one `startsWith` for it.
 */
import { createServer } from 'node:http'

const port = Number(process.argv[2])
if (!Number.isInteger(port) || port <= 0) throw new Error('usage: backend.ts PORT')

const HELLO = Buffer.from(JSON.stringify({ hello: 'world', from: 'backend' }))
const HEADERS = { 'content-type': 'application/json', 'content-length': HELLO.length }

const server = createServer((req, res) => {
  if (req.url?.startsWith('/_seen')) {
    const body = JSON.stringify({ headers: req.headers })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
    return
  }
  res.writeHead(200, HEADERS)
  res.end(HELLO)
})
// Longer than the proxies' pool keep-alive, so an idle pooled connection is never closed under them.
server.keepAliveTimeout = 65_000
server.listen({ host: '127.0.0.1', port, backlog: 4096 })
process.on('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
