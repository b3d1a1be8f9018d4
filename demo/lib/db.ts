/**
 * The shop's data, behind one small interface per service, in either of the demo's two database modes
 * (the supervisor picks one with `--db` and tells every process through DEMO_DB):
 *
 * sqlite   same-city shared database (the default): every process of every unit opens the same SQLite
 *          files (WAL). Which unit may write which row is not a matter of network reach: the appactive
 *          write guards decide it.
 *            storage.db  center data: the products and their stock (written by storage in the center)
 *            orders.db   unit data: each user's orders and points, written in the unit owning the user
 * mariadb  a MariaDB server per unit (DEMO_MARIADB_URL: this unit's own), replicating to each other
 *          with GTID (lib/mariadb.ts): database `shop` holds the same tables. See db-mariadb.ts.
 *
 * Every write goes through a guarded driver object (guardSqlite, guardMysql2): `scope: 'center'` for
 * the stock, `scope: 'unit'` for orders and points.
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import type { RoutingAgent } from 'appactive/agent'
import { guardSqlite } from 'appactive/db'
import { claimMessageSync, inboxSqlite, inboxTableSql } from 'appactive/mq'
import Database from 'better-sqlite3'

export const dbFiles = (dir: string) => ({
  storage: join(dir, 'storage.db'),
  orders: join(dir, 'orders.db'),
  control: join(dir, 'control.db'),
})

/** The products of AppActive's demo (its InitData), with their stock. */
export const PRODUCTS = [
  { id: 12, name: 'Backpack', description: 'a school backpack', price: 300, stock: 10 },
  { id: 14, name: 'Racket', description: 'a badminton racket', price: 200, stock: 20 },
  { id: 16, name: 'Keyboard', description: 'a mechanical keyboard', price: 800, stock: 50 },
  { id: 18, name: 'Cup', description: 'a tea cup', price: 100, stock: 60 },
] as const

/** The database modes of `npm start -- --db`. */
export const DB_KINDS = ['sqlite', 'mariadb'] as const
export type DbKind = (typeof DB_KINDS)[number]

export interface ProductRow {
  readonly id: number
  readonly name: string
  readonly description: string
  readonly price: number
  readonly stock: number
}

/** What an order records, besides the user: who accepted it, under which rule set. */
export interface NewOrder {
  readonly rId: string
  readonly pId: number
  readonly product: string
  readonly number: number
  readonly amount: number
  readonly unit: string
  readonly node: string
  /** The rule-set version that let the write through (read in the same synchronous step as the write). */
  readonly version: number
  readonly at: number
}

export interface OrderView {
  readonly id: number
  readonly pId: number
  readonly product: string
  readonly number: number
  readonly amount: number
  readonly unit: string
  readonly ruleVersion: number
  readonly at: number
}

/** A user's points: the balance, the orders credited and the unit that credited last. */
export interface Points {
  readonly points: number
  readonly credits: number
  readonly unit: string | null
}

/** One row of the orders table as demo:load's dual-write check reads it. */
export interface OrderAudit {
  readonly id: number
  readonly r_id: string
  readonly unit: string
  readonly node: string
  readonly rule_version: number
}

/** storage's database: the stock, center data. */
export interface StockDb {
  all(): Promise<ProductRow[]>
  /** Takes `number` of product `id`: the product after it, `short` (not enough), or `undefined` (no such product). */
  take(id: number, number: number): Promise<{ product: ProductRow; short: boolean } | undefined>
  add(id: number, number: number): Promise<ProductRow | undefined>
  close(): Promise<void>
}

/** product's read-only view of the catalog (the center's products, read in this unit). */
export interface CatalogDb {
  all(): Promise<ProductRow[]>
  one(id: number): Promise<ProductRow | undefined>
  close(): Promise<void>
}

