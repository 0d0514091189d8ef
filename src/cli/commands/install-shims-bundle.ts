// The runtime bundle the shims run: runtime-main.js and every module it reaches, bundled by esbuild into one
// CommonJS file, dist/cli/runtime-bundle.cjs. Why: HTCondor and GlideinWMS start the runtime several times per
// job, and under Node 20 an ES module entry costs ~20% of a bare `node -e 0` before any of our code runs, each
// module more; a CommonJS file costs ~3% (measured in issue 11's runtime start overhead). esbuild keeps the
// modules reached only by dynamic import() (the accounting database, the mount's control socket) lazy: their
// code, and the packages they require (better-sqlite3), is evaluated only when imported, as before.
// Correctness never depends on the bundle: it lists the files it was made from with their sizes and mtimes,
// checks them at each start (a few stat calls), and runs main.js instead when any differs.
import { readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Plugin } from 'esbuild';
import { writeFileAtomicSync } from '../../plumbing/atomic-write.js';
import { restoreShimEnv } from '../shim-env.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ENTRY = join(HERE, '..', 'runtime-main.js');
const MAIN = join(HERE, '..', 'main.js');
export const BUNDLE_NAME = 'runtime-bundle.cjs';
const MARK = '// gridbox runtime bundle, sources: ';

/**
 * Packages required at run time from their installed place rather than bundled: native addons (a .node file
 * is found relative to the package's own files) and anything else that must be the package itself.
 */
export const EXTERNAL_PACKAGES = ['better-sqlite3', 'gridbox-fuse-ioctl'];

// The generated prologue's own dynamic import, spelled so that the layer check (architecture.test.ts), which
// reads this file's source, does not take the generated code for an import of this module.
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

/** True when `bundle` is one of ours and every source it lists is unchanged (a stat per source). */
export function bundleIsFresh(bundle: string): boolean {
  const m = readManifest(bundle);
  return m !== undefined && m.length > 0 && fresh(m);
}

/**
 * Externals by absolute path: the bundle may live outside dist/ (the shim dir's fallback copy), where a bare
 * `require('better-sqlite3')` would find no node_modules. Resolved from the importing module, as Node would.
 */
const externalsByPath: Plugin = {
  name: 'gridbox-externals-by-path',
  setup(b) {
    const names = EXTERNAL_PACKAGES.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
    b.onResolve({ filter: new RegExp(`^(${names})(/.*)?$`) }, (args) => ({
      path: createRequire(args.importer).resolve(args.path),
      external: true,
    }));
    // An addon file named literally by a bundled package, likewise by its absolute path.
    b.onResolve({ filter: /^\.{0,2}\/.*\.node$/ }, (args) => ({ path: resolve(args.resolveDir, args.path), external: true }));
  },
};

/**
 * Each module's own import.meta.url/dirname/filename as literals. esbuild leaves import.meta empty in CommonJS
 * output, and one variable set from the bundle's __filename would be wrong for every module outside dist/cli
 * (and for all of them in the shim dir's copy): paths computed from import.meta must still name dist/ files.
 * Any other use of import.meta fails the build (logOverride below), so no bundle is made rather than a wrong one.
 */
const importMetaOfEachModule: Plugin = {
  name: 'gridbox-import-meta',
  setup(b) {
    b.onLoad({ filter: /\.[cm]?js$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('import.meta')) return undefined; // esbuild reads it itself
      const values: Record<string, string> = { url: pathToFileURL(args.path).href, dirname: dirname(args.path), filename: args.path };
      return { contents: text.replace(/\bimport\.meta\.(url|dirname|filename)\b/g, (_, k: string) => JSON.stringify(values[k])), loader: 'js' };
    });
  },
};

/**
 * The bundle's text for `entry`: esbuild's CommonJS output wrapped in a function that runs only while every
 * input (manifest) is unchanged; otherwise `mainJs` runs. Also returns the inputs, for tests.
 */
