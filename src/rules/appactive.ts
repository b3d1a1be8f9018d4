/**
 * AppActive rule files <-> rule set (DESIGN §2; AppActive's files are described in the reference, §1).
 *
 * `fromAppActive` reads the texts of idSource.json, idTransformer.json (Java object form or gateway array
 * form), idUnitMapping.json, forbiddenRule.json and machine.json into one validated rule set, and lists
 * every problem of every file at once. `toAppActive` writes a rule set back as those files, with a warning
 * for everything AppActive cannot say. Pure: no I/O, texts in and out.
 *
 * Where AppActive's two evaluators (the nginx/Lua gateway and the Java client) disagree, the choice made
 * here is explained in docs/appactive.md; bug numbers (B2, B7...) are the reference's, §6.3.
 */
import { formatIssue, RuleInvalidError, type RuleIssue } from '../errors/index.js'
import { parseText } from './parse.js'
import type { Fallback, IdSource, MappingEntry, RuleSet, Transform, Unit } from './schema.js'
import { assertRuleSet, validateRuleSet } from './validate.js'

/** The AppActive rule file names, by role. */
export const APPACTIVE_FILES = {
  idSource: 'idSource.json',
  idTransformer: 'idTransformer.json',
  idUnitMapping: 'idUnitMapping.json',
  forbiddenRule: 'forbiddenRule.json',
  machine: 'machine.json',
} as const

/** The file `toAppActive` writes the gateway's array form of the transformer to (B20). */
export const APPACTIVE_GATEWAY_TRANSFORMER = 'idTransformer.gateway.json'

/** The token name `toAppActive` writes (the name AppActive's portal files use). */
export const APPACTIVE_TOKEN = 'userIdBetween'

/** The texts of AppActive rule files, by role (absent files are undefined). */
export type AppActiveFiles = { -readonly [K in keyof typeof APPACTIVE_FILES]?: string }

/** Options of `fromAppActive`. */
export interface AppActiveImportOptions {
  /** Version of the rule set made (AppActive files carry none). Default 1. */
  readonly version?: number
  /**
   * Fallback of the rule set made. Default `local`: AppActive's gateway sent missing, non-numeric and
   * uncovered ids to its own unit.
   */
  readonly fallback?: Fallback
}

/** The result of `fromAppActive`. */
export interface AppActiveImport {
  readonly ruleSet: RuleSet
  /** The unit of machine.json (`unitFlag`), as the rule set spells it: the local unit of the process. */
  readonly localUnit?: string
  /** Things that import but behave differently from AppActive, or were ignored, one sentence each. */
  readonly warnings: readonly string[]
}

/** The result of `toAppActive`. */
export interface AppActiveExport {
  /** File name -> JSON text (2-space indent, trailing newline). */
  files: Record<string, string>
  /** Things AppActive cannot express exactly, one sentence each. */
  warnings: string[]
}

type Role = keyof typeof APPACTIVE_FILES

const SOURCE_FILE = APPACTIVE_FILES.idSource
const TRANSFORMER_FILE = APPACTIVE_FILES.idTransformer
const MAPPING_FILE = APPACTIVE_FILES.idUnitMapping
const FORBIDDEN_FILE = APPACTIVE_FILES.forbiddenRule
const MACHINE_FILE = APPACTIVE_FILES.machine
const REQUIRED: readonly Role[] = ['idSource', 'idTransformer', 'idUnitMapping']

/** AppActive source name -> rule-set source kind. */
const SOURCE_KINDS = new Map<string, IdSource['from']>([
  ['arg', 'query'],
  ['header', 'header'],
  ['cookie', 'cookie'],
])
const SOURCE_NAMES = new Map<IdSource['from'], string>([...SOURCE_KINDS].map(([name, from]) => [from, name]))

const OVERLAP_HINT =
  "; AppActive's gateway gave such keys to the first item in file order and its Java side to the lowest" +
  ' condition index (B5), so appactive refuses overlaps'

// ---------------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------------

/**
 * Reads AppActive rule files into a rule set. idSource.json, idTransformer.json and idUnitMapping.json
 * are required; forbiddenRule.json and machine.json are optional.
 *
 * @example
 * const { ruleSet, localUnit } = fromAppActive({ idSource, idTransformer, idUnitMapping })
 * const router = compileRouter(ruleSet, { localUnit })
 * @throws RuleInvalidError (APPACTIVE_RULE_INVALID) listing every problem, each with its file.
 */
