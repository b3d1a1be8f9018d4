/**
 * The demo's embedded databases, in the same-city shared-database mode: every process of every unit
 * opens the same SQLite files (WAL, so readers never wait for the writer). Which unit may write which
 * row is not a matter of network reach here: the appactive write guards decide it.
 *
 * storage.db  center data: the products and their stock (written by storage in the center only)
 * orders.db   unit data: each user's orders, written by the orders service of the unit owning the user
 */
import { rmSync } from 'node:fs'
import { join } from 'node:path'
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

/** Opens a database the way every demo process does: WAL, and a busy wait instead of SQLITE_BUSY. */
export function openDb(file: string, options: { readonly?: boolean } = {}): Database.Database {
  const db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: true, timeout: 5000 })
  if (!options.readonly) db.pragma('journal_mode = WAL')
  return db
}

/** Starts every run from AppActive's initial data: removes the previous run's files, creates and seeds. */
export function initDatabases(dir: string): void {
  const files = dbFiles(dir)
  for (const file of Object.values(files)) {
    for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(file + suffix, { force: true })
  }
  const storage = new Database(files.storage)
  storage.pragma('journal_mode = WAL')
  storage.exec(`CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    price INTEGER NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0)
  )`)
  const insert = storage.prepare(
    'INSERT INTO products (id, name, description, price, stock) VALUES (@id, @name, @description, @price, @stock)',
  )
  for (const p of PRODUCTS) insert.run(p)
  storage.close()

  const orders = new Database(files.orders)
  orders.pragma('journal_mode = WAL')
  // unit, node and rule_version record who accepted each write under which rule set: demo:load checks
  // them against the rule-set history (no route id may be written by two units in overlapping time).
  orders.exec(`CREATE TABLE orders (
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
  CREATE INDEX orders_by_user ON orders (r_id, id)`)
  orders.close()
}
