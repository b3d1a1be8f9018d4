/**
 * The gateway's configuration file (YAML or JSON): a strict zod schema for what users write, then one
 * semantic pass across fields, then defaults and the environment, giving the resolved `GatewayConfig`
 * of types.ts. Every problem is reported at once, each with its path (`apps[1].upstreams.unit[0]`) and a
 * plain sentence, in one RuleInvalidError('gateway config').
 */
import { readFileSync, statSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { isIP, isIPv4, isIPv6 } from 'node:net'
import { availableParallelism } from 'node:os'
import { dirname, resolve } from 'node:path'
import { z } from 'zod'
import { parseDuration } from '../agent/options.js'
import { RuleInvalidError, type RuleIssue } from '../errors/index.js'
import type { TextFormat } from '../rules/index.js'
import { FallbackSchema, formatOf, MAX_TEXT_BYTES, MAX_UNITS, parseText, zodIssues } from '../rules/index.js'
import type { AppConfig, GatewayConfig, HealthCheckConfig, ListenAddress } from './types.js'

/** Most apps one gateway serves. */
export const MAX_APPS = 1000
/** Most instances per unit in one app, and most hosts per app. */
export const MAX_INSTANCES = 1000
/** Largest TLS certificate or key file read. */
export const MAX_PEM_BYTES = 1024 * 1024
/** Longest a request may be held for a fence to lift. */
export const MAX_HOLD_MS = 60_000
/** Host of `:PORT` and `PORT`: every IPv4 interface (write `[::]:PORT` for IPv6 as well). */
export const ANY_HOST = '0.0.0.0'

const NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/
const NAME_RULE = 'a letter then up to 62 letters, digits, "_", "." or "-"'
const unitName = z.string().regex(NAME, `a unit name is ${NAME_RULE}`)
const appName = z.string().regex(NAME, `an app name is ${NAME_RULE}`)
const DURATION_HINT = 'a number of milliseconds, or a string such as "500ms", "5s" or "2m"'

/** `90000` -> `90s`, `120000` -> `2m`, `1500` -> `1500ms`. */
function showMs(ms: number): string {
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

type Ctx = z.core.$RefinementCtx

function problem(ctx: Ctx, input: unknown, message: string): never {
  ctx.addIssue({ code: 'custom', input, message })
  return z.NEVER
}

/** A duration in whole milliseconds within [minMs, maxMs]. */
function duration(minMs: number, maxMs: number) {
  return z
    .union([z.number(), z.string()], { error: `must be a duration: ${DURATION_HINT}` })
    .transform((value, ctx) => {
      const ms = parseDuration(value)
      if (ms === undefined)
        return problem(ctx, value, `${JSON.stringify(value)} is not a duration (${DURATION_HINT})`)
      if (!Number.isInteger(ms))
        return problem(ctx, value, `must be a whole number of milliseconds, got ${ms}`)
      if (ms < minMs) return problem(ctx, value, `must be at least ${showMs(minMs)}, got ${showMs(ms)}`)
      if (ms > maxMs) return problem(ctx, value, `must be at most ${showMs(maxMs)}, got ${showMs(ms)}`)
      return ms
    })
}

/** Whole seconds: a number of seconds, or a duration string that is a whole number of seconds. */
function seconds(min: number, max: number) {
  return z
    .union([z.number(), z.string()], { error: 'must be a number of seconds, or a duration such as "5s"' })
    .transform((value, ctx) => {
      let s: number | undefined
      if (typeof value === 'number') s = value
      else {
        const ms = parseDuration(value)
        if (ms === undefined)
          return problem(ctx, value, `${JSON.stringify(value)} is not a number of seconds`)
        s = ms / 1000
      }
      if (!Number.isInteger(s)) return problem(ctx, value, `must be a whole number of seconds, got ${s}`)
      if (s < min || s > max)
        return problem(ctx, value, `must be between ${min} and ${max} seconds, got ${s}`)
      return s
    })
}

/** A whole number within [min, max]. */
function count(min: number, max: number) {
  return z
    .number()
    .int()
    .min(min, { error: (issue) => `must be at least ${min}, got ${String(issue.input)}` })
    .max(max, { error: (issue) => `must be at most ${max}, got ${String(issue.input)}` })
}

/**
 * Parses a listen address: `HOST:PORT`, `[IPv6]:PORT`, `:PORT` or `PORT` (a string or a number).
 * Returns a sentence for anything else.
 */
export function parseListenAddress(value: string | number): ListenAddress | string {
  const text = typeof value === 'number' ? String(value) : value.trim()
  let host = ANY_HOST
  let port = text
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(text)
  if (text.includes('/')) port = ''
  else if (v6) {
    if (!isIPv6(v6[1]!)) return `${JSON.stringify(v6[1])} is not an IPv6 address`
    host = v6[1]!
    port = v6[2]!
  } else if (text.includes(':')) {
    const at = text.lastIndexOf(':')
    const h = text.slice(0, at)
    port = text.slice(at + 1)
    if (h.includes(':')) return `put an IPv6 address in brackets, as [::1]:${port}`
    if (h !== '') {
      if (!isIPv4(h) && !isHostname(h)) return `${JSON.stringify(h)} is not a host name or IP address`
      host = h
    }
  }
  if (!/^\d{1,5}$/.test(port)) {
    return `${JSON.stringify(value)} is not an address: write HOST:PORT, [IPv6]:PORT, :PORT or PORT`
  }
  const n = Number(port)
  if (n > 65535) return `port ${n} is out of range (0 to 65535)`
  return { host, port: n }
}

function isHostname(host: string): boolean {
  if (host.length > 253) return false
  return host
    .replace(/\.$/, '')
    .split('.')
    .every((label) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label))
}

const address = z
  .union([z.number(), z.string()], { error: 'must be an address: HOST:PORT, [IPv6]:PORT, :PORT or PORT' })
  .transform((value, ctx) => {
    const a = parseListenAddress(value)
    return typeof a === 'string' ? problem(ctx, value, a) : a
  })

/**
 * An upstream or peer gateway URL, reduced to its origin (`http://10.0.0.5:9001`). Only http and https; no
 * credentials, query or fragment; and no path beyond `/`: the gateway forwards the request path unchanged
 * (no prefix rewriting), to one undici Pool per origin.
 */
const originUrl = z
  .string({ error: 'must be a URL such as http://127.0.0.1:9001' })
  .transform((text, ctx) => {
    let url: URL
    try {
      url = new URL(text)
    } catch {
      return problem(ctx, text, `${JSON.stringify(text)} is not a URL (write http://HOST:PORT)`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return problem(ctx, text, `${text} must use http or https, not ${url.protocol.slice(0, -1)}`)
    }
    if (url.username || url.password)
      return problem(ctx, text, `${url.origin}: credentials in the URL are not supported`)
    if (url.pathname !== '/') {
      return problem(
        ctx,
        text,
        `${text} has a path (${url.pathname}); give the origin only: requests keep their own path`,
      )
    }
    if (text.includes('?') || text.includes('#'))
      return problem(ctx, text, `${text} cannot have a query or fragment`)
    return url.origin
  })

/** A Host value an app answers: a host name, IPv4 or [IPv6], with an optional `:PORT`; kept lowercase. */
const hostMatch = z.string().transform((text, ctx) => {
  const lower = text.trim().toLowerCase()
  const m = /^(\[[^\]]*\]|[^:]+)(?::(\d{1,5}))?$/.exec(lower)
  const h = m?.[1] ?? ''
  const ok =
    m !== null &&
    (h.startsWith('[') ? isIPv6(h.slice(1, -1)) : isIP(h) !== 0 || isHostname(h)) &&
    (m[2] === undefined || Number(m[2]) <= 65535)
  return ok ? lower : problem(ctx, text, `${JSON.stringify(text)} is not a host name (HOST or HOST:PORT)`)
})

const pathPrefix = z
  .string()
  .max(1024)
  .regex(/^\//, 'must start with "/"')
  .regex(/^[^?#\s]*$/, 'cannot contain "?", "#" or spaces')

/** A header-safe secret: visible ASCII, no spaces. */
function secret(min: number) {
  return z
    .string()
    .min(min, min > 1 ? `must be at least ${min} characters (it is a shared secret)` : 'cannot be empty')
    .max(4096)
    .regex(/^[\x21-\x7e]*$/, 'may hold only visible ASCII characters, no spaces')
}

export const HealthCheckSchema = z.strictObject({
  /** Path probed with GET on each instance; 2xx/3xx is healthy. */
  path: z
    .string()
    .max(1024)
    .regex(/^\/[^#\s]*$/, 'must start with "/" (a query is allowed; a fragment or spaces are not)'),
  interval: duration(100, 3_600_000).default(5000),
  timeout: duration(10, 60_000).default(2000),
  unhealthyAfter: count(1, 100).default(3),
  healthyAfter: count(1, 100).default(2),
})

export const AppSchema = z.strictObject({
  name: appName,
  match: z
    .strictObject({
      hosts: z.array(hostMatch).max(MAX_INSTANCES).default([]),
      pathPrefix: pathPrefix.default('/'),
    })
    .prefault({}),
  upstreams: z
    .record(unitName, z.array(originUrl).min(1, 'list at least one instance URL').max(MAX_INSTANCES))
    .refine((r) => Object.keys(r).length > 0, 'list the instances of at least one unit'),
  unitEnabled: z.boolean().default(true),
  fallback: FallbackSchema.optional(),
  balance: z.enum(['round-robin', 'least-busy']).default('round-robin'),
  healthCheck: HealthCheckSchema.optional(),
})

export const HoldSchema = z.strictObject({
  enabled: z.boolean().default(true),
  methods: z.enum(['writes', 'all']).default('writes'),
  maxWait: duration(1, MAX_HOLD_MS).default(2000),
  maxQueue: count(1, 1_000_000).default(1000),
  retryAfter: seconds(1, 3600).default(1),
})

export const TimeoutsSchema = z.strictObject({
  connect: duration(1, 60_000).default(2000),
  headers: duration(1, 3_600_000).default(30_000),
  body: duration(1, 3_600_000).default(60_000),
})

/**
 * The configuration file as written. `unit`, `rules` and `token` may be left out when APPACTIVE_UNIT,
 * APPACTIVE_RULES and APPACTIVE_TOKEN give them; `listen` and `apps` are required.
 */
export const GatewayConfigSchema = z.strictObject({
  $schema: z.string().optional(),
  unit: unitName.optional(),
  listen: address,
  rules: z.string().min(1, 'cannot be empty').optional(),
  token: secret(1).optional(),
  apps: z.array(AppSchema).min(1, 'list at least one app').max(MAX_APPS),
  units: z
    .record(unitName, z.strictObject({ gateway: originUrl.optional() }))
    .refine((r) => Object.keys(r).length <= MAX_UNITS, `at most ${MAX_UNITS} units`)
    .default({}),
  forwarding: z.enum(['direct', 'gateway']).default('direct'),
  peerToken: secret(16).optional(),
  hold: HoldSchema.prefault({}),
  timeouts: TimeoutsSchema.prefault({}),
  tls: z
    .strictObject({
      cert: z.string().min(1, 'cannot be empty'),
      key: z.string().min(1, 'cannot be empty'),
    })
    .optional(),
  admin: address.optional(),
  maxHeaderBytes: count(1024, 1024 * 1024).default(16_384),
  accessLog: z.boolean().default(true),
  workers: count(1, 64).optional(),
  heap: z
    .strictObject({
      maxSemiSpaceMb: count(1, 256).optional(),
      maxOldSpaceMb: count(16, 1024 * 1024).optional(),
    })
    .optional(),
})

/** The configuration as written (durations as "5s" or ms, addresses as text). */
export type GatewayConfigInput = z.input<typeof GatewayConfigSchema>
type Parsed = z.output<typeof GatewayConfigSchema>
type ParsedApp = z.output<typeof AppSchema>

/** Where the configuration came from, and the environment that fills what the file leaves out. */
export interface GatewayConfigOptions {
  /** The file name put on every issue; relative paths in the file resolve against its directory. */
  readonly file?: string
  /** APPACTIVE_UNIT, APPACTIVE_RULES, APPACTIVE_TOKEN; default: none (this function reads no environment). */
  readonly env?: Readonly<Record<string, string | undefined>>
}

/**
 * Parses and checks gateway configuration text. TLS `cert`/`key` given as paths are read here (from disk,
 * synchronously: this runs once at start-up); relative paths resolve against the directory of `file`, or
 * the working directory.
 * @throws RuleInvalidError('gateway config') listing every problem, with the file name on each.
 */
export function parseGatewayConfig(
  text: string,
  format: TextFormat,
  options: GatewayConfigOptions = {},
): GatewayConfig {
  let value: unknown
  try {
    value = parseText(text, format, options.file)
  } catch (err) {
    if (err instanceof RuleInvalidError) throw new RuleInvalidError(err.issues, 'gateway config')
    throw err
  }
  return resolveGatewayConfig(value, options)
}

/**
 * Checks a configuration value (the parsed file, or an object built in code) and resolves it.
 * @throws RuleInvalidError('gateway config') listing every problem.
 */
export function resolveGatewayConfig(input: unknown, options: GatewayConfigOptions = {}): GatewayConfig {
  const issues: RuleIssue[] = []
  const parsed = GatewayConfigSchema.safeParse(input, { reportInput: true })
  let parts: Partial<Parsed>
  let apps: ReadonlyArray<Partial<ParsedApp> | undefined>
  if (parsed.success) {
    parts = parsed.data
    apps = parsed.data.apps
  } else {
    issues.push(...zodIssues(parsed.error))
    // Keep the fields (and the apps) that are well formed, so the cross-field checks still run on them.
    ;({ parts, apps } = salvage(input))
  }
  const base = options.file === undefined ? process.cwd() : dirname(resolve(options.file))
  const env = options.env ?? {}
  const add = (path: string, message: string) => issues.push({ path, message })

  const unit = resolveUnit(parts, input, env, add)
  const rules = resolveRules(parts, input, env, base, add)
  const token = has(input, 'token') ? parts.token : fromEnv(env, 'APPACTIVE_TOKEN')
  if (!has(input, 'token') && token !== undefined && !/^[\x21-\x7e]{1,4096}$/.test(token)) {
    add('token', 'APPACTIVE_TOKEN may hold only visible ASCII characters, no spaces')
  }
  if (rules !== undefined && URL_LIKE.test(rules) && token === undefined) {
    add('token', `is required when rules is the control-plane URL ${rules} (or set APPACTIVE_TOKEN)`)
  }
  checkApps(parts, apps, unit, add)
  if (parts.forwarding === 'gateway' && !has(input, 'peerToken')) {
    add('peerToken', 'is required with forwarding: gateway (peers trust hop headers only with it)')
  }
  checkAddresses(parts, add)
  const tls = parts.tls ? readTls(parts.tls, base, add) : undefined

  if (issues.length > 0) {
    const file = options.file
    throw new RuleInvalidError(file ? issues.map((i) => ({ ...i, file })) : issues, 'gateway config')
  }
  // No issue: every part parsed and unit/rules resolved.
  const p = parts as Parsed
  const config: GatewayConfig = {
    unit: unit!,
    listen: p.listen,
    tls,
    admin: p.admin,
    rules: rules!,
    token,
    apps: p.apps.map(resolveApp),
    units: Object.fromEntries(Object.entries(p.units).map(([u, e]) => [u, { gateway: e.gateway }])),
    forwarding: p.forwarding,
    peerToken: p.peerToken,
    hold: {
      enabled: p.hold.enabled,
      methods: p.hold.methods,
      maxMs: p.hold.maxWait,
      maxQueue: p.hold.maxQueue,
      retryAfterS: p.hold.retryAfter,
    },
    timeouts: { connectMs: p.timeouts.connect, headersMs: p.timeouts.headers, bodyMs: p.timeouts.body },
    maxHeaderBytes: p.maxHeaderBytes,
    accessLog: p.accessLog,
    workers: p.workers ?? Math.min(availableParallelism(), 64),
    heap: p.heap === undefined ? undefined : { ...p.heap },
  }
  return deepFreeze(config)
}

/**
 * Reads and checks a configuration file (`.json` is JSON, anything else YAML), then the TLS files it names.
 * @throws RuleInvalidError('gateway config') listing every problem, each naming the file.
 */
export async function loadGatewayConfig(
  path: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Promise<GatewayConfig> {
  const fail = (message: string) =>
    new RuleInvalidError([{ path: '', message, file: path }], 'gateway config')
  let text: string
  try {
    const info = await stat(path)
    if (!info.isFile()) throw fail('is not a regular file')
    if (info.size > MAX_TEXT_BYTES) throw fail(`is larger than ${MAX_TEXT_BYTES} bytes`)
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (err instanceof RuleInvalidError) throw err
    const code = (err as NodeJS.ErrnoException).code
    throw fail(code === 'ENOENT' ? 'no such file or directory' : `cannot read (${code ?? String(err)})`)
  }
  return parseGatewayConfig(text, formatOf(path), { file: path, env })
}

function fromEnv(env: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const v = env[name]
  return v === undefined || v === '' ? undefined : v
}

function has(input: unknown, key: string): boolean {
  return isRecord(input) && input[key] !== undefined
}

type Add = (path: string, message: string) => void

function resolveUnit(
  parts: Partial<Parsed>,
  input: unknown,
  env: Readonly<Record<string, string | undefined>>,
  add: Add,
): string | undefined {
  if (parts.unit !== undefined) return parts.unit
  if (has(input, 'unit')) return undefined // present but malformed: already reported
  const fromVar = fromEnv(env, 'APPACTIVE_UNIT')
  if (fromVar === undefined) add('unit', 'is required: set it in the file or in APPACTIVE_UNIT')
  else if (!NAME.test(fromVar)) {
    add('unit', `APPACTIVE_UNIT ${JSON.stringify(fromVar)} is not a unit name (${NAME_RULE})`)
  } else return fromVar
  return undefined
}

const URL_LIKE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//

/** `rules`: a control-plane URL kept as written, or a path made absolute (the file's from its directory). */
function resolveRules(
  parts: Partial<Parsed>,
  input: unknown,
  env: Readonly<Record<string, string | undefined>>,
  base: string,
  add: Add,
): string | undefined {
  let value = parts.rules
  let dir = base
  let where = ''
  if (value === undefined) {
    if (has(input, 'rules')) return undefined
    value = fromEnv(env, 'APPACTIVE_RULES')
    if (value === undefined) {
      add('rules', 'is required: a rule-set file, an AppActive rule directory or the control-plane URL')
      return undefined
    }
    dir = process.cwd() // a path in the environment is relative to the process, not to the file
    where = 'APPACTIVE_RULES '
  }
  if (!URL_LIKE.test(value)) return resolve(dir, value)
  let url: URL
  try {
    url = new URL(value)
  } catch {
    add('rules', `${where}${JSON.stringify(value)} is not a valid URL`)
    return undefined
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    add('rules', `${where}${value}: the control plane is reached over http or https; give a file as a path`)
  } else if (url.username || url.password) {
    add('rules', `${where}${url.origin}: put credentials in token (or APPACTIVE_TOKEN), not in the URL`)
  } else if (value.includes('?') || value.includes('#')) {
    add('rules', `${where}${value}: a control-plane URL cannot have a query or fragment`)
  } else return value
  return undefined
}

/**
 * Cross-field checks on the apps: unique names, distinct matches, one unit per instance, the local unit's
 * instances, the fallback unit, and peer gateways for `forwarding: gateway`. Apps may be partial (fields
 * that failed the schema are absent): each check runs on the fields it needs.
 */
function checkApps(
  parts: Partial<Parsed>,
  apps: ReadonlyArray<Partial<ParsedApp> | undefined>,
  unit: string | undefined,
  add: Add,
): void {
  const names = new Map<string, number>()
  const matches = new Map<string, number>()
  const units = parts.units
  const gatewayOf = (u: string) => (units && Object.hasOwn(units, u) ? units[u]!.gateway : undefined)
  const viaGateway = parts.forwarding === 'gateway'
  const missingGateway = new Map<string, string>() // unit -> the first place that sends traffic to it
  const needGateway = (u: string, from: string) => {
    if (u !== unit && gatewayOf(u) === undefined && !missingGateway.has(u)) missingGateway.set(u, from)
  }

  apps.forEach((app, i) => {
    if (app === undefined) return
    const at = `apps[${i}]`
    if (app.name !== undefined) {
      const prev = names.get(app.name.toLowerCase())
      if (prev !== undefined) add(`${at}.name`, `app "${app.name}" is already defined at apps[${prev}]`)
      else names.set(app.name.toLowerCase(), i)
    }

    if (app.match !== undefined) {
      const { hosts, pathPrefix } = app.match
      hosts.forEach((h, j) => {
        if (hosts.indexOf(h) < j) add(`${at}.match.hosts[${j}]`, `host ${h} is listed twice`)
      })
      const sorted = [...new Set(hosts)].sort()
      const key = `${sorted.join(',')} ${pathPrefix}`
      const other = matches.get(key)
      if (other !== undefined) {
        const shown = sorted.length === 0 ? 'any host' : `hosts ${sorted.join(', ')}`
        add(
          `${at}.match`,
          `${shown} with pathPrefix ${pathPrefix} is already matched by apps[${other}]: ` +
            'give the apps different hosts or prefixes',
        )
      } else matches.set(key, i)
    }

    const hc = app.healthCheck
    if (hc !== undefined && hc.timeout > hc.interval) {
      add(
        `${at}.healthCheck.timeout`,
        `${showMs(hc.timeout)} is longer than the interval (${showMs(hc.interval)})`,
      )
    }

    const upstreams = app.upstreams
    if (upstreams === undefined) return
    // An instance belongs to one unit: listing it under two would let traffic silently cross units.
    const seen = new Map<string, string>()
    for (const [u, urls] of Object.entries(upstreams)) {
      urls.forEach((url, j) => {
        const first = seen.get(url)
        if (first === undefined) seen.set(url, `${at}.upstreams.${u}[${j}]`)
        else add(`${at}.upstreams.${u}[${j}]`, `${url} is already listed at ${first}`)
      })
    }

    if (unit === undefined || app.unitEnabled === undefined) return
    const hasLocal = Object.hasOwn(upstreams, unit)
    if (!app.unitEnabled && !hasLocal) {
      add(
        `${at}.upstreams`,
        `unitEnabled is false, so every request goes to this gateway's unit "${unit}": list upstreams.${unit}`,
      )
    } else if (viaGateway && !hasLocal) {
      add(
        `${at}.upstreams`,
        `with forwarding: gateway, requests owned by this gateway's unit "${unit}" go to its own instances: ` +
          `list upstreams.${unit}`,
      )
    }
    if (!app.unitEnabled) return
    if (viaGateway) for (const u of Object.keys(upstreams)) needGateway(u, `${at}.upstreams.${u}`)
    const fb = app.fallback
    if (typeof fb === 'object') {
      if (viaGateway) needGateway(fb.unit, `${at}.fallback`)
      else if (!Object.hasOwn(upstreams, fb.unit)) {
        add(
          `${at}.fallback.unit`,
          `unit "${fb.unit}" has no instances in this app: list upstreams.${fb.unit}`,
        )
      }
    }
  })

  for (const [u, from] of missingGateway) {
    add(
      `units.${u}.gateway`,
      `is required with forwarding: gateway (${from} sends requests to unit "${u}" through its gateway)`,
    )
  }
}

/** The admin listener cannot take the main listener's port. */
function checkAddresses(parts: Partial<Parsed>, add: Add): void {
  const { listen, admin } = parts
  if (!listen || !admin || listen.port === 0 || listen.port !== admin.port) return
  const wild = (h: string) => h === '0.0.0.0' || h === '::'
  if (listen.host === admin.host || wild(listen.host) || wild(admin.host)) {
    add('admin', `port ${admin.port} is already taken by listen`)
  }
}

/** The TLS cert and key as PEM text: inline (`-----BEGIN ...`) or read from a path. */
function readTls(
  tls: { cert: string; key: string },
  base: string,
  add: Add,
): { cert: string; key: string } | undefined {
  const cert = readPem(tls.cert, base, 'tls.cert', 'CERTIFICATE', 'a certificate', add)
  const key = readPem(tls.key, base, 'tls.key', 'PRIVATE KEY', 'a private key', add)
  return cert !== undefined && key !== undefined ? { cert, key } : undefined
}

function readPem(
  value: string,
  base: string,
  path: string,
  label: string,
  what: string,
  add: Add,
): string | undefined {
  let text = value
  let name = 'the inline text'
  if (!value.includes('-----BEGIN')) {
    name = resolve(base, value)
    const read = readSmallFile(name)
    if (read.problem !== undefined) {
      add(path, read.problem)
      return undefined
    }
    text = read.text
  }
  if (!new RegExp(`-----BEGIN [A-Z0-9 ]*${label}-----`).test(text)) {
    add(path, `${name} is not ${what} in PEM form (no "-----BEGIN ...${label}-----" line)`)
    return undefined
  }
  return text
}

function readSmallFile(file: string): { text: string; problem?: undefined } | { problem: string } {
  try {
    const info = statSync(file)
    if (!info.isFile()) return { problem: `${file} is not a regular file` }
    if (info.size > MAX_PEM_BYTES) return { problem: `${file} is larger than ${MAX_PEM_BYTES} bytes` }
    return { text: readFileSync(file, 'utf8') }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return { problem: code === 'ENOENT' ? `${file} does not exist` : `cannot read ${file} (${code})` }
  }
}

function resolveApp(app: ParsedApp): AppConfig {
  const hc = app.healthCheck
  const healthCheck: HealthCheckConfig | undefined = hc && {
    path: hc.path,
    intervalMs: hc.interval,
    timeoutMs: hc.timeout,
    unhealthyAfter: hc.unhealthyAfter,
    healthyAfter: hc.healthyAfter,
  }
  return {
    name: app.name,
    match: { hosts: app.match.hosts, pathPrefix: app.match.pathPrefix },
    upstreams: app.upstreams,
    unitEnabled: app.unitEnabled,
    fallback: app.fallback,
    balance: app.balance,
    healthCheck,
  }
}

/** Each top-level field, and each field of each app, parsed on its own: what is well formed of a config. */
function salvage(input: unknown): { parts: Partial<Parsed>; apps: Array<Partial<ParsedApp> | undefined> } {
  const parts = salvageFields(GatewayConfigSchema.shape, input) as Partial<Parsed>
  const raw = (input as { apps?: unknown } | null)?.apps
  const apps = Array.isArray(raw)
    ? raw.map((app) => {
        const ok = AppSchema.safeParse(app)
        if (ok.success) return ok.data
        return isRecord(app) ? (salvageFields(AppSchema.shape, app) as Partial<ParsedApp>) : undefined
      })
    : []
  return { parts, apps }
}

function salvageFields(shape: Record<string, z.ZodType>, input: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (!isRecord(input)) return out
  for (const [key, schema] of Object.entries(shape)) {
    const r = schema.safeParse(input[key])
    if (r.success) out[key] = r.data
  }
  return out
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
