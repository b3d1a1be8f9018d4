// Outgoing calls carry the route context: an undici dispatcher with routeInterceptor(), and global fetch
// after propagateFetch(). The downstream here is a tiny echo server that reports what it received.
// Run: npx tsx examples/undici/client.ts
import { createServer } from 'node:http'
import { runWithRoute } from 'appactive/context'
import { propagateFetch, routeInterceptor } from 'appactive/undici'
import { Agent, request } from 'undici'

const echo = createServer((req, res) => res.end(String(req.headers['x-appactive-route-id'] ?? '-')))
await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve))
const url = `http://127.0.0.1:${(echo.address() as { port: number }).port}/`

const dispatcher = new Agent().compose(routeInterceptor())
const stop = propagateFetch()

await runWithRoute({ routeId: '10001', unit: 'unit' }, async () => {
  const viaUndici = await (await request(url, { dispatcher })).body.text()
  const viaFetch = await (await fetch(url)).text()
  console.log(`undici sent route id ${viaUndici}; fetch sent route id ${viaFetch}`)
})

stop()
await dispatcher.close()
echo.close()
