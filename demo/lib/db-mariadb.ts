/**
 * The shop's data on MariaDB (`npm start -- --db mariadb`), through mysql2 and appactive's mysql2 write
 * guard. Each unit's processes talk to their own unit's server only (DEMO_MARIADB_URL); the servers
 * replicate to each other with GTID (lib/mariadb.ts), so a unit reads the other's data as a replica and
 * a cut-over's target has the moved users' orders once the catch-up step has seen them applied.
 */
import type { RoutingAgent } from 'appactive/agent'
import { guardMysql2 } from 'appactive/db'
import { claimMessage, inboxMysql2, inboxTableSql } from 'appactive/mq'
import mysql, { type Pool, type ResultSetHeader, type RowDataPacket } from 'mysql2/promise'
import {
  type CatalogDb,
  type OrderAudit,
  type OrdersDb,
  PRODUCTS,
  type ProductRow,
  type StockDb,
} from './db.js'

export const DATABASE = 'shop'

/** The schema and the initial data, run once on the center's server (it replicates to the others). */
export const SCHEMA: readonly string[] = [
  `CREATE DATABASE ${DATABASE}`,
  `CREATE TABLE ${DATABASE}.products (
    id INT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    description VARCHAR(200) NOT NULL,
    price INT NOT NULL,
    stock INT NOT NULL CHECK (stock >= 0)
  ) ENGINE=InnoDB`,
  // As in SQLite: who accepted each write, under which rule set (demo:load's dual-write check).
  `CREATE TABLE ${DATABASE}.orders (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    r_id VARCHAR(64) NOT NULL,
    product_id INT NOT NULL,
    product VARCHAR(100) NOT NULL,
    number INT NOT NULL,
    amount INT NOT NULL,
    unit VARCHAR(64) NOT NULL,
    node VARCHAR(128) NOT NULL,
    rule_version INT NOT NULL,
    created_at BIGINT NOT NULL,
    INDEX orders_by_user (r_id, id)
  ) ENGINE=InnoDB`,
  `CREATE TABLE ${DATABASE}.points (
    r_id VARCHAR(64) PRIMARY KEY,
    points BIGINT NOT NULL,
    credits INT NOT NULL,
    unit VARCHAR(64) NOT NULL
  ) ENGINE=InnoDB`,
  inboxTableSql('mysql', `${DATABASE}.appactive_inbox`),
  `INSERT INTO ${DATABASE}.products (id, name, description, price, stock) VALUES ${PRODUCTS.map(
    (p) => `(${p.id}, ${mysql.escape(p.name)}, ${mysql.escape(p.description)}, ${p.price}, ${p.stock})`,
  ).join(', ')}`,
]

function pool(url: string, connectionLimit = 8): Pool {
  return mysql.createPool({ uri: url, connectionLimit, connectTimeout: 5000 })
}

const rowsOf = <T>(result: [unknown, unknown]): T[] => result[0] as T[]

export function mariadbStock(url: string, agent: RoutingAgent): StockDb {
  const db = guardMysql2(pool(url), { agent, scope: 'center' })
  return {
    all: async () => rowsOf<ProductRow>(await db.query('SELECT * FROM products ORDER BY id')),
    async take(id, number) {
      const conn = await db.getConnection()
      try {
        await conn.beginTransaction()
        const [p] = rowsOf<ProductRow>(
          await conn.query('SELECT * FROM products WHERE id = ? FOR UPDATE', [id]),
        )
        let result: { product: ProductRow; short: boolean } | undefined
        if (p === undefined) result = undefined
        else if (p.stock < number) result = { product: p, short: true }
        else {
          await conn.query('UPDATE products SET stock = stock - ? WHERE id = ?', [number, id])
          result = { product: { ...p, stock: p.stock - number }, short: false }
        }
        await conn.commit()
        return result
      } catch (err) {
        await conn.rollback().catch(() => {})
        throw err
      } finally {
        conn.release()
      }
    },
    async add(id, number) {
      const [header] = (await db.query('UPDATE products SET stock = stock + ? WHERE id = ?', [
        number,
        id,
      ])) as [ResultSetHeader, unknown]
      if (header.affectedRows === 0) return undefined
      return rowsOf<ProductRow>(await db.query('SELECT * FROM products WHERE id = ?', [id]))[0]
    },
    close: () => db.end(),
  }
}

