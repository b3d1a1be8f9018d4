/**
 * Outgoing propagation of the route context for undici and global `fetch`: the x-appactive-* hop headers
 * and the W3C baggage member travel on every request made inside `runWithRoute`.
 *
 * - `routeInterceptor()` for `new Agent().compose(routeInterceptor())` (explicit wiring, no patching);
 * - `propagateFetch()` for global `fetch` and any undici client: subscribes to the
 *   `undici:request:create` diagnostics channel and adds the headers as each request is created.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { Dispatcher } from 'undici'
import {
  BAGGAGE_HEADER,
  currentRoute,
  injectRoute,
  isRouteHeader,
  ROUTE_ID_HEADER,
  type RouteContext,
} from '../../context/index.js'

type Headers = Dispatcher.DispatchOptions['headers']

/** The route headers for the current context, or undefined outside one (propagateFetch). */
function routeHeaders(existingBaggage: string | undefined): Array<[string, string]> | undefined {
  const route = currentRoute()
  if (route === undefined) return undefined
  const out: Array<[string, string]> = []
  injectRoute(route, (name, value) => out.push([name, value]), existingBaggage)
  return out
}

/** Any header shape undici accepts, as a flat `[name, value, ...]` list (an array is used as it is). */
function flat(headers: Headers): readonly unknown[] {
  if (headers == null) return []
  if (Array.isArray(headers)) return headers
  const out: unknown[] = []
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [name, value] of headers as Iterable<[string, unknown]>) out.push(name, value)
  } else {
    const record = headers as Record<string, unknown>
    for (const name of Object.keys(record)) out.push(name, record[name])
  }
  return out
}

/**
 * `headers` as a flat list, with the caller's own x-appactive-* headers replaced by the route's and the
 * route id merged into the caller's baggage (which is kept as it is when it already carries the id).
 */
function withRoute(headers: Headers, route: RouteContext): string[] {
  const out: string[] = []
  const given = flat(headers)
  let baggage: string | undefined
  for (let i = 0; i + 1 < given.length; i += 2) {
    const value = given[i + 1]
    if (value == null) continue
    const name = String(given[i]).toLowerCase()
    if (name === BAGGAGE_HEADER) {
      const text = Array.isArray(value) ? value.join(',') : String(value)
      baggage = baggage === undefined ? text : `${baggage},${text}`
    } else if (!isRouteHeader(name)) {
      // A repeated header (an array value) goes out as repeated lines, as undici sends it anyway.
      if (Array.isArray(value)) for (const v of value) out.push(name, String(v))
      else out.push(name, String(value))
    }
  }
  injectRoute(
    route,
    (name, value) => {
      if (name === BAGGAGE_HEADER) baggage = value
      else out.push(name, value)
    },
    baggage,
  )
  if (baggage !== undefined && baggage !== '') out.push(BAGGAGE_HEADER, baggage)
  return out
}

/**
 * An undici interceptor that puts the current route context on every request.
 * @example
 * const agent = new Agent().compose(routeInterceptor())
 * await runWithRoute({ routeId: '42' }, () => request('http://orders/42', { dispatcher: agent }))
 */
export function routeInterceptor(): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) =>
    function appactiveRoute(options, handler) {
      const route = currentRoute()
      if (route === undefined) return dispatch(options, handler)
      // Not `{ ...options, headers }`: on Node 20's V8 that takes a slow path (about 1 us) when `options`
      // has no `headers` yet, as from `request(url, { dispatcher })`.
      const routed = Object.assign({}, options)
      routed.headers = withRoute(options.headers, route)
      return dispatch(routed, handler)
    }
}

interface CreatedRequest {
  request: { headers: string | string[]; addHeader(name: string, value: string): unknown }
}

/**
 * Adds the route headers to every undici request created inside a route context, global `fetch`
 * included. Returns the function that stops it. Headers a request already carries are left alone.
 */
export function propagateFetch(): () => void {
  const onCreate = (message: unknown) => {
    const { request } = message as CreatedRequest
    const raw = request.headers
    let baggage: string | undefined
    if (Array.isArray(raw)) {
      // undici 7 keeps a request's headers as a flat [name, value, ...] list.
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const name = String(raw[i]).toLowerCase()
        if (name === ROUTE_ID_HEADER) return // set by routeInterceptor() or the caller: leave it
        if (name === 'baggage') baggage = String(raw[i + 1])
      }
    } else {
      if (raw.toLowerCase().includes(`${ROUTE_ID_HEADER}:`)) return
      baggage = /(?:^|\r\n)baggage: ?([^\r\n]*)/i.exec(raw)?.[1]
    }
    const route = routeHeaders(baggage)
    if (route === undefined) return
    for (const [name, value] of route) {
      // addHeader cannot replace a header: a request that already has baggage keeps its own.
      if (name === 'baggage' && baggage !== undefined) continue
      request.addHeader(name, value)
    }
  }
  subscribe('undici:request:create', onCreate)
  return () => unsubscribe('undici:request:create', onCreate)
}
