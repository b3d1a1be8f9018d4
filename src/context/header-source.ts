/**
 * Reading one header from the three shapes Node hands out: a node:http headers record, a fetch
 * `Headers`-like object, and undici's flat `[name, value, name, value...]` arrays.
 */
import { Buffer } from 'node:buffer'

/** A node:http headers record (`req.headers`): lower-case names; arrays for repeated headers. */
export type HeaderRecord = { readonly [name: string]: string | readonly string[] | number | undefined }

/** Anything with a fetch-style `get(name)`: `Headers`, a `Map` of lower-case names. */
export interface HeaderGetter {
  get(name: string): string | null | undefined
}

/** undici's flat header list: `[name, value, name, value...]`, names in any case, values as text or bytes. */
export type RawHeaders = readonly (string | Uint8Array)[]

/** Every shape the header readers accept. */
export type HeaderSource = HeaderRecord | HeaderGetter | RawHeaders

/** A header name or value as text; bytes are read as ISO-8859-1. */
export function headerText(value: string | Uint8Array): string {
  if (typeof value === 'string') return value
  // Header bytes are ISO-8859-1 on the wire (RFC 9110 §5.5); our values are ASCII anyway.
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1')
}

function isGetter(source: HeaderSource): source is HeaderGetter {
  return typeof (source as { get?: unknown }).get === 'function'
}

/**
 * Every value of header `name` (lower-case), in order; `[]` when absent. A getter yields one value,
 * since `Headers.get` already joins repeats with `, `.
 */
export function headerValues(source: HeaderSource, name: string): string[] {
  if (Array.isArray(source)) {
    const raw = source as RawHeaders
    const out: string[] = []
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const key = raw[i]!
      const keyText = headerText(key)
      if (keyText.length === name.length && keyText.toLowerCase() === name) out.push(headerText(raw[i + 1]!))
    }
    return out
  }
  if (isGetter(source)) {
    const value = source.get(name)
    return typeof value === 'string' ? [value] : []
  }
  const value = (source as HeaderRecord)[name]
  if (value === undefined) return []
  if (typeof value === 'string') return [value]
  if (typeof value === 'number') return [String(value)]
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []
}

/**
 * The single value of header `name`, trimmed of optional whitespace; `undefined` when the header is
 * absent or repeated with different values (ambiguous: a client or a broken hop added a copy).
 */
export function singleHeader(source: HeaderSource, name: string): string | undefined {
  const values = headerValues(source, name)
  if (values.length === 0) return undefined
  const first = trimOws(values[0]!)
  for (let i = 1; i < values.length; i++) if (trimOws(values[i]!) !== first) return undefined
  return first
}

/** Removes leading and trailing spaces and tabs (RFC 9110 OWS), nothing else. */
export function trimOws(value: string): string {
  let start = 0
  let end = value.length
  while (start < end && isOws(value.charCodeAt(start))) start++
  while (end > start && isOws(value.charCodeAt(end - 1))) end--
  return start === 0 && end === value.length ? value : value.slice(start, end)
}

function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09
}
