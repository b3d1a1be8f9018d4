/**
 * Starts throw-away `nats-server` processes for two-site tests (a JetStream domain per site, joined by a
 * leaf node). Each server gets its own temp dir (config, store); `kill()` sends SIGKILL like a lost
 * machine, `start()` brings it back on the same ports with the same store, `destroy()` kills it and
 * removes the dir.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, closeSync, constants, openSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePorts } from './ports.js'

export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server'

/**
 * `undefined` when the nats-server binary can be run, else a skip reason (under CI=true it throws, as
 * `needs` does for a service that is down).
 */
export function needsNatsServerBinary(): string | undefined {
  try {
    accessSync(NATS_SERVER_BIN, constants.X_OK)
    return undefined
  } catch {
    const reason = `${NATS_SERVER_BIN} is not executable (apt-get install nats-server)`
    if (process.env.CI === 'true' || process.env.CI === '1') throw new Error(`${reason}; CI needs it`)
    console.log(`# skipped: ${reason}`)
    return reason
  }
}

export interface NatsSiteOptions {
  readonly name: string
  /** JetStream domain of the site. */
  readonly domain: string
  /** Accept leaf node connections (the hub site). */
  readonly leafListen?: boolean
  /** The leaf node port of the hub; default a free one. */
  readonly leafPort?: number
  /**
   * The leaf node port the hub gossips to its leaves; give the fault proxy's, or a leaf reconnects
   * straight to the hub when the proxy cuts it.
   */
  readonly leafAdvertisePort?: number
  /** Leaf node remote ports to solicit (the leaf site), e.g. a fault proxy in front of the hub. */
  readonly leafRemotes?: readonly number[]
}

export interface NatsSite {
  readonly name: string
  readonly port: number
  readonly leafPort: number | undefined
  readonly url: string
  readonly dir: string
  readonly running: boolean
  start(): Promise<void>
  /** SIGKILL: no shutdown, no flush; resolves when the process is gone. */
  kill(): Promise<void>
  destroy(): Promise<void>
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}

export async function natsSite(options: NatsSiteOptions): Promise<NatsSite> {
  const dir = await mkdtemp(join(tmpdir(), `appactive-nats-${options.name}-`))
  const [port, freeLeafPort] = await freePorts(2)
  const leafPort = options.leafPort ?? freeLeafPort
  const lines = [
    `server_name: ${options.name}`,
    `listen: 127.0.0.1:${port}`,
    `jetstream { store_dir: "${join(dir, 'js')}", domain: ${options.domain} }`,
  ]
  if (options.leafListen) {
    const advertise = options.leafAdvertisePort ? `, advertise: "127.0.0.1:${options.leafAdvertisePort}"` : ''
    lines.push(`leafnodes { listen: 127.0.0.1:${leafPort}${advertise} }`)
  }
  if (options.leafRemotes?.length) {
    const remotes = options.leafRemotes.map((p) => `{ url: "nats-leaf://127.0.0.1:${p}" }`).join(', ')
    lines.push(`leafnodes { reconnect: 1, remotes: [ ${remotes} ] }`)
  }
  const config = join(dir, 'nats.conf')
  await writeFile(config, `${lines.join('\n')}\n`)
  const logFile = join(dir, 'nats.log')
  let child: ChildProcess | undefined

  const site: NatsSite = {
    name: options.name,
    port: port!,
    leafPort: options.leafListen ? leafPort : undefined,
    url: `nats://127.0.0.1:${port}`,
    dir,
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null
    },
    async start() {
      if (site.running) return
      // The log goes to a file, not a pipe: a pipe handle can outlive a SIGKILLed child and keep the
      // test process from exiting.
      const out = openSync(logFile, 'a')
      const c = spawn(NATS_SERVER_BIN, ['-c', config], { stdio: ['ignore', 'ignore', out] })
      closeSync(out)
      child = c
      const log = async () => (await readFile(logFile, 'utf8').catch(() => '')).slice(-4000)
      const deadline = performance.now() + 10_000
      while (!(await portOpen(port!))) {
        if (c.exitCode !== null) throw new Error(`nats-server ${options.name} exited: ${log}`)
        if (performance.now() > deadline)
          throw new Error(`nats-server ${options.name} did not listen: ${log}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    },
    async kill() {
      const c = child
      if (c === undefined || c.exitCode !== null || c.signalCode !== null) return
      const exited = once(c, 'exit')
      c.kill('SIGKILL')
      await exited
    },
    async destroy() {
      await site.kill()
      await rm(dir, { recursive: true, force: true })
    },
  }
  await site.start()
  return site
}
