/**
 * The nginx configuration of one gateway config: a complete nginx.conf for `nginx -p RUN -c nginx.conf`
 * (modules loaded by path, so /etc/nginx is never read), plus the settings JSON appactive.lua reads at
 * init. Pure: paths and numbers in, text out.
 */
import { isIP } from 'node:net'
import { InvalidArgumentError } from '../../errors/index.js'
import type { AppConfig, GatewayConfig } from '../types.js'

/** Paths and knobs of one generation of the generated configuration. */
export interface NginxLayout {
  /** Run directory: pid, logs, temp paths, state file, admin socket. */
  readonly runDir: string
  /** Directory holding appactive.lua. */
  readonly luaDir: string
  /** Directory holding ndk_http_module.so and ngx_http_lua_module.so. */
  readonly modulesDir: string
  /** Settings file of this generation (referenced by init_by_lua). */
  readonly settingsFile: string
  readonly stateFile: string
  /** `unix:/path` or `127.0.0.1:PORT` / `[::1]:PORT`. */
  readonly adminListen: string
  /** TLS files written next to the config, when the config has TLS. */
  readonly tlsFiles?: { readonly cert: string; readonly key: string }
  readonly sharedDictMb: number
  readonly keepalive: number
  readonly workerConnections: number
}

/** What appactive.lua reads at init (the settings file). */
export interface NginxSettings {
  readonly generation: number
  readonly unit: string
  readonly dict: string
  readonly stateFile: string
  readonly token: string
  readonly peerToken: string | null
  readonly forwarding: 'direct' | 'gateway'
  readonly tls: boolean
  readonly debug: boolean
  readonly maxRulesBytes: number
  readonly hold: {
    readonly enabled: boolean
    readonly all: boolean
    readonly maxMs: number
    readonly maxQueue: number
    readonly retryAfterS: number
  }
  readonly apps: ReadonlyArray<{
    readonly name: string
    readonly hosts: readonly string[]
    readonly prefix: string
    readonly unitEnabled: boolean
    readonly fallback: AppConfig['fallback'] | null
    readonly upstreams: Readonly<Record<string, Target>>
  }>
  readonly peers: Readonly<Record<string, Target>>
}

interface Target {
  /** Name of the nginx upstream block. */
  readonly up: string
  readonly scheme: 'http' | 'https'
}

/** Name of the lua_shared_dict. */
export const SHARED_DICT = 'appactive'

/** Largest compiled rule set accepted for a dict of `mb` megabytes: two versions live at the switch. */
export function maxRulesBytes(mb: number): number {
  return Math.floor((mb * 1024 * 1024) / 3)
}

/** `host:port` of an origin URL as nginx's `server` directive wants it. */
function serverOf(origin: string): { server: string; scheme: 'http' | 'https' } {
  const url = new URL(origin)
  const scheme = url.protocol === 'https:' ? 'https' : 'http'
  const port = url.port === '' ? (scheme === 'https' ? 443 : 80) : Number(url.port)
  return { server: `${url.hostname}:${port}`, scheme }
}

/** The admin address as nginx's `listen` wants it; loopback or a unix socket only. */
export function adminListenOf(admin: { host: string; port: number } | undefined, socket: string): string {
  if (admin === undefined) return `unix:${socket}`
  const host = admin.host
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'))
  if (!loopback) {
    throw new InvalidArgumentError(
      `the nginx engine's admin endpoint takes rule updates: it listens on loopback only, not ${host} ` +
        '(give admin as 127.0.0.1:PORT, or leave it out for a unix socket)',
    )
  }
  return host === '::1' ? `[::1]:${admin.port}` : `${host === 'localhost' ? '127.0.0.1' : host}:${admin.port}`
}

/** One generation's settings and upstream blocks. */
export function nginxSettings(
  config: GatewayConfig,
  layout: NginxLayout,
  extra: { readonly generation: number; readonly token: string; readonly debug: boolean },
): { settings: NginxSettings; upstreams: string[] } {
  const upstreams: string[] = []
  const block = (name: string, origins: readonly string[], app?: AppConfig): Target => {
    const servers = origins.map(serverOf)
    const fails = app?.healthCheck?.unhealthyAfter ?? 3
    const lines = [`  upstream ${name} {`]
    if (app?.balance === 'least-busy') lines.push('    least_conn;')
    for (const s of servers) lines.push(`    server ${s.server} max_fails=${fails} fail_timeout=10s;`)
    lines.push(`    keepalive ${layout.keepalive};`, '    keepalive_timeout 60s;', '  }')
    upstreams.push(lines.join('\n'))
    return { up: name, scheme: servers[0]!.scheme }
  }
  const order = [...config.apps].sort(
    (a, b) =>
      Number(b.match.hosts.length > 0) - Number(a.match.hosts.length > 0) ||
      b.match.pathPrefix.length - a.match.pathPrefix.length,
  )
  const apps = order.map((app) => {
    const i = config.apps.indexOf(app)
    const ups: Record<string, Target> = {}
    Object.entries(app.upstreams).forEach(([unit, origins], j) => {
      ups[unit] = block(`aa_${i}_${j}`, origins, app)
    })
    return {
      name: app.name,
      hosts: app.match.hosts,
      prefix: app.match.pathPrefix,
      unitEnabled: app.unitEnabled,
      fallback: app.fallback ?? null,
      upstreams: ups,
    }
  })
  const peers: Record<string, Target> = {}
  if (config.forwarding === 'gateway') {
    Object.entries(config.units).forEach(([unit, u], j) => {
      if (u.gateway !== undefined) peers[unit] = block(`aa_peer_${j}`, [u.gateway])
    })
  }
  const settings: NginxSettings = {
    generation: extra.generation,
    unit: config.unit,
    dict: SHARED_DICT,
    stateFile: layout.stateFile,
    token: extra.token,
    peerToken: config.peerToken ?? null,
    forwarding: config.forwarding,
    tls: config.tls !== undefined,
    debug: extra.debug,
    maxRulesBytes: maxRulesBytes(layout.sharedDictMb),
    hold: {
      enabled: config.hold.enabled,
      all: config.hold.methods === 'all',
      maxMs: config.hold.maxMs,
      maxQueue: config.hold.maxQueue,
      retryAfterS: config.hold.retryAfterS,
    },
    apps,
    peers,
  }
  return { settings, upstreams }
}

