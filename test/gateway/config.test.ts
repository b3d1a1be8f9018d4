// The gateway configuration: the issue's example to the exact resolved config, every default, every problem
// listed at once with its path, durations, listen forms, the environment, TLS files and relative paths.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { RuleInvalidError, type RuleIssue } from '../../src/errors/index.js'
import {
  type GatewayConfigOptions,
  loadGatewayConfig,
  parseGatewayConfig,
  parseListenAddress,
  resolveGatewayConfig,
} from '../../src/gateway/config.js'
import type { GatewayConfig } from '../../src/gateway/types.js'

const FIXTURES = fileURLToPath(new URL('../fixtures/gateway/', import.meta.url))
const fixture = (name: string) => join(FIXTURES, name)
const WORKERS = Math.min(availableParallelism(), 64)

/** The smallest valid config, as an object; tests override parts of it. */
function minimal(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    unit: 'center',
    listen: 8080,
    rules: '/etc/appactive/rules.yaml',
    apps: [{ name: 'shop', upstreams: { center: ['http://127.0.0.1:9001'] } }],
    ...over,
  }
}

/** The issues of the RuleInvalidError that `run` throws. */
function issuesOf(run: () => unknown): readonly RuleIssue[] {
  try {
    run()
  } catch (err) {
    assert.ok(err instanceof RuleInvalidError, `expected RuleInvalidError, got ${String(err)}`)
    assert.match(err.message, /^invalid gateway config: /)
    return err.issues
  }
  assert.fail('expected a RuleInvalidError')
}

async function issuesOfAsync(run: () => Promise<unknown>): Promise<readonly RuleIssue[]> {
  try {
    await run()
  } catch (err) {
    assert.ok(err instanceof RuleInvalidError, `expected RuleInvalidError, got ${String(err)}`)
    return err.issues
  }
  assert.fail('expected a RuleInvalidError')
}

/** `path: message` of each issue of resolving `value`. */
function problems(value: unknown, options: GatewayConfigOptions = {}): string[] {
  return issuesOf(() => resolveGatewayConfig(value, options)).map((i) => `${i.path}: ${i.message}`)
}

/** The issue's example, resolved with every default. */
function exampleConfig(rulesDir: string): GatewayConfig {
  return {
    unit: 'center',
    listen: { host: '127.0.0.1', port: 8080 },
    tls: undefined,
    admin: undefined,
    rules: join(rulesDir, 'rules'),
    token: undefined,
    apps: [
      {
        name: 'shop',
        match: { hosts: ['shop.example.com'], pathPrefix: '/shop' },
        upstreams: { center: ['http://127.0.0.1:9001'], unit: ['http://127.0.0.1:9002'] },
        unitEnabled: true,
        fallback: undefined,
        balance: 'round-robin',
        healthCheck: undefined,
      },
    ],
    units: { unit: { gateway: 'http://127.0.0.1:8081' } },
    forwarding: 'direct',
    peerToken: undefined,
    hold: { enabled: true, methods: 'writes', maxMs: 2000, maxQueue: 1000, retryAfterS: 1 },
    timeouts: { connectMs: 2000, headersMs: 30_000, bodyMs: 60_000 },
    maxHeaderBytes: 16_384,
    accessLog: true,
    workers: WORKERS,
    heap: undefined,
  }
}

