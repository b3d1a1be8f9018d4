/**
 * Reading the raw route id from a request, per the rule set's id sources, in order: the first source
 * with a non-empty value wins. Pure string scanning, no node: imports, so the browser can run it too.
 *
 * - query: the first `name=value` pair of the URL's query string; `+` and percent-escapes are decoded
 *   (a malformed escape leaves the value raw). AppActive's Java side decodes too; its nginx side did not.
 * - header: case-insensitive name; the first value when repeated. Names with `_` work (AppActive B19).
 * - cookie: RFC 6265 pairs split on `;`, names matched exactly (`xr-id` never matches `r-id`, B3);
 *   a value in double quotes is unquoted; cookie values are opaque and not percent-decoded.
 */
import type { IdSource } from './schema.js'

/** Header values as node:http gives them, or a fetch `Headers`. */
export type HeadersLike =
  | { readonly [name: string]: string | readonly string[] | undefined }
  | { get(name: string): string | null }

/** The parts of an HTTP request the extractor reads. `url` may be a path (`/a?b=c`) or absolute. */
export interface RequestLike {
  readonly url?: string | undefined
  readonly headers?: HeadersLike | undefined
}

/** Raw route id of a request, or undefined. */
export type Extractor = (request: RequestLike) => string | undefined

/** Compiles the id sources into one extractor function. */
export function compileExtractor(sources: readonly IdSource[]): Extractor {
  const steps = sources.map((s): Extractor => {
    if (s.from === 'query') return (req) => (req.url === undefined ? undefined : queryParam(req.url, s.name))
    const name = s.name.toLowerCase()
    if (s.from === 'header') return (req) => header(req.headers, name)
    const cookieName = s.name
    return (req) => {
      const raw = header(req.headers, 'cookie')
      return raw === undefined ? undefined : cookieValue(raw, cookieName)
    }
  })
  if (steps.length === 1) return steps[0]!
  return (req) => {
    for (let i = 0; i < steps.length; i++) {
      const v = steps[i]!(req)
      if (v !== undefined && v !== '') return v
    }
    return undefined
  }
}

/** The first value of a header (lower-case name), or undefined. */
export function header(headers: HeadersLike | undefined, name: string): string | undefined {
  if (headers === undefined) return undefined
  if (typeof (headers as { get?: unknown }).get === 'function') {
    const v = (headers as { get(name: string): string | null }).get(name)
    return v === null || v === '' ? undefined : v
  }
  const v = (headers as { readonly [name: string]: string | readonly string[] | undefined })[name]
  if (v === undefined || v === '') return undefined
  if (typeof v === 'string') return v
  return v[0] === '' ? undefined : v[0]
}

/** The first value of query parameter `name` in `url`, decoded; undefined when absent or empty. */
export function queryParam(url: string, name: string): string | undefined {
  let end = url.indexOf('#')
  if (end === -1) end = url.length
  const q = url.indexOf('?')
  if (q === -1 || q > end) return undefined
  let start = q + 1
  while (start < end) {
    let amp = url.indexOf('&', start)
    if (amp === -1 || amp > end) amp = end
    const eq = url.indexOf('=', start)
    const nameEnd = eq !== -1 && eq < amp ? eq : amp
    if (matchesName(url, start, nameEnd, name)) {
      if (nameEnd === amp) return undefined // `?r_id` with no value
      const raw = url.slice(nameEnd + 1, amp)
      return raw === '' ? undefined : decodeComponent(raw)
    }
    start = amp + 1
  }
  return undefined
}

function matchesName(url: string, start: number, end: number, name: string): boolean {
  if (end - start === name.length && url.startsWith(name, start)) return true
  // An encoded name (rare): compare decoded.
  if (end - start < name.length) return false
  const raw = url.slice(start, end)
  return (raw.includes('%') || raw.includes('+')) && decodeComponent(raw) === name
}

function decodeComponent(raw: string): string {
  if (!raw.includes('%') && !raw.includes('+')) return raw
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '))
  } catch {
    return raw
  }
}

/**
 * The value of cookie `name` in a Cookie header (RFC 6265 §4.2.1 / §5.4): pairs separated by `;`,
 * surrounding whitespace ignored, a pair without `=` ignored, the first match wins.
 */
export function cookieValue(cookieHeader: string, name: string): string | undefined {
  const n = cookieHeader.length
  let start = 0
  while (start < n) {
    let semi = cookieHeader.indexOf(';', start)
    if (semi === -1) semi = n
    let a = start
    while (a < semi && isOws(cookieHeader.charCodeAt(a))) a++
    const eq = cookieHeader.indexOf('=', a)
    if (eq !== -1 && eq < semi) {
      let nameEnd = eq
      while (nameEnd > a && isOws(cookieHeader.charCodeAt(nameEnd - 1))) nameEnd--
      if (nameEnd - a === name.length && cookieHeader.startsWith(name, a)) {
        let vs = eq + 1
        let ve = semi
        while (vs < ve && isOws(cookieHeader.charCodeAt(vs))) vs++
        while (ve > vs && isOws(cookieHeader.charCodeAt(ve - 1))) ve--
        if (ve - vs >= 2 && cookieHeader.charCodeAt(vs) === 34 && cookieHeader.charCodeAt(ve - 1) === 34) {
          vs++
          ve--
        }
        return vs === ve ? undefined : cookieHeader.slice(vs, ve)
      }
    }
    start = semi + 1
  }
  return undefined
}

function isOws(c: number): boolean {
  return c === 32 || c === 9
}
