/**
 * product: AppActive's three kinds of service in one app.
 *
 *   GET  /list                 a `normal` service: any unit serves it (the caller's own first)
 *   GET  /detail?pId=          a `unit` service: only the unit owning the user serves it
 *   POST /buy?pId=&number=     a `center` service: only the center serves it. It takes the stock from
 *                              storage (center), then records the order with orders in the unit owning
 *                              the user; if the order cannot be recorded, the stock is given back.
 *
 * The catalog is the center's products, read in this unit: storage.db shared read-only in the same city
 * (`--db sqlite`), or this unit's MariaDB, a replica of the center's products (`--db mariadb`).
 */
import { openCatalog, type ProductRow } from '../lib/db.js'
import { callJson, chainOf, DemoError, intParam, startService } from '../lib/service.js'
import { dataDir } from '../lib/topology.js'

const svc = await startService('product')
const catalog = await openCatalog(dataDir())
svc.onClose(() => catalog.close())
const client = svc.client({ storage: { type: 'center' }, orders: { type: 'unit' } })
const me = svc.hop

await svc.serve(
  { '/detail': 'unit', '/buy': 'center' },
  {
    'GET /list': async () => ({ body: { products: await catalog.all(), chain: [me] } }),

    'GET /detail': async ({ url }) => {
      const id = intParam(url, 'pId')
      const product = await catalog.one(id)
      if (product === undefined)
        throw new DemoError(404, 'NO_SUCH_PRODUCT', `there is no product ${id}`, { chain: [me] })
      return { body: { product, chain: [me] } }
    },

    'POST /buy': async ({ url }) => {
      const pId = intParam(url, 'pId')
      const number = intParam(url, 'number', 1, 1, 1000)
      const taken = await callJson(client, 'storage', `/take?pId=${pId}&number=${number}`, { method: 'POST' })
      const chain = [me, ...chainOf(taken.body)]
      if (taken.status !== 200) return { status: taken.status, body: { ...taken.body, chain } }
      const product = taken.body.product as ProductRow
      let recorded: Awaited<ReturnType<typeof callJson>>
      try {
        recorded = await callJson(client, 'orders', '/orders', {
          method: 'POST',
          body: { pId, product: product.name, number, amount: product.price * number },
        })
      } catch (err) {
        await release(pId, number)
        throw err
      }
      chain.push(...chainOf(recorded.body))
      if (recorded.status !== 201) {
        // The user's unit refused the order (a cut-over fences the user, say): nothing was sold.
        await release(pId, number)
        return { status: recorded.status, body: { ...recorded.body, chain } }
      }
      return {
        body: { result: 'success', product, order: recorded.body.order, event: recorded.body.event, chain },
      }
    },
  },
)

async function release(pId: number, number: number): Promise<void> {
  const res = await callJson(client, 'storage', `/release?pId=${pId}&number=${number}`, {
    method: 'POST',
  }).catch((err: Error) => ({ status: 0, body: { error: err.message } }))
  if (res.status !== 200)
    svc.agent.logger.error({ pId, number, res: res.body }, 'could not give the stock back')
}
