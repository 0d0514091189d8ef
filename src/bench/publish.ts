// Publish benchmark (issue 2): gridbox publish vs `mksquashfs -comp gzip -Xcompression-level 6` on the same
// tree, same core count, page cache in the same state, interleaved rounds; plus an unchanged republish.
// The tree (~700 MB / 50k files from /usr/share then /usr/lib) is built once into a cache dir and reused.
// Then one 6 GiB sparse file (random regions and holes, cached like the at-size tests' input) published by
// the `gridbox publish` CLI against mksquashfs, both as child processes with their peak RSS (VmHWM).
// Knobs: GRIDBOX_BENCH_PUBLISH_MB, _FILES, _ROUNDS, GRIDBOX_BENCH_TREE_DIR, GRIDBOX_BENCH_DROP_CACHES=1 (root),
// GRIDBOX_BENCH_PUBLISH_BIG=0 (skip the big file).
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRepository } from '../publish/create-repository.js';
import { publishDirectory } from '../publish/publisher.js';
import { DEFAULT_SETTINGS, repoLayout } from '../publish/repo-layout.js';

import { copyCapped, type TreeStats } from './copy-tree.js';
import { bigSparseFile, mib, runMeasured } from './sparse-file.js';
import { fileURLToPath } from 'node:url';

/** The cached input tree: built once (into a temp name, renamed when complete), reused by later runs. */
export async function benchTree(dir: string, maxBytes: number, maxFiles: number): Promise<TreeStats> {
  const statsFile = `${dir}.json`;
  try {
    return JSON.parse(await readFile(statsFile, 'utf8')) as TreeStats;
  } catch { /* not built yet */ }
  const partial = `${dir}.partial`;
  await rm(partial, { recursive: true, force: true });
  await rm(dir, { recursive: true, force: true });
  // /usr/share alone is ~50k files of ~10 KB: most of the file budget from it, the bytes from /usr/lib
  // (libraries, compilers, runtimes: what software repositories hold).
  const stats = await copyCapped([{ dir: '/usr/share', share: 0.9 }, { dir: '/usr/lib', share: 1 }], partial, maxBytes, maxFiles);
  await rename(partial, dir);
  await writeFile(statsFile, JSON.stringify(stats));
  return stats;
}

/** Brings every file of the tree into the page cache (or drops all caches), after flushing dirty pages. */
async function settleCache(tree: string, drop: boolean): Promise<void> {
  spawnSync('sync');
  if (drop) { writeFileSync('/proc/sys/vm/drop_caches', '3'); return; }
  const buf = Buffer.allocUnsafe(1 << 20);
  const visit = async (dir: string): Promise<void> => {
    for (const d of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, d.name);
      if (d.isDirectory()) await visit(p);
      else if (d.isFile()) {
        const fd = openSync(p, 'r');
        try { while (readSync(fd, buf, 0, buf.length, null) > 0); } finally { closeSync(fd); }
      }
    }
  };
  await visit(tree);
}

const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const row = (what: string, who: string, s: TreeStats, t: number, extra = '') =>
  `${what.padEnd(10)} ${who.padEnd(18)} ${t.toFixed(2).padStart(7)} s ${(s.files / t).toFixed(0).padStart(7)} files/s ${(s.bytes / 1e6 / t).toFixed(1).padStart(7)} MB/s${extra}`;

