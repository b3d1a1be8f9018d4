// Express 5 behind appactive: `unit` and `center` services protected, every handler in its route context.
// Run: APPACTIVE_UNIT=unit npx tsx examples/express/server.ts   (rules: examples/rules/baseline.yaml)
import { createAgent } from 'appactive/agent'
import { currentRouteId } from 'appactive/context'
import { appactiveMiddleware } from 'appactive/express'
import express from 'express'

const agent = createAgent({
  app: 'shop',
  rules: process.env.APPACTIVE_RULES ?? new URL('../rules/baseline.yaml', import.meta.url).pathname,
})
await agent.start()

const app = express()
app.use(appactiveMiddleware({ agent, services: { '/orders/**': 'unit', '/stock/**': 'center' } }))
app.all('/{*path}', (req, res) => {
  res.json({ unit: agent.identity.unit, path: req.path, user: currentRouteId() ?? null })
})

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const { port } = server.address() as { port: number }
  console.log(`listening on http://127.0.0.1:${port}`)
})
process.once('SIGTERM', () => server.close(() => void agent.close()))
