export type { AppActiveFiles, AppActiveImport, AppActiveImportOptions } from './appactive.js'
export { APPACTIVE_FILES, fromAppActive, toAppActive } from './appactive.js'
export type { MovedLabel, MovedRange, RuleDiff } from './diff.js'
export { applyDiff, diffRuleSets, mergeRanges, ownershipOf } from './diff.js'
export type { Extractor, HeadersLike, RequestLike } from './extract.js'
export { compileExtractor, cookieValue, header, queryParam } from './extract.js'
export type { KeyFunction, KeyRange } from './key.js'
export {
  compileTransform,
  decimalMod,
  decimalValue,
  fnv1a32,
  formatRange,
  HASH_SPACE,
  isNumericId,
  MAX_KEY,
  maxKeyOf,
  parseRange,
} from './key.js'
export type { TextFormat } from './parse.js'
export { formatOf, MAX_TEXT_BYTES, parseRuleSet, parseText } from './parse.js'
export type { RouteDecision, RouteReason, RouterOptions, Segment } from './router.js'
export { compileRouter, DENSE_LIMIT, FENCED_FLAG, Router, segmentsOf } from './router.js'
export type { Fallback, Fence, IdSource, MappingEntry, RuleSet, Transform, Unit } from './schema.js'
export {
  FallbackSchema,
  FenceSchema,
  IdSourceSchema,
  MAX_DIVISOR,
  MAX_UNITS,
  MappingEntrySchema,
  RuleSetSchema,
  TransformSchema,
  UnitSchema,
} from './schema.js'
export type { Validation } from './validate.js'
export { assertRuleSet, validateRuleSet } from './validate.js'
export { formatPath, typeName, zodIssues } from './zod-issues.js'
