/**
 * The channels a process gets from its settings alone (DESIGN §6): `APPACTIVE_RULES` (a rule-set file,
 * an AppActive rule directory, or a control-plane URL) and `APPACTIVE_CONTROL_URL` + `APPACTIVE_TOKEN`,
 * or the same as options. Explicit `channels` in code replace all of this.
 */
import { createControlChannel, createFileChannel, type RuleChannel } from '../channels/index.js'
import { InvalidArgumentError } from '../errors/index.js'
import type { ResolvedAgentOptions } from './options.js'

/** Where the rule sets come from when no `channels` are given. */
export interface ChannelSettings {
  /** A rule-set file, an AppActive rule directory, or a control-plane URL [APPACTIVE_RULES]. */
  readonly rules?: string
  /** The control plane's URL [APPACTIVE_CONTROL_URL]. */
  readonly controlUrl?: string
  /** The bearer token for the control plane [APPACTIVE_TOKEN]. */
  readonly token?: string
}

const URL_LIKE = /^https?:\/\//i

function pick(option: string | undefined, env: string | undefined): string | undefined {
  const v = option ?? env
  return v === undefined || v === '' ? undefined : v
}

/**
 * Builds the file and/or control-plane channel the settings name; none when they name nothing.
 * @throws InvalidArgumentError when a control-plane URL comes without a token.
 */
export function defaultChannels(
  settings: ChannelSettings,
  identity: ResolvedAgentOptions,
  env: NodeJS.ProcessEnv = process.env,
): RuleChannel[] {
  const rules = pick(settings.rules, env.APPACTIVE_RULES)
  let controlUrl = pick(settings.controlUrl, env.APPACTIVE_CONTROL_URL)
  const channels: RuleChannel[] = []
  if (rules !== undefined) {
    if (URL_LIKE.test(rules)) controlUrl ??= rules
    else channels.push(createFileChannel({ path: rules }))
  }
  if (controlUrl !== undefined) {
    const token = pick(settings.token, env.APPACTIVE_TOKEN)
    if (token === undefined) {
      throw new InvalidArgumentError(
        `the control plane at ${controlUrl} needs a token: pass { token } or set APPACTIVE_TOKEN`,
      )
    }
    channels.push(
      createControlChannel({
        url: controlUrl,
        token,
        identity,
      }),
    )
  }
  return channels
}
