/**
 * Koa 3 adapter: middleware that refuses, or awaits the downstream middleware inside the route context.
 *
 * @example
 * app.use(appactiveKoa({ agent, services: { '/orders/**': 'unit' } }))
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { runWithRoute } from '../../context/index.js'
import { createProtection, type ProtectionOptions, refusal } from './core.js'

interface KoaContextLike {
  req: IncomingMessage
  res: ServerResponse
  respond?: boolean
  status: number
  body: unknown
  set(field: Record<string, string>): void
}

/** Koa middleware. */
export function appactiveKoa(
  options: ProtectionOptions,
): (ctx: KoaContextLike, next: () => Promise<unknown>) => Promise<unknown> {
  const protection = createProtection(options)
  return async function appactive(ctx, next): Promise<unknown> {
    const verdict = protection.check(ctx.req)
    if (!verdict.ok && verdict.forwardTo !== undefined) {
      // Koa must not answer this one: the forwarded upstream's answer streams to the raw response.
      ctx.respond = false
      await protection.forward(ctx.req, ctx.res, verdict)
      return undefined
    }
    if (!verdict.ok) {
      ctx.status = verdict.status
      ctx.set({ ...verdict.headers })
      ctx.body = refusal(verdict)
      return undefined
    }
    return runWithRoute(verdict.route, next)
  }
}