export function fromAppActive(files: AppActiveFiles, options: AppActiveImportOptions = {}): AppActiveImport {
  const f = new Findings()
  const origins = new Origins()
  const parts = readParts(files, f, origins)
  if (parts === undefined) throw invalid(f.issues)
  const candidate: RuleSet = {
    version: options.version ?? 1,
    units: parts.units,
    idSource: parts.idSource,
    transform: transformOf(parts.steps, origins),
    mapping: parts.mapping,
    ...(parts.fence.ranges || parts.fence.labels ? { fence: parts.fence } : {}),
    fallback: options.fallback ?? 'local',
  }
  const v = validateRuleSet(candidate)
  const issues = v.ok ? f.issues : [...f.issues, ...v.issues.map((i) => origins.locate(i))]
  if (!v.ok || issues.length > 0) throw invalid(issues)
  return {
    ruleSet: v.ruleSet,
    ...(parts.localUnit !== undefined ? { localUnit: parts.localUnit } : {}),
    warnings: f.warnings.map(formatIssue),
  }
}

/** Everything read from the files, before validation. */
interface Parts {
  readonly idSource: IdSource[]
  readonly steps: readonly Step[]
  readonly units: Unit[]
  readonly mapping: MappingEntry[]
  readonly fence: { ranges?: string[]; labels?: string[] }
  readonly localUnit: string | undefined
}

/** Reads every file; undefined when one cannot be used at all (the issues say why). */
function readParts(files: AppActiveFiles, f: Findings, origins: Origins): Parts | undefined {
  const sourceDoc = parseFile(files, 'idSource', f)
  const transformerDoc = parseFile(files, 'idTransformer', f)
  const mappingDoc = parseFile(files, 'idUnitMapping', f)
  const forbiddenDoc = parseFile(files, 'forbiddenRule', f)
  const machineDoc = parseFile(files, 'machine', f)

  const idSource = sourceDoc && readIdSource(sourceDoc.value, f, origins)
  const steps = transformerDoc && readTransformer(transformerDoc.value, f)
  const items = mappingDoc && readItems(mappingDoc.value, MAPPING_FILE, 'UnitRuleItem', f)
  const fenceItems =
    files.forbiddenRule === undefined
      ? []
      : forbiddenDoc && readItems(forbiddenDoc.value, FORBIDDEN_FILE, 'ForbiddenRuleItem', f)
  const machine = machineDoc && readMachine(machineDoc.value, f)

  const owners = items && buildMapping(items, f, origins)
  const fence = fenceItems && buildFence(fenceItems, f, origins)
  const tokensOk = steps && items && fenceItems ? checkTokens(steps, [...items, ...fenceItems], f) : true
  if (items && fenceItems) warnLabels([...items, ...fenceItems], f)
  // Checked only against a mapping read without problems, so a broken item does not also fail machine.json.
  const mappingOk = !f.issues.some((i) => i.file === MAPPING_FILE)
  const localUnit = owners && machine && mappingOk ? localUnitOf(machine, owners.units, f) : undefined

  if (!idSource || !steps || !tokensOk || !owners || !fence) return undefined
  if (files.machine !== undefined && !machine) return undefined
  return { idSource, steps, units: owners.units, mapping: owners.mapping, fence, localUnit }
}

const FILE_ORDER: readonly string[] = Object.values(APPACTIVE_FILES)

/** One error for every issue, listed file by file in the order of APPACTIVE_FILES. */
function invalid(issues: readonly RuleIssue[]): RuleInvalidError {
  const rank = (i: RuleIssue) => (i.file === undefined ? FILE_ORDER.length : FILE_ORDER.indexOf(i.file))
  return new RuleInvalidError(
    [...issues].sort((a, b) => rank(a) - rank(b)),
    'AppActive rules',
  )
}

/** Problems (fatal) and warnings found while importing, each with its file. */
class Findings {
  readonly issues: RuleIssue[] = []
  readonly warnings: RuleIssue[] = []

  issue(file: string, path: string, message: string): void {
    this.issues.push({ file, path, message })
  }

  warn(file: string, path: string, message: string): void {
    this.warnings.push({ file, path, message })
  }
}

/**
 * Where each part of the rule set came from, so the validator's issues (`mapping[1].ranges[0]`) can be
 * reported where the user wrote them (`idUnitMapping.json: items[1].conditions[0].@userIdBetween[0]`).
 */
