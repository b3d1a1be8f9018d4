/**
 * Errors of the control plane. Each carries the HTTP status and the stable code the REST API answers
 * with (`{ code, message, issues? }`); the CLI prints the same code.
 */
import type { PlanIssue } from './model.js'

export class ControlError extends Error {
  readonly status: number
  readonly code: string
  readonly issues: readonly PlanIssue[] | undefined

  constructor(
    status: number,
    code: string,
    message: string,
    issues?: readonly PlanIssue[],
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.name = new.target.name
    this.status = status
    this.code = code
    this.issues = issues
  }

  toJSON(): { code: string; message: string; issues?: readonly PlanIssue[] } {
    return { code: this.code, message: this.message, ...(this.issues ? { issues: this.issues } : {}) }
  }
}

/** A compare-and-set or uniqueness rule of the store refused a change (HTTP 409). */
export class StoreConflictError extends ControlError {
  constructor(message: string, options?: ErrorOptions) {
    super(409, 'CONFLICT', message, undefined, options)
  }
}

/** No such record (HTTP 404). */
export class StoreNotFoundError extends ControlError {
  constructor(message: string) {
    super(404, 'NOT_FOUND', message)
  }
}

/** The store cannot be opened or reached (the control plane does not start). */
export class StoreUnavailableError extends ControlError {
  constructor(message: string, options?: ErrorOptions) {
    super(503, 'STORE_UNAVAILABLE', message, undefined, options)
  }
}

/** The control plane's configuration (tokens, options) is unusable: it refuses to start. */
export class ControlConfigError extends ControlError {
  constructor(message: string) {
    super(500, 'CONFIG_INVALID', message)
  }
}
