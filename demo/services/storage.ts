/**
 * storage: the stock, center data. A `center` service: it runs, and its database accepts writes, only
 * in the center unit (the write guard with scope center refuses them anywhere else, and whenever this
 * process's lease has lapsed).
 *
 *   POST /take?pId=&number=     take stock for an order (409 OUT_OF_STOCK when there is not enough)
 *   POST /release?pId=&number=  give it back (the order could not be recorded)
 *   POST /restock?pId=&number=  add stock (demo:load does, so that it never runs dry)
 *   GET  /stock                 every product and its stock
 */
import { openStock, type ProductRow } from '../lib/db.js'
import { DemoError, intParam, startService } from '../lib/service.js'
import { dataDir } from '../lib/topology.js'

const svc = await startService('storage')
const db = await openStock(svc.agent, dataDir())
svc.onClose(() => db.close())

const noSuch = (id: number) => new DemoError(404, 'NO_SUCH_PRODUCT', `there is no product ${id}`)

async function take(id: number, number: number): Promise<ProductRow> {
  const r = await db.take(id, number)
  if (r === undefined) throw noSuch(id)
  if (r.short) {
    const p = r.product
    throw new DemoError(
      409,
      'OUT_OF_STOCK',
      `only ${p.stock} ${p.name}${p.stock === 1 ? '' : 's'} left in stock: cannot buy ${number}`,
      { product: p },
    )
  }
  return r.product
}

async function add(id: number, number: number): Promise<ProductRow> {
  const p = await db.add(id, number)
  if (p === undefined) throw noSuch(id)
  return p
}

const chain = [svc.hop]
await svc.serve(
  { '/**': 'center' },
  {
    'POST /take': async ({ url }) => ({
      body: { product: await take(intParam(url, 'pId'), intParam(url, 'number', 1, 1, 1000)), chain },
    }),
    'POST /release': async ({ url }) => ({
      body: { product: await add(intParam(url, 'pId'), intParam(url, 'number', 1, 1, 1000)), chain },
    }),
    'POST /restock': async ({ url }) => ({
      body: { product: await add(intParam(url, 'pId'), intParam(url, 'number', 1, 1, 1_000_000)), chain },
    }),
    'GET /stock': async () => ({ body: { products: await db.all(), chain } }),
  },
)