class Origins {
  readonly #map = new Map<string, { readonly file: string; readonly path: string }>()

  set(canonical: string, file: string, path: string): void {
    this.#map.set(canonical, { file, path })
  }

  /** The issue, moved to the file and path it comes from, with the overlap hint when it is one. */
  locate(issue: RuleIssue): RuleIssue {
    let p = issue.path
    let origin = this.#map.get(p)
    while (origin === undefined && p !== '') {
      p = parentPath(p)
      origin = this.#map.get(p)
    }
    const file = origin?.file ?? TOP_LEVEL_FILES[issue.path.split(/[.[]/)[0] ?? '']
    let message = this.#rewrite(issue.message, file)
    if (message.includes(' overlaps ')) message += OVERLAP_HINT
    const located: RuleIssue = { ...issue, path: origin?.path ?? issue.path, message }
    return file === undefined ? located : { ...located, file }
  }

  #rewrite(message: string, file: string | undefined): string {
    return message.replace(CANONICAL_PATH, (canonical) => {
      const o = this.#map.get(canonical)
      if (o === undefined) return canonical
      return o.file === file ? o.path : `${o.file} ${o.path}`
    })
  }
}

const CANONICAL_PATH =
  /\b(?:(?:mapping|units|idSource|transform)\[\d+\](?:\.(?:ranges|labels)\[\d+\])?|fence\.(?:ranges|labels)\[\d+\])/g

/** The file each top-level field of a rule set comes from. */
const TOP_LEVEL_FILES: Readonly<Record<string, string>> = {
  idSource: SOURCE_FILE,
  transform: TRANSFORMER_FILE,
  units: MAPPING_FILE,
  mapping: MAPPING_FILE,
  fence: FORBIDDEN_FILE,
}

/** `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``. */
function parentPath(path: string): string {
  const parent = path.replace(/(?:\.[^.[\]]+|\[\d+\])$/, '')
  return parent === path ? '' : parent
}

function at(base: string, key: string): string {
  return base === '' ? key : `${base}.${key}`
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A short description of a JSON value for messages. */
function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`
  return `${typeof value} ${String(value)}`
}

/** Parses one file; undefined when it is absent (an issue when required) or malformed (an issue). */
function parseFile(files: AppActiveFiles, role: Role, f: Findings): { value: unknown } | undefined {
  const file = APPACTIVE_FILES[role]
  const text = files[role]
  if (text === undefined) {
    if (REQUIRED.includes(role)) {
      const names = REQUIRED.map((r) => APPACTIVE_FILES[r]).join(', ')
      f.issue(file, '', `is missing; AppActive rules need ${names}`)
    }
    return undefined
  }
  try {
    return { value: parseText(text, 'json', file) }
  } catch (err) {
    if (!(err instanceof RuleInvalidError)) throw err
    f.issues.push(...err.issues)
    return undefined
  }
}

/** Warns about fields AppActive did not read either: they are ignored, never fatal. */
function warnUnknown(
  obj: Record<string, unknown>,
  known: readonly string[],
  file: string,
  path: string,
  f: Findings,
): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) f.warn(file, at(path, key), `unknown field "${key}" is ignored`)
  }
}

// --- idSource.json ---------------------------------------------------------------------------------

function readIdSource(value: unknown, f: Findings, origins: Origins): IdSource[] | undefined {
  if (!isRecord(value)) {
    f.issue(SOURCE_FILE, '', `must be an object like {"source": "arg,header,cookie", "tokenKey": "r_id"}`)
    return undefined
  }
  warnUnknown(value, ['source', 'tokenKey'], SOURCE_FILE, '', f)
  const { source, tokenKey } = value
  let ok = true
  if (typeof tokenKey !== 'string' || tokenKey === '') {
    f.issue(
      SOURCE_FILE,
      'tokenKey',
      `must be the name of the route id, e.g. "r_id"; got ${describe(tokenKey)}`,
    )
    ok = false
  }
  if (typeof source !== 'string' || source.trim() === '') {
    f.issue(
      SOURCE_FILE,
      'source',
      `must list arg, header or cookie, e.g. "arg,header,cookie"; got ${describe(source)}`,
    )
    return undefined
  }
  const parts = source.split(',')
  if (parts.some((p) => p !== p.trim())) {
    f.warn(
      SOURCE_FILE,
      'source',
      `${JSON.stringify(source)} has spaces around commas: appactive ignores them, but AppActive's Java side refused such a list`,
    )
  }
  const out: IdSource[] = []
  for (const part of parts.map((p) => p.trim())) {
    const from = SOURCE_KINDS.get(part)
    if (from === undefined) {
      const hint = SOURCE_KINDS.has(part.toLowerCase())
        ? ` (write it in lower case: ${part.toLowerCase()})`
        : ''
      f.issue(
        SOURCE_FILE,
        'source',
        `${JSON.stringify(part)} is not a source; use arg, header or cookie${hint}`,
      )
      continue
    }
    if (typeof tokenKey === 'string') {
      origins.set(`idSource[${out.length}]`, SOURCE_FILE, 'source')
      origins.set(`idSource[${out.length}].name`, SOURCE_FILE, 'tokenKey')
      out.push({ from, name: tokenKey })
    }
  }
  return ok ? out : undefined
}

