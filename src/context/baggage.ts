/**
 * A dependency-free codec for the W3C `baggage` header (https://www.w3.org/TR/baggage/), so the route
 * id rides along for OpenTelemetry users. Malformed input never throws: a bad list-member is skipped.
 */
import { trimOws } from './header-source.js'
import { fitsRouteIdLimit } from './route-context.js'

/** One baggage list-member. */
export interface BaggageEntry {
  /** The key, an RFC 9110 token. */
  readonly key: string
  /** The value, percent-decoded. */
  readonly value: string
  /** The properties after the first `;`, verbatim (`p1;p2=v`); absent when there are none. */
  readonly metadata?: string
}

/** The header's name. */
export const BAGGAGE_HEADER = 'baggage'

/** The list-member that carries the raw route id. */
export const ROUTE_ID_BAGGAGE_KEY = 'appactive.route-id'

/** Most list-members one baggage header carries (W3C limit); the excess is dropped. */
export const MAX_BAGGAGE_MEMBERS = 180

/** Most bytes one baggage header carries (W3C limit); members that do not fit are dropped. */
export const MAX_BAGGAGE_BYTES = 8192

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// baggage-octet: visible ASCII except DQUOTE, comma, semicolon and backslash.
const VALUE = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*$/
const PROPERTY = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*)?$/

/** A well-formed member and its text as it travels (ASCII, so its length is its size in bytes). */
interface Member {
  readonly entry: BaggageEntry
  readonly text: string
}

function validMetadata(metadata: string): boolean {
  for (const property of metadata.split(';')) if (!PROPERTY.test(trimOws(property))) return false
  return true
}

function decodeValue(text: string): string | undefined {
  if (!text.includes('%')) return text
  try {
    return decodeURIComponent(text)
  } catch {
    return undefined // not %XX, or not UTF-8: the member is ignored, never repaired.
  }
}

function parseMember(raw: string): Member | undefined {
  const text = trimOws(raw)
  const semi = text.indexOf(';')
  const head = semi < 0 ? text : text.slice(0, semi)
  const eq = head.indexOf('=')
  if (eq < 0) return undefined
  const key = trimOws(head.slice(0, eq))
  const encoded = trimOws(head.slice(eq + 1))
  if (!TOKEN.test(key) || !VALUE.test(encoded)) return undefined
  const value = decodeValue(encoded)
  if (value === undefined) return undefined
  if (semi < 0) return { entry: { key, value }, text }
  const metadata = trimOws(text.slice(semi + 1))
  if (!validMetadata(metadata)) return undefined
  return { entry: { key, value, metadata }, text }
}

function parseMembers(header: string | readonly string[] | undefined): Member[] {
  if (header === undefined) return []
  const joined = typeof header === 'string' ? header : header.join(',')
  const members: Member[] = []
  for (const raw of joined.split(',')) {
    const member = parseMember(raw)
    if (member) members.push(member)
  }
  return members
}

/**
 * Which member texts fit the W3C limits. Route-id members are taken first; the others in order while
 * they fit, so one oversized member does not push out the smaller ones after it.
 */
function select(texts: readonly string[], keys: readonly string[]): boolean[] {
  const keep = new Array<boolean>(texts.length).fill(false)
  let count = 0
  let bytes = 0
  const take = (i: number): void => {
    const size = texts[i]!.length + (count > 0 ? 1 : 0) // + the comma before it
    if (count >= MAX_BAGGAGE_MEMBERS || bytes + size > MAX_BAGGAGE_BYTES) return
    keep[i] = true
    count++
    bytes += size
  }
  for (let i = 0; i < texts.length; i++) if (keys[i] === ROUTE_ID_BAGGAGE_KEY) take(i)
  for (let i = 0; i < texts.length; i++) if (keys[i] !== ROUTE_ID_BAGGAGE_KEY) take(i)
  return keep
}

function join(texts: readonly string[], keys: readonly string[]): string {
  const keep = select(texts, keys)
  return texts.filter((_, i) => keep[i]).join(',')
}

function limited(members: readonly Member[]): Member[] {
  const keep = select(
    members.map((m) => m.text),
    members.map((m) => m.entry.key),
  )
  return members.filter((_, i) => keep[i])
}

/**
 * Parses one or more `baggage` header values (several are joined with `,`) into entries, in order.
 * Malformed members (bad key, bad value octets, bad percent-encoding, bad property) are skipped;
 * past {@link MAX_BAGGAGE_MEMBERS} members or {@link MAX_BAGGAGE_BYTES} bytes the excess is dropped.
 */
