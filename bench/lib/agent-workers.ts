/**
 * Real agents hosted in child processes for benches that measure a server (the control plane, the rule
 * server) and must not share its event loop with the agents: N agents dealt over k children forked with
 * tsx, each running `bench/lib/propagation-worker.ts` (an AgentHost) and answering over IPC only.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { RuleSet } from '../../src/rules/index.js'
import type { HostMode } from './agent-host.js'
import type { FromWorker, ToWorker } from './propagation-worker.js'

/** n agents over k hosts: [first, count] per host. */
function shares(n: number, k: number): Array<[number, number]> {
  return Array.from({ length: k }, (_, i) => {
    const first = Math.floor((n * i) / k)
    return [first, Math.floor((n * (i + 1)) / k) - first]
  })
}

class Child {
  readonly proc: ChildProcess
  #exiting = false
  readonly #waiting = new Set<(m: FromWorker) => void>()

  constructor() {
    const path = fileURLToPath(new URL('./propagation-worker.ts', import.meta.url))
    this.proc = fork(path, [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    })
    this.proc.on('message', (m: FromWorker) => {
      if (m.type === 'failed') throw new Error(`agent worker failed: ${m.message}`)
      for (const w of this.#waiting) w(m)
    })
    this.proc.on('exit', (code) => {
      if (!this.#exiting) throw new Error(`an agent worker exited (${code}) before the bench ended`)
    })
  }

  ask<T extends FromWorker['type']>(m: ToWorker, type: T): Promise<Extract<FromWorker, { type: T }>> {
    return new Promise((resolve) => {
      const on = (r: FromWorker) => {
        if (r.type !== type) return
        this.#waiting.delete(on)
        resolve(r as Extract<FromWorker, { type: T }>)
      }
      this.#waiting.add(on)
      this.proc.send(m)
    })
  }

  async exit(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    this.#exiting = true
    const exited = once(this.proc, 'exit')
    this.proc.disconnect()
    await exited
  }
}

export class AgentWorkers {
  readonly #children: Child[]
  #active: Child[] = []

  constructor(k: number) {
    this.#children = Array.from({ length: k }, () => new Child())
    // A bench that throws must not leave agents behind.
    process.once('exit', () => {
      for (const c of this.#children) c.proc.kill('SIGKILL')
    })
  }

  get count(): number {
    return this.#children.length
  }

  /** Starts n agents (`bench-00000`...; even indexes in unit `center`, odd in `unit`) against `url`. */
  async start(url: string, token: string, n: number, mode: HostMode = 'agent'): Promise<void> {
    const parts = shares(n, this.#children.length)
    this.#active = this.#children.filter((_, i) => parts[i]![1] > 0)
    await Promise.all(
      this.#active.map((c, i) => {
        const [first, count] = parts[i]!
        return c.ask({ type: 'start', spec: { url, token, mode, first, count } }, 'started')
      }),
    )
  }

  /** The agents that do not hold `ruleSet` or answer differently from it; empty when all agree. */
  async check(ruleSet: RuleSet): Promise<string[]> {
    const answers = await Promise.all(this.#active.map((c) => c.ask({ type: 'check', ruleSet }, 'checked')))
    return answers.flatMap((a) => a.wrong)
  }

  /** Closes every agent; the children's RSS (MB) just before. */
  async stop(): Promise<number> {
    const answers = await Promise.all(this.#active.map((c) => c.ask({ type: 'stop' }, 'stopped')))
    return answers.reduce((sum, a) => sum + a.rssMb, 0)
  }

  async exit(): Promise<void> {
    await Promise.all(this.#children.map((c) => c.exit()))
  }
}