describe('gateway config: well-formed files', () => {
  it("resolves the issue's example to the exact config, with every default", () => {
    const file = fixture('example.yaml')
    const config = parseGatewayConfig(readFileSync(file, 'utf8'), 'yaml', { file })
    assert.deepEqual(config, exampleConfig(FIXTURES))
  })

  it('reads the same config from JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-json-'))
    after(() => rm(dir, { recursive: true, force: true }))
    const file = join(dir, 'gateway.json')
    const value = parseGatewayConfig(readFileSync(fixture('example.yaml'), 'utf8'), 'yaml')
    const json = {
      unit: 'center',
      listen: '127.0.0.1:8080',
      rules: './rules',
      apps: [
        {
          name: 'shop',
          match: { hosts: ['shop.example.com'], pathPrefix: '/shop' },
          upstreams: { center: ['http://127.0.0.1:9001'], unit: ['http://127.0.0.1:9002'] },
        },
      ],
      units: { unit: { gateway: 'http://127.0.0.1:8081' } },
    }
    await writeFile(file, JSON.stringify(json, null, 2))
    assert.deepEqual(await loadGatewayConfig(file, {}), exampleConfig(dir))
    assert.deepEqual(parseGatewayConfig(JSON.stringify(json), 'json', { file }), exampleConfig(dir))
    assert.equal(
      value.rules,
      resolve('rules'),
      'without a file, a relative path is from the working directory',
    )
  })

  it('resolves a file that sets every key', () => {
    const file = fixture('full.yaml')
    const config = parseGatewayConfig(readFileSync(file, 'utf8'), 'yaml', { file })
    assert.deepEqual(config, {
      unit: 'hz',
      listen: { host: '::', port: 8443 },
      tls: undefined,
      admin: { host: '127.0.0.1', port: 9090 },
      rules: 'https://control.example.com:7000',
      token: 'cp-token-123',
      apps: [
        {
          name: 'shop',
          match: { hosts: ['shop.example.com', 'shop.example.com:8443'], pathPrefix: '/shop' },
          upstreams: { hz: ['http://10.0.0.1:9001', 'https://10.0.0.2:9443'], sh: ['http://10.1.0.1:9001'] },
          unitEnabled: true,
          fallback: { unit: 'hz' },
          balance: 'least-busy',
          healthCheck: {
            path: '/healthz?deep=1',
            intervalMs: 2000,
            timeoutMs: 500,
            unhealthyAfter: 5,
            healthyAfter: 1,
          },
        },
        {
          name: 'stock',
          match: { hosts: [], pathPrefix: '/stock' },
          upstreams: { hz: ['http://10.0.0.3'] },
          unitEnabled: false,
          fallback: 'reject',
          balance: 'round-robin',
          healthCheck: { path: '/', intervalMs: 5000, timeoutMs: 2000, unhealthyAfter: 3, healthyAfter: 2 },
        },
      ],
      units: {
        hz: { gateway: 'http://gw.hz.example.com' },
        sh: { gateway: 'http://gw.sh.example.com:8080' },
        bj: { gateway: undefined },
      },
      forwarding: 'gateway',
      peerToken: '0123456789abcdef0123',
      hold: { enabled: true, methods: 'all', maxMs: 5000, maxQueue: 50, retryAfterS: 3 },
      timeouts: { connectMs: 500, headersMs: 120_000, bodyMs: 90_000 },
      maxHeaderBytes: 32_768,
      accessLog: false,
      workers: 2,
      heap: { maxSemiSpaceMb: 8, maxOldSpaceMb: 512 },
    })
  })

  it('returns a frozen config', () => {
    const config = resolveGatewayConfig(minimal())
    assert.ok(Object.isFrozen(config))
    assert.ok(Object.isFrozen(config.apps[0]!.upstreams.center))
    assert.throws(() => {
      ;(config.hold as { maxMs: number }).maxMs = 1
    }, TypeError)
  })
})

