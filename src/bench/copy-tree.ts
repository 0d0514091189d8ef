// The benchmarks' input trees: real files copied from the system (/usr/share, /usr/lib) under a file and
// byte cap, each source into its own top-level directory. Shared by the publish and mount benchmarks.
import { copyFile, lstat, mkdir, readdir, readlink, symlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface TreeStats { files: number; bytes: number }

/** Copies `from` in order, each source taking at most `share` of the file cap, all within the caps. */
export async function copyCapped(from: { dir: string; share: number }[], to: string, maxBytes: number, maxFiles: number): Promise<TreeStats> {
  const acc = { files: 0, bytes: 0 };
  let fileCap = 0;
  const visit = async (src: string, dst: string): Promise<void> => {
    let names: string[];
    try { names = (await readdir(src)).sort(); } catch { return; }
    await mkdir(dst, { recursive: true });
    for (const n of names) {
      if (acc.files >= fileCap || acc.bytes >= maxBytes) return;
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
  for (const f of from) {
    fileCap = Math.min(maxFiles, acc.files + Math.round(f.share * maxFiles));
    await visit(f.dir, join(to, f.dir.replace(/\//g, '_')));
  }
  return acc;
}