export function parseBaggage(header: string | readonly string[] | undefined): BaggageEntry[] {
  return limited(parseMembers(header)).map((m) => m.entry)
}

function encodeEntry(entry: BaggageEntry): string | undefined {
  if (typeof entry?.key !== 'string' || !TOKEN.test(entry.key) || typeof entry.value !== 'string') {
    return undefined
  }
  let value: string
  try {
    value = encodeURIComponent(entry.value)
  } catch {
    return undefined // a lone surrogate has no UTF-8 form
  }
  const metadata = entry.metadata === undefined ? '' : trimOws(entry.metadata)
  if (metadata !== '' && !validMetadata(metadata)) return undefined
  return metadata === '' ? `${entry.key}=${value}` : `${entry.key}=${value};${metadata}`
}

const ROUTE_ID_MEMBER_PREFIX = `${ROUTE_ID_BAGGAGE_KEY}=`

/** `appactive.route-id=<percent-encoded id>`, or `''` for a lone surrogate (no UTF-8 form). */
function routeIdMember(routeId: string): string {
  try {
    return ROUTE_ID_MEMBER_PREFIX + encodeURIComponent(routeId)
  } catch {
    return ''
  }
}

/**
 * Writes entries as one `baggage` header value. Values are percent-encoded (`encodeURIComponent`);
 * entries with an invalid key, value or metadata are skipped. Members that would pass the W3C limits
 * are dropped, others before the `appactive.route-id` member. Returns `''` when nothing is left.
 */
export function serializeBaggage(entries: readonly BaggageEntry[]): string {
  const texts: string[] = []
  const keys: string[] = []
  for (const entry of entries) {
    const text = encodeEntry(entry)
    if (text === undefined) continue
    texts.push(text)
    keys.push(entry.key)
  }
  return join(texts, keys)
}

/**
 * The route id carried in baggage, or `undefined` when absent, empty, over the route-id limit, or
 * given twice with different values.
 */
export function getBaggageRouteId(header: string | readonly string[] | undefined): string | undefined {
  let found: string | undefined
  for (const { entry } of limited(parseMembers(header))) {
    if (entry.key !== ROUTE_ID_BAGGAGE_KEY) continue
    if (found !== undefined && found !== entry.value) return undefined
    found = entry.value
  }
  return found !== undefined && fitsRouteIdLimit(found) ? found : undefined
}

/**
 * Returns `header` with the `appactive.route-id` member set to `routeId`: it replaces the first such
 * member in place (or is appended), and every other well-formed member is kept verbatim, properties
 * included. When `routeId` cannot travel (empty, over the limit, a lone surrogate) the member is
 * removed instead, so no stale id rides on. Returns `''` when no member is left.
 */
export function withBaggageRouteId(header: string | readonly string[] | undefined, routeId: string): string {
  if (header === undefined || header === '' || (Array.isArray(header) && header.length === 0)) {
    // The common case (no incoming baggage) skips the parse and join: only our member.
    return typeof routeId === 'string' && fitsRouteIdLimit(routeId) ? routeIdMember(routeId) : ''
  }
  const texts: string[] = []
  const keys: string[] = []
  let at = -1
  for (const { entry, text } of parseMembers(header)) {
    if (entry.key === ROUTE_ID_BAGGAGE_KEY) {
      if (at < 0) at = texts.length
      continue
    }
    texts.push(text)
    keys.push(entry.key)
  }
  const ours = typeof routeId === 'string' && fitsRouteIdLimit(routeId) ? routeIdMember(routeId) : ''
  if (ours !== '') {
    const index = at < 0 ? texts.length : at
    texts.splice(index, 0, ours)
    keys.splice(index, 0, ROUTE_ID_BAGGAGE_KEY)
  }
  return join(texts, keys)
}

/**
 * Removes every `appactive.*` member (key compared case-insensitively, well-formed or not), for the
 * edge's stripping rule; every other member is kept verbatim. Returns the header (repeats joined with
 * `,`) and how many members were removed.
 */
export function stripBaggageRouteMembers(header: string | readonly string[]): {
  readonly header: string
  readonly removed: number
} {
  const joined = typeof header === 'string' ? header : header.join(',')
  const parts = joined.split(',').map(trimOws)
  const kept = parts.filter((part) => part !== '' && !part.toLowerCase().startsWith('appactive.'))
  const removed = parts.filter((part) => part.toLowerCase().startsWith('appactive.')).length
  return removed === 0 ? { header: joined, removed } : { header: kept.join(','), removed }
}
