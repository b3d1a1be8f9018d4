/**
 * The client side of the admin endpoint appactive.lua serves (loopback or a unix socket, bearer token):
 * `GET /_appactive/rules` -> `{ version, digest }`, `PUT /_appactive/rules` with a compiled rule set.
 */
import { request } from 'node:http'

/** What the admin endpoint says is in force. */
export interface NginxRulesState {
  /** -1 before the first rule set. */
  readonly version: number
  readonly digest: string | null
  /** Generation of the configuration the answering worker runs. */
  readonly generation: number
}

/** One admin answer. */
export interface AdminAnswer {
  readonly status: number
  readonly body: string
}

/** An admin endpoint: `unix:/path` or `HOST:PORT` (as in nginx.conf), and its token. */
export class NginxAdmin {
  readonly #target: { socketPath: string } | { host: string; port: number }
  readonly #token: string

  constructor(listen: string, token: string) {
    if (listen.startsWith('unix:')) this.#target = { socketPath: listen.slice(5) }
    else {
      const at = listen.lastIndexOf(':')
      this.#target = { host: listen.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(listen.slice(at + 1)) }
    }
    this.#token = token
  }

  /** Sends one request; rejects only when no answer came (connection refused, timeout). */
  send(
    method: string,
    path: string,
    body?: string,
    timeoutMs = 5000,
    token = this.#token,
  ): Promise<AdminAnswer> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          ...this.#target,
          method,
          path,
          headers: {
            authorization: `Bearer ${token}`,
            ...(body !== undefined
              ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
              : {}),
          },
          timeout: timeoutMs,
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
          )
          res.on('error', reject)
        },
      )
      req.on('timeout', () =>
        req.destroy(new Error(`admin ${method} ${path} timed out after ${timeoutMs} ms`)),
      )
      req.on('error', reject)
      req.end(body)
    })
  }

  /** The version in force. @throws when the endpoint does not answer 200. */
  async state(path = '/_appactive/rules'): Promise<NginxRulesState> {
    const res = await this.send('GET', path)
    if (res.status !== 200) throw new Error(`admin GET ${path} answered ${res.status}: ${res.body}`)
    return JSON.parse(res.body) as NginxRulesState
  }

  /** Pushes a compiled rule set: 200 applied or duplicate, 409 stale, 400 malformed, 413 too large. */
  put(text: string): Promise<AdminAnswer> {
    return this.send('PUT', '/_appactive/rules', text, 30_000)
  }
}
