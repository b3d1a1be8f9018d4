/**
 * The CLI's client of the control-plane REST API (docs/control-plane.md): JSON requests with the bearer
 * token, the operation event stream, and errors a person can act on. Every failure becomes a CliError:
 *
 * - the control plane cannot be reached, or answers something that is not the API: `CONTROL_UNREACHABLE`
 *   (exit 3), naming the URL and where it came from;
 * - 401 and 403: `UNAUTHORIZED` / `FORBIDDEN` (exit 3), saying which token was used;
 * - any other error answer: its own code and message (exit 1), with every `issues` entry on its own line.
 */
import { type Command, Option } from 'commander'
import { createParser } from 'eventsource-parser'
import { request } from 'undici'
import { CliError, EXIT_FAILURE, EXIT_UNREACHABLE, usageError } from './output.js'

/** Where `control` listens by default, so a local control plane needs no setting. */
export const DEFAULT_CONTROL_URL = 'http://127.0.0.1:7070'

/** Longest wait for the answer of one API request (the event stream has its own). */
const REQUEST_TIMEOUT_MS = 30_000
/** The event stream sends a comment every 15 s: 45 s of silence means the connection is gone. */
const STREAM_IDLE_MS = 45_000

/** The connection options every control-plane command takes. */
export interface ConnectionOptions {
  readonly controlUrl: string
  readonly token?: string
}

/** Adds `--control-url` (APPACTIVE_CONTROL_URL) and `--token` (APPACTIVE_TOKEN) to a command. */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--control-url <url>', 'the control plane')
        .env('APPACTIVE_CONTROL_URL')
        .default(DEFAULT_CONTROL_URL),
    )
    .addOption(
      new Option('--token <token>', 'an API token (viewer, operator or admin)').env('APPACTIVE_TOKEN'),
    )
}

/** One server-sent event of `/v1/operations/{id}/events`. */
export interface StreamEvent {
  readonly event: string | undefined
  readonly id: string | undefined
  readonly data: string
}

/** An error answer of the API: `{ code, message, issues? }`. */
interface ErrorBody {
  readonly code?: unknown
  readonly message?: unknown
  readonly issues?: unknown
}

export class ControlClient {
  readonly url: string
  readonly #token: string | undefined
  /** Where the URL came from, for messages (`--control-url`, `APPACTIVE_CONTROL_URL`, the default). */
  readonly #urlSource: string

