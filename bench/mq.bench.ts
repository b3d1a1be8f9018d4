/**
 * `npm run bench:mq`: what the message-layer bridges cost a producer and a consumer (issue 9 item 9), on
 * the machine's real RabbitMQ (127.0.0.1:5672, guest) and NATS JetStream (127.0.0.1:4222).
 *
 * Per broker, three rows move the same N messages of SIZE bytes end to end, in this process:
 *   raw      the client alone: amqplib `publish` on a ConfirmChannel to a topic exchange with the plain
 *            routing key `unit.created`, a queue bound `unit.#` consumed with `noAck: false` and one
 *            `ack` per message; NATS `js.publish('<prefix>.raw.unit.created')` resolved on the PubAck,
 *            a durable pull consumer (explicit ack, one filter subject) read with `consume()` and one
 *            `ack()` per message
 *   headers  the raw client sending the headers the bridge writes (route id, unit, origin unit, rule
 *            version, hops, a new message id; on NATS also as `Nats-Msg-Id`), the consumer reading the
 *            route id header: what the wire format costs, client encode and decode and broker included,
 *            without the bridge's code
 *   bridged  the same through appactive/mq: `createAmqpProducer` / `createNatsProducer` on a `unit` topic
 *            (route id per message, owned by this unit: the common path, so the key `created` goes to
 *            `unit.created`) and `createAmqpConsumer` / `createNatsConsumer` whose handler only counts;
 *            the bridge decides, restores the route context, runs the handler in it and acks
 * Exchange, queue and subject names have one length in every row (`<run>.raw`, `.hdr`, `.app`).
 * Same confirm / ack mode in every row: publishes go out in windows of WINDOW and the next window starts
 * when every confirm (PubAck) of the last one arrived; the consumer has PREFETCH unacked messages at
 * most (amqplib `prefetch`, NATS `max_messages`) and acks each message. Each row runs on fresh consumer
 * channels (one connection publishes, another consumes; a NATS connection each too). A row's figure is
 * N / (time from the first publish to the N-th message handled): msgs/s end to end. The process CPU time
 * (user + system) per message is read too: steadier than msgs/s on a shared machine. The brokers run on
 * the same machine: their CPU is not in that figure, but they compete with this process for the cores.
 *
 * ROUNDS rounds after one warm-up round (discarded); within a round the rows run back to back, in
 * order in even rounds and reversed in odd ones, so a drift of the shared machine's load does not always
 * hit the same row. A round's ratio is row / raw; the metrics are the medians over rounds
 * (`<broker>_rps_ratio` = bridged / raw, the issue's target >= 0.9; `<broker>_headers_rps_ratio` =
 * headers / raw, the share of that the wire format takes).
 * Before timing, the bench checks it measures what it says: the bridged publish goes to `unit.created`,
 * every bridged message reaches the handler as `processed` inside its route context (a foreign or
 * missing route id would be forwarded or dead-lettered, and is counted), and every message of the
 * headers row carries the route id header.
 *
 * The code under test is what tsc emits (bench/lib/build.ts compileSrc; dist/ is not touched), not tsx's
 * transform. The bench creates exchanges, queues and a memory stream named `appactive-bench-<run>` and
 * deletes them at the end (also on failure or SIGINT / SIGTERM).
 *
 * Environment:
 *   APPACTIVE_BENCH_N (5000 messages per row), APPACTIVE_BENCH_ROUNDS (5), APPACTIVE_BENCH_SIZE (256
 *   bytes), APPACTIVE_BENCH_WINDOW (100 publishes in flight), APPACTIVE_BENCH_PREFETCH (64)
 *   APPACTIVE_BENCH_MQ_BROKERS   amqp,nats (default) | amqp | nats
 *   APPACTIVE_BENCH_MQ_ROWS      raw,headers,bridged (default), or a subset: `bridged` alone for a
 *                                profile (ratios need `raw`)
 *   APPACTIVE_BENCH_MQ_RUNNER    built (default) | tsx (src/ through tsx)
 *   APPACTIVE_BENCH_MQ_DIST=DIR  measure a build made elsewhere instead (a `dist/` with node_modules
 *                                resolvable from it), e.g. of another commit, for a before/after pair
 * Profile: `node --cpu-prof --cpu-prof-dir=DIR --import tsx bench/mq.bench.ts` with
 * APPACTIVE_BENCH_MQ_ROWS=bridged, then `node --import tsx bench/lib/cpuprofile-top.ts DIR/<file>`
 * (the main thread's file; the tsc compile shows as spawnSync).
 */
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { AckPolicy, type JsMsg, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import { nanos, connect as natsConnect, headers as natsHeaders } from '@nats-io/transport-node'
import amqp from 'amqplib'
import pino from 'pino'
import type { RuleSet } from '../src/rules/index.js'
import { compileSrc } from './lib/build.js'
import { machineInfo } from './lib/machine.js'
import { envInt, median } from './lib/numbers.js'
import { printReport, printTable, type Row, round } from './lib/report.js'

const machine = machineInfo()
const log = (line: string): void => void process.stderr.write(`bench:mq: ${line}\n`)

const N = envInt('APPACTIVE_BENCH_N', 5000)
const ROUNDS = envInt('APPACTIVE_BENCH_ROUNDS', 5)
const SIZE = envInt('APPACTIVE_BENCH_SIZE', 256)
const WINDOW = envInt('APPACTIVE_BENCH_WINDOW', 100)
const PREFETCH = envInt('APPACTIVE_BENCH_PREFETCH', 64)
const ROW_TIMEOUT_MS = 120_000

function list<T extends string>(name: string, fallback: string, allowed: readonly T[]): readonly T[] {
  const items = (process.env[name] ?? fallback).split(',').map((s) => s.trim())
  for (const item of items) {
    if (!allowed.includes(item as T)) throw new Error(`${name}: ${item} is not one of ${allowed.join(', ')}`)
  }
  return items as T[]
}
const BROKERS = list('APPACTIVE_BENCH_MQ_BROKERS', 'amqp,nats', ['amqp', 'nats'] as const)
const SIDES = list('APPACTIVE_BENCH_MQ_ROWS', 'raw,headers,bridged', ['raw', 'headers', 'bridged'] as const)
type SideName = (typeof SIDES)[number]

const RUNNER = process.env.APPACTIVE_BENCH_MQ_RUNNER ?? 'built'
if (RUNNER !== 'built' && RUNNER !== 'tsx') throw new Error('APPACTIVE_BENCH_MQ_RUNNER must be built or tsx')
const DIST = process.env.APPACTIVE_BENCH_MQ_DIST
const tmp = mkdtempSync(join(tmpdir(), 'appactive-bench-mq-'))
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }))
const base =
  DIST !== undefined
    ? pathToFileURL(`${resolve(DIST)}/`)
    : RUNNER === 'tsx'
      ? new URL('../src/', import.meta.url)
      : pathToFileURL(`${compileSrc(join(tmp, 'build'), log, 'bridges/mq/index.js')}/`)
