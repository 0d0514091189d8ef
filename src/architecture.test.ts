// Keeps the module layering of ARCHITECTURE.md honest: reads every import under src/ (static `import`/
// `export … from`, side-effect `import '…'`, and dynamic `import()` with a literal or template specifier)
// and checks that no module imports from a higher layer (tests and testing helpers are exempt).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const LAYER: Record<string, number> = {
  'errors.ts': 1, hash: 1, fstree: 1, compress: 1, plumbing: 1, metrics: 1,
  store: 2, catalog: 2, manifest: 2, keys: 2, download: 2, cache: 2, fuse: 2, tar: 2, history: 2,
  client: 3, oci: 3, launcher: 3,
  publish: 4, server: 4, vfs: 4, replicate: 4, accounting: 4,
  pilot: 5, sync: 5, mountd: 5,
  cli: 6, bench: 6, dashboard: 6,
};
// Exceptions the table itself grants: fuse/ and launcher/ may import only errors (and the generic
// plumbing: files, locks, process identity) from layer 1.
const ONLY_ERRORS = new Set(['fuse', 'launcher']);
const ALWAYS_ALLOWED = new Set(['errors.ts']);
const GENERIC_LAYER1 = new Set(['errors.ts', 'plumbing']);
/**
 * Computed specifiers the check is told the target of, by file and expression; it then checks that target like
 * a literal. mount.ts computes its bundler's URL so that esbuild, bundling the daemon, does not bundle the
 * bundler (and esbuild itself) into it.
 */
const COMPUTED_TARGETS: Record<string, string> = { 'cli/commands/mount.ts: MOUNTD_BUNDLE_MODULE': './mountd-bundle.js' };

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

/** One import found in a source text: the relative specifier (a template's static prefix), or `computed`. */
export interface FoundImport { spec?: string; dynamic: boolean; computed?: string }

/** The imports of one file. Line comments are dropped first so that prose mentioning import() is not read. */
export function importsOf(text: string): FoundImport[] {
  const code = text.replace(/^\s*\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
  const out: FoundImport[] = [];
  for (const m of code.matchAll(/^\s*(?:import|export)\s[^'"`;]*?from\s+['"]([^'"]+)['"]/gm)) out.push({ spec: m[1], dynamic: false });
  for (const m of code.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)) out.push({ spec: m[1], dynamic: false });
  for (const m of code.matchAll(/\bimport\s*\(\s*([^)]*)\)/g)) {
    const arg = m[1].trim();
    const lit = /^(['"])([^'"]*)\1$/.exec(arg);
    const tpl = /^`([^`$]*)(?:\$\{[^`]*)?`$/.exec(arg);
    if (lit !== null) out.push({ spec: lit[2], dynamic: true });
    else if (tpl !== null) out.push({ spec: tpl[1], dynamic: true });
    else out.push({ dynamic: true, computed: arg });
  }
  return out;
}

function violationsIn(root: string, file: string, text: string): string[] {
  const from = moduleOf(root, file);
  const at = relative(root, file);
  const violations: string[] = [];
  for (const imp of importsOf(text)) {
    if (imp.spec === undefined) {
      const known = COMPUTED_TARGETS[`${at}: ${imp.computed}`];
      if (known === undefined) { violations.push(`${at}: import(${imp.computed}) has a computed specifier the layer check cannot follow`); continue; }
      imp.spec = known;
    }
    if (!imp.spec.startsWith('.')) continue; // node: builtins and packages
    // A template's static prefix ("./commands/") names a directory; a placeholder file stands for the rest.
    const spec = imp.spec.endsWith('/') ? `${imp.spec}x.js` : imp.spec;
    const target = moduleOf(root, resolve(dirname(file), spec).replace(/\.js$/, '.ts'));
    if (target === from || ALWAYS_ALLOWED.has(target)) continue;
    const lf = LAYER[from], lt = LAYER[target];
    const how = imp.dynamic ? ' (dynamic import)' : '';
    if (lf === undefined || lt === undefined) { violations.push(`${at}: unknown module ${from} -> ${target}${how}`); continue; }
    if (target === 'testing') { violations.push(`${at}: production code imports testing/${how}`); continue; }
    if (lt >= lf && from !== 'cli') violations.push(`${at}: ${from} (layer ${lf}) imports ${target} (layer ${lt})${how}`);
    if (ONLY_ERRORS.has(from) && lt === 1 && !GENERIC_LAYER1.has(target)) violations.push(`${at}: ${from} may import only errors and plumbing from layer 1${how}`);
  }
  return violations;
}

test('no module imports from a higher layer, statically or through import()', () => {
  const root = srcRoot();
  const violations: string[] = [];
  for (const file of walk(root)) {
    if (moduleOf(root, file) === 'testing') continue;
    violations.push(...violationsIn(root, file, readFileSync(file, 'utf8')));
  }
  assert.deepEqual(violations, []);
});

test('the layer check sees dynamic imports, templates, side-effect imports, and refuses computed specifiers', () => {
  const root = '/r/src';
  const v = (file: string, text: string) => violationsIn(root, join(root, file), text);
  assert.deepEqual(v('store/a.ts', "const m = await import('../publish/x.js');"), ['store/a.ts: store (layer 2) imports publish (layer 4) (dynamic import)']);
  assert.deepEqual(v('store/a.ts', 'const m = await import(`../publish/${name}.js`);'), ['store/a.ts: store (layer 2) imports publish (layer 4) (dynamic import)']);
  assert.deepEqual(v('store/a.ts', 'const m = await import(`./${name}.js`);'), []);
  assert.deepEqual(v('cli/main.ts', 'const m = await import(`./commands/${name}.js`);'), []);
  assert.deepEqual(v('hash/a.ts', "import '../store/register.js';"), ['hash/a.ts: hash (layer 1) imports store (layer 2)']);
  assert.deepEqual(v('plumbing/a.ts', "import { x } from '../hash/y.js';"), ['plumbing/a.ts: plumbing (layer 1) imports hash (layer 1)']);
  assert.deepEqual(v('fuse/a.ts', "import { x } from '../plumbing/lock-file.js';\nimport { y } from '../errors.js';"), []);
  assert.deepEqual(v('fuse/a.ts', "import { x } from '../hash/y.js';").length, 1);
  assert.deepEqual(v('vfs/a.ts', 'const m = await import(modulePath);'), ['vfs/a.ts: import(modulePath) has a computed specifier the layer check cannot follow']);
  assert.deepEqual(v('vfs/a.ts', "// we used to import('../cli/x.js') here\nconst { open } = await import('node:fs/promises');"), []);
});
