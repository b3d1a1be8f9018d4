/** A small client of the control plane's REST API (docs/control-plane.md), for the demo's scripts. */
import { request } from 'undici'

export class ApiError extends Error {
  readonly status: number
  readonly code: string
  readonly issues: readonly { path: string; message: string }[]
  constructor(
    status: number,
    code: string,
    message: string,
    issues: { path: string; message: string }[] = [],
  ) {
    super(`${code}: ${message}${issues.map((i) => `\n  ${i.path}: ${i.message}`).join('')}`)
    this.status = status
    this.code = code
    this.issues = issues
  }
}

export interface ControlApi {
  call<T = Record<string, unknown>>(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<T>
}

export function controlApi(baseUrl: string, token: string): ControlApi {
  return {
    async call<T>(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<T> {
      const res = await request(baseUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        headersTimeout: 30_000,
      })
      const text = await res.body.text()
      const json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>)
      if (res.statusCode >= 400) {
        const issues = Array.isArray(json.issues) ? (json.issues as { path: string; message: string }[]) : []
        throw new ApiError(
          res.statusCode,
          String(json.code ?? res.statusCode),
          String(json.message ?? text),
          issues,
        )
      }
      return json as T
    },
  }
}
