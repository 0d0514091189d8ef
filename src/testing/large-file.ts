// Test support: a repository with the cached 6 GiB sparse file (bench/sparse-file.ts: random regions and
// holes) published into it, built once and cached under /var/tmp/gridbox-test-cache/ (keyed by the file's
// recipe and the publish settings), in a temp dir renamed when complete, so a killed build never leaves a
// half cache; temp dirs of builders that died are removed by the next build.
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CACHE_ROOT, RECIPE, recipeHash, bigSparseFile } from '../bench/sparse-file.js';
import { cliMain, runChild } from '../vfs/mount-fixture.test.js';

export interface LargeFileRepo {
  /** The source file. */
  file: string;
  size: number;
  /** Repository root (mkfs/publish --root): serve it; the master key is in keys/. */
  root: string;
  fqrn: string;
  /** Repository path of the file. */
  path: string;
  /** True when this call built the repository (not found in the cache). */
  built: boolean;
}

const FQRN = 'large.test.org';
/** Bumped when what the cache entry holds changes. */
const LAYOUT_VERSION = 1;

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** The cached repository holding the big sparse file at /big.bin, published with default chunking (building it takes minutes). */
export async function largeFileRepo(env: NodeJS.ProcessEnv): Promise<LargeFileRepo> {
  const big = bigSparseFile();
  const dir = join(CACHE_ROOT, `large-file-repo-${recipeHash({ file: RECIPE, layout: LAYOUT_VERSION })}`);
  const result = (built: boolean): LargeFileRepo => ({ file: big.path, size: big.size, root: join(dir, 'repo'), fqrn: FQRN, path: `/${big.name}`, built });
  if (existsSync(join(dir, 'repo', 'srv', FQRN, '.cvmfspublished'))) return result(false);
  await mkdir(CACHE_ROOT, { recursive: true });
  for (const name of await readdir(CACHE_ROOT)) {
    const m = /^large-file-repo-[0-9a-f]+\.tmp-(\d+)-/.exec(name);
    if (m && !pidAlive(Number(m[1]))) await rm(join(CACHE_ROOT, name), { recursive: true, force: true });
  }
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    const mk = await runChild(process.execPath, [cliMain(), 'mkfs', FQRN, '--root', join(tmp, 'repo')], { env });
    if (mk.code !== 0) throw new Error(`mkfs failed: ${mk.stderr}`);
    const pub = await runChild(process.execPath, [cliMain(), 'publish', FQRN, big.dir, '--root', join(tmp, 'repo')], { env, timeoutMs: 3_600_000 });
    if (pub.code !== 0) throw new Error(`publish of the large file failed: ${pub.stderr}`);
    try {
      await rename(tmp, dir);
    } catch (e) {
      // Another test run finished the same build first: use theirs.
      if (!existsSync(dir)) throw e;
      await rm(tmp, { recursive: true, force: true });
      return result(false);
    }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  return result(true);
}
