/**
 * A child process of `npm run bench:propagation` (forked with `--import tsx`): hosts the share of agents
 * the bench process asks for, so the rule server has the bench process to itself. Talks over the IPC
 * channel only; never writes to stdout (the bench's last stdout line is its JSON report).
 *
 * Messages in: `start` (a HostSpec), `check` (a rule set), `stop`, `ping`. Out: `started`, `checked`,
 * `stopped`, `pong` (this process's clock, for the offset), `received` (every hosted client received a
 * version's frame, and when the last one did), `failed`.
 */

import type { RuleSet } from '../../src/rules/index.js'
import { AgentHost, clock, type HostSpec } from './agent-host.js'

export type ToWorker =
  | { readonly type: 'start'; readonly spec: HostSpec }
  | { readonly type: 'check'; readonly ruleSet: RuleSet }
  | { readonly type: 'stop' }
  | { readonly type: 'ping'; readonly id: number }

export type FromWorker =
  | { readonly type: 'started' }
  | { readonly type: 'checked'; readonly wrong: readonly string[] }
  | { readonly type: 'stopped'; readonly rssMb: number }
  | { readonly type: 'pong'; readonly id: number; readonly at: number }
  | { readonly type: 'received'; readonly version: number; readonly at: number }
  | { readonly type: 'failed'; readonly message: string }

const send = (m: FromWorker): void => {
  process.send!(m)
}

let host: AgentHost | undefined

async function handle(m: ToWorker): Promise<void> {
  switch (m.type) {
    case 'ping':
      return send({ type: 'pong', id: m.id, at: clock() })
    case 'start':
      host = new AgentHost(m.spec)
      host.on('received', (version, at) => send({ type: 'received', version, at }))
      await host.start()
      return send({ type: 'started' })
    case 'check':
      return send({ type: 'checked', wrong: host?.check(m.ruleSet) ?? ['no agents'] })
    case 'stop': {
      const rssMb = process.memoryUsage().rss / 2 ** 20
      await host?.close()
      host = undefined
      return send({ type: 'stopped', rssMb })
    }
  }
}

process.on('message', (m: ToWorker) => {
  handle(m).catch((err: unknown) =>
    send({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
  )
})
process.on('disconnect', () => process.exit(0))
