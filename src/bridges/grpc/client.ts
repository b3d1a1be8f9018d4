/**
 * gRPC client side: the route context travels on every call as metadata, and a unit-aware client sends
 * each call to an instance of the unit that must serve it (DESIGN §3, "picks instance by unit").
 *
 * How the per-call target is chosen: `createUnitClient` returns an object with the same RPC methods as
 * the generated client (one per method of `ClientCtor.service`, under both its name and its original
 * name). Each call resolves its target when it is made, from the route context current at that moment,
 * then forwards to a grpc-js client for that target (one per target URL, created on first use). A call
 * that has no permitted target throws synchronously, before anything is sent: `NoRouteIdError`,
 * `NoProviderError` or `LeaseExpiredError`. `pick()` exposes the same choice for anything else.
 */
import type {
  ChannelCredentials,
  Client,
  ClientOptions,
  InterceptingListener,
  Interceptor,
  InterceptorOptions,
  Metadata,
  NextCall,
  ServiceDefinition,
  StatusObject,
} from '@grpc/grpc-js'
import {
  resolveInstances,
  type ServiceInstance,
  type ServiceRegistry,
  type ServiceType,
} from '../../agent/index.js'
import { bindRoute, currentRoute, currentRouteId } from '../../context/index.js'
import { InvalidArgumentError, LeaseExpiredError, NoRouteIdError } from '../../errors/index.js'
import type { Router } from '../../rules/index.js'
import { grpcJs } from './grpc-js.js'
import { writeRouteMetadata } from './metadata.js'

/**
 * A grpc-js client interceptor that puts the current route context on each call: `x-appactive-route-id`,
 * `-unit`, `-rule-version`, `-hops` and the baggage member `appactive.route-id`. Outside a route context
 * nothing is added. Either way the call's callback and stream events run in the caller's context: grpc-js
 * delivers responses from its HTTP/2 session, whose async context is that of whichever call opened the
 * connection, so without this a callback could see another request's route.
 * @example
 * const orders = new shop.Orders(target, credentials.createInsecure(), { interceptors: [routeClientInterceptor()] })
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) when @grpc/grpc-js is not installed.
 */
export function routeClientInterceptor(): Interceptor {
  const { InterceptingCall } = grpcJs()
  return function appactiveRoute(options: InterceptorOptions, nextCall: NextCall) {
    // The interceptor runs synchronously when the call is made: this is the caller's context.
    const route = currentRoute()
    const inCaller = bindRoute((fn: () => void) => fn())
    return new InterceptingCall(nextCall(options), {
      start(metadata: Metadata, listener: InterceptingListener, next) {
        if (route !== undefined) writeRouteMetadata(metadata, route)
        // One declared parameter each: grpc-js tells an intercepting listener by the arity.
        next(metadata, {
          onReceiveMetadata: (md: Metadata) => inCaller(() => listener.onReceiveMetadata(md)),
          onReceiveMessage: (message: unknown) => inCaller(() => listener.onReceiveMessage(message)),
          onReceiveStatus: (status: StatusObject) => inCaller(() => listener.onReceiveStatus(status)),
        })
      },
    })
  }
}

/** A generated client constructor: `grpc.loadPackageDefinition(def).shop.Orders`, or protoc output. */
export interface UnitClientConstructor<C extends Client> {
  new (address: string, credentials: ChannelCredentials, options?: ClientOptions): C
  readonly service: ServiceDefinition
}

/** Options of `createUnitClient`. */
export interface UnitClientOptions {
  /** Where the service's instances are, per unit. A gRPC instance's `url` is a grpc-js target (`host:port`). */
  readonly registry: ServiceRegistry
  /** The service's name in the registry. */
  readonly service: string
  /** `unit`: the route id's owner unit only; `center`: the center only; `normal`: own unit first. */
  readonly type: ServiceType
  /** The process's agent (a `RoutingAgent`): its rule set and unit decide the target unit. */
  readonly agent: { readonly router: Router | undefined; readonly identity: { readonly unit: string } }
  readonly credentials: ChannelCredentials
  /** Options of every per-target grpc-js client; `routeClientInterceptor()` is put first in its interceptors. */
  readonly clientOptions?: ClientOptions
}

/** The target a call made now would use. */
export interface UnitTarget<C extends Client> {
  readonly instance: ServiceInstance
  /** The grpc-js client for `instance.url` (shared, with the route interceptor). */
  readonly client: C
}

/** The RPC methods of `C`, dispatched per call, plus `pick()` and `close()`. */
export type UnitClient<C extends Client> = Omit<C, keyof Client> & {
  /**
   * The target a call made now, in the current route context, would go to (advancing the round robin).
   * @throws NoRouteIdError, NoProviderError, LeaseExpiredError
   */
  pick(): UnitTarget<C>
  /** Closes every per-target client. */
  close(): void
}

const TYPES: ReadonlySet<string> = new Set(['unit', 'center', 'normal'])

