/**
 * Where Debian's nginx and its Lua modules are (`nginx`, `libnginx-mod-http-lua`, `lua-cjson`), and where
 * this package keeps appactive.lua.
 */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The files the nginx engine runs with. */
export interface NginxInstall {
  readonly binary: string
  readonly modulesDir: string
  readonly luaDir: string
}

const MODULE_DIRS = ['/usr/share/nginx/modules', '/usr/lib/nginx/modules']
const MODULES = ['ndk_http_module.so', 'ngx_http_lua_module.so']

/** The `nginx/` folder of this package (three levels above src/gateway/nginx or dist/gateway/nginx). */
export const LUA_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'nginx')

/**
 * Finds nginx and the Lua modules: options first, then APPACTIVE_NGINX / APPACTIVE_NGINX_MODULES, then
 * Debian's paths. Returns a sentence saying what is missing (and how to install it) instead.
 */
export function findNginx(
  options: { readonly binary?: string; readonly modulesDir?: string } = {},
  env: NodeJS.ProcessEnv = process.env,
): NginxInstall | string {
  const binary = options.binary ?? env.APPACTIVE_NGINX ?? '/usr/sbin/nginx'
  const install = "install Debian's packages: apt-get install nginx libnginx-mod-http-lua lua-cjson"
  if (!existsSync(binary)) return `nginx is not installed at ${binary}; ${install}`
  const dirs = [options.modulesDir ?? env.APPACTIVE_NGINX_MODULES].filter((d): d is string => !!d)
  const candidates = dirs.length > 0 ? dirs : MODULE_DIRS
  const modulesDir = candidates.find((d) => MODULES.every((m) => existsSync(join(d, m))))
  if (modulesDir === undefined) {
    return `the nginx Lua modules (${MODULES.join(', ')}) are not in ${candidates.join(' or ')}; ${install}`
  }
  if (!existsSync(join(LUA_DIR, 'appactive.lua'))) return `appactive.lua is missing from ${LUA_DIR}`
  return { binary, modulesDir, luaDir: LUA_DIR }
}
