/**
 * Express 5 adapter: middleware that admits a request (running the rest of the chain inside its route
 * context) or answers the refusal.
 *
 * @example
 * app.use(appactiveMiddleware({ agent, services: { '/orders/**': 'unit', '/stock/**': 'center' } }))
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { runWithRoute } from '../../context/index.js'
import { answerRefusal, createProtection, type ProtectionOptions } from './core.js'

/** Express-compatible middleware (typed structurally, so this file needs no express types at run time). */
export function appactiveMiddleware(
  options: ProtectionOptions,
): (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void {
  const protection = createProtection(options)
  return function appactive(req, res, next): void {
    const verdict = protection.check(req)
    if (!verdict.ok) {
      answerRefusal(protection, req, res, verdict)
      return
    }
    runWithRoute(verdict.route, next)
  }
}
