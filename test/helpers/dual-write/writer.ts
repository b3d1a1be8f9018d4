// A writer process of the dual-write checker: one real agent (control-plane channel) and a loop of
// guarded writes into PostgreSQL, run as its own process so the test can SIGKILL it. Each write: check
// with the agent (beginWrite), INSERT inside a transaction, hold it open a random time, re-check the
// lease before COMMIT (what the DB guard does), COMMIT, then print the acknowledged write as one JSON
// line on stdout. Settings come from the environment (DW_*).
import pg from 'pg'
import pino from 'pino'
import { createAgent } from '../../../src/agent/index.js'

const env = (name: string): string => {
  const v = process.env[name]
  if (v === undefined) throw new Error(`writer: ${name} is not set`)
  return v
}
const unit = env('DW_UNIT')
const nodeId = env('DW_NODE')
const table = env('DW_TABLE')
const ids = env('DW_IDS').split(',')
const [minMs, maxMs] = env('DW_WRITE_MS').split('-').map(Number) as [number, number]
const concurrency = Number(process.env.DW_CONCURRENCY ?? 3)

const clock = () => performance.timeOrigin + performance.now()
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const agent = createAgent({
  unit,
  app: 'shop',
  nodeId,
  controlUrl: env('DW_CONTROL_URL'),
  token: env('DW_TOKEN'),
  cache: false,
  logger: pino({ level: 'silent' }),
})
await agent.start()
const pool = new pg.Pool({ ...JSON.parse(env('DW_PG')), max: concurrency + 1 })
let stopping = false
process.once('SIGTERM', () => {
  stopping = true
})
const refused: Record<string, number> = {}

async function writeOnce(): Promise<void> {
  const id = ids[Math.floor(Math.random() * ids.length)]!
  const t0 = clock()
  let handle: ReturnType<typeof agent.beginWrite>
  try {
    handle = agent.beginWrite(id)
  } catch (err) {
    const code = (err as { code?: string }).code ?? 'ERROR'
    refused[code] = (refused[code] ?? 0) + 1
    await sleep(3)
    return
  }
  const version = agent.version
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    const r = await client.query<{ row: number }>(
      `INSERT INTO ${table} (route_id, unit, node, version, t_begin) VALUES ($1, $2, $3, $4, $5) RETURNING id AS row`,
      [id, unit, nodeId, version, t0],
    )
    await sleep(minMs + Math.random() * (maxMs - minMs))
    if (!agent.leaseValid()) {
      await client.query('ROLLBACK')
      refused.LEASE_AT_COMMIT = (refused.LEASE_AT_COMMIT ?? 0) + 1
      return
    }
    await client.query('COMMIT')
    const t1 = clock()
    process.stdout.write(
      `${JSON.stringify({ row: Number(r.rows[0]!.row), id, unit, node: nodeId, t0, t1, version })}\n`,
    )
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    process.stderr.write(`writer ${nodeId}: ${(err as Error).message}\n`)
  } finally {
    client.release()
    handle.end()
  }
}

await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (!stopping) await writeOnce()
  }),
)
process.stdout.write(`${JSON.stringify({ done: nodeId, refused })}\n`)
await pool.end()
await agent.close()
