/** Free TCP ports for tests that must choose a port before a server starts (a child process, a restart). */
import { once } from 'node:events'
import { createServer, type Server } from 'node:net'

/** `count` distinct free TCP ports on 127.0.0.1 (held together while allocated, so they differ). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = []
  try {
    for (let i = 0; i < count; i++) {
      const s = createServer()
      servers.push(s)
      s.listen(0, '127.0.0.1')
      await once(s, 'listening')
    }
    return servers.map((s) => (s.address() as { port: number }).port)
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  }
}

/** One free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!
}
