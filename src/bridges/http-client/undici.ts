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
import { currentRoute, injectRoute, isRouteHeader, ROUTE_ID_HEADER } from '../../context/index.js'

type Headers = Dispatcher.DispatchOptions['headers']

/** The route headers for the current context, or undefined outside one. */
function routeHeaders(existingBaggage: string | undefined): Array<[string, string]> | undefined {
  const route = currentRoute()
  if (route === undefined) return undefined
  const out: Array<[string, string]> = []
  injectRoute(route, (name, value) => out.push([name, value]), existingBaggage)
  return out
}

function baggageOf(headers: Headers): string | undefined {
  if (headers == null) return undefined
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (String(headers[i]).toLowerCase() === 'baggage') return String(headers[i + 1])
    }
    return undefined
  }
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    if (name.toLowerCase() === 'baggage' && value != null) return String(value)
  }
  return undefined
}

/** `headers` with the route headers set (caller's own x-appactive-* and baggage replaced). */
function withRoute(headers: Headers, route: Array<[string, string]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const add = (name: string, value: unknown) => {
    const key = name.toLowerCase()
    if (isRouteHeader(key) || key === 'baggage' || value == null) return
    out[key] = Array.isArray(value) ? value.map(String) : String(value)
  }
  if (Array.isArray(headers))
    for (let i = 0; i + 1 < headers.length; i += 2) add(String(headers[i]), headers[i + 1])
  else if (headers != null)
    for (const [name, value] of Object.entries(headers as Record<string, unknown>)) add(name, value)
  for (const [name, value] of route) out[name] = value
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
      const route = routeHeaders(baggageOf(options.headers))
      if (route === undefined) return dispatch(options, handler)
      return dispatch({ ...options, headers: withRoute(options.headers, route) }, handler)
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
