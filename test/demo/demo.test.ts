// The demo as a user runs it (issue 8): `npm start`'s supervisor (demo/start.ts) as a real process
// tree on the demo's fixed ports, checked from outside through both gateways; then demo:cutover,
// the page in a real browser, demo:load, and Ctrl-C leaving no process behind. Everything goes through
// the package's own `appactive/*` exports, so `npm run build` must have run (`npm ci` does it).
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { request } from 'undici'
import {
  type Answer,
  busyPorts,
  CENTER,
  call,
  type Demo,
  eventually,
  type Hop,
  hops,
  root,
  run,
  startDemo,
  UNIT,
} from './helpers.js'

/** The little of playwright-core this test uses (typed here: the package is an optional dev dependency). */
interface Page {
  goto(url: string): Promise<unknown>
  click(selector: string): Promise<void>
  waitForSelector(selector: string): Promise<unknown>
  waitForFunction(expression: string, arg?: unknown, options?: { timeout?: number }): Promise<unknown>
  evaluate<T = unknown>(expression: string): Promise<T>
  textContent(selector: string): Promise<string | null>
  screenshot(options: { path: string; fullPage?: boolean }): Promise<unknown>
}
interface Chromium {
  launch(options: { executablePath: string }): Promise<{
    newPage(options?: { viewport?: { width: number; height: number } }): Promise<Page>
    close(): Promise<void>
  }>
}

describe('npm start refuses bad input before starting anything', () => {
  const dirs: string[] = []
  const env = () => {
    dirs.push(mkdtempSync(join(tmpdir(), 'appactive-demo-bad-')))
    return { APPACTIVE_DEMO_DIR: dirs.at(-1)! }
  }
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  })

  test('an unknown flag is a usage error (exit 2)', async () => {
    const r = await run(['demo/start.ts', '--nope'], env())
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /Unknown option '--nope'/)
    assert.match(r.stderr, /usage: npm start/)
  })

  test('a --db or --mq value it does not know is a usage error naming the choices (exit 2)', async () => {
    const db = await run(['demo/start.ts', '--db', 'oracle'], env())
    assert.equal(db.code, 2, db.stderr)
    assert.match(db.stderr, /--db must be sqlite or mariadb, got "oracle"/)
    assert.match(db.stderr, /usage: npm start/)
    const mq = await run(['demo/start.ts', '--mq', 'kafka'], env())
    assert.equal(mq.code, 2, mq.stderr)
    assert.match(mq.stderr, /--mq must be memory, rabbitmq or nats, got "kafka"/)
  })

  test('--help lists every flag and exits 0', async () => {
    const r = await run(['demo/start.ts', '--help'], env())
    assert.equal(r.code, 0, r.stderr)
    for (const flag of [
      '--db sqlite',
      '--db mariadb',
      '--mq memory',
      '--mq rabbitmq',
      '--mq nats',
      '--verbose',
    ])
      assert.ok(r.stdout.includes(flag), `${flag} in:\n${r.stdout}`)
  })

  test('a broker it cannot reach is named, and nothing is left running', async () => {
    const r = await run(['demo/start.ts', '--mq', 'nats'], { ...env(), DEMO_NATS_URL: '127.0.0.1:1' })
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /NATS at 127\.0\.0\.1:1 cannot be used: .*Nothing was started/)
    assert.deepEqual(await busyPorts(), [])
  })

  test('a port in use is named, and nothing is left running', async (t) => {
    const busy = await busyPorts()
    if (busy.length > 0) {
      const why = `fixed port(s) ${busy.join(', ')} already in use`
      if (process.env.CI) throw new Error(`${why}: CI needs them free`)
      return t.skip(why)
    }
    const holder: Server = createServer()
    holder.listen(8081, '127.0.0.1')
    await once(holder, 'listening')
    try {
      const r = await run(['demo/start.ts'], env())
      assert.equal(r.code, 1, r.stderr)
      assert.match(r.stderr, /port 8081 \(the unit gateway\) is already in use/)
      assert.match(r.stderr, /Nothing was started/)
    } finally {
      await new Promise((r) => holder.close(r))
    }
    assert.deepEqual(await busyPorts(), [], 'the refused start left something listening')
  })
})

