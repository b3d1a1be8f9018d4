/**
 * Who may call the control plane. Bearer tokens map to a name (recorded as the author of every change)
 * and a role: viewer (read) < operator (publish, plan, start, abort) < admin (topology, forced publish).
 * Agents use separate tokens, for the channel only. Tokens come from a JSON or YAML file and/or the
 * environment (APPACTIVE_ADMIN_TOKEN, APPACTIVE_OPERATOR_TOKEN, APPACTIVE_VIEWER_TOKEN,
 * APPACTIVE_AGENT_TOKEN). Only SHA-256 digests are kept, compared with timingSafeEqual against every
 * known digest, so a lookup takes the same time whichever token matches, if any.
 *
 * File format:
 * ```yaml
 * tokens:
 *   - { name: alice, role: admin, token: "at least 16 characters" }
 *   - { name: ci, role: operator, sha256: "<hex digest of the token>" }
 * agentTokens: ["at least 16 characters"]
 * ```
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { formatIssue } from '../errors/index.js'
import { zodIssues } from '../rules/index.js'
import { ControlConfigError } from './errors.js'

export type Role = 'viewer' | 'operator' | 'admin'

const RANK: Readonly<Record<Role, number>> = { viewer: 1, operator: 2, admin: 3 }

/** True when `role` may do what `needed` may. */
export function roleAllows(role: Role, needed: Role): boolean {
  return RANK[role] >= RANK[needed]
}

/** Someone the API recognised. */
export interface Principal {
  readonly name: string
  readonly role: Role
}

/** One API token, given in clear or as its SHA-256 digest (hex). */
export interface TokenEntry {
  readonly name: string
  readonly role: Role
  readonly token?: string | undefined
  readonly sha256?: string | undefined
}

/** The tokens a control plane accepts. */
export interface TokenConfig {
  readonly tokens: readonly TokenEntry[]
  /** Tokens agents register with (the channel under /v1/agent); never valid on the API. */
  readonly agentTokens: readonly string[]
}

const MIN_TOKEN = 16

const FileSchema = z.strictObject({
  tokens: z
    .array(
      z.strictObject({
        name: z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/, 'a name is 1-64 letters, digits or _.@-'),
        role: z.enum(['viewer', 'operator', 'admin']),
        token: z.string().min(MIN_TOKEN, `a token has at least ${MIN_TOKEN} characters`).optional(),
        sha256: z
          .string()
          .regex(/^[0-9a-f]{64}$/i, 'sha256 is the 64 hex digits of the token digest')
          .optional(),
      }),
    )
    .default([]),
  agentTokens: z.array(z.string().min(MIN_TOKEN, `a token has at least ${MIN_TOKEN} characters`)).default([]),
})

const ENV_ROLES: readonly (readonly [string, Role])[] = [
  ['APPACTIVE_ADMIN_TOKEN', 'admin'],
  ['APPACTIVE_OPERATOR_TOKEN', 'operator'],
  ['APPACTIVE_VIEWER_TOKEN', 'viewer'],
]

/**
 * Reads the token file (when given) and adds the environment's tokens (named `env-admin`...).
 * @throws ControlConfigError listing every problem of the file or the variables.
 */
export async function loadTokenConfig(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<TokenConfig> {
  let tokens: TokenEntry[] = []
  let agentTokens: string[] = []
  if (file !== undefined) {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      throw new ControlConfigError(
        `cannot read the tokens file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      )
    }
    let doc: unknown
    try {
      doc = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text)
    } catch (err) {
      throw new ControlConfigError(
        `the tokens file ${file} is not valid JSON or YAML: ${(err as Error).message}`,
      )
    }
    const parsed = FileSchema.safeParse(doc ?? {})
    if (!parsed.success) {
      const lines = zodIssues(parsed.error).map(formatIssue)
      throw new ControlConfigError(`the tokens file ${file} is invalid: ${lines.join('; ')}`)
    }
    tokens = parsed.data.tokens
    agentTokens = parsed.data.agentTokens
  }
  const problems: string[] = []
  for (const [variable, role] of ENV_ROLES) {
    const value = env[variable]
    if (value === undefined || value === '') continue
    if (value.length < MIN_TOKEN) problems.push(`${variable} must have at least ${MIN_TOKEN} characters`)
    else tokens.push({ name: `env-${role}`, role, token: value })
  }
  const agent = env.APPACTIVE_AGENT_TOKEN
  if (agent !== undefined && agent !== '') {
    if (agent.length < MIN_TOKEN)
      problems.push(`APPACTIVE_AGENT_TOKEN must have at least ${MIN_TOKEN} characters`)
    else agentTokens.push(agent)
  }
  if (problems.length > 0) throw new ControlConfigError(problems.join('; '))
  return { tokens, agentTokens }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

/** Resolves bearer tokens to principals in constant time. */
export class Authenticator {
  readonly #entries: { readonly digest: Buffer; readonly principal: Principal }[]

  /**
   * @throws ControlConfigError when no admin token is configured (the API never runs open), when an
   * entry has neither or both of token and sha256, or when one token is given twice, or is also an
   * agent token.
   */
  constructor(config: TokenConfig) {
    const problems: string[] = []
    this.#entries = []
    const seen = new Map<string, string>()
    for (const agent of config.agentTokens) seen.set(digest(agent).toString('hex'), 'an agent token')
    config.tokens.forEach((t, i) => {
      if ((t.token === undefined) === (t.sha256 === undefined)) {
        problems.push(`tokens[${i}] (${t.name}) needs exactly one of token and sha256`)
        return
      }
      if (t.token !== undefined && t.token.length < MIN_TOKEN) {
        problems.push(`tokens[${i}] (${t.name}) is shorter than ${MIN_TOKEN} characters`)
        return
      }
      const d = t.token !== undefined ? digest(t.token) : Buffer.from(t.sha256!, 'hex')
      const hex = d.toString('hex')
      const other = seen.get(hex)
      if (other !== undefined) problems.push(`tokens[${i}] (${t.name}) is the same token as ${other}`)
      seen.set(hex, t.name)
      this.#entries.push({ digest: d, principal: Object.freeze({ name: t.name, role: t.role }) })
    })
    if (!this.#entries.some((e) => e.principal.role === 'admin')) {
      problems.push(
        'no admin token is configured: set APPACTIVE_ADMIN_TOKEN or list one with role admin in the tokens file (the control plane never runs open)',
      )
    }
    if (problems.length > 0) throw new ControlConfigError(problems.join('; '))
  }

  /** The principal of a token, or undefined. Every entry is compared, whatever matches. */
  authenticate(token: string | undefined): Principal | undefined {
    if (token === undefined || token === '') return undefined
    const d = digest(token)
    let found: Principal | undefined
    for (const e of this.#entries) if (timingSafeEqual(d, e.digest)) found ??= e.principal
    return found
  }
}

/**
 * Checks a token configuration the way a control plane does before it starts, and returns its
 * authenticator.
 * @throws ControlConfigError without an admin token or an agent token (it never runs open), or with a
 * malformed entry.
 */
export function checkTokenConfig(config: TokenConfig): Authenticator {
  const auth = new Authenticator(config)
  if (config.agentTokens.length === 0) {
    throw new ControlConfigError(
      'no agent token is configured: set APPACTIVE_AGENT_TOKEN or agentTokens in the tokens file (agents register with it)',
    )
  }
  return auth
}
