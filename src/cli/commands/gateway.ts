/**
 * `appactive gateway --config FILE [--workers N] [--check]`: runs the unit-aware gateway until SIGTERM or
 * SIGINT (or, with --check, validates the config and exits).
 */
import { availableParallelism } from 'node:os'
import type { Command } from 'commander'
import pino from 'pino'
import { InvalidArgumentError } from '../../errors/index.js'
import { loadGatewayConfig, runGateway } from '../../gateway/index.js'
import type { CommandContext } from '../context.js'
import { examples } from '../options.js'
import { EXIT_OK } from '../output.js'

interface GatewayOptions {
  readonly config: string
  readonly workers?: string
  readonly check?: boolean
}

/** Registers `gateway`. */
export function addGatewayCommand(program: Command, ctx: CommandContext): void {
  program
    .command('gateway')
    .description('run the unit-aware gateway (the L7 edge)')
    .requiredOption('-c, --config <file>', 'gateway config (YAML or JSON)')
    .option('-w, --workers <n>', 'worker processes sharing the port (default: the config, else one per core)')
    .option('--check', 'validate the config (and the TLS files it names), then exit')
    .addHelpText('after', examples('appactive gateway --config gateway.yaml --workers 2'))
    .action(async (opts: GatewayOptions) => {
      let config = await loadGatewayConfig(opts.config)
      if (opts.workers !== undefined) {
        const n = Number(opts.workers)
        if (!Number.isInteger(n) || n < 1 || n > 64) {
          throw new InvalidArgumentError(`--workers must be a whole number from 1 to 64, got ${opts.workers}`)
        }
        config = { ...config, workers: Math.min(n, availableParallelism() * 4) }
      }
      if (opts.check) {
        ctx.out.line(
          `ok: ${opts.config} (unit ${config.unit}, ${config.apps.length} apps, ${config.workers} workers)`,
        )
        ctx.exitCode = EXIT_OK
        return
      }
      const logger = pino({ name: 'appactive-gateway', level: process.env.APPACTIVE_LOG_LEVEL ?? 'info' })
      const running = await runGateway(config, logger)
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'shutting down')
          running.stop().then(resolve, resolve)
        }
        process.once('SIGTERM', () => stop('SIGTERM'))
        process.once('SIGINT', () => stop('SIGINT'))
      })
    })
}
