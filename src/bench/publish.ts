// Publish benchmark (issue 2): a tree copied from /usr/share and /usr/lib (capped at ~700 MB / 50k files;
// GRIDBOX_BENCH_PUBLISH_MB and GRIDBOX_BENCH_PUBLISH_FILES turn it down), published by gridbox vs
// `mksquashfs -comp gzip -Xcompression-level 6 -processors 2` in one run, plus an unchanged republish.
import { spawnSync } from 'node:child_process';
import { copyFile, lstat, mkdir, mkdtemp, readdir, readlink, rm, symlink } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRepository } from '../publish/create-repository.js';
import { publishDirectory } from '../publish/publisher.js';
import { DEFAULT_SETTINGS, repoLayout } from '../publish/repo-layout.js';

async function copyCapped(from: string[], to: string, maxBytes: number, maxFiles: number): Promise<{ files: number; bytes: number }> {
  const acc = { files: 0, bytes: 0 };
  const visit = async (src: string, dst: string): Promise<void> => {
    let names: string[];
    try { names = (await readdir(src)).sort(); } catch { return; }
    await mkdir(dst, { recursive: true });
    for (const n of names) {
      if (acc.files >= maxFiles || acc.bytes >= maxBytes) return;
      const s = join(src, n), d = join(dst, n);
      const st = await lstat(s).catch(() => undefined);
      if (st === undefined) continue;
      if (st.isDirectory()) await visit(s, d);
      else if (st.isSymbolicLink()) { await symlink(await readlink(s), d); acc.files++; }
      else if (st.isFile() && st.size <= maxBytes - acc.bytes) {
        if (await copyFile(s, d).then(() => true, () => false)) { acc.files++; acc.bytes += st.size; }
      }
    }
  };
  for (const f of from) await visit(f, join(to, f.replace(/\//g, '_')));
  return acc;
}

const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const row = (name: string, files: number, bytes: number, s: number) =>
  `${name.padEnd(28)} ${s.toFixed(2).padStart(8)} s ${(files / s).toFixed(0).padStart(8)} files/s ${(bytes / 1e6 / s).toFixed(1).padStart(8)} MB/s`;

export async function run(): Promise<string[]> {
  const maxMb = Number(process.env.GRIDBOX_BENCH_PUBLISH_MB ?? 700);
  const maxFiles = Number(process.env.GRIDBOX_BENCH_PUBLISH_FILES ?? 50_000);
  const dir = await mkdtemp(join(tmpdir(), 'gridbox-bench-publish-'));
  const rows: string[] = [];
  try {
    const src = join(dir, 'src');
    const { files, bytes } = await copyCapped(['/usr/share', '/usr/lib'], src, maxMb * 1e6, maxFiles);
    rows.push(`tree: ${files} files, ${(bytes / 1e6).toFixed(1)} MB, ${availableParallelism()} cores`);
    spawnSync('sync');
    const layout = repoLayout(join(dir, 'repo'), 'bench.gridbox.local');
    await createRepository(layout, DEFAULT_SETTINGS);
    let t0 = process.hrtime.bigint();
    await publishDirectory(src, { layout, settings: DEFAULT_SETTINGS, xattrs: false });
    const ours = secs(t0);
    rows.push(row('gridbox publish', files, bytes, ours));
    t0 = process.hrtime.bigint();
    const sq = spawnSync('mksquashfs', [src, join(dir, 'out.sqfs'), '-comp', 'gzip', '-Xcompression-level', '6', '-processors', String(availableParallelism()), '-no-progress', '-quiet'], { encoding: 'utf8' });
    const theirs = secs(t0);
    if (sq.status !== 0) rows.push(`mksquashfs failed: ${sq.stderr || sq.error}`);
    else rows.push(row('mksquashfs gzip-6', files, bytes, theirs));
    t0 = process.hrtime.bigint();
    const r2 = await publishDirectory(src, { layout, settings: DEFAULT_SETTINGS, xattrs: false });
    const again = secs(t0);
    rows.push(row('gridbox republish unchanged', files, bytes, again) + ` (${r2.objectsWritten} new objects)`);
    rows.push(`speed vs mksquashfs: ${(theirs / ours).toFixed(2)}x (target >= 0.8x); republish/publish: ${((again / ours) * 100).toFixed(1)}% (target <= 5%)`);
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
