/**
 * The `Store` written once against `SqlDriver`: SQLite and PostgreSQL run exactly this code. Times are
 * stored as epoch milliseconds and returned as ISO strings; documents (rule sets, topologies, operation
 * bodies, audit details) as JSON text, so a stored rule set comes back byte for byte (its digest holds).
 */
import { createHash } from 'node:crypto'
import type { RuleSet } from '../../rules/index.js'
import { StoreConflictError, StoreNotFoundError } from '../errors.js'
import {
  type AuditEntry,
  type AuditInput,
  canTransition,
  type NodeRecord,
  type Operation,
  type OperationPatch,
  type RuleSetRecord,
  type RuleSetSummary,
  type Topology,
  type TopologyRecord,
} from '../model.js'
import { appliedVersion, migrate } from './migrations.js'
import type { Row, SqlConn, SqlDriver } from './sql.js'
import type {
  AuditQuery,
  MigrationResult,
  NewOperation,
  NewRuleSet,
  NodeSighting,
  OperationQuery,
  Store,
} from './types.js'

const MAX_LIMIT = 1000

/** Options shared by both stores. */
export interface StoreOptions {
  /** Wall clock in epoch ms for the stored times; default Date.now. */
  readonly now?: () => number
}

function iso(ms: unknown): string {
  return new Date(Number(ms)).toISOString()
}

function isoOrNull(ms: unknown): string | null {
  return ms == null ? null : iso(ms)
}

function limitOf(limit: number | undefined, fallback: number): number {
  return Math.max(1, Math.min(MAX_LIMIT, Math.floor(limit ?? fallback)))
}

function summary(r: Row): RuleSetSummary {
  return {
    version: Number(r.version),
    digest: String(r.digest),
    author: String(r.author),
    reason: String(r.reason),
    operationId: r.operation_id == null ? null : String(r.operation_id),
    createdAt: iso(r.created_at),
  }
}

function ruleSetRecord(r: Row): RuleSetRecord {
  return { ...summary(r), ruleSet: JSON.parse(String(r.body)) as RuleSet }
}

function auditEntry(r: Row): AuditEntry {
  return {
    seq: Number(r.seq),
    at: iso(r.at),
    actor: String(r.actor),
    action: String(r.action),
    target: String(r.target),
    details: JSON.parse(String(r.details)) as Record<string, unknown>,
  }
}

function operationOf(r: Row): Operation {
  return JSON.parse(String(r.body)) as Operation
}

export class SqlStore implements Store {
  readonly kind: 'sqlite' | 'postgres'
  readonly location: string
  readonly #db: SqlDriver
  readonly #now: () => number

  constructor(db: SqlDriver, location: string, options: StoreOptions = {}) {
    this.#db = db
    this.kind = db.dialect
    this.location = location
    this.#now = options.now ?? Date.now
  }

  /** The driver, for tests that check what the database itself refuses. */
  get driver(): SqlDriver {
    return this.#db
  }