/**
 * A client whose calls go to an instance of the unit that must serve them, chosen per call with
 * `resolveInstances()`: the route id's owner for a `unit` service, the center for a `center` service,
 * the caller's own unit first for a `normal` one. Never another unit silently: with no healthy instance
 * in the required unit the call throws `NoProviderError`. Healthy instances of the chosen unit take turns;
 * one whose connection failed is passed over until it reconnects, unless no other is left.
 * @example
 * const orders = createUnitClient(shop.Orders, { registry, service: 'orders', type: 'unit', agent, credentials: credentials.createInsecure() })
 * await runWithRoute({ routeId: '4000' }, () => new Promise((ok, ko) => orders.Get({ id: '4000' }, (e, r) => (e ? ko(e) : ok(r)))))
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) for malformed options.
 */
export function createUnitClient<C extends Client>(
  ClientCtor: UnitClientConstructor<C>,
  options: UnitClientOptions,
): UnitClient<C> {
  if (
    typeof ClientCtor !== 'function' ||
    typeof ClientCtor.service !== 'object' ||
    ClientCtor.service === null
  ) {
    throw new InvalidArgumentError(
      'createUnitClient needs a generated client constructor (with a `service` definition)',
    )
  }
  const {
    registry,
    service,
    type,
    agent,
    credentials,
    clientOptions = {},
  } = options ?? ({} as UnitClientOptions)
  if (typeof registry?.instances !== 'function') {
    throw new InvalidArgumentError('createUnitClient needs `registry`, a ServiceRegistry')
  }
  if (typeof service !== 'string' || service === '') {
    throw new InvalidArgumentError('createUnitClient needs `service`, the service name in the registry')
  }
  if (!TYPES.has(type)) {
    throw new InvalidArgumentError(`service type must be unit, center or normal, got ${JSON.stringify(type)}`)
  }
  if (typeof agent?.identity?.unit !== 'string') {
    throw new InvalidArgumentError('createUnitClient needs `agent`, a RoutingAgent (createAgent())')
  }
  if (typeof credentials !== 'object' || credentials === null) {
    throw new InvalidArgumentError(
      'createUnitClient needs `credentials` (grpc.credentials.createInsecure()...)',
    )
  }

  const route = routeClientInterceptor()
  const FAILED = grpcJs().connectivityState.TRANSIENT_FAILURE
  const { interceptors = [], interceptor_providers: providers = [] } = clientOptions
  // grpc-js refuses `interceptors` and `interceptor_providers` together: join the caller's kind.
  const perTarget: ClientOptions =
    providers.length > 0
      ? { ...clientOptions, interceptor_providers: [() => route, ...providers] }
      : { ...clientOptions, interceptors: [route, ...interceptors] }
  const clients = new Map<string, C>()
  let turn = 0

  function owner(router: Router): string | null {
    if (type !== 'unit') return null
    const routeId = currentRouteId()
    if (routeId === undefined) {
      throw new NoRouteIdError(
        `${service} is a unit service: call it inside a route context with a route id`,
        {
          service,
        },
      )
    }
    const unit = router.unitOf(routeId)
    if (unit === null) {
      throw new NoRouteIdError(`route id ${routeId} maps to no unit and the fallback rejects it`, {
        service,
        routeId,
      })
    }
    return unit
  }

  function pick(): UnitTarget<C> {
    const router = agent.router
    if (router === undefined && type !== 'normal') {
      throw new LeaseExpiredError({ service, reason: 'no rule set applied yet' })
    }
    const instances = resolveInstances(registry, {
      service,
      type,
      owner: router === undefined ? null : owner(router),
      localUnit: agent.identity.unit,
      centerUnit: router?.centerUnit ?? '',
    })
    // Instances come in unit preference order: take turns within the first unit only, skipping those
    // whose channel failed to connect (grpc-js's TRANSIENT_FAILURE) while any other is left.
    const unit = instances[0]!.unit
    const group = instances.filter((i) => i.unit === unit)
    const live = group.filter((i) => clients.get(i.url)?.getChannel().getConnectivityState(false) !== FAILED)
    const choice = live.length > 0 ? live : group
    const instance = choice[turn++ % choice.length]!
    let client = clients.get(instance.url)
    if (client === undefined) {
      client = new ClientCtor(instance.url, credentials, perTarget)
      clients.set(instance.url, client)
    }
    return { instance, client }
  }

  const unitClient: Record<string, unknown> = {
    pick,
    close() {
      for (const client of clients.values()) client.close()
      clients.clear()
    },
  }
  for (const [name, method] of Object.entries(ClientCtor.service)) {
    for (const key of new Set([name, method.originalName ?? name])) {
      if (key in unitClient) continue // `pick` and `close` stay ours; use pick().client[key] for such a method.
      unitClient[key] = function unitCall(...args: unknown[]): unknown {
        const { client } = pick()
        return (client as unknown as Record<string, (...a: unknown[]) => unknown>)[key]!(...args)
      }
    }
  }
  return unitClient as UnitClient<C>
}