describe('the demo (npm start)', () => {
  let demo: Demo
  let output = ''
  const env = (): NodeJS.ProcessEnv => demo.env()

  before(async () => {
    demo = await startDemo()
    output = demo.output()
  })

  after(() => demo?.kill())

  test('prints the URLs of both gateways and the control plane', () => {
    assert.match(output, /http:\/\/127\.0\.0\.1:8080\/\?r_id=2000/)
    assert.match(output, /http:\/\/127\.0\.0\.1:8081\/\?r_id=1000/)
    assert.match(output, /control plane\s+http:\/\/127\.0\.0\.1:7070/)
  })

  test('r_id 2000 is served by center and 1000 by unit, whichever gateway it enters', async () => {
    const detail = (base: string, id: number) => call(`${base}/api/detail?r_id=${id}&pId=12`)
    const cases: [string, number, Hop[]][] = [
      [CENTER, 2000, hops('gateway@center', 'frontend@center', 'product@center')],
      [UNIT, 2000, hops('gateway@unit', 'gateway@center', 'frontend@center', 'product@center')],
      [UNIT, 1000, hops('gateway@unit', 'frontend@unit', 'product@unit')],
      [CENTER, 1000, hops('gateway@center', 'gateway@unit', 'frontend@unit', 'product@unit')],
    ]
    for (const [base, id, chain] of cases) {
      const a = await detail(base, id)
      assert.equal(a.status, 200, JSON.stringify(a.body))
      assert.deepEqual(a.body.chain, chain, `r_id ${id} via ${base}`)
      assert.equal(a.body.ruleVersion, 1)
      assert.equal((a.body.product as { name: string }).name, 'Backpack')
    }
    // The id also works from a header or a cookie, as AppActive's idSource.
    const res = await request(`${UNIT}/api/orders`, { headers: { cookie: 'r_id=2000' } })
    const body = (await res.body.json()) as Answer['body']
    assert.deepEqual(body.chain.at(-2), { app: 'frontend', unit: 'center' })
  })

  test('buying takes the stock in the center and writes the order in the user’s unit', async () => {
    const bought = await call(`${CENTER}/api/buy?r_id=1000&pId=14&number=2`, 'POST')
    assert.equal(bought.status, 200, JSON.stringify(bought.body))
    assert.equal(bought.body.result, 'success')
    assert.deepEqual(
      bought.body.chain,
      hops(
        'gateway@center',
        'gateway@unit',
        'frontend@unit',
        'product@center',
        'storage@center',
        'orders@unit',
      ),
    )
    assert.equal((bought.body.product as { stock: number }).stock, 18)
    const order = bought.body.order as { id: number; unit: string; number: number }
    assert.deepEqual([order.unit, order.number], ['unit', 2])

    const again = await call(`${UNIT}/api/buy?r_id=2000&pId=14`) // GET works too
    assert.equal(again.status, 200, JSON.stringify(again.body))
    assert.deepEqual((again.body.order as { unit: string }).unit, 'center')
    assert.equal((again.body.product as { stock: number }).stock, 17)

    const history = await call(`${UNIT}/api/orders?r_id=1000`)
    assert.equal(history.status, 200)
    assert.deepEqual(
      (history.body.orders as { id: number; unit: string }[]).map((o) => [o.id, o.unit]),
      [[order.id, 'unit']],
    )
    assert.deepEqual(history.body.chain, hops('gateway@unit', 'frontend@unit', 'orders@unit'))

    // Each order placed publishes order.placed (here over the in-process channel, the default), and the
    // unit owning the user credits their points: one per 10 spent.
    assert.deepEqual(
      [bought.body.event, again.body.event].map((e) => {
        const { via, unit } = e as { via: string; unit: string }
        return [via, unit]
      }),
      [
        ['memory', 'unit'],
        ['memory', 'center'],
      ],
    )
    for (const [rId, points] of [
      [1000, { points: 40, credits: 1, unit: 'unit' }],
      [2000, { points: 20, credits: 1, unit: 'center' }],
    ] as const) {
      const got = await eventually(`points of ${rId}`, async () => {
        const a = await call(`${CENTER}/api/orders?r_id=${rId}`)
        return (a.body.points as { credits: number }).credits === 1 ? a.body.points : undefined
      })
      assert.deepEqual(got, points, `r_id ${rId}`)
    }
  })

  test('bad input gets a clear answer: more than the stock, no r_id, r_id not a number, no such product', async () => {
    const tooMany = await call(`${CENTER}/api/buy?r_id=1000&pId=12&number=11`, 'POST')
    assert.equal(tooMany.status, 409)
    assert.equal(tooMany.body.error?.code, 'OUT_OF_STOCK')
    assert.match(tooMany.body.error!.message, /only 10 Backpacks left in stock: cannot buy 11/)
    assert.deepEqual(tooMany.body.chain.at(-1), { app: 'storage', unit: 'center' })

    // Not a number: the rule set's fallback (local) serves it in the unit it entered.
    for (const [base, unit] of [
      [CENTER, 'center'],
      [UNIT, 'unit'],
    ] as const) {
      const a = await call(`${base}/api/detail?r_id=abc&pId=12`)
      assert.equal(a.status, 200, JSON.stringify(a.body))
      assert.deepEqual(a.body.chain, hops(`gateway@${unit}`, `frontend@${unit}`, `product@${unit}`))
      assert.equal(a.body.route?.reason, 'not_numeric')
    }

    const missing = await call(`${UNIT}/api/detail?pId=12`)
    assert.equal(missing.status, 400)
    assert.equal(missing.body.error?.code, 'APPACTIVE_NO_ROUTE_ID')
    assert.match(missing.body.error!.message, /no r_id/)
    assert.deepEqual(missing.body.chain, hops('gateway@unit', 'frontend@unit'))
    assert.equal(missing.body.route?.reason, 'missing')
    assert.equal((await call(`${UNIT}/api/buy?pId=12`, 'POST')).status, 400)

    const list = await call(`${UNIT}/api/list`) // a normal service needs no user
    assert.equal(list.status, 200)
    assert.equal((list.body.products as unknown[]).length, 4)

    const unknown = await call(`${CENTER}/api/buy?r_id=2000&pId=99`, 'POST')
    assert.equal(unknown.status, 404)
    assert.equal(unknown.body.error?.code, 'NO_SUCH_PRODUCT')
    const badNumber = await call(`${CENTER}/api/buy?r_id=2000&pId=12&number=-3`, 'POST')
    assert.equal(badNumber.status, 400)
    assert.match(badNumber.body.error!.message, /number must be a whole number/)
  })

  test('the page: buys as r_id 1000 and 2000, shows the chain and the rule version, follows rule changes live', async (t) => {
    let chromium: Chromium
    const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
    try {
      const name = 'playwright-core' // an optional dev dependency: not resolved by the typecheck
      ;({ chromium } = (await import(name)) as { chromium: Chromium })
      if (!existsSync(executablePath)) throw new Error(`${executablePath} is missing`)
    } catch (err) {
      const why = `playwright-core with Debian's chromium is needed: ${(err as Error).message}`
      if (process.env.CI) throw new Error(why)
      return t.skip(why)
    }
    const browser = await chromium.launch({ executablePath })
    t.after(() => browser.close())
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const shownChain = () =>
      page.evaluate<string[]>(
        `[...document.querySelectorAll('#chain li')].map((li) => li.dataset.app + '@' + li.dataset.unit)`,
      )
    const text = (selector: string) =>
      `(document.querySelector(${JSON.stringify(selector)})?.textContent ?? '')`
    const buy = async (pId: number) => {
      await page.evaluate(`document.querySelector('#result').textContent = ''`)
      await page.click(`.product[data-pid="${pId}"] .buy`)
      await page.waitForFunction(`/success/.test(${text('#result')})`)
    }

    await page.goto(`${CENTER}/?r_id=1000`)
    await page.waitForSelector('.product[data-pid="16"]')
    await page.waitForFunction(`${text('#version')} === 'v1'`)
    await buy(16)
    assert.deepEqual(await shownChain(), [
      'gateway@center',
      'gateway@unit',
      'frontend@unit',
      'product@center',
      'storage@center',
      'orders@unit',
    ])
    assert.equal(await page.evaluate<number>(`document.querySelectorAll('.card.lit').length`), 6)
    assert.equal(await page.evaluate<number>(`document.querySelectorAll('.card .badge').length`), 6)
    assert.match((await page.textContent('#result')) ?? '', /written in unit unit/)
    await page.waitForSelector('#orders tbody tr[data-unit="unit"]')
    // 40 points from the earlier test's order, 80 for this keyboard: credited by order.placed in unit.
    await page.waitForFunction(`document.querySelector('#points')?.dataset.points === '120'`)
    assert.match(
      (await page.textContent('#points')) ?? '',
      /points: 120 \(2 orders credited .*last in unit unit\)/,
    )

    await page.click('[data-user="2000"]')
    await page.waitForFunction(`${text('#orders-user')} === 'r_id 2000'`)
    await buy(16)
    assert.deepEqual(await shownChain(), [
      'gateway@center',
      'frontend@center',
      'product@center',
      'storage@center',
      'orders@center',
    ])
    assert.match((await page.textContent('#result')) ?? '', /written in unit center/)

    // A cut-over while the page is open: it shows the new version and, for 2000, the unit's hops.
    await page.click('.product[data-pid="12"] .detail')
    await page.waitForFunction(`/detail of Backpack/.test(${text('#result')})`)
    assert.deepEqual(await shownChain(), ['gateway@center', 'frontend@center', 'product@center'])
    const moved = await run(['demo/cutover.ts'], env())
    assert.equal(moved.code, 0, moved.stderr + moved.stdout)
    await page.waitForFunction(`${text('#version')} === 'v4'`, undefined, { timeout: 10_000 })
    await page.waitForFunction(
      `[...document.querySelectorAll('#chain li')].map((li) => li.dataset.unit).join() === 'center,unit,unit,unit'`,
      undefined,
      { timeout: 10_000 },
    )
    assert.deepEqual(await shownChain(), ['gateway@center', 'gateway@unit', 'frontend@unit', 'product@unit'])
    assert.match((await page.textContent('#mapping')) ?? '', /unit: [^·]*\b(0~2999|2000~2999)\b/)

    // Buying now: the stock still in the center, the order in unit, next to the one center wrote.
    await buy(12)
    assert.deepEqual(await shownChain(), [
      'gateway@center',
      'gateway@unit',
      'frontend@unit',
      'product@center',
      'storage@center',
      'orders@unit',
    ])
    await page.waitForSelector('#orders tbody tr[data-unit="unit"]')
    assert.equal(await page.evaluate<number>(`document.querySelectorAll('#orders tbody tr').length`), 3)

    const artifacts = process.env.TEST_ARTIFACTS_DIR ?? join(root, '.appactive', 'artifacts')
    mkdirSync(artifacts, { recursive: true })
    const shot = join(artifacts, 'demo-shop.png')
    await page.screenshot({ path: shot, fullPage: true })
    t.diagnostic(`screenshot: ${shot}`)

    // Back to the initial ownership, for the tests that follow.
    const back = await run(['demo/cutover.ts', '--to', 'center'], env())
    assert.equal(back.code, 0, back.stderr + back.stdout)
  })

  test('demo:cutover moves 2000~2999 to unit: 2000 is served there with its orders; buying still takes center stock', async () => {
    const before = await call(`${CENTER}/api/orders?r_id=2000`)
    assert.equal(before.body.chain.at(-1)?.unit, 'center')
    const ordersBefore = before.body.total as number
    assert.ok(ordersBefore >= 1, 'r_id 2000 bought earlier')

    const r = await run(['demo/cutover.ts'], env())
    assert.equal(r.code, 0, r.stderr + r.stdout)
    for (const phase of ['fence', 'drain', 'catch-up', 'switch', 'unfence']) {
      assert.match(r.stdout, new RegExp(`✓ ${phase}\\s+\\d+ ms\\s+ok`), `phase ${phase} shown:\n${r.stdout}`)
    }
    assert.match(r.stdout, /succeeded in \d+ ms: rule set v\d+ in force/)

    for (const base of [CENTER, UNIT]) {
      const after = await call(`${base}/api/orders?r_id=2000`)
      assert.equal(after.status, 200)
      assert.deepEqual(after.body.chain.slice(-2), hops('frontend@unit', 'orders@unit'), base)
      assert.equal(after.body.total, ordersBefore, 'the orders written in center are there')
      assert.ok(after.body.ruleVersion > 1)
    }
    const bought = await call(`${CENTER}/api/buy?r_id=2000&pId=18`, 'POST')
    assert.equal(bought.status, 200, JSON.stringify(bought.body))
    assert.deepEqual(
      bought.body.chain,
      hops(
        'gateway@center',
        'gateway@unit',
        'frontend@unit',
        'product@center',
        'storage@center',
        'orders@unit',
      ),
    )
    // 3000 did not move.
    const other = await call(`${UNIT}/api/detail?r_id=3000&pId=12`)
    assert.deepEqual(other.body.chain.at(-1), { app: 'product', unit: 'center' })

    const again = await run(['demo/cutover.ts'], env())
    assert.equal(again.code, 0)
    assert.match(again.stdout, /already belongs to unit unit/)
  })

  test('demo:load: reads and writes through both gateways during a cut-over, no failure, no dual write', async () => {
    const r = await run(['demo/load.ts', '--seconds', '8'], env(), 60_000)
    const last = r.stdout.trim().split('\n').at(-1)!
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const result = JSON.parse(last) as Record<string, number>
    assert.deepEqual(Object.keys(result), ['requests', 'failures', 'guardRejections', 'violations'])
    assert.ok(result.requests! > 50, last)
    assert.equal(result.failures, 0, r.stdout)
    assert.equal(result.violations, 0, r.stdout)
    assert.match(r.stdout, /cut-over\s+succeeded/)
    // It moved 2000~2999 back to center (it toggles), with users of that range written on both sides.
    assert.match(r.stdout, /moved users written by center and unit/)
    const a = await call(`${UNIT}/api/detail?r_id=2000&pId=12`)
    assert.deepEqual(a.body.chain.at(-1), { app: 'product', unit: 'center' })
  })

  test('Ctrl-C stops every process of the tree and frees the ports', async () => {
    const { code, left } = await demo.interrupt()
    output = demo.output()
    assert.equal(code, 0, output)
    assert.match(output, /every process has exited/)
    assert.deepEqual(left, [], 'processes left behind')
    assert.deepEqual(await busyPorts(), [])
    assert.equal(existsSync(join(demo.dir, 'demo.json')), false, 'the state file is removed')
  })
})