export function mariadbCatalog(url: string): CatalogDb {
  const db = pool(url, 4)
  return {
    all: async () => rowsOf<ProductRow>(await db.query('SELECT * FROM products ORDER BY id')),
    one: async (id) => rowsOf<ProductRow>(await db.query('SELECT * FROM products WHERE id = ?', [id]))[0],
    close: () => db.end(),
  }
}

export function mariadbOrders(url: string, agent: RoutingAgent): OrdersDb {
  const db = guardMysql2(pool(url), { agent, scope: 'unit' })
  return {
    // No await before execute(): the guard decides in this synchronous step (see OrdersDb.insert).
    insert: (o) =>
      db
        .execute<ResultSetHeader>(
          `INSERT INTO orders (r_id, product_id, product, number, amount, unit, node, rule_version, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [o.rId, o.pId, o.product, o.number, o.amount, o.unit, o.node, o.version, o.at],
        )
        .then(([header]) => Number(header.insertId)),
    async list(rId) {
      const orders = rowsOf<RowDataPacket>(
        await db.query(
          `SELECT id, product_id AS pId, product, number, amount, unit, rule_version AS ruleVersion, created_at AS at
           FROM orders WHERE r_id = ? ORDER BY id DESC LIMIT 50`,
          [rId],
        ),
      ).map((r) => ({ ...r, id: Number(r.id), at: Number(r.at) }))
      const [count] = rowsOf<{ n: number }>(
        await db.query('SELECT count(*) AS n FROM orders WHERE r_id = ?', [rId]),
      )
      return { orders: orders as never, total: Number(count?.n ?? 0) }
    },
    async credit(msgId, rId, points, unit) {
      const conn = await db.getConnection()
      try {
        await conn.beginTransaction()
        const first = await claimMessage(inboxMysql2(conn), msgId, { dialect: 'mysql', consumer: 'points' })
        if (first) {
          await conn.query(
            `INSERT INTO points (r_id, points, credits, unit) VALUES (?, ?, 1, ?)
             ON DUPLICATE KEY UPDATE points = points + VALUES(points), credits = credits + 1, unit = VALUES(unit)`,
            [rId, points, unit],
          )
        }
        await conn.commit()
        return first
      } catch (err) {
        await conn.rollback().catch(() => {})
        throw err
      } finally {
        conn.release()
      }
    },
    async points(rId) {
      const [row] = rowsOf<RowDataPacket>(
        await db.query('SELECT points, credits, unit FROM points WHERE r_id = ?', [rId]),
      )
      return row === undefined
        ? { points: 0, credits: 0, unit: null }
        : { points: Number(row.points), credits: Number(row.credits), unit: String(row.unit) }
    },
    close: () => db.end(),
  }
}

/**
 * The orders written after `afterId` on every unit's server, merged by id (each server's rows reach
 * the others by replication; a row not yet replicated is still read where it was written). Ids are
 * unique across servers (auto_increment_offset per server) and, for a user moved by a cut-over,
 * ordered: the target's next id comes after every source row the catch-up step saw applied.
 */
export async function mariadbOrderAudit(urls: readonly string[], afterId: number): Promise<OrderAudit[]> {
  const byId = new Map<number, OrderAudit>()
  for (const url of urls) {
    const conn = await mysql.createConnection({ uri: url, connectTimeout: 5000 })
    try {
      for (const r of rowsOf<RowDataPacket>(
        await conn.query('SELECT id, r_id, unit, node, rule_version FROM orders WHERE id > ?', [afterId]),
      )) {
        byId.set(Number(r.id), {
          id: Number(r.id),
          r_id: r.r_id,
          unit: r.unit,
          node: r.node,
          rule_version: r.rule_version,
        })
      }
    } finally {
      await conn.end()
    }
  }
  return [...byId.values()].sort((a, b) => a.id - b.id)
}
