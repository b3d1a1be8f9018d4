/**
 * `appactive control [--listen HOST:PORT] [--store URL] [--tokens FILE]`: runs the control plane (REST
 * API, agent channel, store) until SIGTERM or SIGINT. It refuses to start without an admin and an agent
 * token, and exits 1 with the store's name when the store cannot be opened or reached.
 */
import type { Command } from 'commander'
import pino from 'pino'
import { parseDuration } from '../../agent/index.js'
import type { CommandContext } from '../context.js'
import { examples } from '../options.js'
import { CliError, usageError } from '../output.js'

/** The default store; `appactive/control` says the same (loaded only when this command runs). */
const DEFAULT_STORE_URL = 'sqlite:./appactive.db'

interface ControlOptions {
  readonly listen: string
  readonly store: string
  readonly tokens?: string
  readonly lease: string
}

/** `HOST:PORT`, `[::1]:PORT` or `:PORT` (loopback). */
function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value)
  const port = Number(m?.[3])
  if (!m || port > 65535)
    throw usageError(`--listen must be HOST:PORT (e.g. 127.0.0.1:7070), got ${JSON.stringify(value)}`)
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port }
}

/** Control-plane errors keep their code on the way out (`appactive: STORE_UNAVAILABLE: ...`). */
function asCliError(
  err: unknown,
  ControlError: typeof import('../../control/index.js').ControlError,
): unknown {
  return err instanceof ControlError ? new CliError(err.code, err.message) : err
}

/** Registers `control`. */
export function addControlCommand(program: Command, ctx: CommandContext): void {
  program
    .command('control')
    .description('run the control plane: REST API (/openapi.json), agent channel, rule history, operations')
    .option('-l, --listen <host:port>', 'address to serve on', '127.0.0.1:7070')
    .option(
      '-s, --store <url>',
      'sqlite:PATH or postgres://USER@HOST:PORT/DB[?schema=NAME]',
      DEFAULT_STORE_URL,
    )
    .option(
      '-t, --tokens <file>',
      'API and agent tokens (JSON or YAML); APPACTIVE_*_TOKEN variables add to it',
    )
    .option(
      '--lease <duration>',
      'agent lease per heartbeat (500ms, 10s...): how long a silent agent keeps writing',
      '10s',
    )
    .addHelpText(
      'after',
      examples(
        'appactive control --listen 127.0.0.1:7070 --store sqlite:./appactive.db --tokens tokens.yaml',
        'appactive control --store postgres://appactive@db:5432/ops?schema=appactive',
      ),
    )
    .action(async (opts: ControlOptions) => {
      const listen = parseListen(opts.listen)
      const leaseMs = parseDuration(opts.lease)
      if (leaseMs === undefined || leaseMs < 200 || leaseMs > 600_000)
        throw usageError(`--lease must be a duration from 200ms to 10m, got ${JSON.stringify(opts.lease)}`)
      // Loaded here, not at start-up: every other command (the gateway's among them) stays lighter.
      const {
        ControlError,
        checkTokenConfig,
        createControlPlane,
        createOrchestrator,
        loadTokenConfig,
        openStore,
      } = await import('../../control/index.js')
      const { probeFromConfig } = await import('../probes.js')
      try {
        // Tokens first: a control plane that would run open never touches the store.
        const tokens = await loadTokenConfig(opts.tokens)
        checkTokenConfig(tokens)
        const logger = pino(
          { name: 'appactive-control', level: process.env.APPACTIVE_LOG_LEVEL ?? 'info' },
          pino.destination(2),
        )
        const store = await openStore(opts.store)
        try {
          const cp = await createControlPlane({
            store,
            tokens,
            listen,
            logger,
            leaseMs,
            orchestrator: createOrchestrator({ probes: (config) => probeFromConfig(config) }),
          })
          const { url } = await cp.listen().catch(async (err: unknown) => {
            await cp.close()
            throw err
          })
          ctx.out.line(
            `appactive control plane on ${url} (store ${store.location}, rule set version ${cp.rules.latestVersion})`,
          )
          const signal = await new Promise<string>((resolve) => {
            process.once('SIGTERM', () => resolve('SIGTERM'))
            process.once('SIGINT', () => resolve('SIGINT'))
          })
          logger.info({ signal }, 'shutting down')
          await cp.close()
        } finally {
          await store.close()
        }
      } catch (err) {
        throw asCliError(err, ControlError)
      }
    })
}
