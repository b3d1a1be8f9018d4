// Koa 3 behind appactive: the middleware protects `unit` and `center` paths and runs the rest in context.
// Run: APPACTIVE_UNIT=unit npx tsx examples/koa/server.ts   (rules: examples/rules/baseline.yaml)
import { createAgent } from 'appactive/agent'
import { currentRouteId } from 'appactive/context'
import { appactiveKoa } from 'appactive/koa'
import Koa from 'koa'

const agent = createAgent({
  app: 'shop',
  rules: process.env.APPACTIVE_RULES ?? new URL('../rules/baseline.yaml', import.meta.url).pathname,
})
await agent.start()

const app = new Koa()
app.use(appactiveKoa({ agent, services: { '/orders/**': 'unit', '/stock/**': 'center' } }))
app.use((ctx) => {
  ctx.body = { unit: agent.identity.unit, path: ctx.path, user: currentRouteId() ?? null }
})

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const { port } = server.address() as { port: number }
  console.log(`listening on http://127.0.0.1:${port}`)
})
process.once('SIGTERM', () => server.close(() => void agent.close()))