if (DIST !== undefined) log(`measuring the build in ${resolve(DIST)} (APPACTIVE_BENCH_MQ_DIST)`)
const { createAgent } = (await import(
  new URL('agent/index.js', base).href
)) as typeof import('../src/agent/index.js')
const mq = (await import(
  new URL('bridges/mq/index.js', base).href
)) as typeof import('../src/bridges/mq/index.js')
const { currentRouteId, ROUTE_ID_HEADER } = (await import(
  new URL('context/index.js', base).href
)) as typeof import('../src/context/index.js')

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`bench:mq sanity check failed: ${what}`)
}

// ------------------------------------------------------------------------------------------ the setup

const UNIT = 'unit'
const RULES: RuleSet = {
  version: 1,
  units: [{ name: 'center', center: true }, { name: UNIT }],
  idSource: [{ from: 'query', name: 'r_id' }],
  transform: [{ type: 'mod', divisor: 10000 }],
  mapping: [
    { unit: UNIT, ranges: ['0~1999'] },
    { unit: 'center', ranges: ['2000~9999'] },
  ],
  fallback: 'local',
}
const agent = createAgent({
  unit: UNIT,
  app: 'bench',
  nodeId: 'bench-mq',
  channels: [],
  cache: false,
  logger: pino({ level: 'silent' }),
})
check(agent.apply(RULES).status === 'applied', 'the rule set applies')

/** Route ids owned by this unit, one per message (so the per-key order keeps messages concurrent). */
const ROUTE_IDS = Array.from({ length: 2000 }, (_, i) => String(i))
const BODY = Buffer.alloc(SIZE, 'x')
const RUN = `appactive-bench-${randomUUID().slice(0, 8)}`

