/**
 * `startNginxGateway(config)`: the gateway config executed by nginx + appactive.lua instead of Node. This
 * process generates nginx.conf in a run directory, supervises nginx, and runs the agent sidecar that
 * pushes each rule-set version to nginx's admin endpoint before acknowledging it.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import pino, { type Logger } from 'pino'
import type { Registry } from 'prom-client'
import { defaultChannels } from '../../agent/default-channels.js'
import { createAgent, type RoutingAgent, resolveAgentOptions } from '../../agent/index.js'
import type { RuleChannel } from '../../channels/types.js'
import { InvalidArgumentError } from '../../errors/index.js'
import type { GatewayConfig } from '../types.js'
import { NginxAdmin } from './admin.js'
import { findNginx } from './binary.js'
import { adminListenOf, maxRulesBytes, type NginxLayout, nginxConf, nginxSettings } from './conf.js'
import { NginxError } from './errors.js'
import { NginxProcess } from './process.js'
import { NginxAckChannel, NginxSidecar, writeAtomic } from './sidecar.js'

/** Options of `startNginxGateway` beyond the config file. */
export interface NginxGatewayOptions {
  readonly logger?: Logger
  /** Run directory (config, pid, logs, state file, admin socket); default: a new temporary directory. */
  readonly runDir?: string
  /** The state file nginx starts from; default `<runDir>/rules.state.json`. */
  readonly stateFile?: string
  /** nginx binary [APPACTIVE_NGINX]; default /usr/sbin/nginx. */
  readonly binary?: string
  /** Directory with ndk_http_module.so and ngx_http_lua_module.so [APPACTIVE_NGINX_MODULES]. */
  readonly modulesDir?: string
  /** Bearer token of the admin endpoint; default: random per start. */
  readonly adminToken?: string
  /** Size of the lua_shared_dict in MB (a rule set may take a third of it); default 16. */
  readonly sharedDictMb?: number
  /** Idle keepalive connections per upstream block and worker; default 64. */
  readonly keepalive?: number
  /** Adds `x-appactive-decision` (unit, key, fenced, reason, version) to every answer: for tests. */
  readonly debug?: boolean
  /** Channels instead of the ones `config.rules` names (tests, embedding). */
  readonly channels?: readonly RuleChannel[]
  readonly nodeId?: string
  readonly registry?: Registry
  /** Graceful stop timeout; default 10 s. */
  readonly stopTimeoutMs?: number
}

/** A running nginx edge. */
export interface NginxGateway {
  readonly config: GatewayConfig
  readonly runDir: string
  readonly stateFile: string
  readonly agent: RoutingAgent
  readonly admin: NginxAdmin
  /** `unix:/path` or `127.0.0.1:PORT`. */
  readonly adminListen: string
  readonly adminToken: string
  /** The main listener's port. */
  readonly port: number
  /** The nginx master's pid (changes when nginx is restarted). */
  readonly pid: number | undefined
  readonly process: NginxProcess
  readonly sidecar: NginxSidecar
  /** The version nginx confirmed serving last. */
  readonly servedVersion: number
  /**
   * Applies a new config (units, apps, upstream addresses): regenerates nginx.conf, `nginx -t`, graceful
   * reload. Rules, listen, admin, workers and TLS changes need a restart.
   * @throws NginxError('config') with nginx's output; the running edge is untouched then.
   */
  reload(config: GatewayConfig): Promise<void>
  /** Stops the sidecar, then nginx (gracefully). Removes a temporary run directory. */
  stop(): Promise<void>
}

/**
 * Starts nginx on the gateway config and the sidecar agent; resolves once nginx serves (the first rule
 * set may still be on its way: until then requests get 503 NO_RULES).
 * @throws NginxError('missing' | 'config' | 'start') with what nginx said.
 * @example
 * const edge = await startNginxGateway(await loadGatewayConfig('gateway.yaml'))
 * process.once('SIGTERM', () => edge.stop())
 */
