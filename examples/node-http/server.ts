// Plain node:http behind appactive: wrap the handler; it runs in its route context once admitted.
// Run: APPACTIVE_UNIT=unit npx tsx examples/node-http/server.ts   (rules: examples/rules/baseline.yaml)
import { createServer } from 'node:http'
import { createAgent } from 'appactive/agent'
import { currentRouteId } from 'appactive/context'
import { withAppActive } from 'appactive/node-http'

const agent = createAgent({
  app: 'shop',
  rules: process.env.APPACTIVE_RULES ?? new URL('../rules/baseline.yaml', import.meta.url).pathname,
})
await agent.start()

const handler = withAppActive(
  (req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ unit: agent.identity.unit, path: req.url, user: currentRouteId() ?? null }))
  },
  { agent, services: { '/orders/**': 'unit', '/stock/**': 'center' } },
)
const server = createServer(handler)
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const { port } = server.address() as { port: number }
  console.log(`listening on http://127.0.0.1:${port}`)
})
process.once('SIGTERM', () => server.close(() => void agent.close()))
