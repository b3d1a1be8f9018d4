export type { ErrorCode, RuleIssue } from './errors.js'
export {
  AppActiveError,
  ErrorCodes,
  FencedError,
  formatIssue,
  InvalidArgumentError,
  LeaseExpiredError,
  NoProviderError,
  NoRouteIdError,
  NotCenterError,
  ProbeUnreachableError,
  ReplicationTimeoutError,
  RuleInvalidError,
  WrongUnitError,
} from './errors.js'