export async function run(): Promise<string[]> {
  const maxMb = Number(process.env.GRIDBOX_BENCH_PUBLISH_MB ?? 700);
  const maxFiles = Number(process.env.GRIDBOX_BENCH_PUBLISH_FILES ?? 50_000);
  const rounds = Math.max(1, Number(process.env.GRIDBOX_BENCH_PUBLISH_ROUNDS ?? 2));
  const drop = process.env.GRIDBOX_BENCH_DROP_CACHES === '1';
  const cores = availableParallelism();
  const treeDir = process.env.GRIDBOX_BENCH_TREE_DIR ?? `/var/tmp/gridbox-bench-tree-v2-${maxMb}mb-${maxFiles}`;
  const tree = await benchTree(treeDir, maxMb * 1e6, maxFiles);
  const rows = [`tree: ${treeDir}: ${tree.files} files, ${(tree.bytes / 1e6).toFixed(1)} MB; ${cores} cores for both; page cache ${drop ? 'dropped' : 'warm'} before each run; ${rounds} interleaved rounds`];
  const work = await mkdtemp(join(tmpdir(), 'gridbox-bench-publish-'));
  const best = { ours: Infinity, theirs: Infinity, again: Infinity };
  try {
    const ours = async (round: number): Promise<void> => {
      const layout = repoLayout(join(work, `repo-${round}`), 'bench.gridbox.local');
      await createRepository(layout, DEFAULT_SETTINGS);
      await settleCache(treeDir, drop);
      let t0 = process.hrtime.bigint();
      await publishDirectory(treeDir, { layout, settings: DEFAULT_SETTINGS, workers: cores, xattrs: 'auto' });
      const first = secs(t0);
      rows.push(row('publish', 'gridbox', tree, first));
      await settleCache(treeDir, drop);
      t0 = process.hrtime.bigint();
      const r2 = await publishDirectory(treeDir, { layout, settings: DEFAULT_SETTINGS, workers: cores, xattrs: 'auto' });
      const again = secs(t0);
      rows.push(row('republish', 'gridbox', tree, again, ` ${((again / first) * 100).toFixed(1)}% of publish (${r2.objectsWritten} new objects)`));
      best.ours = Math.min(best.ours, first);
      best.again = Math.min(best.again, again);
      await rm(layout.root, { recursive: true, force: true });
    };
    const theirs = async (): Promise<void> => {
      const out = join(work, 'out.sqfs');
      await rm(out, { force: true });
      await settleCache(treeDir, drop);
      const t0 = process.hrtime.bigint();
      const sq = spawnSync('mksquashfs', [treeDir, out, '-comp', 'gzip', '-Xcompression-level', '6', '-processors', String(cores), '-no-progress', '-quiet'], { encoding: 'utf8' });
      const t = secs(t0);
      if (sq.status !== 0) throw new Error(`mksquashfs failed: ${sq.stderr || String(sq.error)}`);
      // gridbox's time includes a sync of the file system before its manifest; mksquashfs does none.
      // Shown beside its row, not added to it.
      const t1 = process.hrtime.bigint();
      spawnSync('sync', ['-f', out]);
      rows.push(row('publish', 'mksquashfs gzip-6', tree, t, ` (its output then took ${secs(t1).toFixed(2)} s to sync; not counted)`));
      best.theirs = Math.min(best.theirs, t);
      await rm(out, { force: true });
    };
    for (let i = 0; i < rounds; i++) {
      // Alternate who goes first, so neither always runs on a machine the other just heated.
      if (i % 2 === 0) { await ours(i); await theirs(); } else { await theirs(); await ours(i); }
    }
    rows.push(`best of ${rounds}: gridbox ${best.ours.toFixed(2)} s, mksquashfs ${best.theirs.toFixed(2)} s: gridbox speed ${(best.theirs / best.ours).toFixed(2)}x mksquashfs (target >= 0.8x)`);
    rows.push(`best of ${rounds}: republish ${best.again.toFixed(2)} s = ${((best.again / best.ours) * 100).toFixed(1)}% of publish (target <= 5%)`);
    if (process.env.GRIDBOX_BENCH_PUBLISH_BIG !== '0') rows.push(...await bigFileRows(work, cores, rounds));
    return rows;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The 6 GiB sparse file: `gridbox publish` (CLI, child process) vs mksquashfs gzip-6, interleaved, with peak RSS. */
async function bigFileRows(work: string, cores: number, rounds: number): Promise<string[]> {
  const big = bigSparseFile();
  const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  const stats: TreeStats = { files: 1, bytes: big.size };
  const rows = [`big file: ${big.path}: ${mib(big.size)} (${big.regions.length} random regions of ${mib(big.regions[0].length)}, holes between)`];
  const best = { ours: Infinity, theirs: Infinity, oursRss: 0, theirsRss: 0 };
  const ours = async (round: number): Promise<void> => {
    const layout = repoLayout(join(work, `big-${round}`), 'big.gridbox.local');
    await createRepository(layout, DEFAULT_SETTINGS);
    await settleCache(big.dir, false);
    const t0 = process.hrtime.bigint();
    const r = await runMeasured(process.execPath, [main, 'publish', layout.fqrn, big.dir, '--root', layout.root, '--workers', String(cores)]);
    const t = secs(t0);
    if (r.code !== 0) throw new Error(`gridbox publish of the big file failed: ${r.stderr}`);
    rows.push(row('big file', 'gridbox', stats, t, ` peak RSS ${mib(r.peakRssBytes)}`));
    if (t < best.ours) { best.ours = t; best.oursRss = r.peakRssBytes; }
    await rm(layout.root, { recursive: true, force: true });
  };
  const theirs = async (): Promise<void> => {
    const out = join(work, 'big.sqfs');
    await rm(out, { force: true });
    await settleCache(big.dir, false);
    const t0 = process.hrtime.bigint();
    const r = await runMeasured('mksquashfs', [big.dir, out, '-comp', 'gzip', '-Xcompression-level', '6', '-processors', String(cores), '-no-progress', '-quiet']);
    const t = secs(t0);
    if (r.code !== 0) throw new Error(`mksquashfs of the big file failed: ${r.stderr}`);
    rows.push(row('big file', 'mksquashfs gzip-6', stats, t, ` peak RSS ${mib(r.peakRssBytes)}`));
    if (t < best.theirs) { best.theirs = t; best.theirsRss = r.peakRssBytes; }
    await rm(out, { force: true });
  };
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) { await ours(i); await theirs(); } else { await theirs(); await ours(i); }
  }
  rows.push(`best of ${rounds}: big file gridbox ${best.ours.toFixed(2)} s (peak RSS ${mib(best.oursRss)}), mksquashfs ${best.theirs.toFixed(2)} s (peak RSS ${mib(best.theirsRss)}): gridbox speed ${(best.theirs / best.ours).toFixed(2)}x mksquashfs (target >= 0.8x)`);
  return rows;
}
