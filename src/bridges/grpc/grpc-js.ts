/**
 * `@grpc/grpc-js` is an optional peer: this subpath imports it only as types, and loads it here, on the
 * first factory call (never at import), so `import 'appactive/grpc'` works without it installed.
 */
import { createRequire } from 'node:module'
import type * as GrpcJs from '@grpc/grpc-js'
import { InvalidArgumentError } from '../../errors/index.js'

export type Grpc = typeof GrpcJs

let loaded: Grpc | undefined

/**
 * The `@grpc/grpc-js` module, resolved from this package's location (where npm puts a peer).
 * @throws InvalidArgumentError (APPACTIVE_INVALID_ARGUMENT) when it is not installed.
 */
export function grpcJs(): Grpc {
  if (loaded !== undefined) return loaded
  try {
    // grpc-js is CommonJS: require() loads it synchronously, so the factories can stay synchronous.
    loaded = createRequire(import.meta.url)('@grpc/grpc-js') as Grpc
  } catch (err) {
    throw new InvalidArgumentError(
      `appactive/grpc needs the @grpc/grpc-js package (npm install @grpc/grpc-js): ${String((err as Error).message).split('\n')[0]}`,
    )
  }
  return loaded
}
