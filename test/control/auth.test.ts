// Tokens -> roles: file (YAML or JSON) and environment, digests, and the refusals.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { Authenticator, checkTokenConfig, loadTokenConfig, roleAllows } from '../../src/control/auth.js'
import { tempDir } from '../cli/helpers.js'

const sha = (s: string) => createHash('sha256').update(s).digest('hex')

describe('tokens', () => {
  test('a YAML file with clear and digested tokens, plus the environment', async (t) => {
    const dir = await tempDir(t)
    const file = join(dir, 'tokens.yaml')
    await writeFile(
      file,
      [
        'tokens:',
        '  - { name: alice, role: admin, token: "alice-secret-0123456789" }',
        `  - { name: ci, role: operator, sha256: "${sha('ci-secret-0123456789')}" }`,
        'agentTokens: ["agent-secret-0123456789"]',
      ].join('\n'),
    )
    const config = await loadTokenConfig(file, { APPACTIVE_VIEWER_TOKEN: 'viewer-secret-0123456789' })
    assert.deepEqual(config.agentTokens, ['agent-secret-0123456789'])
    const auth = checkTokenConfig(config)
    assert.deepEqual(auth.authenticate('alice-secret-0123456789'), { name: 'alice', role: 'admin' })
    assert.deepEqual(auth.authenticate('ci-secret-0123456789'), { name: 'ci', role: 'operator' })
    assert.deepEqual(auth.authenticate('viewer-secret-0123456789'), { name: 'env-viewer', role: 'viewer' })
    for (const wrong of [
      undefined,
      '',
      'alice-secret-012345678',
      'agent-secret-0123456789',
      sha('ci-secret-0123456789'),
    ])
      assert.equal(auth.authenticate(wrong), undefined, String(wrong))
  })

  test('a JSON file; environment-only configuration', async (t) => {
    const dir = await tempDir(t)
    const file = join(dir, 'tokens.json')
    await writeFile(
      file,
      JSON.stringify({ tokens: [{ name: 'bob', role: 'viewer', token: 'bob-secret-0123456789' }] }),
    )
    const config = await loadTokenConfig(file, {
      APPACTIVE_ADMIN_TOKEN: 'admin-secret-0123456789',
      APPACTIVE_AGENT_TOKEN: 'agent-secret-0123456789',
    })
    const auth = checkTokenConfig(config)
    assert.equal(auth.authenticate('bob-secret-0123456789')?.role, 'viewer')
    assert.equal(auth.authenticate('admin-secret-0123456789')?.name, 'env-admin')
  })

  test('refusals: no admin, no agent token, short or reused tokens, unreadable files', async (t) => {
    assert.throws(
      () =>
        new Authenticator({
          tokens: [{ name: 'o', role: 'operator', token: 'operator-0123456789' }],
          agentTokens: [],
        }),
      /no admin token is configured/,
    )
    assert.throws(
      () =>
        checkTokenConfig({
          tokens: [{ name: 'a', role: 'admin', token: 'admin-0123456789' }],
          agentTokens: [],
        }),
      /no agent token is configured/,
    )
    assert.throws(
      () =>
        new Authenticator({
          tokens: [
            { name: 'a', role: 'admin', token: 'same-token-0123456789' },
            { name: 'b', role: 'viewer', sha256: sha('same-token-0123456789') },
            { name: 'c', role: 'viewer' },
          ],
          agentTokens: [],
        }),
      (err: Error) =>
        /tokens\[1\] \(b\) is the same token as a/.test(err.message) &&
        /tokens\[2\] \(c\) needs exactly one of token and sha256/.test(err.message),
    )
    await assert.rejects(
      loadTokenConfig(undefined, { APPACTIVE_ADMIN_TOKEN: 'short' }),
      /APPACTIVE_ADMIN_TOKEN must have at least 16/,
    )
    await assert.rejects(
      loadTokenConfig('/no/such/tokens.yaml', {}),
      /cannot read the tokens file \/no\/such\/tokens\.yaml: ENOENT/,
    )
    const dir = await tempDir(t)
    const file = join(dir, 'bad.yaml')
    await writeFile(file, 'tokens: [ {')
    await assert.rejects(loadTokenConfig(file, {}), /is not valid JSON or YAML/)
  })

  test('roles are ordered viewer < operator < admin', () => {
    assert.ok(
      roleAllows('admin', 'operator') && roleAllows('operator', 'operator') && roleAllows('viewer', 'viewer'),
    )
    assert.ok(!roleAllows('viewer', 'operator') && !roleAllows('operator', 'admin'))
  })
})