/** A string as an nginx config token (quoted; paths from this process never hold quotes). */
function q(text: string): string {
  if (/["'\\\n$;{}]/.test(text)) throw new InvalidArgumentError(`path not usable in nginx.conf: ${text}`)
  return `"${text}"`
}

function listenOf(host: string, port: number): string {
  if (host.includes(':')) return `[${host}]:${port}`
  return `${host}:${port}`
}

/** The complete nginx.conf. */
export function nginxConf(config: GatewayConfig, layout: NginxLayout, upstreams: readonly string[]): string {
  const run = layout.runDir
  const t = config.timeouts
  const headerK = Math.max(1, Math.ceil(config.maxHeaderBytes / 1024))
  const tls = layout.tlsFiles
  const listen = `${listenOf(config.listen.host, config.listen.port)}${tls ? ' ssl' : ''}`
  return `# Generated by appactive (gateway --engine nginx). Do not edit: it is rewritten at every start and reload.
load_module ${q(`${layout.modulesDir}/ndk_http_module.so`)};
load_module ${q(`${layout.modulesDir}/ngx_http_lua_module.so`)};

daemon off;
master_process on;
worker_processes ${config.workers};
pid ${q(`${run}/nginx.pid`)};
error_log ${q(`${run}/error.log`)} warn;

events {
  worker_connections ${layout.workerConnections};
}

http {
  access_log ${config.accessLog ? `${q(`${run}/access.log`)}` : 'off'};
  client_body_temp_path ${q(`${run}/tmp/body`)};
  proxy_temp_path ${q(`${run}/tmp/proxy`)};
  fastcgi_temp_path ${q(`${run}/tmp/fastcgi`)};
  uwsgi_temp_path ${q(`${run}/tmp/uwsgi`)};
  scgi_temp_path ${q(`${run}/tmp/scgi`)};
  server_tokens off;
  underscores_in_headers on;
  large_client_header_buffers 4 ${headerK}k;
  keepalive_timeout 60s;
  keepalive_requests 100000;

  lua_package_path "${q(layout.luaDir).slice(1, -1)}/?.lua;;";
  lua_shared_dict ${SHARED_DICT} ${layout.sharedDictMb}m;
  init_by_lua_block { require("appactive").init(${JSON.stringify(layout.settingsFile)}) }

  map $http_upgrade $aa_connection {
    default upgrade;
    "" "";
  }
  map $http_x_forwarded_proto $aa_xfp {
    "" $scheme;
    default $http_x_forwarded_proto;
  }
  map $http_x_forwarded_host $aa_xfh {
    "" $http_host;
    default $http_x_forwarded_host;
  }

${upstreams.join('\n')}

  server {
    listen ${listen};${
      tls
        ? `
    ssl_certificate ${q(tls.cert)};
    ssl_certificate_key ${q(tls.key)};`
        : ''
    }
    location / {
      set $aa_up "";
      set $aa_scheme "http";
      set $aa_rid "";
      set $aa_unit "";
      set $aa_ver "";
      set $aa_hops "0";
      set $aa_bag "";
      set $aa_peer "";
      access_by_lua_block { require("appactive").access() }
      proxy_pass $aa_scheme://$aa_up;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Connection $aa_connection;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $aa_xfp;
      proxy_set_header X-Forwarded-Host $aa_xfh;
      # The hop headers (an empty value is not sent); these also drop any copy a client sent.
      proxy_set_header x-appactive-route-id $aa_rid;
      proxy_set_header x-appactive-unit $aa_unit;
      proxy_set_header x-appactive-rule-version $aa_ver;
      proxy_set_header x-appactive-hops $aa_hops;
      proxy_set_header x-appactive-peer $aa_peer;
      proxy_set_header baggage $aa_bag;
      proxy_request_buffering off;
      proxy_next_upstream error;
      proxy_connect_timeout ${t.connectMs}ms;
      proxy_read_timeout ${Math.max(t.headersMs, t.bodyMs)}ms;
      proxy_send_timeout ${t.bodyMs}ms;
      client_max_body_size 0;
    }
  }

  server {
    listen ${layout.adminListen};
    client_max_body_size ${layout.sharedDictMb}m;
    client_body_buffer_size ${layout.sharedDictMb}m;
    access_log off;
    location / {
      content_by_lua_block { require("appactive").admin() }
    }
  }
}
`
}