export async function startNginxGateway(
  config: GatewayConfig,
  options: NginxGatewayOptions = {},
): Promise<NginxGateway> {
  const logger =
    options.logger ?? pino({ name: 'appactive-gateway', level: process.env.APPACTIVE_LOG_LEVEL ?? 'info' })
  const install = findNginx(options)
  if (typeof install === 'string') throw new NginxError('missing', install)
  if (config.listen.port === 0) {
    throw new InvalidArgumentError(
      'the nginx engine needs a fixed listen port (listen: HOST:PORT), not port 0',
    )
  }
  // Refuse a non-loopback admin address before anything is created.
  adminListenOf(config.admin, 'admin.sock')
  const temporary = options.runDir === undefined
  const runDir = resolve(options.runDir ?? (await mkdtemp(join(tmpdir(), 'appactive-nginx-'))))
  for (const d of ['tmp/body', 'tmp/proxy', 'tmp/fastcgi', 'tmp/uwsgi', 'tmp/scgi']) {
    await mkdir(join(runDir, d), { recursive: true, mode: 0o700 })
  }
  const stateFile = resolve(options.stateFile ?? join(runDir, 'rules.state.json'))
  const adminListen = adminListenOf(config.admin, join(runDir, 'admin.sock'))
  const token = options.adminToken ?? randomBytes(24).toString('base64url')
  const sharedDictMb = options.sharedDictMb ?? 16
  const admin = new NginxAdmin(adminListen, token)
  let generation = 0
  let current = config

  /** Writes generation `g` of the settings and nginx.conf; returns the conf path. */
  const write = async (cfg: GatewayConfig, g: number): Promise<string> => {
    let tlsFiles: NginxLayout['tlsFiles']
    if (cfg.tls !== undefined) {
      tlsFiles = { cert: join(runDir, 'tls.crt'), key: join(runDir, 'tls.key') }
      await writeAtomic(tlsFiles.cert, cfg.tls.cert)
      await writeAtomic(tlsFiles.key, cfg.tls.key)
    }
    const layout: NginxLayout = {
      runDir,
      luaDir: install.luaDir,
      modulesDir: install.modulesDir,
      settingsFile: join(runDir, `settings-${g}.json`),
      stateFile,
      adminListen,
      ...(tlsFiles ? { tlsFiles } : {}),
      sharedDictMb,
      keepalive: options.keepalive ?? 64,
      workerConnections: 4096,
    }
    const { settings, upstreams } = nginxSettings(cfg, layout, {
      generation: g,
      token,
      debug: options.debug ?? false,
    })
    await writeFile(layout.settingsFile, JSON.stringify(settings), { mode: 0o600 })
    // nginx re-reads the file it was started with at every SIGHUP: the next generation is tested under
    // another name, then renamed over it.
    const conf = join(runDir, g === 0 ? 'nginx.conf' : 'nginx.conf.next')
    await writeFile(conf, nginxConf(cfg, layout, upstreams), { mode: 0o600 })
    return conf
  }
  /** Removes the files of generations other than `keep`. */
  const prune = async (keep: number) => {
    for (const name of await readdir(runDir)) {
      const m = /^settings-(\d+)\.json$/.exec(name)
      if (m && Number(m[1]) !== keep) await rm(join(runDir, name), { force: true })
    }
  }

  const ready = async () => (await admin.state('/_appactive/health')).generation === generation
  const nginx = new NginxProcess({
    binary: install.binary,
    runDir,
    logger,
    ready,
    staleFiles: adminListen.startsWith('unix:') ? [adminListen.slice(5)] : [],
    ...(options.stopTimeoutMs !== undefined ? { stopTimeoutMs: options.stopTimeoutMs } : {}),
  })

  // The agent: its channels acknowledge only what nginx serves.
  const identity = resolveAgentOptions({
    unit: config.unit,
    app: 'gateway',
    nodeId: options.nodeId ?? `gateway-${config.unit}-${process.pid}`,
  })
  const inner =
    options.channels ??
    defaultChannels(
      { rules: config.rules, ...(config.token !== undefined ? { token: config.token } : {}) },
      identity,
    )
  let sidecar: NginxSidecar | undefined
  const channels = inner.map(
    (c) =>
      new NginxAckChannel(
        c,
        (sink, input, meta) => sidecar?.gate(sink, input, meta),
        () => sidecar?.served ?? -1,
      ),
  )
  const agent = createAgent({
    unit: config.unit,
    app: 'gateway',
    nodeId: identity.nodeId,
    channels,
    cache: join(runDir, 'agent-cache.json'),
    logger,
    ...(options.registry ? { registry: options.registry } : {}),
  })
  sidecar = new NginxSidecar({
    agent,
    channels,
    admin: () => admin,
    stateFile,
    localUnit: config.unit,
    maxBytes: maxRulesBytes(sharedDictMb),
    logger,
  })
  const side = sidecar

  try {
    await nginx.start(await write(config, generation))
  } catch (err) {
    if (temporary) await rm(runDir, { recursive: true, force: true })
    throw err
  }
  nginx.on('restarted', () => {
    side.reset()
    side.kick()
  })
  try {
    await agent.start()
  } catch (err) {
    await nginx.stop()
    throw err
  }
  side.kick()

  let stopped: Promise<void> | undefined
  return {
    get config() {
      return current
    },
    runDir,
    stateFile,
    agent,
    admin,
    adminListen,
    adminToken: token,
    port: config.listen.port,
    get pid() {
      return nginx.pid
    },
    process: nginx,
    sidecar: side,
    get servedVersion() {
      return side.served
    },
    async reload(next: GatewayConfig) {
      const g = generation + 1
      const conf = await write(next, g)
      try {
        await nginx.test(conf)
        await rename(conf, join(runDir, 'nginx.conf'))
        await nginx.reload(join(runDir, 'nginx.conf'))
      } catch (err) {
        await rm(conf, { force: true })
        await rm(join(runDir, `settings-${g}.json`), { force: true })
        throw err
      }
      generation = g
      current = next
      const deadline = Date.now() + 10_000
      while (!(await ready().catch(() => false))) {
        if (Date.now() > deadline)
          throw new NginxError('reload', 'nginx did not load the new configuration in 10 s')
        await new Promise((r) => setTimeout(r, 20))
      }
      await prune(g)
      logger.info({ generation: g }, 'nginx reloaded the new configuration')
    },
    stop() {
      stopped ??= (async () => {
        await side.close()
        await agent.close()
        await nginx.stop()
        if (temporary) await rm(runDir, { recursive: true, force: true })
      })()
      return stopped
    },
  }
}