// --- idTransformer.json ----------------------------------------------------------------------------

/** One transformer step: its token name and divisor (undefined: identity). */
interface Step {
  readonly id: string | undefined
  readonly divisor: number | undefined
  /** Path of the step in the file: `` (object form) or `[i]` (array form). */
  readonly path: string
}

function readTransformer(value: unknown, f: Findings): Step[] | undefined {
  if (isRecord(value)) {
    const step = readStep(value, '', f)
    return step && [step]
  }
  if (!Array.isArray(value)) {
    f.issue(
      TRANSFORMER_FILE,
      '',
      `must be {"id": "userIdBetween", "mod": "10000"} or a list of such objects; got ${describe(value)}`,
    )
    return undefined
  }
  if (value.length === 0) {
    f.issue(
      TRANSFORMER_FILE,
      '',
      'is an empty list; give one transformer, e.g. [{"id": "userIdBetween", "mod": "10000"}]',
    )
    return undefined
  }
  const steps = value.map((v, i) => readStep(v, `[${i}]`, f))
  return steps.every((s) => s !== undefined) ? (steps as Step[]) : undefined
}

function readStep(value: unknown, path: string, f: Findings): Step | undefined {
  if (!isRecord(value)) {
    f.issue(
      TRANSFORMER_FILE,
      path,
      `must be an object like {"id": "userIdBetween", "mod": "10000"}; got ${describe(value)}`,
    )
    return undefined
  }
  warnUnknown(value, ['id', 'mod'], TRANSFORMER_FILE, path, f)
  let ok = true
  const { id } = value
  if (id !== undefined && id !== null && (typeof id !== 'string' || id === '')) {
    f.issue(
      TRANSFORMER_FILE,
      at(path, 'id'),
      `must be the token name conditions use, e.g. "userIdBetween"; got ${describe(id)}`,
    )
    ok = false
  }
  const divisor = readMod(value.mod, at(path, 'mod'), f)
  if (divisor === null) ok = false
  if (!ok) return undefined
  return { id: typeof id === 'string' ? id : undefined, divisor: divisor ?? undefined, path }
}

/** A `mod` value: a number, undefined for identity (`""`, null, absent), or null when invalid (an issue). */
function readMod(mod: unknown, path: string, f: Findings): number | undefined | null {
  if (mod === undefined || mod === null || mod === '') return undefined
  const n =
    typeof mod === 'number'
      ? mod
      : typeof mod === 'string' && /^[+-]?\d+$/.test(mod)
        ? Number(mod)
        : Number.NaN
  if (!Number.isInteger(n)) {
    f.issue(
      TRANSFORMER_FILE,
      path,
      `must be a whole number such as "10000" (or "" for no transform); got ${describe(mod)}`,
    )
    return null
  }
  if (n <= 0) {
    f.issue(TRANSFORMER_FILE, path, `must be greater than 0; got ${String(mod)}`)
    return null
  }
  return n
}

/** The rule-set transform of the steps: cumulative mods, identity steps dropped. */
function transformOf(steps: readonly Step[], origins: Origins): Transform[] {
  const out: Transform[] = []
  for (const step of steps) {
    if (step.divisor === undefined) continue
    origins.set(`transform[${out.length}]`, TRANSFORMER_FILE, at(step.path, 'mod'))
    out.push({ type: 'mod', divisor: step.divisor })
  }
  return out
}

// --- idUnitMapping.json and forbiddenRule.json -----------------------------------------------------

/** A string where the user wrote it. */
interface Located {
  readonly text: string
  readonly path: string
}

