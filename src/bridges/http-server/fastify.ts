/**
 * Fastify 5 plugin: an `onRequest` hook that refuses, or runs the rest of the request inside the route
 * context. Registered without encapsulation (like fastify-plugin's skip-override), so it covers every
 * route of the app.
 *
 * @example
 * await app.register(appactivePlugin, { agent, services: { '/orders/**': 'unit' } })
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { runWithRoute } from '../../context/index.js'
import { createProtection, type ProtectionOptions, refusal } from './core.js'

interface FastifyLike {
  addHook(
    name: 'onRequest',
    hook: (request: { raw: IncomingMessage }, reply: FastifyReplyLike, done: (err?: Error) => void) => void,
  ): unknown
}

interface FastifyReplyLike {
  raw: ServerResponse
  hijack(): void
  code(status: number): FastifyReplyLike
  headers(values: Record<string, string>): FastifyReplyLike
  send(body: unknown): unknown
}

/** The plugin; options are `ProtectionOptions`. */
export function appactivePlugin(
  app: FastifyLike,
  options: ProtectionOptions,
  done: (err?: Error) => void,
): void {
  const protection = createProtection(options)
  app.addHook('onRequest', function appactive(request, reply, next) {
    const verdict = protection.check(request.raw)
    if (!verdict.ok && verdict.forwardTo !== undefined) {
      reply.hijack() // the forwarded upstream's answer streams to the raw response
      void protection.forward(request.raw, reply.raw, verdict)
      return
    }
    if (!verdict.ok) {
      reply
        .code(verdict.status)
        .headers({ ...verdict.headers })
        .send(refusal(verdict))
      return
    }
    // The hook chain continues inside the context; Fastify keeps the async context for the handler.
    runWithRoute(verdict.route, next)
  })
  done()
}

// What fastify-plugin sets: no encapsulation, and a name in errors and `printPlugins()`.
Object.assign(appactivePlugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'appactive',
  [Symbol.for('plugin-meta')]: { name: 'appactive', fastify: '5.x' },
})
