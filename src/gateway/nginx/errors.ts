/**
 * Failures of the nginx engine itself (nginx missing, a config nginx rejects, nginx not starting). They
 * carry nginx's own words (`nginx -t` output, the error log's tail) so the operator sees the cause.
 */

/** Why the nginx engine failed. */
export type NginxFailure = 'missing' | 'config' | 'start' | 'reload' | 'admin'

export class NginxError extends Error {
  readonly code = 'APPACTIVE_NGINX'
  readonly failure: NginxFailure
  /** nginx's output (`nginx -t`, the error log's tail, an admin answer); may be empty. */
  readonly output: string

  constructor(failure: NginxFailure, message: string, output = '') {
    super(output === '' ? message : `${message}\n${output.trimEnd()}`)
    this.name = 'NginxError'
    this.failure = failure
    this.output = output
  }
}