describe('gateway config: problems', () => {
  it('lists every problem of a file at once, each with its path, sentence and file', () => {
    const file = fixture('problems.yaml')
    const issues = issuesOf(() => parseGatewayConfig(readFileSync(file, 'utf8'), 'yaml', { file }))
    assert.ok(issues.every((i) => i.file === file))
    assert.deepEqual(
      issues.map((i) => `${i.path}: ${i.message}`),
      [
        'listen: port 99999 is out of range (0 to 65535)',
        'apps[0].match.pathPrefix: must start with "/"',
        'apps[0].upstreams.center[0]: http://127.0.0.1:9001/api has a path (/api); give the origin only: ' +
          'requests keep their own path',
        'apps[1].balance: must be "round-robin" or "least-busy", got string "random"',
        'apps[2].healtCheck: unknown field "healtCheck"',
        'hold.maxWait: "2 minutes" is not a duration (a number of milliseconds, or a string such as "500ms", ' +
          '"5s" or "2m")',
        'timeouts.connect: must be at most 1m, got 10m',
        'workers: must be at least 1, got 0',
        'apps[1].name: app "shop" is already defined at apps[0]',
        'apps[2].match: any host with pathPrefix / is already matched by apps[1]: give the apps different ' +
          'hosts or prefixes',
        'apps[2].upstreams: with forwarding: gateway, requests owned by this gateway\'s unit "center" go to ' +
          'its own instances: list upstreams.center',
        'units.sh.gateway: is required with forwarding: gateway (apps[2].upstreams.sh sends requests to ' +
          'unit "sh" through its gateway)',
        'peerToken: is required with forwarding: gateway (peers trust hop headers only with it)',
      ],
    )
  })

  it('names unknown fields with their paths', () => {
    const value = minimal({
      lisen: 80,
      hold: { maxwait: '1s' },
      units: { sh: { gateway: 'http://a', gw: 'http://b' } },
      apps: [
        {
          name: 'shop',
          match: { host: ['a.example.com'] },
          upstreams: { center: ['http://127.0.0.1:9001'] },
          healthCheck: { path: '/', retries: 3 },
        },
      ],
    })
    assert.deepEqual(problems(value), [
      'apps[0].match.host: unknown field "host"',
      'apps[0].healthCheck.retries: unknown field "retries"',
      'units.sh.gw: unknown field "gw"',
      'hold.maxwait: unknown field "maxwait"',
      'lisen: unknown field "lisen"',
    ])
  })

  it('requires listen and at least one app', () => {
    assert.deepEqual(problems({ unit: 'center', rules: './r', apps: [] }), [
      'listen: must be an address: HOST:PORT, [IPv6]:PORT, :PORT or PORT',
      'apps: list at least one app',
    ])
    assert.deepEqual(problems([1, 2]), [
      ': expected an object, got a list',
      'unit: is required: set it in the file or in APPACTIVE_UNIT',
      'rules: is required: a rule-set file, an AppActive rule directory or the control-plane URL',
    ])
  })

  it('checks upstream URLs: http or https origins only', () => {
    const urls = [
      'ftp://127.0.0.1',
      'http://127.0.0.1:9001/base',
      'http://127.0.0.1:9001/?x=1',
      'http://127.0.0.1:9001#top',
      'http://user:pw@127.0.0.1',
      'localhost:9001',
      'not a url',
    ]
    assert.deepEqual(problems(minimal({ apps: [{ name: 'shop', upstreams: { center: urls } }] })), [
      'apps[0].upstreams.center[0]: ftp://127.0.0.1 must use http or https, not ftp',
      'apps[0].upstreams.center[1]: http://127.0.0.1:9001/base has a path (/base); give the origin only: ' +
        'requests keep their own path',
      'apps[0].upstreams.center[2]: http://127.0.0.1:9001/?x=1 cannot have a query or fragment',
      'apps[0].upstreams.center[3]: http://127.0.0.1:9001#top cannot have a query or fragment',
      'apps[0].upstreams.center[4]: http://127.0.0.1: credentials in the URL are not supported',
      'apps[0].upstreams.center[5]: localhost:9001 must use http or https, not localhost',
      'apps[0].upstreams.center[6]: "not a url" is not a URL (write http://HOST:PORT)',
    ])
    const ok = resolveGatewayConfig(
      minimal({
        apps: [{ name: 'shop', upstreams: { center: ['HTTP://Example.COM:80/', 'https://b:443'] } }],
      }),
    )
    assert.deepEqual(ok.apps[0]!.upstreams.center, ['http://example.com', 'https://b'])
  })

  it('keeps an instance in one unit, and each name and match once', () => {
    const value = minimal({
      apps: [
        {
          name: 'shop',
          match: { hosts: ['a.example.com', 'b.example.com', 'A.example.com'] },
          upstreams: { center: ['http://10.0.0.1'], unit: ['http://10.0.0.1/'] },
        },
        { name: 'Shop', upstreams: { center: ['http://10.0.0.2'] } },
        {
          name: 'cart',
          match: { hosts: ['b.example.com', 'a.example.com'] },
          upstreams: { center: ['http://10.0.0.3'] },
        },
        { name: 'api', match: { pathPrefix: '/api' }, upstreams: { center: ['http://10.0.0.4'] } },
        { name: 'api2', match: { pathPrefix: '/api/' }, upstreams: { center: ['http://10.0.0.4'] } },
      ],
    })
    assert.deepEqual(problems(value), [
      'apps[0].match.hosts[2]: host a.example.com is listed twice',
      'apps[0].upstreams.unit[0]: http://10.0.0.1 is already listed at apps[0].upstreams.center[0]',
      'apps[1].name: app "Shop" is already defined at apps[0]',
      'apps[2].match: hosts a.example.com, b.example.com with pathPrefix / is already matched by apps[0]: ' +
        'give the apps different hosts or prefixes',
    ])
  })

  it('needs the local unit for unitEnabled: false, and instances for a fallback unit', () => {
    const value = minimal({
      apps: [
        { name: 'stock', unitEnabled: false, upstreams: { hz: ['http://10.0.0.1'] } },
        {
          name: 'shop',
          match: { pathPrefix: '/s' },
          fallback: { unit: 'sh' },
          upstreams: { center: ['http://a'] },
        },
      ],
    })
    assert.deepEqual(problems(value), [
      'apps[0].upstreams: unitEnabled is false, so every request goes to this gateway\'s unit "center": ' +
        'list upstreams.center',
      'apps[1].fallback.unit: unit "sh" has no instances in this app: list upstreams.sh',
    ])
  })

  it('in gateway mode, needs a gateway for every other unit an app sends to, and a peer token', () => {
    const value = minimal({
      forwarding: 'gateway',
      units: { center: { gateway: 'http://gw.center' }, sh: {} },
      apps: [
        {
          name: 'shop',
          upstreams: { center: ['http://a'], sh: ['http://b'], bj: ['http://c'] },
          fallback: { unit: 'gz' },
        },
        // Not multi-active: only the local unit is used, so its other units need no gateway.
        {
          name: 'stock',
          match: { pathPrefix: '/stock' },
          unitEnabled: false,
          upstreams: { center: ['http://d'], hk: ['http://e'] },
        },
      ],
    })
    assert.deepEqual(problems(value), [
      'units.sh.gateway: is required with forwarding: gateway (apps[0].upstreams.sh sends requests to unit ' +
        '"sh" through its gateway)',
      'units.bj.gateway: is required with forwarding: gateway (apps[0].upstreams.bj sends requests to unit ' +
        '"bj" through its gateway)',
      'units.gz.gateway: is required with forwarding: gateway (apps[0].fallback sends requests to unit "gz" ' +
        'through its gateway)',
      'peerToken: is required with forwarding: gateway (peers trust hop headers only with it)',
    ])
    assert.deepEqual(problems(minimal({ token: 'a b' }), { env: { APPACTIVE_TOKEN: 'fine' } }), [
      'token: may hold only visible ASCII characters, no spaces',
    ])
    assert.deepEqual(problems(minimal({ forwarding: 'gateway', peerToken: 'short' })), [
      'peerToken: must be at least 16 characters (it is a shared secret)',
    ])
  })

  it('rejects absurd numbers with a sentence', () => {
    const value = minimal({
      hold: { maxWait: '61s', maxQueue: 0, retryAfter: 0 },
      maxHeaderBytes: 2 * 1024 * 1024,
      workers: 65,
      heap: { maxSemiSpaceMb: 0, maxOldSpaceMb: 8 },
      apps: [
        {
          name: 'shop',
          upstreams: { center: ['http://a'] },
          healthCheck: {
            path: '/',
            interval: '50ms',
            timeout: '2m',
            unhealthyAfter: 1.5,
            healthyAfter: 1000,
          },
        },
      ],
    })
    const slowProbe = { path: '/', interval: '1s', timeout: '1500ms' }
    assert.deepEqual(
      problems(
        minimal({ apps: [{ name: 'a', upstreams: { center: ['http://a'] }, healthCheck: slowProbe }] }),
      ),
      ['apps[0].healthCheck.timeout: 1500ms is longer than the interval (1s)'],
    )
    assert.deepEqual(problems(value), [
      'apps[0].healthCheck.interval: must be at least 100ms, got 50ms',
      'apps[0].healthCheck.timeout: must be at most 1m, got 2m',
      'apps[0].healthCheck.unhealthyAfter: must be a whole number, got 1.5',
      'apps[0].healthCheck.healthyAfter: must be at most 100, got 1000',
      'hold.maxWait: must be at most 1m, got 61s',
      'hold.maxQueue: must be at least 1, got 0',
      'hold.retryAfter: must be between 1 and 3600 seconds, got 0',
      'maxHeaderBytes: must be at most 1048576, got 2097152',
      'workers: must be at most 64, got 65',
      'heap.maxSemiSpaceMb: must be at least 1, got 0',
      'heap.maxOldSpaceMb: must be at least 16, got 8',
    ])
  })

  it('keeps the admin listener off the main port', () => {
    assert.deepEqual(problems(minimal({ listen: ':8080', admin: '127.0.0.1:8080' })), [
      'admin: port 8080 is already taken by listen',
    ])
    assert.equal(
      resolveGatewayConfig(minimal({ listen: '127.0.0.1:8080', admin: '127.0.0.2:8080' })).admin?.port,
      8080,
    )
    assert.equal(resolveGatewayConfig(minimal({ listen: 0, admin: 0 })).admin?.port, 0)
  })

  it('gives the line and column of malformed YAML and JSON', () => {
    const file = fixture('malformed.yaml')
    const yaml = issuesOf(() => parseGatewayConfig(readFileSync(file, 'utf8'), 'yaml', { file }))
    assert.equal(yaml.length, 1)
    assert.deepEqual(
      { ...yaml[0], message: undefined },
      { path: '', line: 6, column: 1, file, message: undefined },
    )
    assert.match(yaml[0]!.message, /^malformed YAML: /)
    const json = issuesOf(() => parseGatewayConfig('{\n  "unit": "center",\n}', 'json', { file: 'gw.json' }))
    assert.deepEqual(
      json.map((i) => [i.line, i.column, i.file]),
      [[3, 1, 'gw.json']],
    )
    assert.deepEqual(
      issuesOf(() => parseGatewayConfig('  \n', 'yaml')),
      [{ path: '', message: 'is empty' }],
    )
  })
})