/** One item of idUnitMapping.json or forbiddenRule.json. */
interface Item {
  readonly file: string
  readonly path: string
  readonly name: string | undefined
  /** Values of `@` conditions. */
  readonly ranges: readonly Located[]
  /** Values of `$` conditions. */
  readonly labels: readonly Located[]
  /** Token names of its conditions (`userIdBetween` of `@userIdBetween`), at the condition key. */
  readonly tokens: readonly Located[]
}

type ItemType = 'UnitRuleItem' | 'ForbiddenRuleItem'

function readItems(value: unknown, file: string, itemType: ItemType, f: Findings): Item[] | undefined {
  if (!isRecord(value)) {
    f.issue(
      file,
      '',
      `must be an object like {"itemType": "${itemType}", "items": [...]}; got ${describe(value)}`,
    )
    return undefined
  }
  warnUnknown(value, ['itemType', 'items'], file, '', f)
  if (value.itemType !== itemType) {
    f.warn(
      file,
      'itemType',
      `is ${describe(value.itemType)}, expected "${itemType}"; the file is read as ${itemType} anyway`,
    )
  }
  const { items } = value
  if (!Array.isArray(items)) {
    f.issue(file, 'items', `must be a list of items; got ${describe(items)}`)
    return undefined
  }
  const out: Item[] = []
  items.forEach((raw, i) => {
    const item = readItem(raw, file, `items[${i}]`, itemType === 'UnitRuleItem', f)
    if (item !== undefined) out.push(item)
  })
  return out
}

function readItem(
  raw: unknown,
  file: string,
  path: string,
  needsName: boolean,
  f: Findings,
): Item | undefined {
  if (!isRecord(raw)) {
    f.issue(file, path, `must be an object like {"name": "unit", "conditions": [...]}; got ${describe(raw)}`)
    return undefined
  }
  warnUnknown(raw, ['name', 'conditions'], file, path, f)
  const name = typeof raw.name === 'string' && raw.name !== '' ? raw.name : undefined
  if (needsName && name === undefined) {
    f.issue(file, at(path, 'name'), `must be the unit name; got ${describe(raw.name)}`)
  }
  const item = { file, path, name, ranges: [] as Located[], labels: [] as Located[], tokens: [] as Located[] }
  const { conditions } = raw
  if (!Array.isArray(conditions)) {
    f.issue(
      file,
      at(path, 'conditions'),
      `must be a list such as [{"@userIdBetween": ["0~1999"]}]; got ${describe(conditions)}`,
    )
    return undefined
  }
  conditions.forEach((condition, c) => {
    readCondition(condition, item, `${at(path, 'conditions')}[${c}]`, f)
  })
  return needsName && name === undefined ? undefined : item
}

function readCondition(
  condition: unknown,
  item: { file: string; ranges: Located[]; labels: Located[]; tokens: Located[] },
  path: string,
  f: Findings,
): void {
  const { file } = item
  if (!isRecord(condition)) {
    f.issue(
      file,
      path,
      `must be an object such as {"@userIdBetween": ["0~1999"]}; got ${describe(condition)}`,
    )
    return
  }
  for (const [key, values] of Object.entries(condition)) {
    const keyPath = at(path, key)
    const kind = key[0]
    if ((kind !== '@' && kind !== '$') || key.length < 2) {
      f.issue(
        file,
        keyPath,
        `${JSON.stringify(key)} is not a condition; write "@TOKEN": ["lo~hi", ...] for ranges or "$TOKEN": ["value", ...] for exact values`,
      )
      continue
    }
    item.tokens.push({ text: key.slice(1), path: keyPath })
    if (!Array.isArray(values)) {
      f.issue(
        file,
        keyPath,
        `must be a list of ${kind === '@' ? 'ranges such as "0~1999"' : 'strings'}; got ${describe(values)}`,
      )
      continue
    }
    values.forEach((v, j) => {
      const valuePath = `${keyPath}[${j}]`
      if (typeof v !== 'string') f.issue(file, valuePath, `must be a string; got ${describe(v)}`)
      else (kind === '@' ? item.ranges : item.labels).push({ text: v, path: valuePath })
    })
  }
}

