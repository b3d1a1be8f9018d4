/**
 * The resolved gateway configuration: what `parseGatewayConfig` returns after validation and defaults.
 * Every field is filled in; durations are milliseconds.
 */
import type { Fallback } from '../rules/index.js'

export interface ListenAddress {
  readonly host: string
  readonly port: number
}

export interface HealthCheckConfig {
  /** Path probed with GET on each instance; 2xx/3xx is healthy. */
  readonly path: string
  readonly intervalMs: number
  readonly timeoutMs: number
  /** Consecutive failures (probes or proxied requests) before an instance is ejected. */
  readonly unhealthyAfter: number
  /** Consecutive successful probes before an ejected instance serves again. */
  readonly healthyAfter: number
}

export interface AppConfig {
  readonly name: string
  /** Both optional; a request matches when its Host is listed (or none are) and its path starts with the prefix. */
  readonly match: { readonly hosts: readonly string[]; readonly pathPrefix: string }
  /** Upstream instance base URLs per unit name. */
  readonly upstreams: Readonly<Record<string, readonly string[]>>
  /** false: every request goes to the local unit (the app is not multi-active). */
  readonly unitEnabled: boolean
  /** Overrides the rule set's fallback for this app. */
  readonly fallback: Fallback | undefined
  readonly balance: 'round-robin' | 'least-busy'
  /** Active health checks; undefined: passive ejection only. */
  readonly healthCheck: HealthCheckConfig | undefined
}

export interface HoldConfig {
  readonly enabled: boolean
  /** `writes`: hold only non-GET/HEAD/OPTIONS requests; `all`: every request for a fenced key. */
  readonly methods: 'writes' | 'all'
  /** Longest a request waits for the fence to lift. */
  readonly maxMs: number
  /** Most requests held at once; beyond it, 503 at once. */
  readonly maxQueue: number
  /** Retry-After (seconds) on a 503 for a fenced key. */
  readonly retryAfterS: number
}

export interface TimeoutsConfig {
  readonly connectMs: number
  /** Until the upstream's response headers arrive. */
  readonly headersMs: number
  /** Longest silence while streaming a body either way. */
  readonly bodyMs: number
}

export interface GatewayConfig {
  /** The unit this gateway stands in. */
  readonly unit: string
  readonly listen: ListenAddress
  readonly tls: { readonly cert: string; readonly key: string } | undefined
  /** Metrics and health endpoints, on their own address; undefined: none. */
  readonly admin: ListenAddress | undefined
  /** A rule-set file, an AppActive rule directory, or the control plane's base URL (http/https). */
  readonly rules: string
  /** Bearer token for the control plane (APPACTIVE_TOKEN), when `rules` is a URL. */
  readonly token: string | undefined
  readonly apps: readonly AppConfig[]
  /** Other units' gateways, for `forwarding: gateway` (corrects misrouted traffic across units). */
  readonly units: Readonly<Record<string, { readonly gateway: string | undefined }>>
  /** `direct`: to the owner unit's upstreams; `gateway`: via the owner unit's gateway. */
  readonly forwarding: 'direct' | 'gateway'
  /** Shared secret that gateways put on requests they forward to each other (so peers trust the hop headers). */
  readonly peerToken: string | undefined
  readonly hold: HoldConfig
  readonly timeouts: TimeoutsConfig
  /** Largest request head (request line + headers); beyond it, 431. */
  readonly maxHeaderBytes: number
  readonly accessLog: boolean
  /** Worker processes sharing the port (node:cluster); default one per core. */
  readonly workers: number
  /**
   * V8 heap limits for the serving processes (`--max-semi-space-size`, `--max-old-space-size`), in MB.
   * They can only be set when a process starts, so with any of them set the gateway serves from cluster
   * workers started with these flags, even with one worker. Undefined: V8's defaults.
   */
  readonly heap: HeapConfig | undefined
}

export interface HeapConfig {
  /** Each of the young generation's two semi-spaces: smaller holds less memory, costs more scavenges. */
  readonly maxSemiSpaceMb?: number | undefined
  /** The old generation's limit; beyond it the process dies of OOM. */
  readonly maxOldSpaceMb?: number | undefined
}