describe('gateway config: durations', () => {
  const cases: Array<[unknown, number]> = [
    [1500, 1500],
    ['1500', 1500],
    ['500ms', 500],
    ['5s', 5000],
    ['1.5s', 1500],
    [' 2s ', 2000],
    ['2m', 120_000],
  ]
  for (const [input, ms] of cases) {
    it(`reads ${JSON.stringify(input)} as ${ms} ms`, () => {
      const config = resolveGatewayConfig(minimal({ timeouts: { headers: input } }))
      assert.equal(config.timeouts.headersMs, ms)
    })
  }

  it('rejects what is not a duration', () => {
    const bad = ['5 sec', '1h', '-1s', '', true, -5, '0.5ms', 2.5]
    const issues = bad.map((v) => problems(minimal({ timeouts: { headers: v } }))[0])
    assert.deepEqual(issues, [
      'timeouts.headers: "5 sec" is not a duration (a number of milliseconds, or a string such as "500ms", "5s" or "2m")',
      'timeouts.headers: "1h" is not a duration (a number of milliseconds, or a string such as "500ms", "5s" or "2m")',
      'timeouts.headers: "-1s" is not a duration (a number of milliseconds, or a string such as "500ms", "5s" or "2m")',
      'timeouts.headers: "" is not a duration (a number of milliseconds, or a string such as "500ms", "5s" or "2m")',
      'timeouts.headers: must be a duration: a number of milliseconds, or a string such as "500ms", "5s" or "2m"',
      'timeouts.headers: -5 is not a duration (a number of milliseconds, or a string such as "500ms", "5s" or "2m")',
      'timeouts.headers: must be a whole number of milliseconds, got 0.5',
      'timeouts.headers: must be a whole number of milliseconds, got 2.5',
    ])
  })

  it('takes retryAfter in whole seconds, as a number or a duration', () => {
    assert.equal(resolveGatewayConfig(minimal({ hold: { retryAfter: 5 } })).hold.retryAfterS, 5)
    assert.equal(resolveGatewayConfig(minimal({ hold: { retryAfter: '2m' } })).hold.retryAfterS, 120)
    assert.deepEqual(problems(minimal({ hold: { retryAfter: '1500ms' } })), [
      'hold.retryAfter: must be a whole number of seconds, got 1.5',
    ])
  })
})

