/**
 * The in-process bus of operation progress: the SSE stream of `/v1/operations/:id/events` listens here,
 * the control plane emits every stored change of an operation, and the orchestrator adds transient
 * progress notes ("waiting for 3 acks"). Stored changes carry the whole record, so a listener never
 * has to merge deltas; `revision` orders them.
 */
import { EventEmitter } from 'node:events'
import type { Operation } from './model.js'

export type OperationEvent =
  | { readonly type: 'operation'; readonly operation: Operation }
  | {
      readonly type: 'progress'
      readonly operationId: string
      readonly at: string
      readonly message: string
      readonly data?: Readonly<Record<string, unknown>> | undefined
    }

export class OperationEvents {
  // One emitter event per operation id: a stream hears only its own operation.
  readonly #emitter = new EventEmitter().setMaxListeners(0)
  readonly #now: () => number

  constructor(now: () => number = Date.now) {
    this.#now = now
  }

  /** A stored change of an operation (emit after the store committed it). */
  changed(operation: Operation): void {
    this.#emitter.emit(operation.id, { type: 'operation', operation } satisfies OperationEvent)
  }

  /** A transient note about a running operation (not stored; the phases are). */
  progress(operationId: string, message: string, data?: Readonly<Record<string, unknown>>): void {
    const event: OperationEvent = {
      type: 'progress',
      operationId,
      at: new Date(this.#now()).toISOString(),
      message,
      ...(data ? { data } : {}),
    }
    this.#emitter.emit(operationId, event)
  }

  /** Calls `listener` for every event of one operation; returns the unsubscribe function. */
  subscribe(operationId: string, listener: (event: OperationEvent) => void): () => void {
    this.#emitter.on(operationId, listener)
    return () => this.#emitter.off(operationId, listener)
  }

  /** Number of listeners of one operation (tests, metrics). */
  listeners(operationId: string): number {
    return this.#emitter.listenerCount(operationId)
  }
}
