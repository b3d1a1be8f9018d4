/**
 * Small HTTP helpers for the control-plane channel server: bounded JSON bodies, JSON answers, bearer
 * tokens compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'

/** An HTTP failure with its status and stable code. */
export class HttpError extends Error {
  readonly status: number
  readonly code: string
  constructor(status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** Reads a JSON object body of at most `limit` bytes. @throws HttpError 413 / 400 / 415 */
export async function readJson(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'])
  if (declared > limit) {
    req.resume()
    throw new HttpError(413, 'BODY_TOO_LARGE', `request body is larger than ${limit} bytes`)
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) {
      req.resume()
      throw new HttpError(413, 'BODY_TOO_LARGE', `request body is larger than ${limit} bytes`)
    }
    chunks.push(chunk)
  }
  if (size === 0) return {}
  let value: unknown
  try {
    value = JSON.parse(Buffer.concat(chunks, size).toString('utf8'))
  } catch {
    throw new HttpError(400, 'BAD_JSON', 'request body is not valid JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HttpError(400, 'BAD_BODY', 'request body must be a JSON object')
  }
  return value as Record<string, unknown>
}

/** Sends a JSON answer (or an empty 204). */
export function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status, { 'content-length': '0' }).end()
    return
  }
  const text = JSON.stringify(body)
  res
    .writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    })
    .end(text)
}

/** Sends `{ error: { code, message } }`. */
export function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  if (err.status === 401) res.setHeader('www-authenticate', 'Bearer')
  send(res, err.status, { error: { code: err.code, message: err.message } })
}

/** The bearer token of a request, or undefined. */
export function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization
  if (typeof h !== 'string') return undefined
  const m = /^Bearer +(\S+)\s*$/i.exec(h)
  return m ? m[1] : undefined
}

/** A set of accepted secrets, checked in constant time (hashes compared with timingSafeEqual). */
export class TokenSet {
  readonly #digests: Buffer[]

  constructor(tokens: readonly string[]) {
    this.#digests = tokens.map(digest)
  }

  has(token: string | undefined): boolean {
    if (token === undefined) return false
    const d = digest(token)
    let ok = false
    for (const known of this.#digests) ok = timingSafeEqual(d, known) || ok
    return ok
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

/** Reads a whole-number field. @throws HttpError 400 */
export function intField(
  body: Record<string, unknown>,
  name: string,
  min: number,
  optional = false,
): number | undefined {
  const v = body[name]
  if (v === undefined && optional) return undefined
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new HttpError(400, 'BAD_FIELD', `${name} must be a whole number >= ${min}`)
  }
  return v
}

/** Reads a string field matching `pattern`. @throws HttpError 400 */
export function textField(
  body: Record<string, unknown>,
  name: string,
  pattern: RegExp,
  optional = false,
): string | undefined {
  const v = body[name]
  if (v === undefined && optional) return undefined
  if (typeof v !== 'string' || !pattern.test(v))
    throw new HttpError(400, 'BAD_FIELD', `${name} is missing or malformed`)
  return v
}