describe('gateway config: listen and admin addresses', () => {
  const good: Array<[string | number, string, number]> = [
    [8080, '0.0.0.0', 8080],
    ['8080', '0.0.0.0', 8080],
    [':8080', '0.0.0.0', 8080],
    ['127.0.0.1:8080', '127.0.0.1', 8080],
    ['localhost:65535', 'localhost', 65535],
    ['gw-1.example.com:80', 'gw-1.example.com', 80],
    ['[::1]:8080', '::1', 8080],
    ['[::]:0', '::', 0],
  ]
  for (const [input, host, port] of good) {
    it(`reads ${JSON.stringify(input)}`, () => {
      assert.deepEqual(parseListenAddress(input), { host, port })
      const config = resolveGatewayConfig(minimal({ listen: input, admin: '127.0.0.1:9999' }))
      assert.deepEqual(config.listen, { host, port })
    })
  }

  it('rejects malformed addresses with a sentence', () => {
    const bad: Array<[unknown, string]> = [
      ['::1:8080', 'put an IPv6 address in brackets, as [::1]:8080'],
      ['127.0.0.1:65536', 'port 65536 is out of range (0 to 65535)'],
      [70000, 'port 70000 is out of range (0 to 65535)'],
      [-1, '-1 is not an address: write HOST:PORT, [IPv6]:PORT, :PORT or PORT'],
      ['host:', '"host:" is not an address: write HOST:PORT, [IPv6]:PORT, :PORT or PORT'],
      ['a b:80', '"a b" is not a host name or IP address'],
      ['[zz]:80', '"zz" is not an IPv6 address'],
      ['http://x:80', '"http://x:80" is not an address: write HOST:PORT, [IPv6]:PORT, :PORT or PORT'],
      [true, 'must be an address: HOST:PORT, [IPv6]:PORT, :PORT or PORT'],
    ]
    for (const [input, message] of bad) {
      assert.deepEqual(problems(minimal({ listen: input })), [`listen: ${message}`], String(input))
    }
  })
})

