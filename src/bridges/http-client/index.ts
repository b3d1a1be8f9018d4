export { propagateFetch, routeInterceptor } from './undici.js'
