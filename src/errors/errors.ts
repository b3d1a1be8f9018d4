/**
 * One error hierarchy with stable string codes (DESIGN §3). Users switch on `err.code`; `instanceof`
 * also works across two installed copies of appactive, through a `Symbol.for` brand.
 */

/** Every code appactive raises. Codes are public API: never renamed, never reused. */
export const ErrorCodes = {
  APPACTIVE_FENCED: { httpStatus: 503, retryable: true, summary: 'the route id is fenced for a cut-over' },
  APPACTIVE_WRONG_UNIT: {
    httpStatus: 421,
    retryable: false,
    summary: 'the route id is owned by another unit',
  },
  APPACTIVE_NOT_CENTER: {
    httpStatus: 421,
    retryable: false,
    summary: 'a center service was reached outside the center',
  },
  APPACTIVE_NO_ROUTE_ID: {
    httpStatus: 400,
    retryable: false,
    summary: 'no usable route id where one is required',
  },
  APPACTIVE_LEASE_EXPIRED: {
    httpStatus: 503,
    retryable: true,
    summary: 'the agent lease lapsed; guarded writes stop',
  },
  APPACTIVE_RULE_INVALID: {
    httpStatus: 400,
    retryable: false,
    summary: 'a rule set failed to parse or validate',
  },
  APPACTIVE_NO_PROVIDER: {
    httpStatus: 503,
    retryable: true,
    summary: 'no healthy provider in the target unit',
  },
  APPACTIVE_REPLICATION_TIMEOUT: {
    httpStatus: 504,
    retryable: true,
    summary: "a unit's database did not catch up within the timeout",
  },
  APPACTIVE_PROBE_UNREACHABLE: {
    httpStatus: 503,
    retryable: true,
    summary: "a replication probe cannot query a unit's database",
  },
  APPACTIVE_INVALID_ARGUMENT: {
    httpStatus: 500,
    retryable: false,
    summary: 'a programming error: bad option or argument',
  },
} as const satisfies Record<string, { httpStatus: number; retryable: boolean; summary: string }>

export type ErrorCode = keyof typeof ErrorCodes

const kBrand = Symbol.for('appactive.error.v1')

/** Base class of every appactive error. */
export class AppActiveError extends Error {
  readonly code: ErrorCode
  /** JSON-safe facts about the failure (route id, units, version...). */
  readonly details: Readonly<Record<string, unknown>>
  readonly [kBrand] = true

  constructor(
    code: ErrorCode,
    message: string,
    details: Record<string, unknown> = {},
    options?: ErrorOptions,
  ) {
    super(message, options)
    this.name = new.target.name
    this.code = code
    this.details = details
  }

  /** HTTP status an edge answers with for this error. */
  get httpStatus(): number {
    return ErrorCodes[this.code].httpStatus
  }

  /** True when the same call may succeed later without any change (fence lifts, lease renews). */
  get retryable(): boolean {
    return ErrorCodes[this.code].retryable
  }

  // `this` is the class `instanceof` was called on (FencedError, ...): that is the point here.
  // biome-ignore-start lint/complexity/noThisInStatic: see above
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true
    if (typeof value !== 'object' || value === null || !(kBrand in value)) return false
    // Subclasses: compare the brand name, so a copy's FencedError is our FencedError.
    if (this === AppActiveError) return true
    return (value as unknown as Error).name === this.name
  }
  // biome-ignore-end lint/complexity/noThisInStatic: see above

  toJSON(): { code: ErrorCode; message: string; details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, details: this.details }
  }
}

/** A write was attempted for a fenced route id. Retry after the cut-over finishes. */
export class FencedError extends AppActiveError {
  constructor(routeId: string, details: Record<string, unknown> = {}) {
    super('APPACTIVE_FENCED', `route id ${routeId} is fenced while a cut-over moves it`, {
      routeId,
      ...details,
    })
  }
}

/** The route id belongs to `owner`, not to the unit that received it. */
export class WrongUnitError extends AppActiveError {
  readonly owner: string
  constructor(routeId: string, owner: string, unit: string, details: Record<string, unknown> = {}) {
    super('APPACTIVE_WRONG_UNIT', `route id ${routeId} belongs to unit ${owner}, not ${unit}`, {
      routeId,
      owner,
      unit,
      ...details,
    })
    this.owner = owner
  }
}

