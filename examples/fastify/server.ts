// Fastify 5 behind appactive: the plugin protects `unit` and `center` routes and runs each in its context.
// Run: APPACTIVE_UNIT=unit npx tsx examples/fastify/server.ts   (rules: examples/rules/baseline.yaml)
import { createAgent } from 'appactive/agent'
import { currentRouteId } from 'appactive/context'
import { appactivePlugin } from 'appactive/fastify'
import Fastify from 'fastify'

const agent = createAgent({
  app: 'shop',
  rules: process.env.APPACTIVE_RULES ?? new URL('../rules/baseline.yaml', import.meta.url).pathname,
})
await agent.start()

const app = Fastify()
await app.register(appactivePlugin, { agent, services: { '/orders/**': 'unit', '/stock/**': 'center' } })
app.all('/*', async (req) => ({ unit: agent.identity.unit, path: req.url, user: currentRouteId() ?? null }))

const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })
console.log(`listening on ${address}`)
process.once('SIGTERM', () => void app.close().then(() => agent.close()))
