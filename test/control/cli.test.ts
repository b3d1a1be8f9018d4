// `appactive control` as a real process: it refuses to start without a usable store or an admin token,
// and once started answers /healthz and stops on SIGTERM.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { request } from 'undici'
import { assertExit, cli, cliInProcess, ROOT, tempDir } from '../cli/helpers.js'

const ENV = {
  APPACTIVE_ADMIN_TOKEN: 'admin-token-0123456789',
  APPACTIVE_AGENT_TOKEN: 'agent-token-0123456789',
}

describe('appactive control', () => {
  test('exits 1 with a clear message when the store is unreachable or cannot be opened', async () => {
    const [pg, sqlite] = await Promise.all([
      cli(['control', '--listen', '127.0.0.1:0', '--store', 'postgres://postgres:hunter2@127.0.0.1:1/test'], {
        env: ENV,
      }),
      cli(['control', '--listen', '127.0.0.1:0', '--store', 'sqlite:/no-such-dir-appactive/x.db'], {
        env: ENV,
      }),
    ])
    assertExit(pg, 1)
    assert.match(
      pg.stderr,
      /^appactive: STORE_UNAVAILABLE: cannot reach the PostgreSQL store at postgres:\/\/postgres@127\.0\.0\.1:1\/test \(schema appactive\): .*ECONNREFUSED/,
    )
    assert.doesNotMatch(pg.stderr, /hunter2/)
    assert.equal(pg.stdout, '')
    assertExit(sqlite, 1)
    assert.match(
      sqlite.stderr,
      /^appactive: STORE_UNAVAILABLE: cannot open the SQLite store \/no-such-dir-appactive\/x\.db: .*directory does not exist/,
    )
  })

  test('refuses to start without an admin token, and with a malformed tokens file', async (t) => {
    const dir = await tempDir(t)
    const file = join(dir, 'tokens.yaml')
    await writeFile(file, 'tokens:\n  - { name: ci, role: root, token: short }\n')
    const [noAdmin, bad] = await Promise.all([
      cli(['control', '--store', `sqlite:${join(dir, 'a.db')}`], {
        env: {
          APPACTIVE_AGENT_TOKEN: ENV.APPACTIVE_AGENT_TOKEN,
          APPACTIVE_OPERATOR_TOKEN: 'operator-token-0123456789',
        },
      }),
      cliInProcess(['control', '--tokens', file, '--store', `sqlite:${join(dir, 'b.db')}`]),
    ])
    assertExit(noAdmin, 1)
    assert.match(
      noAdmin.stderr,
      /^appactive: CONFIG_INVALID: no admin token is configured: set APPACTIVE_ADMIN_TOKEN/,
    )
    assertExit(bad, 1)
    assert.match(bad.stderr, /tokens\[0\]\.role: must be "viewer" or "operator" or "admin"/)
    assert.match(bad.stderr, /tokens\[0\]\.token: a token has at least 16 characters/)
    const usage = await cliInProcess(['control', '--listen', 'localhost'])
    assertExit(usage, 2)
    assert.match(usage.stderr, /--listen must be HOST:PORT/)
  })

  test('starts, answers /healthz, and stops on SIGTERM', async (t) => {
    const dir = await tempDir(t)
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ...ENV,
      APPACTIVE_LOG_LEVEL: 'warn',
    }
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'src/cli/run.ts',
        'control',
        '--listen',
        '127.0.0.1:0',
        '--store',
        `sqlite:${join(dir, 'c.db')}`,
      ],
      { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    t.after(() => {
      if (child.exitCode === null) child.kill('SIGKILL')
    })
    let stdout = ''
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        stdout += s
        const m = /control plane on (http:\/\/\S+) \(store sqlite:.*c\.db, rule set version -1\)/.exec(stdout)
        if (m) resolve(m[1]!)
      })
      exited.then((code) => reject(new Error(`exited ${code} before listening:\n${stderr}`)))
    })
    const res = await request(`${url}/healthz`)
    assert.equal(res.statusCode, 200)
    assert.deepEqual(await res.body.json(), {
      status: 'ok',
      store: 'sqlite',
      ruleSetVersion: null,
      orchestrator: true,
    })
    const denied = await request(`${url}/v1/audit`)
    assert.equal(denied.statusCode, 401)
    await denied.body.dump()
    child.kill('SIGTERM')
    assert.equal(await exited, 0, stderr)
  })
})
