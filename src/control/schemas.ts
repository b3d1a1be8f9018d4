/**
 * JSON Schemas of the REST API: fastify validates requests with them (every problem, see `allErrors`)
 * and @fastify/swagger turns them into the OpenAPI document. Documents with their own validator (rule
 * sets, topologies, plans' targets) are only `object` here, so that validator lists their problems in
 * its own words. Response schemas keep `additionalProperties: true`: the serializer must never drop a
 * field the model gains later.
 */

const str = { type: 'string' } as const
const nstr = { type: ['string', 'null'] } as const
const int = { type: 'integer' } as const
const obj = { type: 'object', additionalProperties: true } as const

/** Shared schemas, registered with `addSchema` and referenced as `Name#`. */
export const SHARED_SCHEMAS = [
  {
    $id: 'Error',
    type: 'object',
    description: 'Every error answer',
    required: ['code', 'message'],
    properties: {
      code: str,
      message: str,
      issues: {
        type: 'array',
        items: { type: 'object', required: ['path', 'message'], properties: { path: str, message: str } },
      },
    },
  },
  {
    $id: 'RuleSetRecord',
    type: 'object',
    additionalProperties: true,
    properties: {
      version: int,
      ruleSet: obj,
      digest: str,
      author: str,
      reason: str,
      operationId: nstr,
      createdAt: str,
    },
  },
  {
    $id: 'RuleSetSummary',
    type: 'object',
    additionalProperties: true,
    properties: { version: int, digest: str, author: str, reason: str, operationId: nstr, createdAt: str },
  },
  {
    $id: 'TopologyRecord',
    type: 'object',
    additionalProperties: true,
    properties: { revision: int, topology: obj, author: str, createdAt: str },
  },
  {
    $id: 'Operation',
    type: 'object',
    additionalProperties: true,
    description: 'A cut-over or failover; `revision` grows with every stored change',
    properties: {
      id: str,
      kind: { type: 'string', enum: ['cutover', 'failover'] },
      state: {
        type: 'string',
        enum: ['planned', 'running', 'succeeded', 'failed', 'rolled-back', 'aborted'],
      },
      phase: nstr,
      plan: obj,
      fromVersion: int,
      toVersion: { type: ['integer', 'null'] },
      phases: { type: 'array', items: obj },
      error: { anyOf: [{ type: 'null' }, obj] },
      reason: str,
      createdBy: str,
      createdAt: str,
      updatedAt: str,
      startedBy: nstr,
      startedAt: nstr,
      endedAt: nstr,
      abortRequested: { anyOf: [{ type: 'null' }, obj] },
      revision: int,
    },
  },
  {
    $id: 'Plan',
    ...obj,
    description: 'What an operation will do: moved keys, fence, steps, checks, transcript',
  },
  {
    $id: 'AuditEntry',
    type: 'object',
    additionalProperties: true,
    properties: { seq: int, at: str, actor: str, action: str, target: str, details: obj },
  },
  {
    $id: 'Node',
    type: 'object',
    additionalProperties: true,
    properties: {
      nodeId: str,
      app: str,
      unit: str,
      address: nstr,
      pid: { type: ['integer', 'null'] },
      appliedVersion: int,
      status: { type: 'string', enum: ['live', 'lapsed', 'disconnected', 'offline', 'left'] },
      leaseRemainingMs: { type: ['integer', 'null'] },
      inflightFenced: int,
      lastError: { anyOf: [{ type: 'null' }, obj] },
      firstSeenAt: nstr,
      lastSeenAt: nstr,
    },
  },
] as const

const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [c, { $ref: 'Error#' }])) as Record<number, { $ref: string }>

const reason = { type: 'string', minLength: 1, maxLength: 2000, description: 'Why (kept in the audit log)' }
const move = {
  type: 'object',
  additionalProperties: false,
  required: ['to'],
  properties: {
    ranges: { type: 'array', items: str, maxItems: 100_000 },
    labels: { type: 'array', items: str, maxItems: 100_000 },
    to: str,
  },
}
const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } },
}
const limit = { type: 'integer', minimum: 1, maximum: 1000 }