  migrate(): Promise<MigrationResult> {
    return migrate(this.#db, this.#now)
  }

  schemaVersion(): Promise<number> {
    return appliedVersion(this.#db)
  }

  async #audit(c: SqlConn, entry: AuditInput, at: number): Promise<AuditEntry> {
    const [row] = await c.all(
      'INSERT INTO audit (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?) RETURNING *',
      [at, entry.actor, entry.action, entry.target, JSON.stringify(entry.details)],
    )
    return auditEntry(row!)
  }

  async getTopology(): Promise<TopologyRecord | undefined> {
    const [r] = await this.#db.all('SELECT * FROM topology_revisions ORDER BY revision DESC LIMIT 1')
    if (r === undefined) return undefined
    return {
      revision: Number(r.revision),
      topology: JSON.parse(String(r.body)) as Topology,
      author: String(r.author),
      createdAt: iso(r.created_at),
    }
  }

  putTopology(
    topology: Topology,
    meta: { readonly author: string; readonly expectedRevision?: number | undefined },
    audit: AuditInput,
  ): Promise<TopologyRecord> {
    return this.#db.transaction(async (c) => {
      await c.lock('topology_revisions')
      const [r] = await c.all('SELECT MAX(revision) AS v FROM topology_revisions')
      const current = r?.v == null ? 0 : Number(r.v)
      if (meta.expectedRevision !== undefined && meta.expectedRevision !== current) {
        throw new StoreConflictError(
          `the topology is at revision ${current}, not ${meta.expectedRevision}: it changed meanwhile`,
        )
      }
      const now = this.#now()
      const revision = current + 1
      await c.run('INSERT INTO topology_revisions (revision, body, author, created_at) VALUES (?, ?, ?, ?)', [
        revision,
        JSON.stringify(topology),
        meta.author,
        now,
      ])
      await this.#audit(c, audit, now)
      return { revision, topology, author: meta.author, createdAt: iso(now) }
    })
  }

  async appendRuleSet(input: NewRuleSet, audit: (version: number) => AuditInput): Promise<RuleSetRecord> {
    try {
      return await this.#db.transaction(async (c) => {
        // Serialise appends: "read the latest, write the next" must not interleave.
        await c.lock('rule_sets')
        const [r] = await c.all('SELECT MAX(version) AS v FROM rule_sets')
        const latest = r?.v == null ? -1 : Number(r.v)
        if (input.expectedLatest !== undefined && input.expectedLatest !== latest) {
          throw new StoreConflictError(
            `the latest rule set is version ${latest}, not ${input.expectedLatest}: another one was published meanwhile`,
          )
        }
        const { version: asked, ...rest } = input.ruleSet
        // Versions start at 1 (0 is valid but reads like "none" to people).
        const version = asked ?? Math.max(latest, 0) + 1
        if (version <= latest) {
          throw new StoreConflictError(`version ${version} is not above the latest version ${latest}`)
        }
        const ruleSet = { ...rest, version } as RuleSet
        const body = JSON.stringify(ruleSet)
        const digest = createHash('sha256').update(body).digest('hex')
        const now = this.#now()
        await c.run(
          'INSERT INTO rule_sets (version, body, digest, author, reason, operation_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
          [version, body, digest, input.author, input.reason, input.operationId ?? null, now],
        )
        await this.#audit(c, audit(version), now)
        return {
          version,
          ruleSet,
          digest,
          author: input.author,
          reason: input.reason,
          operationId: input.operationId ?? null,
          createdAt: iso(now),
        }
      })
    } catch (err) {
      // The lock makes this unreachable in one database; the primary key is the last line of defence.
      if (this.#db.isUniqueViolation(err))
        throw new StoreConflictError('that rule-set version was published meanwhile', { cause: err })
      throw err
    }
  }

  async latestRuleSet(): Promise<RuleSetRecord | undefined> {
    const [r] = await this.#db.all('SELECT * FROM rule_sets ORDER BY version DESC LIMIT 1')
    return r === undefined ? undefined : ruleSetRecord(r)
  }

  async getRuleSet(version: number): Promise<RuleSetRecord | undefined> {
    const [r] = await this.#db.all('SELECT * FROM rule_sets WHERE version = ?', [version])
    return r === undefined ? undefined : ruleSetRecord(r)
  }

  async listRuleSets(
    query: { readonly limit?: number; readonly before?: number } = {},
  ): Promise<RuleSetSummary[]> {
    const rows = await this.#db.all(
      `SELECT version, digest, author, reason, operation_id, created_at FROM rule_sets
       WHERE version < ? ORDER BY version DESC LIMIT ?`,
      [query.before ?? Number.MAX_SAFE_INTEGER, limitOf(query.limit, 100)],
    )
    return rows.map(summary)
  }

  async recentRuleSets(count: number): Promise<RuleSetRecord[]> {
    const rows = await this.#db.all('SELECT * FROM rule_sets ORDER BY version DESC LIMIT ?', [
      limitOf(count, count),
    ])
    return rows.map(ruleSetRecord).reverse()
  }

  recordNodes(sightings: readonly NodeSighting[], audit: readonly AuditInput[] = []): Promise<void> {
    return this.#db.transaction(async (c) => {
      const now = this.#now()
      for (const s of sightings) await this.#recordNode(c, s, now)
      for (const entry of audit) await this.#audit(c, entry, now)
    })
  }

  async #recordNode(c: SqlConn, s: NodeSighting, now: number): Promise<void> {
    await c.run(
      `INSERT INTO nodes (node_id, app, unit, address, pid, applied_version, first_seen_at, last_seen_at, left_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (node_id) DO NOTHING`,
      [s.nodeId, s.app, s.unit, s.address ?? null, s.pid ?? null, s.appliedVersion, now, now],
    )
    // A (re)registration reports the version the process holds now (a restarted process may hold
    // less); an ack only ever raises it.
    const registered = s.left === false ? 1 : 0
    await c.run(
      `UPDATE nodes SET app = ?, unit = ?,
         address = CASE WHEN ? = 1 THEN ? ELSE address END,
         pid = CASE WHEN ? = 1 THEN ? ELSE pid END,
         applied_version = CASE WHEN ? = 1 OR applied_version < ? THEN ? ELSE applied_version END,
         last_seen_at = CASE WHEN last_seen_at < ? THEN ? ELSE last_seen_at END,
         left_at = CASE WHEN ? = 1 THEN ? WHEN ? = 1 THEN NULL ELSE left_at END
       WHERE node_id = ?`,
      [
        s.app,
        s.unit,
        registered,
        s.address ?? null,
        registered,
        s.pid ?? null,
        registered,
        s.appliedVersion,
        s.appliedVersion,
        now,
        now,
        s.left === true ? 1 : 0,
        now,
        registered,
        s.nodeId,
      ],
    )
  }

  async listNodes(): Promise<NodeRecord[]> {
    const rows = await this.#db.all('SELECT * FROM nodes ORDER BY unit, node_id')
    return rows.map((r) => ({
      nodeId: String(r.node_id),
      app: String(r.app),
      unit: String(r.unit),
      address: r.address == null ? null : String(r.address),
      pid: r.pid == null ? null : Number(r.pid),
      appliedVersion: Number(r.applied_version),
      firstSeenAt: iso(r.first_seen_at),
      lastSeenAt: iso(r.last_seen_at),
      leftAt: isoOrNull(r.left_at),
    }))
  }

  createOperation(input: NewOperation, audit: AuditInput): Promise<Operation> {
    return this.#db.transaction(async (c) => {
      const now = this.#now()
      const op: Operation = {
        id: input.id,
        kind: input.kind,
        state: 'planned',
        phase: null,
        plan: input.plan,
        fromVersion: input.plan.fromVersion,
        toVersion: input.plan.target.version,
        phases: [],
        error: null,
        reason: input.reason,
        createdBy: input.createdBy,
        createdAt: iso(now),
        updatedAt: iso(now),
        startedBy: null,
        startedAt: null,
        endedAt: null,
        abortRequested: null,
        revision: 1,
      }
      await c.run(
        `INSERT INTO operations (id, kind, state, revision, from_version, body, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        [op.id, op.kind, op.state, op.revision, op.fromVersion, JSON.stringify(op), now, now],
      )
      await this.#audit(c, audit, now)
      return op
    })
  }

  async getOperation(id: string): Promise<Operation | undefined> {
    const [r] = await this.#db.all('SELECT body FROM operations WHERE id = ?', [id])
    return r === undefined ? undefined : operationOf(r)
  }

  async listOperations(query: OperationQuery = {}): Promise<Operation[]> {
    const where: string[] = []
    const params: unknown[] = []
    if (query.state !== undefined) {
      where.push('state = ?')
      params.push(query.state)
    }
    if (query.kind !== undefined) {
      where.push('kind = ?')
      params.push(query.kind)
    }
    const rows = await this.#db.all(
      `SELECT body FROM operations ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at DESC, id DESC LIMIT ?`,
      [...params, limitOf(query.limit, 100)],
    )
    return rows.map(operationOf)
  }

  async updateOperation(
    id: string,
    expectedRevision: number,
    patch: OperationPatch,
    audit: AuditInput,
  ): Promise<Operation> {
    try {
      return await this.#db.transaction(async (c) => {
        const [r] = await c.all('SELECT body FROM operations WHERE id = ?', [id])
        if (r === undefined) throw new StoreNotFoundError(`no operation ${id}`)
        const op = operationOf(r)
        if (op.revision !== expectedRevision) {
          throw new StoreConflictError(
            `operation ${id} changed meanwhile (revision ${op.revision}, expected ${expectedRevision})`,
          )
        }
        const state = patch.state ?? op.state
        if (!canTransition(op.state, state))
          throw new StoreConflictError(`operation ${id} cannot go from ${op.state} to ${state}`)
        const now = this.#now()
        const next: Operation = { ...op, ...patch, state, revision: op.revision + 1, updatedAt: iso(now) }
        // The revision in WHERE makes the write itself the compare-and-set: a concurrent writer that
        // read the same revision changes no row.
        const changed = await c.run(
          'UPDATE operations SET state = ?, revision = ?, body = ?, updated_at = ? WHERE id = ? AND revision = ?',
          [next.state, next.revision, JSON.stringify(next), now, id, expectedRevision],
        )
        if (changed !== 1) throw new StoreConflictError(`operation ${id} changed meanwhile`)
        await this.#audit(c, audit, now)
        return next
      })
    } catch (err) {
      if (!this.#db.isUniqueViolation(err)) throw err
      const [running] = await this.listOperations({ state: 'running', limit: 1 })
      throw new StoreConflictError(
        `operation ${running?.id ?? '(unknown)'} is running; only one operation runs at a time`,
        { cause: err },
      )
    }
  }

  appendAudit(entry: AuditInput): Promise<AuditEntry> {
    return this.#db.transaction((c) => this.#audit(c, entry, this.#now()))
  }

  async listAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const where = ['seq > ?']
    const params: unknown[] = [query.after ?? 0]
    if (query.action !== undefined) {
      where.push('action = ?')
      params.push(query.action)
    }
    if (query.target !== undefined) {
      where.push('target = ?')
      params.push(query.target)
    }
    const rows = await this.#db.all(`SELECT * FROM audit WHERE ${where.join(' AND ')} ORDER BY seq LIMIT ?`, [
      ...params,
      limitOf(query.limit, 100),
    ])
    return rows.map(auditEntry)
  }

  close(): Promise<void> {
    return this.#db.close()
  }
}
