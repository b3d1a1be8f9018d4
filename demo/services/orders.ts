/**
 * orders: each user's order history, unit data. A `unit` service: only the unit owning the user's route
 * id serves it, and its database accepts a write only for route ids this unit owns, not fenced, under
 * a live lease (guardSqlite with scope unit). Both units open the same orders.db (same-city shared
 * database), so after a cut-over the new owner sees the orders the old owner wrote.
 *
 *   POST /orders   {pId, product, number, amount}: record an order of the request's user
 *   GET  /orders   the user's orders, newest first
 */

import { currentRouteId } from 'appactive/context'
import { guardSqlite } from 'appactive/db'
import { dbFiles, openDb } from '../lib/db.js'
import { DemoError, readJson, startService } from '../lib/service.js'
import { dataDir } from '../lib/topology.js'

const svc = await startService('orders')
const { agent } = svc
const db = guardSqlite(openDb(dbFiles(dataDir()).orders), { agent, scope: 'unit' })
svc.onClose(() => db.close())

const insert = db.prepare(
  `INSERT INTO orders (r_id, product_id, product, number, amount, unit, node, rule_version, created_at)
   VALUES (@rId, @pId, @product, @number, @amount, @unit, @node, @version, @at)`,
)
const list = db.prepare(
  `SELECT id, product_id AS pId, product, number, amount, unit, rule_version AS ruleVersion, created_at AS at
   FROM orders WHERE r_id = ? ORDER BY id DESC LIMIT 50`,
)
const count = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM orders WHERE r_id = ?')

const chain = [svc.hop]
await svc.serve(
  { '/orders': 'unit' },
  {
    'POST /orders': async ({ req }) => {
      const body = await readJson(req)
      const { pId, product, number, amount } = body
      if (
        typeof pId !== 'number' ||
        typeof product !== 'string' ||
        typeof number !== 'number' ||
        typeof amount !== 'number'
      ) {
        throw new DemoError(400, 'BAD_REQUEST', 'an order needs pId, product, number and amount')
      }
      const rId = currentRouteId()!
      // The guard checks this write against the rule set in force right now, in this same synchronous
      // step, so `version` is the version that let it through.
      const row = {
        rId,
        pId,
        product,
        number,
        amount,
        unit: svc.unit,
        node: agent.identity.nodeId,
        version: agent.version,
        at: Date.now(),
      }
      const { lastInsertRowid } = insert.run(row)
      return {
        status: 201,
        body: {
          order: {
            id: Number(lastInsertRowid),
            pId,
            product,
            number,
            amount,
            unit: svc.unit,
            ruleVersion: row.version,
            at: row.at,
          },
          chain,
        },
      }
    },
    'GET /orders': () => {
      const rId = currentRouteId()!
      return { body: { orders: list.all(rId), total: count.get(rId)!.n, chain } }
    },
  },
)
