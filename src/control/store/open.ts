/** Opens a store by URL: `sqlite:PATH` (the default kind) or `postgres://...` / `postgresql://...`. */
import { StoreUnavailableError } from '../errors.js'
import { openPostgresStore } from './postgres.js'
import type { StoreOptions } from './sql-store.js'
import { openSqliteStore } from './sqlite.js'
import type { Store } from './types.js'

export const DEFAULT_STORE_URL = 'sqlite:./appactive.db'

export interface OpenStoreOptions extends StoreOptions {
  /** Apply pending migrations before returning (default true). */
  readonly migrate?: boolean
  /** PostgreSQL connect timeout; default 5 s. */
  readonly connectTimeoutMs?: number
}

/**
 * Opens, checks and (by default) migrates a store.
 * @throws StoreUnavailableError naming the store when it cannot be opened, reached or migrated.
 */
export async function openStore(
  url: string = DEFAULT_STORE_URL,
  options: OpenStoreOptions = {},
): Promise<Store> {
  let store: Store
  if (url.startsWith('sqlite:')) store = await openSqliteStore(url, options)
  else if (/^postgres(ql)?:\/\//.test(url)) store = await openPostgresStore(url, options)
  else {
    throw new StoreUnavailableError(
      `unknown store URL ${JSON.stringify(url)}: use sqlite:PATH or postgres://USER@HOST:PORT/DB`,
    )
  }
  if (options.migrate === false) return store
  try {
    await store.migrate()
  } catch (err) {
    await store.close().catch(() => {})
    if (err instanceof StoreUnavailableError) throw err
    throw new StoreUnavailableError(
      `cannot migrate the store ${store.location}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    )
  }
  return store
}