/** Cleanups, run once in reverse order at the end, on failure or on SIGINT / SIGTERM. */
const cleanups: Array<() => Promise<unknown>> = []
let cleaning: Promise<void> | undefined
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c()
      } catch (err) {
        log(`cleanup: ${err instanceof Error ? err.message : String(err)}`)
      }
    }
  })()
  return cleaning
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: deleting the bench's queues and streams`)
    void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
  })
}

/** One side of a broker: publishes message `i` (resolved on the confirm) and consumes with a counter. */
interface Side {
  publish(i: number): Promise<unknown>
  /** Starts a consumer calling `onMessage` once per message handled (before its ack); resolves to a stop. */
  consume(onMessage: () => void): Promise<() => Promise<void>>
  /** After a row: throws when the bridge did something other than process every message. */
  verify?(): void
}

interface Broker {
  readonly name: string
  readonly sides: Readonly<Record<SideName, Side>>
}

/**
 * The appactive headers of message `i` as the bridge writes them (route id, owner and origin unit, rule
 * version, hops 0) and a new message id: what the `headers` row sends with the raw client.
 */
const HEADERS = ROUTE_IDS.map((routeId) =>
  mq.messageHeaders({ routeId, unit: UNIT, originUnit: UNIT, ruleVersion: 1, hops: 0, msgId: 'x' }),
)
function headersOf(i: number): { headers: Record<string, string>; msgId: string } {
  const msgId = mq.newMessageId()
  return { headers: { ...HEADERS[i % HEADERS.length]!, [mq.MSG_ID_HEADER]: msgId }, msgId }
}

/** Bridged handler check: every message runs inside its own, owned route context. */
let outOfContext = 0
/** Headers-row check: every message carries the route id header. */
let missingHeader = 0
function inContext(): void {
  const id = currentRouteId()
  if (id === undefined || !(Number(id) < 2000)) outOfContext++
}

// -------------------------------------------------------------------------------------------- RabbitMQ

async function rabbitmq(): Promise<Broker> {
  const url = 'amqp://guest:guest@127.0.0.1:5672'
  let pubConn: amqp.ChannelModel
  try {
    pubConn = await amqp.connect(url)
  } catch (err) {
    throw new Error(`bench:mq needs RabbitMQ on 127.0.0.1:5672 (guest/guest): ${(err as Error).message}`)
  }
  const subConn = await amqp.connect(url)
  cleanups.push(
    () => pubConn.close(),
    () => subConn.close(),
  )
  const admin = await pubConn.createConfirmChannel()
  // Names of one length, so routing keys and subjects weigh the same in every row.
  const names = { raw: `${RUN}.raw`, headers: `${RUN}.hdr`, bridged: `${RUN}.app` }
  for (const exchange of Object.values(names)) {
    await admin.assertExchange(exchange, 'topic', { durable: false })
    await admin.assertQueue(exchange, { durable: false })
    await admin.bindQueue(exchange, exchange, `${UNIT}.#`)
    cleanups.push(async () => {
      await admin.deleteQueue(exchange)
      await admin.deleteQueue(`${exchange}.appactive-delay`)
      await admin.deleteExchange(exchange)
    })
  }
  const pub = await pubConn.createConfirmChannel()
  const topics = { [names.bridged]: 'unit' } as const
  const producer = mq.createAmqpProducer({ agent, channel: pub, topics })

  const confirmed = (exchange: string, key: string, options: amqp.Options.Publish) =>
    new Promise<void>((resolve, reject) => {
      pub.publish(exchange, key, BODY, options, (err) => (err ? reject(err) : resolve()))
    })
  /** A plain consumer of `queue` on a fresh channel; `read` looks at each delivery before the ack. */
  const plainConsumer =
    (queue: string, read: (msg: amqp.ConsumeMessage) => void) =>
    async (onMessage: () => void): Promise<() => Promise<void>> => {
      const ch = await subConn.createConfirmChannel()
      await ch.prefetch(PREFETCH)
      const { consumerTag } = await ch.consume(
        queue,
        (msg) => {
          if (msg === null) return
          read(msg)
          onMessage()
          ch.ack(msg)
        },
        { noAck: false },
      )
      return async () => {
        await ch.cancel(consumerTag)
        await ch.close()
      }
    }

  let consumer: InstanceType<typeof mq.AmqpConsumer> | undefined
  let processed = 0
  return {
    name: 'RabbitMQ (amqplib)',
    sides: {
      raw: {
        publish: () => confirmed(names.raw, `${UNIT}.created`, {}),
        consume: plainConsumer(names.raw, () => undefined),
      },
      headers: {
        publish: (i) => confirmed(names.headers, `${UNIT}.created`, { headers: headersOf(i).headers }),
        consume: plainConsumer(names.headers, (msg) => {
          if (msg.properties.headers?.[ROUTE_ID_HEADER] === undefined) missingHeader++
        }),
      },
      bridged: {
        publish: (i) =>
          producer.publish(names.bridged, 'created', BODY, { routeId: ROUTE_IDS[i % ROUTE_IDS.length]! }),
        async consume(onMessage) {
          const ch = await subConn.createConfirmChannel()
          const c = await mq.createAmqpConsumer({
            agent,
            channel: ch,
            queue: names.bridged,
            exchange: names.bridged,
            topics,
            prefetch: PREFETCH,
            handler: () => {
              inContext()
              onMessage()
            },
          })
          consumer = c
          processed = c.metrics.snapshot()['consume/processed'] ?? 0
          return async () => {
            await c.close()
            await ch.close()
          }
        },
        verify() {
          const counts = consumer!.metrics.snapshot()
          check(
            (counts['consume/processed'] ?? 0) - processed === N,
            `every bridged AMQP message is processed (${JSON.stringify(counts)})`,
          )
        },
      },
    },
  }
}

