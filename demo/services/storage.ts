/**
 * storage: the stock, center data. A `center` service: it runs, and its database accepts writes, only
 * in the center unit (guardSqlite with scope center refuses them anywhere else, and whenever this
 * process's lease has lapsed).
 *
 *   POST /take?pId=&number=     take stock for an order (409 OUT_OF_STOCK when there is not enough)
 *   POST /release?pId=&number=  give it back (the order could not be recorded)
 *   POST /restock?pId=&number=  add stock (demo:load does, so that it never runs dry)
 *   GET  /stock                 every product and its stock
 */
import { guardSqlite } from 'appactive/db'
import { dbFiles, openDb } from '../lib/db.js'
import { DemoError, intParam, startService } from '../lib/service.js'
import { dataDir } from '../lib/topology.js'

interface ProductRow {
  id: number
  name: string
  price: number
  stock: number
}

const svc = await startService('storage')
const db = guardSqlite(openDb(dbFiles(dataDir()).storage), { agent: svc.agent, scope: 'center' })
svc.onClose(() => db.close())

const find = db.prepare<[number], ProductRow>('SELECT id, name, price, stock FROM products WHERE id = ?')
const all = db.prepare<[], ProductRow>('SELECT id, name, price, stock FROM products ORDER BY id')
const take = db.prepare('UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?')
const add = db.prepare('UPDATE products SET stock = stock + ? WHERE id = ?')

function product(id: number): ProductRow {
  const p = find.get(id)
  if (p === undefined) throw new DemoError(404, 'NO_SUCH_PRODUCT', `there is no product ${id}`)
  return p
}

const takeStock = db.transaction((id: number, number: number): ProductRow => {
  const p = product(id)
  if (take.run(number, id, number).changes === 0) {
    throw new DemoError(
      409,
      'OUT_OF_STOCK',
      `only ${p.stock} ${p.name}${p.stock === 1 ? '' : 's'} left in stock: cannot buy ${number}`,
      { product: p },
    )
  }
  return { ...p, stock: p.stock - number }
})

const addStock = db.transaction((id: number, number: number): ProductRow => {
  const p = product(id)
  add.run(number, id)
  return { ...p, stock: p.stock + number }
})

const chain = [svc.hop]
await svc.serve(
  { '/**': 'center' },
  {
    'POST /take': ({ url }) => ({
      body: { product: takeStock(intParam(url, 'pId'), intParam(url, 'number', 1, 1, 1000)), chain },
    }),
    'POST /release': ({ url }) => ({
      body: { product: addStock(intParam(url, 'pId'), intParam(url, 'number', 1, 1, 1000)), chain },
    }),
    'POST /restock': ({ url }) => ({
      body: { product: addStock(intParam(url, 'pId'), intParam(url, 'number', 1, 1, 1_000_000)), chain },
    }),
    'GET /stock': () => ({ body: { products: all.all(), chain } }),
  },
)