export async function bundleText(entry: string, mainJs: string): Promise<{ text: string; files: string[] }> {
  const { build } = await import('esbuild');
  // The manifest is made after the build, so a compiled file rewritten while esbuild read it would pass as
  // fresh: a file whose mtime is not older than the build's start (less a few ms, the kernel's file clock
  // is coarse) makes us build again, and a tree still being rewritten gets no bundle.
  for (let attempt = 1; ; attempt++) {
    const startedAt = Date.now() - 20;
    const out = await build({
      entryPoints: [resolve(entry)],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      plugins: [externalsByPath, importMetaOfEachModule],
      logOverride: { 'empty-import-meta': 'error' },
      logLevel: 'silent',
      metafile: true,
      write: false,
      outfile: join(dirname(resolve(entry)), BUNDLE_NAME),
    });
    const files = Object.keys(out.metafile.inputs).map((f) => resolve(f));
    const manifest = manifestOf(files);
    const moved = manifest.find(([, , mtime]) => mtime >= startedAt);
    if (moved === undefined) return { text: wrap(out.outputFiles, manifest, mainJs), files };
    if (attempt === 3) throw new Error(`${moved[0]} keeps changing while it is bundled`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** esbuild's output inside a function that runs only while the manifest's files are unchanged, else main.js. */
function wrap(outputs: Array<{ path: string; text: string }>, manifest: Manifest, mainJs: string): string {
  const code = outputs.find((f) => f.path.endsWith('.cjs'))?.text;
  if (code === undefined) throw new Error('esbuild wrote no bundle');
  // No 'use strict' of our own: esbuild's output states it at its top when its modules want it.
  return `${MARK}${JSON.stringify(manifest)}
// Written by \`gridbox install-shims\` (src/cli/commands/install-shims-bundle.ts, esbuild); do not edit.
// What the shim moved aside before starting node (src/cli/shim-env.ts) is back before anything reads the environment.
(${restoreShimEnv.toString()})(process.env);
// The daemon asks whether it runs from a fresh bundle (it builds one for the next mount when not).
if (__gridboxSourcesUnchanged()) { globalThis.__gridboxBundle = __filename; __gridboxRuntime(); }
// The compiled sources changed since this bundle was made: their own entry point runs, never stale code.
else ${DYNAMIC_IMPORT}(${JSON.stringify(pathToFileURL(mainJs).href)});
function __gridboxSourcesUnchanged() {
  const { statSync } = require('node:fs');
  const manifest = ${JSON.stringify(manifest)};
  for (const [f, size, mtime] of manifest) {
    let s;
    try { s = statSync(f); } catch { return false; }
    if (s.size !== size || s.mtimeMs !== mtime) return false;
  }
  return true;
}
function __gridboxRuntime() {
${code}}
`;
}

/**
 * The path of an up-to-date runtime bundle, built beside the compiled CLI when missing or stale (or in
 * `fallbackDir` when dist/ is read-only). Undefined when it cannot be built or fails its smoke test: the
 * shims then run main.js, as before the bundle existed.
 */
export async function ensureRuntimeBundle(fallbackDir?: string): Promise<string | undefined> {
  const candidates = [join(HERE, '..', BUNDLE_NAME), ...(fallbackDir ? [join(fallbackDir, `.gridbox-${BUNDLE_NAME}`)] : [])];
  for (const c of candidates) {
    if (bundleIsFresh(c)) return c;
  }
  let built: { text: string; files: string[] };
  try {
    built = await bundleText(ENTRY, MAIN);
  } catch { return undefined; } // esbuild missing, a module it cannot bundle, a file changed meanwhile: main.js
  for (const c of candidates) {
    try { writeFileAtomicSync(c, built.text, { mode: 0o644 }); } catch { continue; }
    // The smoke test: the bundle answers `apptainer version` like main.js does.
    const r = spawnSync(process.execPath, [c, 'version'], { env: { ...process.env, GRIDBOX_ARGV0: 'apptainer' }, encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0 && /^\d+\.\d+/.test(r.stdout)) return c;
    return undefined;
  }
  return undefined;
}