export const ROUTE_SCHEMAS = {
  health: {
    tags: ['health'],
    summary: 'Liveness: the store answers',
    security: [],
    response: { 200: obj, 503: { $ref: 'Error#' } },
  },
  getTopology: {
    tags: ['topology'],
    summary: 'The current topology',
    response: { 200: { $ref: 'TopologyRecord#' }, ...errors(401, 403, 404) },
  },
  putTopology: {
    tags: ['topology'],
    summary: 'Store a new topology revision (admin)',
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['topology', 'reason'],
      properties: { topology: obj, reason, expectedRevision: { type: 'integer', minimum: 0 } },
    },
    response: { 200: { $ref: 'TopologyRecord#' }, ...errors(400, 401, 403, 409, 413) },
  },
  listRules: {
    tags: ['rules'],
    summary: 'Rule-set history, newest first',
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: { limit, before: { type: 'integer', minimum: 0 } },
    },
    response: {
      200: {
        type: 'object',
        properties: { ruleSets: { type: 'array', items: { $ref: 'RuleSetSummary#' } } },
      },
      ...errors(401, 403),
    },
  },
  latestRules: {
    tags: ['rules'],
    summary: 'The rule set in force',
    response: { 200: { $ref: 'RuleSetRecord#' }, ...errors(401, 403, 404) },
  },
  getRules: {
    tags: ['rules'],
    summary: 'One rule-set version',
    params: {
      type: 'object',
      required: ['version'],
      properties: { version: { type: 'integer', minimum: 0 } },
    },
    response: { 200: { $ref: 'RuleSetRecord#' }, ...errors(400, 401, 403, 404) },
  },
  validateRules: {
    tags: ['rules'],
    summary: 'Check a rule set as a publish would, and show what it moves (a dry run)',
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['ruleSet'],
      properties: { ruleSet: obj },
    },
    response: { 200: obj, ...errors(400, 401, 403, 413) },
  },
  publishRules: {
    tags: ['rules'],
    summary: 'Publish a rule set (validated, stored immutably, pushed to every agent)',
    description:
      'Without `ruleSet.version` the next version is taken. A rule set that moves keys is refused (409 OWNERSHIP_CHANGE): use a cut-over, or `force: true` as an admin.',
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['ruleSet', 'reason'],
      properties: {
        ruleSet: obj,
        reason,
        expectedVersion: { type: 'integer', minimum: -1 },
        force: { type: 'boolean' },
      },
    },
    response: { 201: { $ref: 'RuleSetRecord#' }, ...errors(400, 401, 403, 409, 413) },
  },
  cutover: {
    tags: ['operations'],
    summary: 'Plan a cut-over (stored as planned; with dryRun only returned)',
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['reason'],
      properties: {
        target: { ...obj, description: 'The whole rule set wanted afterwards' },
        moves: { type: 'array', items: move, maxItems: 1000 },
        reason,
        dryRun: { type: 'boolean' },
      },
    },
    response: {
      200: { type: 'object', properties: { plan: { $ref: 'Plan#' } } },
      201: { $ref: 'Operation#' },
      ...errors(400, 401, 403, 409, 413),
    },
  },
  failover: {
    tags: ['operations'],
    summary: 'Plan a failover of a lost unit (stored as planned; with dryRun only returned)',
    body: {
      type: 'object',
      additionalProperties: false,
      required: ['unit', 'reason'],
      properties: {
        unit: str,
        to: str,
        moves: { type: 'array', items: move, maxItems: 1000 },
        target: obj,
        force: { type: 'boolean', description: "Do not wait out the lost unit's agent leases" },
        reason,
        dryRun: { type: 'boolean' },
      },
    },
    response: {
      200: { type: 'object', properties: { plan: { $ref: 'Plan#' } } },
      201: { $ref: 'Operation#' },
      ...errors(400, 401, 403, 409, 413),
    },
  },
  listOperations: {
    tags: ['operations'],
    summary: 'Operations, newest first',
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        state: {
          type: 'string',
          enum: ['planned', 'running', 'succeeded', 'failed', 'rolled-back', 'aborted'],
        },
        kind: { type: 'string', enum: ['cutover', 'failover'] },
        limit,
      },
    },
    response: {
      200: { type: 'object', properties: { operations: { type: 'array', items: { $ref: 'Operation#' } } } },
      ...errors(400, 401, 403),
    },
  },
  getOperation: {
    tags: ['operations'],
    summary: 'One operation',
    params: idParams,
    response: { 200: { $ref: 'Operation#' }, ...errors(400, 401, 403, 404) },
  },
  startOperation: {
    tags: ['operations'],
    summary: 'Start a planned operation',
    params: idParams,
    response: { 202: { $ref: 'Operation#' }, ...errors(400, 401, 403, 404, 409, 501) },
  },
  abortOperation: {
    tags: ['operations'],
    summary: 'Abort an operation (a running one rolls back first)',
    params: idParams,
    body: {
      type: ['object', 'null'],
      additionalProperties: false,
      properties: { reason },
    },
    response: {
      200: { $ref: 'Operation#' },
      202: { $ref: 'Operation#' },
      ...errors(400, 401, 403, 404, 409, 501),
    },
  },
  operationEvents: {
    tags: ['operations'],
    summary: 'Server-sent events of an operation: `operation` (the stored record) and `progress` (notes)',
    params: idParams,
    produces: ['text/event-stream'],
    response: { ...errors(400, 401, 403, 404) },
  },
  nodes: {
    tags: ['nodes'],
    summary: 'Agents: live ones from the channel, and those the store remembers',
    response: {
      200: { type: 'object', properties: { nodes: { type: 'array', items: { $ref: 'Node#' } } } },
      ...errors(401, 403),
    },
  },
  audit: {
    tags: ['audit'],
    summary: 'The audit log, oldest first (page with `after`)',
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: { after: { type: 'integer', minimum: 0 }, action: str, target: str, limit },
    },
    response: {
      200: {
        type: 'object',
        properties: { entries: { type: 'array', items: { $ref: 'AuditEntry#' } }, next: int },
      },
      ...errors(400, 401, 403),
    },
  },
} as const
