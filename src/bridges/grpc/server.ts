/**
 * gRPC server side: refuse the calls this unit must not serve, and run the others inside their route
 * context. Two ways in, with the same decision (`protection.ts`):
 *
 * - `protectService(impl, options)` wraps each handler of one service implementation (unary, client,
 *   server and bidi streaming). The handler runs inside `runWithRoute`, and so does every event its call
 *   emits later (`data`, `end`, `cancelled`...), which arrive from grpc-js's socket code outside it.
 * - `routeServerInterceptor(options)` is a grpc-js server interceptor for every service of a server.
 *   grpc-js starts a handler from the listener callbacks an interceptor sees, so running those callbacks
 *   in the route context covers the handler and its `data`/`end` events; `cancelled` listeners are the
 *   exception (grpc-js notifies cancellation around interceptors), so bind them with `bindRoute`.
 *
 * Use one of the two per service, not both.
 */
import type {
  Metadata,
  ServerDuplexStream,
  ServerInterceptingCallInterface,
  ServerInterceptor,
  ServerMethodDefinition,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  sendUnaryData,
} from '@grpc/grpc-js'
import { bindRoute, type RouteContext, runWithRoute } from '../../context/index.js'
import { InvalidArgumentError } from '../../errors/index.js'
import { grpcJs } from './grpc-js.js'
import { GrpcProtection, type GrpcProtectionOptions } from './protection.js'

type ServerCall =
  | ServerUnaryCall<unknown, unknown>
  | ServerReadableStream<unknown, unknown>
  | ServerWritableStream<unknown, unknown>
  | ServerDuplexStream<unknown, unknown>

type Handler = (call: ServerCall, callback?: sendUnaryData<unknown>) => unknown

/**
 * Returns a copy of a service implementation whose handlers are protected and run in the route context,
 * for `server.addService(definition, protectService(impl, options))`. Methods are found on the object
 * and its prototypes, so a class instance works too.
 * @example
 * server.addService(shop.Orders.service, protectService(orders, {
 *   agent,
 *   methods: { '/shop.Orders/*': 'unit', '/shop.Orders/Get*': { type: 'unit', write: false } },
 * }))
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) for malformed options.
 */
export function protectService<S extends object>(service: S, options: GrpcProtectionOptions): S {
  if (typeof service !== 'object' || service === null) {
    throw new InvalidArgumentError('protectService needs a service implementation object')
  }
  const protection = new GrpcProtection(options)
  const out: Record<string, unknown> = {}
  for (const name of methodNames(service)) {
    const handler = (service as Record<string, unknown>)[name]
    if (typeof handler === 'function') out[name] = protect(handler as Handler, service, protection)
  }
  return out as S
}

function protect(handler: Handler, self: object, protection: GrpcProtection): Handler {
  return function appactiveHandler(call, callback) {
    const verdict = protection.check(call.getPath(), call.metadata)
    if (!verdict.ok) {
      const error = protection.error(verdict)
      // Unary and client-streaming handlers answer through the callback; the streaming ones through
      // an `error` event, which grpc-js turns into the call's status.
      if (typeof callback === 'function') callback(error)
      else call.emit('error', error)
      return undefined
    }
    return runWithRoute(verdict.route, () => {
      // The call emits its events later, from the socket; bound here, they see the route context.
      call.emit = bindRoute(call.emit)
      return handler.call(self, call, callback)
    })
  }
}

/** Own and inherited method names, up to (not including) Object.prototype. */
function methodNames(service: object): Set<string> {
  const names = new Set<string>()
  for (let o: object | null = service; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) if (name !== 'constructor') names.add(name)
  }
  return names
}

/**
 * A grpc-js server interceptor that protects every method of the server and runs its handlers in the
 * route context: `new Server({ interceptors: [routeServerInterceptor(options)] })`.
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) for malformed options, or when
 * @grpc/grpc-js is not installed.
 */
export function routeServerInterceptor(options: GrpcProtectionOptions): ServerInterceptor {
  const protection = new GrpcProtection(options)
  const { ServerInterceptingCall } = grpcJs()
  return function appactiveInterceptor(
    method: ServerMethodDefinition<unknown, unknown>,
    call: ServerInterceptingCallInterface,
  ) {
    let route: RouteContext | undefined
    // Until the metadata is admitted nothing passes on, so a refused call never reaches its handler.
    const inRoute = (next: () => void): void => {
      if (route !== undefined) runWithRoute(route, next)
    }
    return new ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata: Metadata, nextMetadata) {
            const verdict = protection.check(method.path, metadata)
            if (!verdict.ok) {
              call.sendStatus(protection.status(verdict))
              return
            }
            route = verdict.route
            inRoute(() => nextMetadata(metadata))
          },
          onReceiveMessage(message, nextMessage) {
            inRoute(() => nextMessage(message))
          },
          onReceiveHalfClose(nextHalfClose) {
            inRoute(nextHalfClose)
          },
        })
      },
    })
  }
}
