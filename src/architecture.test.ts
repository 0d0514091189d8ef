// Keeps the module layering of ARCHITECTURE.md honest: reads every import under src/ and checks
// that no module imports from a higher layer (tests and testing helpers are exempt).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const LAYER: Record<string, number> = {
  'errors.ts': 1, hash: 1, fstree: 1, compress: 1,
  store: 2, catalog: 2, manifest: 2, signing: 2, download: 2, cache: 2, fuse: 2, tar: 2, history: 2,
  client: 3, oci: 3, launcher: 3,
  publish: 4, server: 4, vfs: 4, replicate: 4, accounting: 4,
  pilot: 5, sync: 5,
  cli: 6, bench: 6,
};
// Exceptions the table itself grants: fuse/ and launcher/ may import only errors from layer 1.
const ONLY_ERRORS = new Set(['fuse', 'launcher']);

function srcRoot(): string {
  // Compiled tests run from <outDir>/architecture.test.js; the sources sit in ../src from the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try { if (statSync(join(dir, 'src')).isDirectory() && statSync(join(dir, 'package.json')).isFile()) return join(dir, 'src'); } catch { /* keep looking */ }
    dir = dirname(dir);
  }
  throw new Error('cannot find src/');
}

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.ts') && !p.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const moduleOf = (root: string, file: string): string => relative(root, file).split(sep)[0];

test('no module imports from a higher layer', () => {
  const root = srcRoot();
  const violations: string[] = [];
  for (const file of walk(root)) {
    const from = moduleOf(root, file);
    if (from === 'testing') continue;
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/gm)) {
      const target = moduleOf(root, resolve(dirname(file), m[1]).replace(/\.js$/, '.ts'));
      if (target === from || target === 'errors.ts') continue;
      const lf = LAYER[from], lt = LAYER[target];
      if (lf === undefined || lt === undefined) { violations.push(`${relative(root, file)}: unknown module ${from} -> ${target}`); continue; }
      if (target === 'testing') { violations.push(`${relative(root, file)}: production code imports testing/`); continue; }
      if (lt >= lf && from !== 'cli') violations.push(`${relative(root, file)}: ${from} (layer ${lf}) imports ${target} (layer ${lt})`);
      if (ONLY_ERRORS.has(from) && lt === 1 && target !== 'errors.ts') violations.push(`${relative(root, file)}: ${from} may import only errors from layer 1`);
    }
  }
  assert.deepEqual(violations, []);
});
