// Real services for integration tests (this machine kind starts them before each session; .ci/run
// starts any that is down). A test that needs a service that is down fails with a clear message in CI
// (CI=true) and is skipped with a printed reason elsewhere.
import { connect } from 'node:net'

export interface Service {
  readonly name: string
  readonly host: string
  readonly port: number
}

export const POSTGRES: Service = { name: 'PostgreSQL', host: '127.0.0.1', port: 5432 }
export const MARIADB: Service = { name: 'MariaDB', host: '127.0.0.1', port: 3306 }
export const REDIS: Service = { name: 'Redis', host: '127.0.0.1', port: 6379 }
export const RABBITMQ: Service = { name: 'RabbitMQ', host: '127.0.0.1', port: 5672 }
export const MOSQUITTO: Service = { name: 'Mosquitto', host: '127.0.0.1', port: 1883 }
export const NATS: Service = { name: 'NATS', host: '127.0.0.1', port: 4222 }

/** Connection settings of the machine's services (trust auth / root without password). */
export const PG_CONFIG = { host: POSTGRES.host, port: POSTGRES.port, user: 'postgres', database: 'test' }
export const MARIADB_CONFIG = {
  host: MARIADB.host,
  port: MARIADB.port,
  user: 'root',
  password: '',
  database: 'test',
}

function reachable(service: Service, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: service.host, port: service.port })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/**
 * Resolves to `undefined` when the service is up, or to a skip reason when it is down outside CI.
 * Under CI=true a down service throws, so the suite fails loudly instead of skipping.
 * Use as `test('...', { skip: await needs(POSTGRES) }, ...)` or at the top of a `describe`.
 */
export async function needs(...services: Service[]): Promise<string | undefined> {
  for (const service of services) {
    if (await reachable(service)) continue
    const reason = `${service.name} is not reachable on ${service.host}:${service.port}`
    if (process.env.CI === 'true' || process.env.CI === '1') {
      throw new Error(`${reason}; CI needs it (see .ci/services.sh)`)
    }
    console.log(`# skipped: ${reason}`)
    return reason
  }
  return undefined
}