/** orders' database: each user's orders and points, unit data. */
export interface OrdersDb {
  /**
   * Records an order; resolves to its id. The write is sent (and guarded) in the same synchronous step
   * as the call, so `order.version` read just before is the version the guard checked it against.
   */
  insert(order: NewOrder): Promise<number>
  list(rId: string): Promise<{ orders: OrderView[]; total: number }>
  /**
   * Credits `points` for one `order.placed` message, effectively once: the message id is claimed in the
   * inbox in the same transaction (appactive/mq claimMessage). False: a duplicate, nothing credited.
   */
  credit(msgId: string, rId: string, points: number, unit: string): Promise<boolean>
  points(rId: string): Promise<Points>
  close(): Promise<void>
}

/** The mode and connection of this process, from the supervisor's environment. */
export function dbKind(env: NodeJS.ProcessEnv = process.env): DbKind {
  const kind = env.DEMO_DB ?? 'sqlite'
  if (!(DB_KINDS as readonly string[]).includes(kind)) throw new Error(`DEMO_DB must be sqlite or mariadb`)
  return kind as DbKind
}

function mariadbUrl(env: NodeJS.ProcessEnv): string {
  const url = env.DEMO_MARIADB_URL
  if (!url) throw new Error('DEMO_MARIADB_URL is not set (the supervisor passes each unit its server)')
  return url
}

export async function openStock(agent: RoutingAgent, dir: string): Promise<StockDb> {
  if (dbKind() === 'mariadb')
    return (await import('./db-mariadb.js')).mariadbStock(mariadbUrl(process.env), agent)
  return sqliteStock(agent, dir)
}

export async function openCatalog(dir: string): Promise<CatalogDb> {
  if (dbKind() === 'mariadb') return (await import('./db-mariadb.js')).mariadbCatalog(mariadbUrl(process.env))
  return sqliteCatalog(dir)
}

export async function openOrders(agent: RoutingAgent, dir: string): Promise<OrdersDb> {
  if (dbKind() === 'mariadb')
    return (await import('./db-mariadb.js')).mariadbOrders(mariadbUrl(process.env), agent)
  return sqliteOrders(agent, dir)
}

// ---- SQLite ------------------------------------------------------------------------------------------

/** Opens a database the way every demo process does: WAL, and a busy wait instead of SQLITE_BUSY. */
export function openDb(file: string, options: { readonly?: boolean } = {}): Database.Database {
  const db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: true, timeout: 5000 })
  if (!options.readonly) db.pragma('journal_mode = WAL')
  return db
}

const PRODUCTS_SQL = `CREATE TABLE products (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  price INTEGER NOT NULL,
  stock INTEGER NOT NULL CHECK (stock >= 0)
)`
// unit, node and rule_version record who accepted each write under which rule set: demo:load checks
// them against the rule-set history (no route id may be written by two units in overlapping time).
const ORDERS_SQL = `CREATE TABLE orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  r_id TEXT NOT NULL,
  product_id INTEGER NOT NULL,
  product TEXT NOT NULL,
  number INTEGER NOT NULL,
  amount INTEGER NOT NULL,
  unit TEXT NOT NULL,
  node TEXT NOT NULL,
  rule_version INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX orders_by_user ON orders (r_id, id);
CREATE TABLE points (
  r_id TEXT PRIMARY KEY,
  points INTEGER NOT NULL,
  credits INTEGER NOT NULL,
  unit TEXT NOT NULL
)`

/** Removes the previous run's SQLite files (the control plane's store included). */
export function removeDatabases(dir: string): void {
  for (const file of Object.values(dbFiles(dir))) {
    for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(file + suffix, { force: true })
  }
}

/** Starts every run from AppActive's initial data: removes the previous run's files, creates and seeds. */
export function initDatabases(dir: string): void {
  removeDatabases(dir)
  const files = dbFiles(dir)
  const storage = new Database(files.storage)
  storage.pragma('journal_mode = WAL')
  storage.exec(PRODUCTS_SQL)
  const insert = storage.prepare(
    'INSERT INTO products (id, name, description, price, stock) VALUES (@id, @name, @description, @price, @stock)',
  )
  for (const p of PRODUCTS) insert.run(p)
  storage.close()

  const orders = new Database(files.orders)
  orders.pragma('journal_mode = WAL')
  orders.exec(ORDERS_SQL)
  orders.exec(inboxTableSql('sqlite'))
  orders.close()
}

