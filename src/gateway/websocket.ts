/**
 * Upgrades (WebSocket): the route is decided at upgrade time, then the two sockets are spliced. The
 * upstream's 101 answer (with its headers) is relayed to the client first. `dispatcher` is a Pool for
 * the target origin. `open` tracks spliced client sockets so a shutdown can close them.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'

export function proxyUpgrade(
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  dispatcher: Dispatcher,
  headers: Record<string, string | string[]>,
  log: Logger,
  open: Set<Duplex>,
): void {
  open.add(client)
  client.once('close', () => open.delete(client))
  const protocol = req.headers.upgrade ?? 'websocket'
  // undici adds `connection: upgrade` and `upgrade: <protocol>` itself.
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers))
    if (name !== 'connection' && name !== 'upgrade') out[name] = value
  for (const name of [
    'sec-websocket-key',
    'sec-websocket-version',
    'sec-websocket-protocol',
    'sec-websocket-extensions',
  ]) {
    const v = req.headers[name]
    if (v !== undefined) out[name] = v
  }
  client.on('error', () => client.destroy())
  dispatcher
    .upgrade({ path: req.url ?? '/', method: 'GET', headers: out, protocol })
    .then(({ headers: answer, socket: upstream }) => {
      if (client.destroyed) {
        upstream.destroy()
        return
      }
      let head101 = 'HTTP/1.1 101 Switching Protocols\r\n'
      for (const [name, value] of Object.entries(answer)) {
        if (value === undefined) continue
        for (const v of Array.isArray(value) ? value : [value]) head101 += `${name}: ${v}\r\n`
      }
      client.write(`${head101}\r\n`)
      if (head.length > 0) upstream.write(head)
      upstream.on('error', () => client.destroy())
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
      upstream.pipe(client)
      client.pipe(upstream)
    })
    .catch((err: unknown) => {
      log.warn({ err: (err as Error).message, url: req.url }, 'upgrade failed')
      if (!client.destroyed) {
        client.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')
      }
    })
}
