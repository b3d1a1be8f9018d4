/**
 * `appactive gateway --config FILE [--workers N] [--check] [--engine node|nginx] [--run-dir DIR]`: runs the
 * unit-aware gateway until SIGTERM or SIGINT (or, with --check, validates the config and exits). With
 * `--engine nginx` the same config runs in nginx (nginx/appactive.lua); SIGHUP then reloads the config file.
 */
import { availableParallelism } from 'node:os'
import type { Command } from 'commander'
import pino, { type Logger } from 'pino'
import { InvalidArgumentError } from '../../errors/index.js'
import type { GatewayConfig } from '../../gateway/index.js'
import { loadGatewayConfig, NginxError, runGateway, startNginxGateway } from '../../gateway/index.js'
import type { CommandContext } from '../context.js'
import { examples } from '../options.js'
import { CliError, EXIT_OK } from '../output.js'

interface GatewayOptions {
  readonly config: string
  readonly workers?: string
  readonly check?: boolean
  readonly engine: string
  readonly runDir?: string
}

/** Registers `gateway`. */
export function addGatewayCommand(program: Command, ctx: CommandContext): void {
  program
    .command('gateway')
    .description('run the unit-aware gateway (the L7 edge)')
    .requiredOption('-c, --config <file>', 'gateway config (YAML or JSON)')
    .option('-w, --workers <n>', 'worker processes sharing the port (default: the config, else one per core)')
    .option('--check', 'validate the config (and the TLS files it names), then exit')
    .option('--engine <engine>', 'node, or nginx (Debian nginx + libnginx-mod-http-lua + lua-cjson)', 'node')
    .option(
      '--run-dir <dir>',
      'nginx engine: directory for nginx.conf, logs and the state file (default: a temp dir)',
    )
    .addHelpText(
      'after',
      examples(
        'appactive gateway --config gateway.yaml --workers 2',
        'appactive gateway --engine nginx --config gateway.yaml --run-dir /var/lib/appactive',
      ),
    )
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
      if (opts.engine !== 'node' && opts.engine !== 'nginx') {
        throw new InvalidArgumentError(`--engine must be node or nginx, got ${opts.engine}`)
      }
      const logger = pino({ name: 'appactive-gateway', level: process.env.APPACTIVE_LOG_LEVEL ?? 'info' })
      if (opts.engine === 'nginx') return runNginx(opts, config, logger)
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

/** Runs the nginx engine until SIGTERM / SIGINT; SIGHUP re-reads the config file and reloads nginx. */
async function runNginx(opts: GatewayOptions, config: GatewayConfig, logger: Logger): Promise<void> {
  const nginxFailure = (err: unknown): never => {
    if (err instanceof NginxError) {
      const [first = '', ...rest] = err.message.split('\n')
      throw new CliError(err.code, first, 1, rest)
    }
    throw err
  }
  const edge = await startNginxGateway(config, {
    logger,
    ...(opts.runDir !== undefined ? { runDir: opts.runDir } : {}),
  }).catch(nginxFailure)
  logger.info({ port: edge.port, runDir: edge.runDir, pid: edge.pid }, 'nginx gateway serving')
  const onHup = () => {
    loadGatewayConfig(opts.config)
      .then((next) => edge.reload({ ...next, workers: config.workers }))
      .then(
        () => logger.info('configuration reloaded'),
        (err: unknown) =>
          logger.error({ err: (err as Error).message }, 'reload refused; nginx keeps the running config'),
      )
  }
  process.on('SIGHUP', onHup)
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down')
      process.off('SIGHUP', onHup)
      edge.stop().then(resolve, resolve)
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
}
