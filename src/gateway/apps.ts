/**
 * Which app a request belongs to: apps that list the request's Host come first, then apps for any host;
 * within each, the longest matching path prefix wins, on a segment boundary (`/shop` matches `/shop`, `/shop/x` and `/shop?q`, never `/shopping`).
 */
import type { AppConfig } from './types.js'

export class AppMatcher {
  readonly #apps: readonly AppConfig[]
  /** False when no app is bound to a host: the Host header is then never parsed. */
  readonly #byHost: boolean

  constructor(apps: readonly AppConfig[]) {
    this.#byHost = apps.some((app) => app.match.hosts.length > 0)
    // As nginx picks a server by name, then a location: apps bound to the host first, then the longest prefix.
    this.#apps = [...apps].sort(
      (a, b) =>
        Number(b.match.hosts.length > 0) - Number(a.match.hosts.length > 0) ||
        b.match.pathPrefix.length - a.match.pathPrefix.length,
    )
  }

  match(host: string | undefined, url: string | undefined): AppConfig | undefined {
    const name = this.#byHost ? hostName(host) : undefined
    const path = url ?? '/'
    for (const app of this.#apps) {
      const hosts = app.match.hosts
      if (hosts.length > 0 && (name === undefined || !hosts.includes(name))) continue
      if (prefixMatches(path, app.match.pathPrefix)) return app
    }
    return undefined
  }
}

/** Lower-case host without the port (`[::1]:8080` -> `[::1]`). */
function hostName(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined
  const h = host.toLowerCase()
  if (h.startsWith('[')) {
    const end = h.indexOf(']')
    return end === -1 ? h : h.slice(0, end + 1)
  }
  const colon = h.indexOf(':')
  return colon === -1 ? h : h.slice(0, colon)
}

function prefixMatches(path: string, prefix: string): boolean {
  if (prefix === '/' || prefix === '') return true
  if (!path.startsWith(prefix)) return false
  if (path.length === prefix.length || prefix.endsWith('/')) return true
  const next = path.charCodeAt(prefix.length)
  return next === 47 /* / */ || next === 63 /* ? */ || next === 35 /* # */
}