describe('gateway config: environment', () => {
  const noUnitOrRules = () => {
    const v = minimal()
    delete v.unit
    delete v.rules
    return v
  }

  it('takes unit, rules and token from APPACTIVE_* when the file has none', () => {
    const env = { APPACTIVE_UNIT: 'hz', APPACTIVE_RULES: 'http://cp:7000', APPACTIVE_TOKEN: 'secret-1' }
    const config = resolveGatewayConfig(
      minimal({ unit: undefined, rules: undefined, apps: [{ name: 'a', upstreams: { hz: ['http://a'] } }] }),
      { env },
    )
    assert.deepEqual([config.unit, config.rules, config.token], ['hz', 'http://cp:7000', 'secret-1'])
  })

  it('prefers the file, and ignores empty variables', () => {
    const env = { APPACTIVE_UNIT: 'hz', APPACTIVE_RULES: '/elsewhere', APPACTIVE_TOKEN: 'env-token' }
    const config = resolveGatewayConfig(minimal({ token: 'file-token' }), { env })
    assert.deepEqual(
      [config.unit, config.rules, config.token],
      ['center', '/etc/appactive/rules.yaml', 'file-token'],
    )
    assert.deepEqual(problems(noUnitOrRules(), { env: { APPACTIVE_UNIT: '', APPACTIVE_RULES: '' } }), [
      'unit: is required: set it in the file or in APPACTIVE_UNIT',
      'rules: is required: a rule-set file, an AppActive rule directory or the control-plane URL',
    ])
  })

  it('resolves a relative APPACTIVE_RULES against the working directory, not the file', () => {
    const env = { APPACTIVE_UNIT: 'center', APPACTIVE_RULES: 'rules.yaml' }
    const config = resolveGatewayConfig(noUnitOrRules(), { env, file: '/srv/gw/gateway.yaml' })
    assert.equal(config.rules, resolve('rules.yaml'))
  })

  it('checks values from the environment too', () => {
    const env = {
      APPACTIVE_UNIT: '9lives',
      APPACTIVE_RULES: 'file:///etc/rules',
      APPACTIVE_TOKEN: 'has space',
    }
    assert.deepEqual(problems(noUnitOrRules(), { env }), [
      'unit: APPACTIVE_UNIT "9lives" is not a unit name (a letter then up to 62 letters, digits, "_", "." or "-")',
      'rules: APPACTIVE_RULES file:///etc/rules: the control plane is reached over http or https; give a file as a path',
      'token: APPACTIVE_TOKEN may hold only visible ASCII characters, no spaces',
    ])
  })

  it('does not read process.env unless given it', () => {
    assert.deepEqual(problems(noUnitOrRules()).length, 2)
  })
})