// ------------------------------------------------------------------------------------------------- NATS

async function nats(): Promise<Broker> {
  const servers = '127.0.0.1:4222'
  let pubNc: Awaited<ReturnType<typeof natsConnect>>
  try {
    pubNc = await natsConnect({ servers })
  } catch (err) {
    throw new Error(`bench:mq needs NATS with JetStream on ${servers}: ${(err as Error).message}`)
  }
  const subNc = await natsConnect({ servers })
  cleanups.push(
    () => pubNc.close(),
    () => subNc.close(),
  )
  const jsm = await jetstreamManager(pubNc)
  const stream = RUN
  await jsm.streams.add({ name: stream, subjects: [`${RUN}.>`], storage: StorageType.Memory })
  cleanups.push(() => jsm.streams.delete(stream))
  const names = { raw: `${RUN}.raw`, headers: `${RUN}.hdr`, bridged: `${RUN}.app` }
  for (const [side, topic] of Object.entries(names)) {
    await jsm.consumers.add(stream, {
      durable_name: side,
      ack_policy: AckPolicy.Explicit,
      filter_subject: `${topic}.${UNIT}.>`,
      max_deliver: -1,
      ack_wait: nanos(30_000),
    })
  }
  const pubJs = jetstream(pubNc)
  const subJs = jetstream(subNc)
  const topics = { [names.bridged]: 'unit' } as const
  const producer = mq.createNatsProducer({ agent, js: pubJs, topics })
  /** A plain consumer of durable `name`; `read` looks at each message before the ack. */
  const plainConsumer =
    (name: string, read: (msg: JsMsg) => void) =>
    async (onMessage: () => void): Promise<() => Promise<void>> => {
      const c = await subJs.consumers.get(stream, name)
      const messages = await c.consume({ max_messages: PREFETCH })
      const loop = (async () => {
        for await (const m of messages) {
          read(m)
          onMessage()
          m.ack()
        }
      })()
      return async () => {
        await messages.close()
        await loop
      }
    }

  let consumer: InstanceType<typeof mq.NatsConsumer> | undefined
  let processed = 0
  return {
    name: 'NATS JetStream',
    sides: {
      raw: {
        publish: () => pubJs.publish(`${names.raw}.${UNIT}.created`, BODY),
        consume: plainConsumer('raw', () => undefined),
      },
      headers: {
        publish: (i) => {
          const { headers: record, msgId } = headersOf(i)
          const h = natsHeaders()
          for (const name in record) h.set(name, record[name]!)
          return pubJs.publish(`${names.headers}.${UNIT}.created`, BODY, { headers: h, msgID: msgId })
        },
        consume: plainConsumer('headers', (m) => {
          if (!m.headers?.get(ROUTE_ID_HEADER)) missingHeader++
        }),
      },
      bridged: {
        publish: (i) =>
          producer.publish(`${names.bridged}.created`, BODY, { routeId: ROUTE_IDS[i % ROUTE_IDS.length]! }),
        async consume(onMessage) {
          const c = await mq.createNatsConsumer({
            agent,
            js: subJs,
            stream,
            consumer: 'bridged',
            topics,
            prefetch: PREFETCH,
            handler: () => {
              inContext()
              onMessage()
            },
          })
          consumer = c
          processed = c.metrics.snapshot()['consume/processed'] ?? 0
          return () => c.close()
        },
        verify() {
          const counts = consumer!.metrics.snapshot()
          check(
            (counts['consume/processed'] ?? 0) - processed === N,
            `every bridged NATS message is processed (${JSON.stringify(counts)})`,
          )
        },
      },
    },
  }
}

