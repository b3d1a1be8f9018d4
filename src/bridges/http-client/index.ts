export type {
  RouterSource,
  ServiceClientOptions,
  ServiceConfig,
  ServiceRequestOptions,
} from './service-client.js'
export { createServiceClient, isConnectionFailure, ServiceClient } from './service-client.js'
export { propagateFetch, routeInterceptor } from './undici.js'