/** Units and mapping of idUnitMapping.json: one unit and one mapping entry per item. */
function buildMapping(
  items: readonly Item[],
  f: Findings,
  origins: Origins,
): { units: Unit[]; mapping: MappingEntry[] } {
  const units: Unit[] = []
  const mapping: MappingEntry[] = []
  const seen = new Map<string, Item>()
  for (const item of items) {
    const name = item.name!
    const first = seen.get(name.toLowerCase())
    if (first !== undefined) {
      f.issue(
        MAPPING_FILE,
        at(item.path, 'name'),
        `unit "${name}" is already defined at ${first.path}; AppActive compared unit names ignoring case, and its Java side let the later item overwrite the earlier one`,
      )
      continue
    }
    seen.set(name.toLowerCase(), item)
    const u = units.length
    origins.set(`units[${u}]`, MAPPING_FILE, at(item.path, 'name'))
    origins.set(`units[${u}].name`, MAPPING_FILE, at(item.path, 'name'))
    units.push(name.toLowerCase() === 'center' ? { name, center: true } : { name })
    if (item.ranges.length === 0 && item.labels.length === 0) continue
    const m = mapping.length
    origins.set(`mapping[${m}]`, MAPPING_FILE, item.path)
    origins.set(`mapping[${m}].unit`, MAPPING_FILE, at(item.path, 'name'))
    item.ranges.forEach((r, j) => {
      origins.set(`mapping[${m}].ranges[${j}]`, MAPPING_FILE, r.path)
    })
    item.labels.forEach((l, j) => {
      origins.set(`mapping[${m}].labels[${j}]`, MAPPING_FILE, l.path)
    })
    mapping.push({
      unit: name,
      ...(item.ranges.length > 0 ? { ranges: item.ranges.map((r) => r.text) } : {}),
      ...(item.labels.length > 0 ? { labels: item.labels.map((l) => l.text) } : {}),
    })
  }
  if (!units.some((u) => u.center)) {
    f.warn(
      MAPPING_FILE,
      'items',
      'no item is named center; AppActive\'s center is always the unit named "center", so a unit "center" that owns no keys was added',
    )
    units.push({ name: 'center', center: true })
  }
  return { units, mapping }
}

/** The fence of forbiddenRule.json: the conditions of ALL items (AppActive read only one, B7). */
function buildFence(
  items: readonly Item[],
  f: Findings,
  origins: Origins,
): { ranges?: string[]; labels?: string[] } {
  if (items.length > 1) {
    f.warn(
      FORBIDDEN_FILE,
      'items',
      `has ${items.length} items; AppActive honoured only one of them (B7), appactive fences the keys of all of them`,
    )
  }
  const ranges = items.flatMap((i) => i.ranges)
  const labels = items.flatMap((i) => i.labels)
  ranges.forEach((r, j) => {
    origins.set(`fence.ranges[${j}]`, FORBIDDEN_FILE, r.path)
  })
  labels.forEach((l, j) => {
    origins.set(`fence.labels[${j}]`, FORBIDDEN_FILE, l.path)
  })
  return {
    ...(ranges.length > 0 ? { ranges: ranges.map((r) => r.text) } : {}),
    ...(labels.length > 0 ? { labels: labels.map((l) => l.text) } : {}),
  }
}

/**
 * Condition token names against the transformer ids. One step: a condition naming another token is
 * applied anyway (AppActive's Java side ignored the name; its gateway skipped the condition), with a
 * warning. Several steps: importable only when every condition uses the last step's token, because
 * AppActive's gateway searched the mapping after each step and a rule set has one key.
 */
function checkTokens(steps: readonly Step[], items: readonly Item[], f: Findings): boolean {
  const tokens = items.flatMap((item) => item.tokens.map((t) => ({ ...t, file: item.file })))
  if (steps.length > 1) return checkChainTokens(steps, tokens, f)
  const id = steps[0]?.id
  const reported = new Set<string>()
  for (const t of tokens) {
    if (t.text === id || reported.has(t.text)) continue
    reported.add(t.text)
    const named = id === undefined ? 'the transformer has no id' : `the transformer id is "${id}"`
    f.warn(
      t.file,
      t.path,
      `token "${t.text}" names no transformer (${named}); AppActive's gateway skipped such conditions, its Java side applied them; appactive applies them`,
    )
  }
  return true
}

