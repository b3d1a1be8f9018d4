// `npm start -- --db mariadb` (issue 8, item 5): a MariaDB server per unit, started by the demo in a
// temp dir on free ports, each replicating the other's writes with GTID; the services use mysql2 behind
// appactive's guard, and a cut-over's catch-up waits on the GTID probe. Checked from outside: the
// servers themselves, the shop through both gateways, demo:cutover, and Ctrl-C leaving nothing behind.
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { Operation } from 'appactive/control'
import mysql from 'mysql2/promise'
import { request } from 'undici'
import type { DemoState } from '../../demo/lib/topology.js'
import { MARIADB_BIN, needsBinaries } from '../helpers/replication.js'
import {
  busyPorts,
  CENTER,
  call,
  type Demo,
  eventually,
  hops,
  portFree,
  run,
  startDemo,
  UNIT,
} from './helpers.js'

const skip = needsBinaries('MariaDB', [MARIADB_BIN.installDb, MARIADB_BIN.server])

/** Rows of one query on a unit's server, straight from the server (no appactive in between). */
async function query(url: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const conn = await mysql.createConnection({ uri: url })
  try {
    const [rows] = await conn.query(sql, params)
    return rows as Record<string, unknown>[]
  } finally {
    await conn.end()
  }
}

const portOf = (url: string) => Number(new URL(url).port)

