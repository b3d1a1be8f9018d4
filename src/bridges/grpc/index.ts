/**
 * `appactive/grpc`: the route context over gRPC (@grpc/grpc-js, an optional peer loaded only when a
 * factory is called). Client: `routeClientInterceptor()`, `createUnitClient()`. Server:
 * `protectService()` or `routeServerInterceptor()`.
 */
export type { UnitClient, UnitClientConstructor, UnitClientOptions, UnitTarget } from './client.js'
export { createUnitClient, routeClientInterceptor } from './client.js'
export { CODE_METADATA, RETRY_AFTER_METADATA, RETRY_PUSHBACK_METADATA } from './metadata.js'
export type { GrpcProtectionOptions, MethodRule } from './protection.js'
export { protectService, routeServerInterceptor } from './server.js'