describe('gateway config: files on disk', () => {
  let dir: string
  const CERT = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n'
  const KEY = '-----BEGIN PRIVATE KEY-----\nMIIEfake\n-----END PRIVATE KEY-----\n'

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'gw-config-'))
    await mkdir(join(dir, 'conf', 'tls'), { recursive: true })
    await writeFile(join(dir, 'conf', 'tls', 'cert.pem'), CERT)
    await writeFile(join(dir, 'conf', 'tls', 'key.pem'), KEY)
    await writeFile(join(dir, 'conf', 'tls', 'junk.pem'), 'hello\n')
  })
  after(() => rm(dir, { recursive: true, force: true }))

  async function writeConfig(value: Record<string, unknown>, name = 'gateway.yaml'): Promise<string> {
    const file = join(dir, 'conf', name)
    await writeFile(file, name.endsWith('.json') ? JSON.stringify(value) : stringify(value))
    return file
  }

  it('reads the TLS cert and key as PEM text, relative to the config file', async () => {
    const file = await writeConfig(
      minimal({ tls: { cert: 'tls/cert.pem', key: join(dir, 'conf/tls/key.pem') } }),
    )
    const config = await loadGatewayConfig(file, {})
    assert.deepEqual(config.tls, { cert: CERT, key: KEY })
  })

  it('accepts inline PEM text', () => {
    assert.deepEqual(resolveGatewayConfig(minimal({ tls: { cert: CERT, key: KEY } })).tls, {
      cert: CERT,
      key: KEY,
    })
  })

  it('lists missing or non-PEM TLS files with the other problems', async () => {
    const file = await writeConfig(
      minimal({ tls: { cert: 'tls/missing.pem', key: 'tls/junk.pem' }, workers: 0 }),
    )
    const issues = await issuesOfAsync(() => loadGatewayConfig(file, {}))
    assert.deepEqual(
      issues.map((i) => `${i.path}: ${i.message}`),
      [
        'workers: must be at least 1, got 0',
        `tls.cert: ${join(dir, 'conf/tls/missing.pem')} does not exist`,
        `tls.key: ${join(dir, 'conf/tls/junk.pem')} is not a private key in PEM form (no "-----BEGIN ...PRIVATE KEY-----" line)`,
      ],
    )
    assert.ok(issues.every((i) => i.file === file))
    assert.deepEqual(
      problems(minimal({ tls: { cert: KEY, key: 'tls' } }), { file: join(dir, 'conf', 'x.yaml') }),
      [
        'tls.cert: the inline text is not a certificate in PEM form (no "-----BEGIN ...CERTIFICATE-----" line)',
        `tls.key: ${join(dir, 'conf/tls')} is not a regular file`,
      ],
    )
  })

  it('resolves a relative rules path against the config file, and keeps URLs and absolute paths', async () => {
    const load = async (rules: string) =>
      (await loadGatewayConfig(await writeConfig(minimal({ rules })), { APPACTIVE_TOKEN: 't0k' })).rules
    assert.equal(await load('./rules'), join(dir, 'conf', 'rules'))
    assert.equal(await load('../shared/rules.yaml'), join(dir, 'shared', 'rules.yaml'))
    assert.equal(await load('/etc/appactive/rules'), '/etc/appactive/rules')
    assert.equal(await load('https://cp.example.com:7000/base'), 'https://cp.example.com:7000/base')
  })

  it('needs a token with a control-plane URL', async () => {
    const file = await writeConfig(minimal({ rules: 'https://cp.example.com:7000' }))
    assert.deepEqual(await issuesOfAsync(() => loadGatewayConfig(file, {})), [
      {
        file,
        path: 'token',
        message:
          'is required when rules is the control-plane URL https://cp.example.com:7000 (or set APPACTIVE_TOKEN)',
      },
    ])
  })

  it('reads .json files as JSON', async () => {
    const file = await writeConfig(minimal({ rules: 'r.yaml' }), 'gateway.json')
    assert.equal((await loadGatewayConfig(file, {})).rules, join(dir, 'conf', 'r.yaml'))
  })

  it("parses the docs' examples", async () => {
    const docs = readFileSync(fileURLToPath(new URL('../../docs/gateway.md', import.meta.url)), 'utf8')
    const blocks = [...docs.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!)
    assert.equal(blocks.length, 2)
    await mkdir(join(dir, 'docs', 'tls'), { recursive: true })
    await writeFile(join(dir, 'docs', 'tls', 'gateway.crt'), CERT)
    await writeFile(join(dir, 'docs', 'tls', 'gateway.key'), KEY)
    const file = join(dir, 'docs', 'gateway.yaml')
    await writeFile(file, blocks[0]!)
    const full = await loadGatewayConfig(file, { APPACTIVE_TOKEN: 't0k' })
    assert.deepEqual(
      [full.unit, full.forwarding, full.tls?.cert, full.apps.length],
      ['hz', 'gateway', CERT, 2],
    )
    await writeFile(file, blocks[1]!)
    assert.equal((await loadGatewayConfig(file, {})).apps[0]!.name, 'shop')
  })

  it('names a missing config file', async () => {
    const file = join(dir, 'nope.yaml')
    assert.deepEqual(await issuesOfAsync(() => loadGatewayConfig(file, {})), [
      { path: '', message: 'no such file or directory', file },
    ])
    assert.deepEqual(await issuesOfAsync(() => loadGatewayConfig(dir, {})), [
      { path: '', message: 'is not a regular file', file: dir },
    ])
  })

  it('falls back to process.env by default', async () => {
    const file = await writeConfig(minimal({ unit: undefined }))
    const before = process.env.APPACTIVE_UNIT
    process.env.APPACTIVE_UNIT = 'from-env'
    try {
      assert.equal((await loadGatewayConfig(file)).unit, 'from-env')
    } finally {
      if (before === undefined) delete process.env.APPACTIVE_UNIT
      else process.env.APPACTIVE_UNIT = before
    }
  })
})
