/**
 * RabbitMQ administration for tests that need what AMQP cannot do (vhosts, runtime parameters,
 * policies): `rabbitmqctl` on the machine's broker (the tests run as root next to it). The federation
 * plugin is enabled by .ci/services.sh.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', ['-q', ...args], { timeout: 30_000 })
  return stdout
}

/**
 * `undefined` when rabbitmqctl works and the federation plugin is enabled, else a skip reason (under
 * CI=true it throws, as `needs` does for a service that is down).
 */
export async function needsFederation(): Promise<string | undefined> {
  let reason: string | undefined
  try {
    const enabled = (await run('rabbitmq-plugins', ['-q', 'list', '-e', '-m'], { timeout: 30_000 })).stdout
    if (!/^rabbitmq_federation$/m.test(enabled)) {
      reason = 'the rabbitmq_federation plugin is not enabled (rabbitmq-plugins enable rabbitmq_federation)'
    }
  } catch (err) {
    reason = `rabbitmq-plugins failed: ${(err as Error).message.split('\n')[0]}`
  }
  if (reason === undefined) return undefined
  if (process.env.CI === 'true' || process.env.CI === '1')
    throw new Error(`${reason}; CI needs it (see .ci/services.sh)`)
  console.log(`# skipped: ${reason}`)
  return reason
}

/** Creates a vhost with full permissions for guest; returns its AMQP URL on `port`. */
export async function addVhost(vhost: string): Promise<void> {
  await rabbitmqctl('add_vhost', vhost)
  await rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*')
}

export async function deleteVhost(vhost: string): Promise<void> {
  await rabbitmqctl('delete_vhost', vhost)
}

export function amqpUrl(vhost: string, port = 5672): string {
  return `amqp://guest:guest@127.0.0.1:${port}/${encodeURIComponent(vhost)}`
}

export async function setParameter(
  vhost: string,
  component: string,
  name: string,
  value: object,
): Promise<void> {
  await rabbitmqctl('set_parameter', '-p', vhost, component, name, JSON.stringify(value))
}

export async function setPolicy(
  vhost: string,
  policy: { name: string; pattern: string; definition: object; applyTo: string },
): Promise<void> {
  await rabbitmqctl(
    'set_policy',
    '-p',
    vhost,
    '--apply-to',
    policy.applyTo,
    policy.name,
    policy.pattern,
    JSON.stringify(policy.definition),
  )
}