// --------------------------------------------------------------------------------------------- a row

interface RowResult {
  /** Messages per second, first publish to N-th message handled. */
  readonly rps: number
  /** Messages per second until the last confirm of the publisher. */
  readonly publishRps: number
  /** Process CPU time (user + system) per message, ns. */
  readonly cpuNs: number
}

async function runRow(side: Side): Promise<RowResult> {
  let got = 0
  let finish!: () => void
  const done = new Promise<void>((resolve) => {
    finish = resolve
  })
  const stop = await side.consume(() => {
    if (++got === N) finish()
  })
  let timer: NodeJS.Timeout | undefined
  try {
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    const pending: Promise<unknown>[] = []
    for (let i = 0; i < N; i++) {
      pending.push(side.publish(i))
      if (pending.length === WINDOW) await Promise.all(pending.splice(0))
    }
    await Promise.all(pending)
    const published = performance.now()
    await Promise.race([
      done,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`only ${got} of ${N} messages arrived in ${ROW_TIMEOUT_MS} ms`)),
          ROW_TIMEOUT_MS,
        )
      }),
    ])
    const t1 = performance.now()
    const cpu = process.cpuUsage(cpu0)
    return {
      rps: N / ((t1 - t0) / 1000),
      publishRps: N / ((published - t0) / 1000),
      cpuNs: ((cpu.user + cpu.system) * 1000) / N,
    }
  } finally {
    clearTimeout(timer)
    await stop()
    check(got === N, `exactly ${N} messages handled (got ${got})`)
    side.verify?.()
  }
}

// ------------------------------------------------------------------------------------------- the runs

interface Summary {
  readonly broker: string
  readonly rows: Partial<Record<SideName, RowResult>>
  /** Per side other than raw: the medians over rounds of side / raw (msgs/s and CPU per message). */
  readonly ratios: Partial<Record<SideName, { rps: number; rpsMin: number; rpsMax: number; cpu: number }>>
}

const medianOf = (rows: readonly RowResult[]): RowResult => ({
  rps: median(rows.map((r) => r.rps)),
  publishRps: median(rows.map((r) => r.publishRps)),
  cpuNs: median(rows.map((r) => r.cpuNs)),
})

