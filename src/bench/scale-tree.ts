// The 10^6-entry input tree for the scale test and benchmark: small and empty files, one wide flat
// directory, one deep chain, and a package/version/lib hierarchy. Generated from a recipe (deterministic,
// so counts are known without walking it), built once into a temp dir, renamed into
// /var/tmp/gridbox-test-cache/scale-tree-<entries>-<hash of recipe>/ and reused by later runs.
// Not a copy of real files: the point is entry count and shape, not bytes.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const SCALE_CACHE_ROOT = process.env.GRIDBOX_TEST_CACHE ?? '/var/tmp/gridbox-test-cache';

/** The recipe: bump `version` whenever the layout below changes, so an old cache is never mistaken for the new one. */
const RECIPE = { version: 1, deepLevels: 100, deepFilesPerLevel: 3, wideFiles: 20_000, packages: 50, versions: 20 };

export interface ScaleTree {
  dir: string;
  /** Entries below the root (files and directories), as `find DIR -mindepth 1 | wc -l` counts them. */
  entries: number;
  files: number;
  dirs: number;
  emptyFiles: number;
  bytes: number;
  /** Entries of the widest (flat) directory: no catalog split can make a catalog smaller than this. */
  widest: number;
}

/** Content of the k-th file: every 4th is empty, the others 10-300 bytes and unique. */
function content(k: number): string {
  if (k % 4 === 0) return '';
  return `gridbox scale file ${k}\n`.repeat((k % 7) + 1).slice(0, 10 + (k % 291));
}

type Visit = (kind: 'dir' | 'file', rel: string, k: number) => void;

/** Walks the recipe in creation order (parents before children). */
function layout(entries: number, visit: Visit): void {
  let k = 0;
  const file = (rel: string) => visit('file', rel, k++);
  const dir = (rel: string) => visit('dir', rel, 0);
  // A deep chain: deep/l000/l001/... with a few files at every level.
  dir('deep');
  let p = 'deep';
  for (let i = 0; i < RECIPE.deepLevels; i++) {
    p = `${p}/l${String(i).padStart(3, '0')}`;
    dir(p);
    for (let j = 0; j < RECIPE.deepFilesPerLevel; j++) file(`${p}/f${j}`);
  }
  // One wide flat directory.
  dir('wide');
  for (let i = 0; i < RECIPE.wideFiles; i++) file(`wide/w${String(i).padStart(6, '0')}`);
  // The rest: tree/pNN/vNN/{files, lib/{files}}, the remaining file budget spread round-robin.
  dir('tree');
  const leaves: string[] = [];
  for (let a = 0; a < RECIPE.packages; a++) {
    const pk = `tree/p${String(a).padStart(2, '0')}`;
    dir(pk);
    for (let b = 0; b < RECIPE.versions; b++) {
      const v = `${pk}/v${String(b).padStart(2, '0')}`;
      dir(v);
      dir(`${v}/lib`);
      leaves.push(v, `${v}/lib`);
    }
  }
  const used = 3 + RECIPE.deepLevels * (1 + RECIPE.deepFilesPerLevel) + RECIPE.wideFiles + RECIPE.packages * (1 + RECIPE.versions * 2);
  const remaining = entries - used;
  if (remaining < 0) throw new Error(`scale tree: ${entries} entries are fewer than the fixed part (${used})`);
  const perLeaf = new Array<number>(leaves.length).fill(Math.floor(remaining / leaves.length));
  for (let i = 0; i < remaining % leaves.length; i++) perLeaf[i]++;
  for (let i = 0; i < leaves.length; i++) for (let j = 0; j < perLeaf[i]; j++) file(`${leaves[i]}/f${String(j).padStart(4, '0')}.dat`);
}

function recipeHash(entries: number): string {
  return createHash('sha256').update(JSON.stringify({ ...RECIPE, entries })).digest('hex').slice(0, 16);
}

/** Counts and the cache path, without touching the disk. */
export function describeScaleTree(entries = 1_000_000): ScaleTree {
  const t: ScaleTree = { dir: join(SCALE_CACHE_ROOT, `scale-tree-${entries}-${recipeHash(entries)}`), entries: 0, files: 0, dirs: 0, emptyFiles: 0, bytes: 0, widest: RECIPE.wideFiles };
  layout(entries, (kind, _rel, k) => {
    t.entries++;
    if (kind === 'dir') { t.dirs++; return; }
    t.files++;
    const n = Buffer.byteLength(content(k));
    if (n === 0) t.emptyFiles++;
    t.bytes += n;
  });
  return t;
}

/** The relative path of the i-th file in creation order (for tests that change a few files). */
export function scaleTreeFiles(entries: number, pick: (k: number) => boolean): string[] {
  const out: string[] = [];
  layout(entries, (kind, rel, k) => { if (kind === 'file' && pick(k)) out.push(rel); });
  return out;
}

/** The tree, built on first use (into `<dir>.tmp.<pid>`, then renamed: a killed build leaves no half cache). */
export function ensureScaleTree(entries = 1_000_000): ScaleTree {
  const t = describeScaleTree(entries);
  if (existsSync(t.dir)) return t;
  mkdirSync(SCALE_CACHE_ROOT, { recursive: true });
  const tmp = `${t.dir}.tmp.${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  // Fixed mtimes are not needed (the content is deterministic); synchronous calls are the fastest way
  // to create a million small files from Node.
  layout(entries, (kind, rel, k) => {
    const p = join(tmp, rel);
    if (kind === 'dir') { mkdirSync(p); return; }
    const fd = openSync(p, 'w', 0o644);
    try {
      const c = content(k);
      if (c.length > 0) writeSync(fd, c);
    } finally {
      closeSync(fd);
    }
  });
  try {
    renameSync(tmp, t.dir);
  } catch (e) {
    // Another process finished the same tree first: keep theirs.
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(t.dir)) throw e;
  }
  return t;
}
