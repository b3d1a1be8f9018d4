/**
 * Forwarding one HTTP request through an undici dispatcher with `stream()`: request and response bodies
 * stream both ways (nothing is buffered), hop-by-hop headers are removed, X-Forwarded-* set. Errors
 * become clear 502 / 504 answers while nothing was sent yet, and a torn response otherwise.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'

/** Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])

/** How a forward ended, for the access log and passive health. */
export interface ForwardResult {
  /** Status sent to the client (the upstream's, or ours on failure). */
  readonly status: number
  /** False when the upstream could not be reached or failed before answering (a connection-level failure). */
  readonly upstreamOk: boolean
  readonly error?: string
  /** The undici error, for passive health classification. */
  readonly cause?: unknown
  /** True when the connection failed before anything was sent: the request may go to another instance. */
  readonly retryable?: boolean
}

/** Errors raised before a single byte reached the upstream. */
const CONNECT_FAILURES = new Set([
  'ECONNREFUSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
])

/** A JSON error answer: `{ "error": { "code", "message" } }`. */
export function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  const body = JSON.stringify({ error: { code, message } })
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(body)
}

/** The headers of a request as they leave for the upstream (without the x-appactive-* ones: callers add those). */
export function upstreamHeaders(req: IncomingMessage, tls: boolean): Record<string, string | string[]> {
  const src = req.headers
  const out: Record<string, string | string[]> = {}
  const connection = src.connection
  const listed = typeof connection === 'string' && connection !== 'keep-alive' && connection !== 'close'
  for (const name in src) {
    const value = src[name]
    if (value === undefined || HOP_BY_HOP.has(name)) continue
    if (listed && connectionListed(connection, name)) continue
    out[name] = value
  }
  const client = req.socket.remoteAddress ?? ''
  const prior = src['x-forwarded-for']
  out['x-forwarded-for'] = prior ? `${prior}, ${client}` : client
  if (src['x-forwarded-proto'] === undefined) out['x-forwarded-proto'] = tls ? 'https' : 'http'
  if (src['x-forwarded-host'] === undefined && src.host !== undefined) out['x-forwarded-host'] = src.host
  return out
}

function connectionListed(connection: string, name: string): boolean {
  for (const token of connection.split(',')) if (token.trim().toLowerCase() === name) return true
  return false
}

/** Response headers from undici, without hop-by-hop ones. */
function downstreamHeaders(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const connection = headers.connection
  // `keep-alive` and `close` name no header: only other Connection values are parsed (once per header).
  const listed = typeof connection === 'string' && connection !== 'keep-alive' && connection !== 'close'
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || HOP_BY_HOP.has(name)) continue
    if (listed && connectionListed(connection, name)) continue
    out[name] = value
  }
  return out
}

function hasBody(req: IncomingMessage): boolean {
  const te = req.headers['transfer-encoding']
  if (te !== undefined) return true
  const cl = req.headers['content-length']
  return cl !== undefined && cl !== '0'
}

/** The response side of `stream()`: the upstream's status and end-to-end headers, then its body into `res`. */
function answer({
  statusCode,
  headers,
  opaque: res,
}: Dispatcher.StreamFactoryData<ServerResponse>): ServerResponse {
  res.writeHead(statusCode, downstreamHeaders(headers))
  return res
}

/**
 * Streams `req` to `origin` through `dispatcher` and the answer back to `res`, then calls `done` once
 * with how it ended. Never throws: failures are answered (502 unreachable, 504 timed out) or tear the
 * response. With `mayRetry`, a connection that failed before anything was sent (and before the request
 * body was read) is NOT answered: the result says `retryable` and the caller tries another instance.
 * Callback-shaped so the gateway's hot path creates no promise (see {@link forward} for the promise form).
 */
export function forwardWith(
  req: IncomingMessage,
  res: ServerResponse,
  dispatcher: Dispatcher,
  origin: string,
  headers: Record<string, string | string[]>,
  mayRetry: boolean,
  done: (result: ForwardResult) => void,
): void {
  const options: Dispatcher.RequestOptions<ServerResponse> = {
    origin,
    path: req.url ?? '/',
    method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
    headers,
    body: hasBody(req) ? req : null,
    opaque: res,
  }
  dispatcher.stream(options, answer, (err) => {
    done(
      err === null ? { status: res.statusCode, upstreamOk: true } : failed(err, req, res, origin, mayRetry),
    )
  })
}

/** The promise form of {@link forwardWith}, for callers that await (the HTTP server bridges). */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  dispatcher: Dispatcher,
  origin: string,
  headers: Record<string, string | string[]>,
  mayRetry = false,
): Promise<ForwardResult> {
  return new Promise((resolve) => forwardWith(req, res, dispatcher, origin, headers, mayRetry, resolve))
}

/** Answers (or tears) `res` for a forward that failed, and says how. */
function failed(
  err: unknown,
  req: IncomingMessage,
  res: ServerResponse,
  origin: string,
  mayRetry: boolean,
): ForwardResult {
  const code = (err as { code?: string }).code ?? ''
  const message = err instanceof Error ? err.message : String(err)
  if (res.headersSent) {
    // The upstream answered, then failed mid-body (or the client left): tear the response.
    res.destroy()
    return { status: res.statusCode, upstreamOk: true, error: message, cause: err }
  }
  // The client left: says nothing about the upstream's health (passive health treats it as neutral).
  if (req.destroyed && code === 'UND_ERR_ABORTED') {
    return { status: 499, upstreamOk: false, error: 'client closed', cause: err }
  }
  if (CONNECT_FAILURES.has(code) && mayRetry && !req.readableDidRead) {
    return { status: 502, upstreamOk: false, error: message, cause: err, retryable: true }
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    sendError(res, 504, 'UPSTREAM_TIMEOUT', `the upstream did not answer in time (${origin})`)
    return { status: 504, upstreamOk: false, error: message, cause: err }
  }
  sendError(
    res,
    502,
    'UPSTREAM_UNREACHABLE',
    `the upstream could not be reached (${origin}): ${code || message}`,
  )
  return { status: 502, upstreamOk: false, error: message, cause: err }
}
