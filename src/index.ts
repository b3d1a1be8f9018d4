/**
 * appactive: multi-active disaster recovery for Node.js services. The root entry re-exports the most
 * used names; each layer also has its own subpath (`appactive/rules`, `appactive/context`, ...).
 */

export type { RouteContext } from './context/index.js'
export { currentRoute, currentRouteId, requireRouteId, runWithRoute } from './context/index.js'
export type { ErrorCode, RuleIssue } from './errors/index.js'
export {
  AppActiveError,
  ErrorCodes,
  FencedError,
  InvalidArgumentError,
  LeaseExpiredError,
  NoProviderError,
  NoRouteIdError,
  NotCenterError,
  RuleInvalidError,
  WrongUnitError,
} from './errors/index.js'
export type { RouteDecision, RouteReason, RuleDiff, RuleSet } from './rules/index.js'
export { compileRouter, diffRuleSets, parseRuleSet, Router, validateRuleSet } from './rules/index.js'
