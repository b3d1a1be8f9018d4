export { AppMatcher } from './apps.js'
export type { RunningGateway } from './cluster.js'
export { runGateway } from './cluster.js'
export type { GatewayConfigInput, GatewayConfigOptions } from './config.js'
export {
  GatewayConfigSchema,
  loadGatewayConfig,
  parseGatewayConfig,
  parseListenAddress,
  resolveGatewayConfig,
} from './config.js'
export { GatewayHandler, PEER_HEADER } from './gateway.js'
export type { HoldOutcome } from './hold.js'
export { FenceHold } from './hold.js'
export type { NginxGateway, NginxGatewayOptions, NginxRules } from './nginx/index.js'
export { compileNginxRules, findNginx, NginxError, startNginxGateway } from './nginx/index.js'
export type { ForwardResult } from './proxy.js'
export { forward, forwardWith, sendError, upstreamHeaders } from './proxy.js'
export type { Gateway, GatewayOptions } from './server.js'
export { createGateway } from './server.js'
export type {
  AppConfig,
  GatewayConfig,
  HealthCheckConfig,
  HeapConfig,
  HoldConfig,
  ListenAddress,
  TimeoutsConfig,
} from './types.js'
export type { InstanceSnapshot, UpstreamSetOptions, UpstreamSetSnapshot } from './upstreams.js'
export { Instance, isUpstreamFailure, UpstreamRegistry, UpstreamSet } from './upstreams.js'
