// One unit's gRPC server: Orders is a unit service, so a call for a user owned by another unit is
// refused with FAILED_PRECONDITION and the owner in the `x-appactive-unit` trailer.
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import type { RoutingAgent } from 'appactive/agent'
import { currentRouteId } from 'appactive/context'
import { protectService } from 'appactive/grpc'

export interface OrdersReply {
  readonly unit: string
  readonly userId: string
}

/** The generated client's shape (proto-loader-gen-types writes these for you). */
export interface OrdersClient extends grpc.Client {
  Get(request: object, callback: grpc.requestCallback<OrdersReply>): grpc.ClientUnaryCall
}

const definition = protoLoader.loadSync(new URL('shop.proto', import.meta.url).pathname)
const shop = grpc.loadPackageDefinition(definition).shop as grpc.GrpcObject
export const Orders = shop.Orders as unknown as {
  new (target: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions): OrdersClient
  readonly service: grpc.ServiceDefinition
}

/** Starts the Orders server of `agent`'s unit on a free port; returns its `host:port` and a stop function. */
export async function startOrdersServer(agent: RoutingAgent): Promise<{ target: string; stop: () => void }> {
  const orders = {
    Get(_call: grpc.ServerUnaryCall<object, OrdersReply>, reply: grpc.sendUnaryData<OrdersReply>) {
      // The handler runs inside the route context the caller sent.
      reply(null, { unit: agent.identity.unit, userId: currentRouteId() ?? '' })
    },
  }
  const server = new grpc.Server()
  server.addService(
    Orders.service,
    protectService(orders, { agent, methods: { '/shop.Orders/*': { type: 'unit', write: false } } }),
  )
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  )
  return { target: `127.0.0.1:${port}`, stop: () => server.forceShutdown() }
}
