// Large test inputs cached under /var/tmp/gridbox-test-cache/: the 6 GiB sparse file (bench/sparse-file.ts,
// shared with the publish bench) and an image layer (gzip -1 tar) holding it, built into a temp name
// and renamed. Test support only.
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CACHE_ROOT, RECIPE, recipeHash, type BigSparseFile } from '../bench/sparse-file.js';

export { bigSparseFile, mib, runMeasured, vmHwmBytes, type BigSparseFile, type Measured } from '../bench/sparse-file.js';

/** A gzip -1 tar (one entry, `big.bin`, mode 0644, uid 0) of the big file, as an image layer blob. */
export function bigLayerBlob(big: BigSparseFile): { path: string; size: number } {
  const dir = join(CACHE_ROOT, `sparse-6g-layer-${recipeHash({ ...RECIPE, layer: 'tar-gzip1-v1' })}`);
  const path = join(dir, 'layer.tar.gz');
  try {
    return { path, size: statSync(path).size };
  } catch { /* not built yet */ }
  const tmp = `${dir}.tmp.${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  // No -S: a plain tar entry with the holes as zeros, as image builders write them.
  const r = spawnSync('sh', ['-c', `tar c --owner=0 --group=0 --numeric-owner --mtime=@1700000000 --mode=0644 -C "$1" "$2" | gzip -1 > "$3"`, 'sh', big.dir, big.name, join(tmp, 'layer.tar.gz')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`building the big layer failed (${r.status})`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return { path, size: statSync(path).size };
}