function sqliteStock(agent: RoutingAgent, dir: string): StockDb {
  const db = guardSqlite(openDb(dbFiles(dir).storage), { agent, scope: 'center' })
  const find = db.prepare<[number], ProductRow>('SELECT * FROM products WHERE id = ?')
  const all = db.prepare<[], ProductRow>('SELECT * FROM products ORDER BY id')
  const take = db.prepare('UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?')
  const add = db.prepare('UPDATE products SET stock = stock + ? WHERE id = ?')
  const takeStock = db.transaction((id: number, number: number) => {
    const p = find.get(id)
    if (p === undefined) return undefined
    if (take.run(number, id, number).changes === 0) return { product: p, short: true }
    return { product: { ...p, stock: p.stock - number }, short: false }
  })
  const addStock = db.transaction((id: number, number: number) => {
    const p = find.get(id)
    if (p === undefined) return undefined
    add.run(number, id)
    return { ...p, stock: p.stock + number }
  })
  return {
    all: async () => all.all(),
    take: async (id, number) => takeStock(id, number),
    add: async (id, number) => addStock(id, number),
    close: async () => {
      db.close()
    },
  }
}

function sqliteCatalog(dir: string): CatalogDb {
  const db = openDb(dbFiles(dir).storage, { readonly: true })
  const all = db.prepare<[], ProductRow>('SELECT * FROM products ORDER BY id')
  const one = db.prepare<[number], ProductRow>('SELECT * FROM products WHERE id = ?')
  return {
    all: async () => all.all(),
    one: async (id) => one.get(id),
    close: async () => {
      db.close()
    },
  }
}

function sqliteOrders(agent: RoutingAgent, dir: string): OrdersDb {
  const db = guardSqlite(openDb(dbFiles(dir).orders), { agent, scope: 'unit' })
  const insert = db.prepare(
    `INSERT INTO orders (r_id, product_id, product, number, amount, unit, node, rule_version, created_at)
     VALUES (@rId, @pId, @product, @number, @amount, @unit, @node, @version, @at)`,
  )
  const list = db.prepare<[string], OrderView>(
    `SELECT id, product_id AS pId, product, number, amount, unit, rule_version AS ruleVersion, created_at AS at
     FROM orders WHERE r_id = ? ORDER BY id DESC LIMIT 50`,
  )
  const count = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM orders WHERE r_id = ?')
  const addPoints = db.prepare(
    `INSERT INTO points (r_id, points, credits, unit) VALUES (?, ?, 1, ?)
     ON CONFLICT (r_id) DO UPDATE SET points = points + excluded.points, credits = credits + 1, unit = excluded.unit`,
  )
  const getPoints = db.prepare<[string], Points>('SELECT points, credits, unit FROM points WHERE r_id = ?')
  const inbox = inboxSqlite(db)
  const credit = db.transaction((msgId: string, rId: string, points: number, unit: string) => {
    if (!claimMessageSync(inbox, msgId, { dialect: 'sqlite', consumer: 'points' })) return false
    addPoints.run(rId, points, unit)
    return true
  })
  return {
    insert: async (order) => Number(insert.run(order).lastInsertRowid),
    list: async (rId) => ({ orders: list.all(rId), total: count.get(rId)!.n }),
    credit: async (msgId, rId, points, unit) => credit(msgId, rId, points, unit),
    points: async (rId) => getPoints.get(rId) ?? { points: 0, credits: 0, unit: null },
    close: async () => {
      db.close()
    },
  }
}

/** The orders written after `afterId`, in id order (demo:load's dual-write check), from the SQLite file. */
export function sqliteOrderAudit(file: string, afterId: number): OrderAudit[] {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return db
      .prepare('SELECT id, r_id, unit, node, rule_version FROM orders WHERE id > ? ORDER BY id')
      .all(afterId) as OrderAudit[]
  } finally {
    db.close()
  }
}