/** A center service was called in a unit that is not the center. */
export class NotCenterError extends AppActiveError {
  readonly center: string
  constructor(center: string, unit: string, details: Record<string, unknown> = {}) {
    super('APPACTIVE_NOT_CENTER', `this service runs only in the center unit ${center}, not in ${unit}`, {
      center,
      unit,
      ...details,
    })
    this.center = center
  }
}

/** A unit service or guarded write got no usable route id. */
export class NoRouteIdError extends AppActiveError {
  constructor(message = 'no route id: a unit service needs one', details: Record<string, unknown> = {}) {
    super('APPACTIVE_NO_ROUTE_ID', message, details)
  }
}

/** The agent's lease lapsed; guarded writes are refused until it is in sync again. */
export class LeaseExpiredError extends AppActiveError {
  constructor(details: Record<string, unknown> = {}) {
    super(
      'APPACTIVE_LEASE_EXPIRED',
      'the agent lease has expired: writes are refused until it is in sync',
      details,
    )
  }
}

/** One problem found in a rule set, with where it is. */
export interface RuleIssue {
  /** Where, as `mapping[1].ranges[0]`; empty for the whole document. */
  readonly path: string
  readonly message: string
  /** 1-based position in the source text, when known (parse errors). */
  readonly line?: number
  readonly column?: number
  /** The file the problem is in, when the rule set came from several files. */
  readonly file?: string
}

/** Formats an issue as one line: `file:line:column: path: message`. */
export function formatIssue(issue: RuleIssue): string {
  let where = ''
  if (issue.file) where += issue.file
  if (issue.line !== undefined) where += `${where ? ':' : 'line '}${issue.line}:${issue.column ?? 1}`
  const head = [where, issue.path].filter(Boolean).join(': ')
  return head ? `${head}: ${issue.message}` : issue.message
}

/** A rule set failed to parse or validate; `issues` lists every problem found, not only the first. */
export class RuleInvalidError extends AppActiveError {
  readonly issues: readonly RuleIssue[]
  constructor(issues: readonly RuleIssue[], what = 'rule set') {
    const first = issues[0] ? formatIssue(issues[0]) : 'unknown problem'
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : ''
    super('APPACTIVE_RULE_INVALID', `invalid ${what}: ${first}${more}`, { issues })
    this.issues = issues
  }
}

/** No healthy provider exists in the unit the call must go to. Traffic never silently crosses units. */
export class NoProviderError extends AppActiveError {
  constructor(service: string, unit: string) {
    super('APPACTIVE_NO_PROVIDER', `no provider of ${service} in unit ${unit}`, { service, unit })
  }
}

/**
 * The target unit's database did not apply a source position within the timeout
 * (`APPACTIVE_REPLICATION_TIMEOUT`). A cut-over rolls back; the same wait may succeed later.
 */
export class ReplicationTimeoutError extends AppActiveError {
  constructor(source: string, target: string, timeoutMs: number, details: Record<string, unknown> = {}) {
    super(
      'APPACTIVE_REPLICATION_TIMEOUT',
      `unit ${target} did not apply the replication position of unit ${source} within ${timeoutMs} ms`,
      { source, target, timeoutMs, ...details },
    )
  }
}

/**
 * A replication probe could not get an answer from one unit's database (`APPACTIVE_PROBE_UNREACHABLE`):
 * it cannot connect, or the query failed. The message names the unit and the database.
 */
export class ProbeUnreachableError extends AppActiveError {
  constructor(unit: string, database: string, reason: string, options?: ErrorOptions) {
    super(
      'APPACTIVE_PROBE_UNREACHABLE',
      `replication probe cannot query database ${database} of unit ${unit}: ${reason}`,
      { unit, database, reason },
      options,
    )
  }
}

/** A caller passed a bad option or argument (a programming error, raised when an object is built). */
export class InvalidArgumentError extends AppActiveError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('APPACTIVE_INVALID_ARGUMENT', message, details)
  }
}