function checkChainTokens(
  steps: readonly Step[],
  tokens: ReadonlyArray<Located & { file: string }>,
  f: Findings,
): boolean {
  const last = steps[steps.length - 1]!
  const chain = steps.map((s) => `${s.id ?? '(no id)'} mod ${s.divisor ?? '(none)'}`).join(', ')
  if (last.id === undefined || steps.slice(0, -1).some((s) => s.id === last.id)) {
    f.issue(
      TRANSFORMER_FILE,
      '',
      `has ${steps.length} steps (${chain}); the last step needs an id of its own, which the conditions then use`,
    )
    return false
  }
  const others = tokens.filter((t) => t.text !== last.id)
  if (others.length === 0) return true
  const where = others
    .slice(0, 3)
    .map((t) => `${t.file} ${t.path}`)
    .join(', ')
  f.issue(
    TRANSFORMER_FILE,
    '',
    `has ${steps.length} steps (${chain}) and conditions on other tokens than the last step's "${last.id}" (${where}${others.length > 3 ? ', ...' : ''}); AppActive's gateway searched the mapping after each step, which one rule set with one key cannot express; use one transformer, or write every condition on "${last.id}"`,
  )
  return false
}

function warnLabels(items: readonly Item[], f: Findings): void {
  const first = items.find((i) => i.labels.length > 0)
  if (first === undefined) return
  f.warn(
    first.file,
    first.labels[0]!.path,
    '"$" conditions become labels, matched on the raw route id; AppActive\'s gateway matched them on the transformed id, and its Java side refused to load them (B32)',
  )
}

// --- machine.json ----------------------------------------------------------------------------------

function readMachine(value: unknown, f: Findings): { unitFlag: string | undefined } | undefined {
  if (!isRecord(value)) {
    f.issue(MACHINE_FILE, '', `must be an object like {"unitFlag": "unit"}; got ${describe(value)}`)
    return undefined
  }
  warnUnknown(value, ['unitFlag'], MACHINE_FILE, '', f)
  const { unitFlag } = value
  if (unitFlag === undefined || unitFlag === null) return { unitFlag: undefined }
  if (typeof unitFlag !== 'string' || unitFlag === '') {
    f.issue(MACHINE_FILE, 'unitFlag', `must be a unit name; got ${describe(unitFlag)}`)
    return undefined
  }
  return { unitFlag }
}

/** machine.json's unit as the rule set spells it (AppActive compared unit names ignoring case). */
function localUnitOf(
  machine: { unitFlag: string | undefined },
  units: readonly Unit[],
  f: Findings,
): string | undefined {
  const center = units.find((u) => u.center)!.name
  if (machine.unitFlag === undefined) {
    f.warn(
      MACHINE_FILE,
      'unitFlag',
      `is absent; AppActive then took the center, so the local unit is "${center}"`,
    )
    return center
  }
  const flag = machine.unitFlag.toLowerCase()
  const unit = units.find((u) => u.name.toLowerCase() === flag)
  if (unit === undefined) {
    f.issue(
      MACHINE_FILE,
      'unitFlag',
      `"${machine.unitFlag}" is not a unit of ${MAPPING_FILE} (units: ${units.map((u) => u.name).join(', ')})`,
    )
  }
  return unit?.name
}

// ---------------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------------

/**
 * Writes a rule set as AppActive rule files: idSource.json, idTransformer.json (the Java object form),
 * idTransformer.gateway.json (the same transformer in the gateway's array form, B20), idUnitMapping.json
 * and forbiddenRule.json. Conditions use the token `userIdBetween`; each unit becomes one item with one
 * `@` condition (AppActive's gateway mishandled several `@` conditions in one item, B2). machine.json is
 * per process and is not written.
 *
 * @throws RuleInvalidError (APPACTIVE_RULE_INVALID) when the rule set is invalid, or uses what AppActive
 * cannot express at all: a hash transform, a mod chain that is not one mod, id sources with different names.
 */
