/**
 * A TCP fault proxy for failover tests: forwards 127.0.0.1:<port> to a target port until `cut()`, which
 * destroys every open connection and refuses new ones (accepted, then destroyed at once) until `heal()`.
 * A cut looks to both ends like a lost network path, not like a clean shutdown.
 */
import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'

export interface FaultProxy {
  readonly port: number
  /** True while connections are refused. */
  readonly isCut: boolean
  /** Destroys every open connection and refuses new ones. */
  cut(): void
  /** Accepts and forwards connections again. */
  heal(): void
  close(): Promise<void>
}

export async function faultProxy(targetPort: number, port = 0): Promise<FaultProxy> {
  const sockets = new Set<Socket>()
  let isCut = false
  const server: Server = createServer((client) => {
    if (isCut) {
      client.destroy()
      return
    }
    const upstream = connect(targetPort, '127.0.0.1')
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(a)
      a.on('close', () => {
        sockets.delete(a)
        b.destroy()
      })
      a.on('error', () => a.destroy())
      a.pipe(b)
    }
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as { port: number }).port,
    get isCut() {
      return isCut
    },
    cut() {
      isCut = true
      for (const s of sockets) s.destroy()
    },
    heal() {
      isCut = false
    },
    async close() {
      isCut = true
      for (const s of sockets) s.destroy()
      await new Promise((r) => server.close(r))
    },
  }
}
