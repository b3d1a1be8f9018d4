/**
 * node:http adapter: wrap a request handler so it runs inside the route context, behind the provider
 * protection of `core.ts`.
 *
 * @example
 * const agent = createAgent({ unit: 'hz', channels: [createFileChannel({ path: 'rules.yaml' })] })
 * await agent.start()
 * createServer(withAppActive(handler, { agent, services: { '/orders/**': 'unit', '/stock/**': 'center' } }))
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { runWithRoute } from '../../context/index.js'
import { answerRefusal, createProtection, type ProtectionOptions } from './core.js'

/** Wraps a node:http handler. @throws InvalidArgumentError for malformed options. */
export function withAppActive<Req extends IncomingMessage, Res extends ServerResponse>(
  handler: (req: Req, res: Res) => unknown,
  options: ProtectionOptions,
): (req: Req, res: Res) => unknown {
  const protection = createProtection(options)
  return function appactiveHandler(req: Req, res: Res): unknown {
    const verdict = protection.check(req)
    if (!verdict.ok) {
      answerRefusal(protection, req, res, verdict)
      return undefined
    }
    return runWithRoute(verdict.route, () => handler(req, res))
  }
}
