#!/usr/bin/env node
// The `appactive` command. A build (`npm run build`, or `prepare` on install) puts the CLI in dist/;
// a development checkout without a build runs the TypeScript sources through tsx.
import { existsSync } from 'node:fs'

const built = new URL('../dist/cli/run.js', import.meta.url)
if (existsSync(built)) {
  await import(built.href)
} else {
  let register
  try {
    ;({ register } = await import('tsx/esm/api'))
  } catch {
    process.stderr.write(
      'appactive: internal error: dist/ is missing and tsx is not installed; run "npm run build" first\n',
    )
    process.exit(1)
  }
  register()
  await import(new URL('../src/cli/run.ts', import.meta.url).href)
}
