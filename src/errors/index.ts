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
  RuleInvalidError,
  WrongUnitError,
} from './errors.js'
