#!/usr/bin/env node
// Enforces the import directions of DESIGN §5: a folder under src/ may import only the folders listed
// before it. rules/ and errors/ import no node: module (the dashboard runs them in a browser).
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const src = join(root, 'src')
const ORDER = ['errors', 'rules', 'context', 'channels', 'agent', 'gateway', 'bridges', 'control', 'cli']
const PURE = new Set(['errors', 'rules'])

function walk(dir) {
  const out = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...walk(p))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

const problems = []
const importRe =
  /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g
for (const file of walk(src)) {
  const rel = relative(src, file)
  const layer = rel.split('/')[0].replace(/\.ts$/, '')
  const text = readFileSync(file, 'utf8')
  for (const m of text.matchAll(importRe)) {
    const spec = m[1] ?? m[2]
    if (PURE.has(layer) && spec.startsWith('node:'))
      problems.push(`${rel}: ${layer}/ must not import ${spec}`)
    if (!spec.startsWith('.')) continue
    const target = relative(src, resolve(dirname(file), spec))
    if (target.startsWith('..')) {
      problems.push(`${rel}: imports ${spec}, outside src/`)
      continue
    }
    const targetLayer = target.split('/')[0].replace(/\.(ts|js)$/, '')
    if (targetLayer === layer) continue
    const a = ORDER.indexOf(layer)
    const b = ORDER.indexOf(targetLayer)
    if (a === -1 || b === -1) continue // src/index.ts and friends re-export public API
    if (b > a) problems.push(`${rel}: ${layer}/ may not import ${targetLayer}/ (${spec}); see DESIGN §5`)
    if (layer === 'bridges' && targetLayer === 'bridges') continue
  }
  if (layer === 'bridges') {
    const cat = rel.split('/')[1]
    for (const m of text.matchAll(importRe)) {
      const spec = m[1] ?? m[2]
      if (!spec.startsWith('.')) continue
      const target = relative(src, resolve(dirname(file), spec)).split('/')
      if (target[0] === 'bridges' && target[1] !== cat && target.length > 2) {
        problems.push(`${rel}: bridges never import each other (${spec})`)
      }
    }
  }
}
if (problems.length) {
  console.error(problems.join('\n'))
  process.exit(1)
}
console.log(`layers ok (${walk(src).length} files)`)