async function measure(broker: Broker): Promise<Summary> {
  // The bridged producer must address the owner's routing key / subject and set the headers.
  if (SIDES.includes('bridged')) {
    const sample = (await broker.sides.bridged.publish(0)) as { routingKey?: string; subject?: string }
    const target = sample.routingKey ?? sample.subject ?? ''
    check(
      target.endsWith(`${UNIT}.created`),
      `${broker.name}: the bridged publish goes to ${UNIT}.created (got ${target})`,
    )
    // Take the sample off the queue with a consumer that handles exactly one message.
    let one!: () => void
    const got = new Promise<void>((resolve) => {
      one = resolve
    })
    const stop = await broker.sides.bridged.consume(() => one())
    await got
    await stop()
  }
  const rows: Partial<Record<SideName, RowResult[]>> = {}
  const ratios: Partial<Record<SideName, { rps: number[]; cpu: number[] }>> = {}
  for (let r = -1; r < ROUNDS; r++) {
    const order = r < 0 || r % 2 === 0 ? SIDES : [...SIDES].reverse()
    const got: Partial<Record<SideName, RowResult>> = {}
    for (const side of order) got[side] = await runRow(broker.sides[side])
    const line = order.map(
      (side) =>
        `${side} ${Math.round(got[side]!.rps)} msg/s, ${Math.round(got[side]!.cpuNs / 1000)} us CPU/msg`,
    )
    log(`${broker.name} ${r < 0 ? 'warm-up' : `round ${r + 1}/${ROUNDS}`}: ${line.join('; ')}`)
    if (r < 0) continue
    for (const side of order) {
      rows[side] = [...(rows[side] ?? []), got[side]!]
      if (side === 'raw' || got.raw === undefined) continue
      const ratio = ratios[side] ?? { rps: [], cpu: [] }
      ratio.rps.push(got[side]!.rps / got.raw.rps)
      ratio.cpu.push(got[side]!.cpuNs / got.raw.cpuNs)
      ratios[side] = ratio
    }
  }
  check(outOfContext === 0, `${outOfContext} bridged messages were handled outside their route context`)
  check(
    missingHeader === 0,
    `${missingHeader} messages of the headers row arrived without the route id header`,
  )
  const summary: Summary = { broker: broker.name, rows: {}, ratios: {} }
  for (const side of SIDES) {
    summary.rows[side] = medianOf(rows[side]!)
    const ratio = ratios[side]
    if (ratio !== undefined) {
      summary.ratios[side] = {
        rps: median(ratio.rps),
        rpsMin: Math.min(...ratio.rps),
        rpsMax: Math.max(...ratio.rps),
        cpu: median(ratio.cpu),
      }
    }
  }
  return summary
}

async function main(): Promise<void> {
  const results: Partial<Record<(typeof BROKERS)[number], Summary>> = {}
  try {
    for (const name of BROKERS) {
      const broker = name === 'amqp' ? await rabbitmq() : await nats()
      results[name] = await measure(broker)
    }
  } finally {
    await cleanup()
  }
  const table: Row[] = []
  for (const s of Object.values(results)) {
    for (const side of SIDES) {
      const r = s.rows[side]!
      const ratio = s.ratios[side]
      table.push({
        broker: s.broker,
        row: side,
        'msgs/s end to end': r.rps,
        'msgs/s confirmed': r.publishRps,
        'CPU us/msg': r.cpuNs / 1000,
        'x raw msgs/s': ratio === undefined ? '' : ratio.rps.toFixed(3),
        'min..max': ratio === undefined ? '' : `${ratio.rpsMin.toFixed(3)}..${ratio.rpsMax.toFixed(3)}`,
        'x raw CPU/msg': ratio === undefined ? '' : ratio.cpu.toFixed(3),
      })
    }
  }
  const loadNote =
    machine.loadavg_1m > machine.cpu_cores / 2
      ? `  WARNING: load average ${machine.loadavg_1m} on ${machine.cpu_cores} cores at start, figures are noisy`
      : ''
  printTable(
    table,
    `bench:mq  ${ROUNDS} rounds x ${N} messages of ${SIZE} B per row, confirms in windows of ${WINDOW}, prefetch ${PREFETCH}, one ack per message; medians over rounds; "x raw" = row / raw of the same round (median), target bridged >= 0.9 msgs/s${loadNote}`,
  )
  const metrics: Record<string, number> = {}
  for (const [name, s] of Object.entries(results)) {
    const bridged = s.ratios.bridged
    const headers = s.ratios.headers
    if (bridged !== undefined) metrics[`${name}_rps_ratio`] = round(bridged.rps, 4)
    if (s.rows.raw) metrics[`${name}_raw_rps`] = round(s.rows.raw.rps, 0)
    if (s.rows.bridged) metrics[`${name}_bridged_rps`] = round(s.rows.bridged.rps, 0)
    if (headers !== undefined) metrics[`${name}_headers_rps_ratio`] = round(headers.rps, 4)
    if (bridged !== undefined) metrics[`${name}_cpu_ratio`] = round(bridged.cpu, 4)
    if (headers !== undefined) metrics[`${name}_headers_cpu_ratio`] = round(headers.cpu, 4)
    for (const side of SIDES) {
      metrics[`${name}_${side}_cpu_per_msg_ns`] = round(s.rows[side]!.cpuNs, 0)
    }
  }
  printReport({ bench: 'mq', machine, metrics })
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
    await cleanup()
    process.exit(1)
  },
)