describe('the demo with --db mariadb', { skip }, () => {
  let demo: Demo
  let state: DemoState
  let urls: Record<'center' | 'unit', string>

  before(async () => {
    demo = await startDemo(['--db', 'mariadb'])
    state = JSON.parse(readFileSync(join(demo.dir, 'demo.json'), 'utf8')) as DemoState
    urls = state.mariadb!.urls as Record<'center' | 'unit', string>
  })
  after(() => demo?.kill())

  test('starts a MariaDB server per unit, each a GTID replica of the other', async () => {
    assert.equal(state.db, 'mariadb')
    assert.match(demo.output(), /MariaDB per unit: center 127\.0\.0\.1:\d+, unit 127\.0\.0\.1:\d+/)
    assert.notEqual(portOf(urls.center), portOf(urls.unit))
    for (const [unit, other] of [
      ['center', 'unit'],
      ['unit', 'center'],
    ] as const) {
      const [status] = await query(urls[unit], 'SHOW SLAVE STATUS')
      assert.equal(status?.Master_Port, portOf(urls[other]), `${unit} replicates ${other}`)
      assert.equal(status?.Using_Gtid, 'Slave_Pos')
      assert.deepEqual([status?.Slave_IO_Running, status?.Slave_SQL_Running], ['Yes', 'Yes'])
    }
    // The center's schema and products reached unit's server by replication.
    const products = await query(urls.unit, 'SELECT id FROM products ORDER BY id')
    assert.deepEqual(
      products.map((p) => p.id),
      [12, 14, 16, 18],
    )
  })

  test('buying writes the order on the owner unit’s own server, and it replicates to the other', async () => {
    const a = await call(`${UNIT}/api/buy?r_id=2000&pId=14&number=2`, 'POST')
    assert.equal(a.status, 200, JSON.stringify(a.body))
    assert.deepEqual(a.body.chain.slice(-3), hops('product@center', 'storage@center', 'orders@center'))
    const b = await call(`${CENTER}/api/buy?r_id=1000&pId=12`, 'POST')
    assert.equal(b.status, 200, JSON.stringify(b.body))
    assert.equal((b.body.order as { unit: string }).unit, 'unit')
    const orderA = (a.body.order as { id: number }).id
    const orderB = (b.body.order as { id: number }).id
    assert.equal(orderA % 2, 1, 'center’s server hands out odd ids (auto_increment_offset 1)')
    assert.equal(orderB % 2, 0, 'unit’s server hands out even ids')
    for (const url of [urls.center, urls.unit]) {
      await eventually(`both orders on ${url}`, async () => {
        const rows = await query(url, 'SELECT id, unit FROM orders ORDER BY id')
        return rows.length === 2 ? rows : undefined
      })
    }
    // The stock is center data: taken on the center's server, replicated to unit's.
    const stock = await eventually('the stock replicated', async () => {
      const [row] = await query(urls.unit, 'SELECT stock FROM products WHERE id = 14')
      return row?.stock === 18 ? row : undefined
    })
    assert.equal(stock.stock, 18)
    const points = await eventually('points of 2000', async () => {
      const o = await call(`${CENTER}/api/orders?r_id=2000`)
      const p = o.body.points as { credits: number; unit: string; points: number }
      return p.credits === 1 ? p : undefined
    })
    assert.deepEqual(points, { points: 40, credits: 1, unit: 'center' })
  })

  test('demo:cutover waits on the GTID probe; then unit serves 2000 with the orders center wrote', async () => {
    const r = await run(['demo/cutover.ts'], demo.env())
    assert.equal(r.code, 0, r.stderr + r.stdout)
    assert.match(r.stdout, /waiting for unit to apply center's position/)
    assert.match(r.stdout, /✓ catch-up\s+\d+ ms\s+ok/)
    const id = /cut-over (\S+) succeeded/.exec(r.stdout)?.[1]
    assert.ok(id, r.stdout)
    const res = await request(`${state.controlUrl}/v1/operations/${id}`, {
      headers: { authorization: `Bearer ${state.tokens.viewer}` },
    })
    const op = (await res.body.json()) as Operation
    const catchUp = op.phases.find((p) => p.name === 'catch-up')
    assert.ok(catchUp, JSON.stringify(op.phases))
    type Pair = { kind: string; source: string; target: string; position: { kind: string; value: string } }
    const { pairs } = catchUp.detail as { pairs: Pair[] }
    assert.deepEqual(
      pairs.map((p) => [p.source, p.target, p.kind, p.position.kind]),
      [['center', 'unit', 'mariadb', 'mariadb-gtid']],
    )
    // The position is the center's own GTID domain (server id 1), at least the three writes so far.
    assert.match(pairs[0]!.position.value, /^1-1-\d+$/)

    for (const base of [CENTER, UNIT]) {
      const after = await call(`${base}/api/orders?r_id=2000`)
      assert.equal(after.status, 200, JSON.stringify(after.body))
      assert.deepEqual(after.body.chain.slice(-2), hops('frontend@unit', 'orders@unit'), base)
      assert.equal(after.body.total, 1, 'the order center wrote is on unit’s server')
      assert.deepEqual(after.body.points, { points: 40, credits: 1, unit: 'center' })
    }
    // Buying now: the stock still in the center, the order on unit's server, the points credited there.
    const bought = await call(`${CENTER}/api/buy?r_id=2000&pId=18`, 'POST')
    assert.equal(bought.status, 200, JSON.stringify(bought.body))
    assert.deepEqual(bought.body.chain.slice(-3), hops('product@center', 'storage@center', 'orders@unit'))
    const order = bought.body.order as { id: number; unit: string }
    assert.equal(order.unit, 'unit')
    const [row] = await query(urls.unit, 'SELECT unit, rule_version FROM orders WHERE id = ?', [order.id])
    assert.equal(row?.unit, 'unit')
    const points = await eventually('points of 2000 credited in unit', async () => {
      const o = await call(`${UNIT}/api/orders?r_id=2000`)
      const p = o.body.points as { credits: number; unit: string; points: number }
      return p.credits === 2 ? p : undefined
    })
    assert.deepEqual(points, { points: 50, credits: 2, unit: 'unit' })
  })

  test('Ctrl-C stops every process, MariaDB included, and removes its temp dir', async () => {
    const { code, left } = await demo.interrupt()
    assert.equal(code, 0, demo.output())
    assert.deepEqual(left, [], 'processes left behind')
    assert.deepEqual(await busyPorts(), [])
    for (const url of [urls.center, urls.unit]) assert.equal(await portFree(portOf(url)), true, url)
    assert.equal(existsSync(state.mariadb!.dir), false, `${state.mariadb!.dir} is removed`)
  })
})