  constructor(options: { url: string; token?: string | undefined; urlSource?: string }) {
    let parsed: URL
    try {
      parsed = new URL(options.url)
    } catch {
      throw usageError(`the control-plane URL ${JSON.stringify(options.url)} is not a URL`)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      throw usageError(
        `the control-plane URL must be http:// or https://, got ${JSON.stringify(options.url)}`,
      )
    this.url = options.url.replace(/\/+$/, '')
    this.#token = options.token === '' ? undefined : options.token
    this.#urlSource = options.urlSource ?? '--control-url'
  }

  /** Builds the client of a command from its parsed options. */
  static of(cmd: Command): ControlClient {
    const opts = cmd.opts<ConnectionOptions>()
    const source = cmd.getOptionValueSource('controlUrl')
    return new ControlClient({
      url: opts.controlUrl,
      token: opts.token,
      urlSource:
        source === 'env'
          ? 'APPACTIVE_CONTROL_URL'
          : source === 'default'
            ? 'the default URL'
            : '--control-url',
    })
  }

  get<T>(path: string): Promise<T> {
    return this.#json<T>('GET', path)
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.#json<T>('POST', path, body)
  }

  /** GET that answers `undefined` on 404 instead of failing (`/v1/rules/latest` before the first publish). */
  async find<T>(path: string): Promise<T | undefined> {
    try {
      return await this.get<T>(path)
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return undefined
      throw err
    }
  }

  /**
   * Reads an event stream until the server ends it or `onEvent` returns true. Resolves true when
   * `onEvent` asked to stop, false when the stream ended first.
   */
  async stream(
    path: string,
    onEvent: (event: StreamEvent) => boolean | undefined,
    options: { lastEventId?: string | undefined; signal?: AbortSignal } = {},
  ): Promise<boolean> {
    const controller = new AbortController()
    const signal = options.signal ? AbortSignal.any([controller.signal, options.signal]) : controller.signal
    let res: Awaited<ReturnType<typeof request>>
    try {
      res = await request(`${this.url}${path}`, {
        method: 'GET',
        headers: {
          accept: 'text/event-stream',
          ...this.#auth(),
          ...(options.lastEventId !== undefined ? { 'last-event-id': options.lastEventId } : {}),
        },
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: STREAM_IDLE_MS,
        signal,
      })
    } catch (err) {
      throw this.#unreachable(err)
    }
    if (res.statusCode !== 200) throw this.#failure(res.statusCode, await res.body.text().catch(() => ''))
    let stopped = false
    const parser = createParser({
      onEvent: (e) => {
        if (stopped) return
        if (onEvent({ event: e.event, id: e.id, data: e.data }) === true) {
          stopped = true
          controller.abort()
        }
      },
    })
    const decoder = new TextDecoder()
    try {
      for await (const chunk of res.body) {
        parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }))
        if (stopped) break
      }
    } catch (err) {
      if (stopped) return true
      throw this.#unreachable(err)
    }
    return stopped
  }

  #auth(): Record<string, string> {
    return this.#token === undefined ? {} : { authorization: `Bearer ${this.#token}` }
  }

  async #json<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const text = body === undefined ? undefined : JSON.stringify(body)
    let res: Awaited<ReturnType<typeof request>>
    let answer: string
    try {
      res = await request(`${this.url}${path}`, {
        method,
        headers: {
          accept: 'application/json',
          ...this.#auth(),
          ...(text !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(text !== undefined ? { body: text } : {}),
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      })
      answer = await res.body.text()
    } catch (err) {
      throw this.#unreachable(err)
    }
    if (res.statusCode >= 300) throw this.#failure(res.statusCode, answer)
    try {
      return JSON.parse(answer) as T
    } catch {
      throw this.#notTheApi(res.statusCode)
    }
  }

  #unreachable(err: unknown): CliError {
    const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } }
    const code = typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : ''
    const message = String(e.cause?.message ?? e.message ?? err)
    const reason = code && !message.includes(code) ? `${code}: ${message}` : message
    return new CliError(
      'CONTROL_UNREACHABLE',
      `cannot reach the control plane at ${this.url} (${this.#urlSource}): ${reason}`,
      EXIT_UNREACHABLE,
      ['is it running? set --control-url or APPACTIVE_CONTROL_URL to where it listens'],
    )
  }

  #notTheApi(status: number): CliError {
    return new CliError(
      'CONTROL_UNREACHABLE',
      `${this.url} (${this.#urlSource}) answered HTTP ${status} with something that is not the control-plane API`,
      EXIT_UNREACHABLE,
    )
  }

  #failure(status: number, text: string): CliError {
    let body: ErrorBody
    try {
      body = JSON.parse(text) as ErrorBody
    } catch {
      return this.#notTheApi(status)
    }
    if (typeof body !== 'object' || body === null || typeof body.code !== 'string')
      return this.#notTheApi(status)
    const message = typeof body.message === 'string' ? body.message : `HTTP ${status}`
    if (status === 401) {
      const which = this.#token === undefined ? 'no token was given' : 'the token was not accepted'
      return new ApiError(
        status,
        body.code,
        `the control plane at ${this.url} refused the request (401): ${which}`,
        EXIT_UNREACHABLE,
        ['set APPACTIVE_TOKEN or --token to a viewer, operator or admin token of this control plane'],
      )
    }
    if (status === 403) return new ApiError(status, body.code, `${message} (403)`, EXIT_UNREACHABLE)
    const issues = Array.isArray(body.issues)
      ? body.issues.map((i: { path?: unknown; message?: unknown }) =>
          i.path ? `${String(i.path)}: ${String(i.message)}` : String(i.message),
        )
      : []
    return new ApiError(status, body.code, message, EXIT_FAILURE, issues)
  }
}

/** An error answer of the API, with its HTTP status. */
export class ApiError extends CliError {
  readonly status: number
  constructor(
    status: number,
    code: string,
    message: string,
    exitCode: number,
    details: readonly string[] = [],
  ) {
    super(code, message, exitCode, details)
    this.status = status
  }
}
