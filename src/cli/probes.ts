/**
 * The composition root's probe factory: turns a topology's replication probe declaration (control
 * plane model) into a real probe (appactive/replication). Connection strings never sit in the topology:
 * options name them as `env:VARIABLE`, read here.
 */
import {
  createReplicationProbe,
  type ReplicationProbe,
  type ReplicationProbeSpec,
} from '../bridges/db/replication/index.js'
import type { ReplicationProbeConfig } from '../control/index.js'
import { InvalidArgumentError } from '../errors/index.js'

function text(config: ReplicationProbeConfig, key: string, env: NodeJS.ProcessEnv): string | undefined {
  const raw = config.options?.[key]
  if (raw === undefined) return undefined
  const value = String(raw)
  if (!value.startsWith('env:')) return value
  const name = value.slice(4)
  const resolved = env[name]
  if (resolved === undefined || resolved === '') {
    throw new InvalidArgumentError(
      `replication probe ${config.source} -> ${config.target}: option ${key} names ${name}, which is not set`,
      { variable: name },
    )
  }
  return resolved
}

function required(config: ReplicationProbeConfig, key: string, env: NodeJS.ProcessEnv): string {
  const value = text(config, key, env)
  if (value === undefined) {
    throw new InvalidArgumentError(
      `replication probe ${config.source} -> ${config.target} (${config.kind}) needs option ${key}`,
    )
  }
  return value
}

/** Builds the probe a topology declares. @throws InvalidArgumentError naming a missing option or variable */
export function probeFromConfig(
  config: ReplicationProbeConfig,
  env: NodeJS.ProcessEnv = process.env,
): ReplicationProbe {
  const endpoints = () => ({
    source: { unit: config.source, connection: required(config, 'source', env) },
    target: { unit: config.target, connection: required(config, 'target', env) },
  })
  let spec: ReplicationProbeSpec
  switch (config.kind) {
    case 'none':
      spec = { kind: 'none', source: config.source, target: config.target }
      break
    case 'mariadb':
      spec = { kind: 'mariadb', ...endpoints() }
      break
    case 'postgres': {
      const mode = text(config, 'mode', env) ?? 'logical'
      if (mode !== 'logical' && mode !== 'physical')
        throw new InvalidArgumentError(`replication probe mode must be logical or physical, got ${mode}`)
      const subscription = text(config, 'subscription', env)
      spec = { kind: 'postgres', mode, ...(subscription ? { subscription } : {}), ...endpoints() }
      break
    }
    case 'marker': {
      const driver = text(config, 'driver', env) ?? 'pg'
      if (driver !== 'pg' && driver !== 'mysql2')
        throw new InvalidArgumentError(`replication probe driver must be pg or mysql2, got ${driver}`)
      const table = text(config, 'table', env)
      spec = { kind: 'marker', driver, ...(table ? { table } : {}), ...endpoints() }
      break
    }
  }
  return createReplicationProbe(spec)
}