export function toAppActive(ruleSet: RuleSet): AppActiveExport {
  const rs = assertRuleSet(ruleSet)
  const problems: RuleIssue[] = []
  const tokenKey = exportTokenKey(rs.idSource, problems)
  const mod = exportMod(rs.transform, problems)
  if (problems.length > 0) throw new RuleInvalidError(problems, 'rule set for AppActive')

  const warnings = exportWarnings(rs)
  const transformer = { id: APPACTIVE_TOKEN, mod }
  const fenceConditions = conditionsOf(rs.fence?.ranges ?? [], rs.fence?.labels ?? [])
  const files: Record<string, string> = {
    [SOURCE_FILE]: json({ source: rs.idSource.map((s) => SOURCE_NAMES.get(s.from)).join(','), tokenKey }),
    [TRANSFORMER_FILE]: json(transformer),
    [APPACTIVE_GATEWAY_TRANSFORMER]: json([transformer]),
    [MAPPING_FILE]: json({ itemType: 'UnitRuleItem', items: exportItems(rs) }),
    [FORBIDDEN_FILE]: json({
      itemType: 'ForbiddenRuleItem',
      items: fenceConditions.length > 0 ? [{ name: 'between', conditions: fenceConditions }] : [],
    }),
  }
  return { files, warnings }
}

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`
}

/** AppActive reads one tokenKey from every source. */
function exportTokenKey(sources: readonly IdSource[], problems: RuleIssue[]): string {
  const names = [...new Set(sources.map((s) => s.name))]
  if (names.length > 1) {
    problems.push({
      path: 'idSource',
      message: `AppActive reads one name (tokenKey) from every source, and these sources read ${names.map((n) => JSON.stringify(n)).join(', ')}`,
    })
  }
  return names[0]!
}

/**
 * The one `mod` of the transform as AppActive writes it (`""`: identity). A chain of mods is one mod when
 * each later divisor divides the effective one ((x mod a) mod b = x mod b) or is at least as large (no-op).
 */
function exportMod(transform: readonly Transform[], problems: RuleIssue[]): string {
  let divisor: number | undefined
  for (const [i, step] of transform.entries()) {
    if (step.type === 'identity') continue
    if (step.type === 'hash') {
      problems.push({
        path: `transform[${i}]`,
        message:
          'AppActive has no hash transformer (only mod and identity), so this rule set cannot be exported',
      })
      return ''
    }
    if (divisor === undefined || step.divisor < divisor) {
      if (divisor !== undefined && divisor % step.divisor !== 0) {
        problems.push({
          path: `transform[${i}]`,
          message: `mod ${divisor} then mod ${step.divisor} is not one mod, and AppActive's Java side has exactly one transformer`,
        })
        return ''
      }
      divisor = step.divisor
    }
  }
  return divisor === undefined ? '' : String(divisor)
}

/** One item per unit, in the rule set's order: one `@` condition, then one `$` condition when labelled. */
function exportItems(rs: RuleSet): Array<{ name: string; conditions: Array<Record<string, string[]>> }> {
  return rs.units.map((u) => {
    const entries = rs.mapping.filter((e) => e.unit === u.name)
    const ranges = entries.flatMap((e) => e.ranges ?? [])
    const labels = entries.flatMap((e) => e.labels ?? [])
    return { name: u.name, conditions: conditionsOf(ranges, labels) }
  })
}

function conditionsOf(ranges: readonly string[], labels: readonly string[]): Array<Record<string, string[]>> {
  const out: Array<Record<string, string[]>> = []
  if (ranges.length > 0) out.push({ [`@${APPACTIVE_TOKEN}`]: [...ranges] })
  if (labels.length > 0) out.push({ [`$${APPACTIVE_TOKEN}`]: [...labels] })
  return out
}

function exportWarnings(rs: RuleSet): string[] {
  const warnings: string[] = []
  const center = rs.units.find((u) => u.center)!.name
  if (center.toLowerCase() !== 'center') {
    warnings.push(
      `the center unit is "${center}", but AppActive's center is always the unit named "center" (B30); imported back, "${center}" is no longer the center`,
    )
  }
  const labelled = rs.mapping.filter((e) => (e.labels?.length ?? 0) > 0).map((e) => e.unit)
  if (labelled.length > 0 || (rs.fence?.labels?.length ?? 0) > 0) {
    const what = [...new Set(labelled)].map((u) => `unit ${u}`)
    if ((rs.fence?.labels?.length ?? 0) > 0) what.push('the fence')
    warnings.push(
      `labels (${what.join(', ')}) are written as "$${APPACTIVE_TOKEN}" conditions: only AppActive's gateway reads them, and it matches them on the transformed id, not the raw id; AppActive's Java side refuses to load them (B32)`,
    )
  }
  const fb = rs.fallback
  if (fb !== 'local') {
    const said = fb === undefined ? 'absent (missing and non-numeric ids are rejected)' : JSON.stringify(fb)
    warnings.push(
      `the fallback is ${said}; AppActive has no such setting: its gateway sends missing, non-numeric and uncovered ids to its own unit (fallback local)`,
    )
  }
  return warnings
}
