/**
 * orders: each user's order history and points, unit data. A `unit` service: only the unit owning the
 * user's route id serves it, and its database accepts a write only for route ids this unit owns, not
 * fenced, under a live lease (the write guard, scope unit). In the default same-city mode both units
 * open the same orders.db, so after a cut-over the new owner sees the orders the old owner wrote; with
 * `--db mariadb` each unit writes its own server and replication brings them over (lib/db.ts).
 *
 * Each order placed publishes `order.placed` (lib/bus.ts, a unit topic of appactive/mq); the points
 * module below consumes the messages addressed to this unit and credits the user's points, once per
 * message (the inbox of appactive/mq), in a guarded write: points are unit data too.
 *
 *   POST /orders   {pId, product, number, amount}: record an order of the request's user
 *   GET  /orders   the user's orders, newest first, and their points
 */

import { currentRouteId } from 'appactive/context'
import { busSettings, type OrderPlaced, openBus } from '../lib/bus.js'
import { openOrders } from '../lib/db.js'
import { DemoError, readJson, startService } from '../lib/service.js'
import { dataDir } from '../lib/topology.js'

/** One point per 10 spent. */
const pointsFor = (amount: number): number => Math.floor(amount / 10)

const svc = await startService('orders')
const { agent } = svc
const db = await openOrders(agent, dataDir())

// ---- points: the consumer of order.placed in this unit -----------------------------------------

async function credit(event: OrderPlaced, msgId: string): Promise<void> {
  const rId = currentRouteId() // the message's route id: the guard checks the write against it
  if (rId !== event.rId) throw new Error(`order.placed for r_id ${event.rId} carries route id ${rId}`)
  const first = await db.credit(msgId, rId, pointsFor(event.amount), svc.unit)
  agent.logger.debug({ rId, msgId, order: event.orderId, duplicate: !first }, 'points credited')
}

const bus = await openBus(busSettings(), agent, credit, agent.logger)
svc.onClose(() => bus.close())
svc.onClose(() => db.close())

// ---- the HTTP service --------------------------------------------------------------------------

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
      const order = {
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
      const id = await db.insert(order)
      // The order is recorded: its event follows. A publish that fails (the broker is gone, or the user
      // was fenced meanwhile past the hold) loses the points of this order, not the order: it is logged.
      let event: { msgId: string; unit: string | undefined } | { error: string }
      try {
        const sent = await bus.publish({ orderId: id, rId, product, amount, unit: svc.unit })
        event = { msgId: sent.msgId, unit: sent.unit }
      } catch (err) {
        const e = err as { code?: string; message?: string }
        agent.logger.error({ rId, order: id, err: e.message }, 'order.placed not published')
        event = { error: `${e.code ?? 'PUBLISH_FAILED'}: ${e.message}` }
      }
      return {
        status: 201,
        body: {
          order: {
            id,
            pId,
            product,
            number,
            amount,
            unit: svc.unit,
            ruleVersion: order.version,
            at: order.at,
          },
          event: { topic: 'order.placed', via: bus.kind, ...event },
          chain,
        },
      }
    },
    'GET /orders': async () => {
      const rId = currentRouteId()!
      const [{ orders, total }, points] = await Promise.all([db.list(rId), db.points(rId)])
      return { body: { orders, total, points, chain } }
    },
  },
)
