/**
 * Keeps the store's node rows in step with the channel server: every join, leave and ack becomes a
 * sighting, written in order and batched while a write is in flight (a publish to 1000 agents is a
 * handful of transactions, not 1000 fsyncs). Node rows are a record for people; the safety mechanism
 * is the channel server's live table, so a failed write is logged, not retried.
 */
import type { Logger } from 'pino'
import type { NodeView, RuleServer } from '../channels/index.js'
import type { AuditInput } from './model.js'
import type { NodeSighting, Store } from './store/types.js'

export class NodeRecorder {
  readonly #store: Store
  readonly #log: Logger | undefined
  /** app and unit of the nodes registered now: acks carry only the node id. */
  readonly #identities = new Map<string, { app: string; unit: string }>()
  #pending: { sighting: NodeSighting; audit?: AuditInput }[] = []
  #flushing: Promise<void> | undefined

  constructor(rules: RuleServer, store: Store, logger?: Logger) {
    this.#store = store
    this.#log = logger
    rules.on('node', (node, change) => this.#sawNode(node, change))
    rules.on('ack', (nodeId, version) => {
      const id = this.#identities.get(nodeId)
      if (id) this.#record({ nodeId, ...id, appliedVersion: version })
    })
  }

  #sawNode(node: NodeView, change: 'joined' | 'left'): void {
    if (change === 'joined') this.#identities.set(node.nodeId, { app: node.app, unit: node.unit })
    else this.#identities.delete(node.nodeId)
    this.#record(
      {
        nodeId: node.nodeId,
        app: node.app,
        unit: node.unit,
        address: node.address,
        pid: node.pid,
        appliedVersion: node.appliedVersion,
        left: change === 'left',
      },
      {
        actor: `node:${node.nodeId}`,
        action: `node.${change}`,
        target: `node:${node.nodeId}`,
        details: { app: node.app, unit: node.unit, version: node.appliedVersion },
      },
    )
  }

  #record(sighting: NodeSighting, audit?: AuditInput): void {
    this.#pending.push(audit ? { sighting, audit } : { sighting })
    this.#flushing ??= this.#flush()
  }

  async #flush(): Promise<void> {
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending
        this.#pending = []
        try {
          await this.#store.recordNodes(
            batch.map((b) => b.sighting),
            batch.flatMap((b) => (b.audit ? [b.audit] : [])),
          )
        } catch (err) {
          this.#log?.warn(
            { err: (err as Error).message, nodes: batch.length },
            'could not store node sightings',
          )
        }
      }
    } finally {
      this.#flushing = undefined
    }
  }

  /** Resolves when every sighting so far is stored. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing
  }
}
