// Test support: a large sparse file (pseudo-random regions, holes between them, data at the very end) and
// a repository with it published, built once and cached under /var/tmp/gridbox-test-cache/ (keyed by a
// hash of the recipe), built in a temp dir and renamed, so a killed build never leaves a half cache.
// Deterministic content: AES-256-CTR keystream seeded by the recipe, so a rebuild gives the same bytes.
import { createCipheriv, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { cliMain, runChild } from '../vfs/mount-fixture.test.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const TEST_CACHE_BASE = '/var/tmp/gridbox-test-cache';

export interface LargeFileRecipe {
  /** File size in bytes. */
  size: number;
  /** The file is laid out in stripes of this many bytes: data first, then a hole. */
  stripeBytes: number;
  /** Pseudo-random bytes at the start of each stripe; the rest of the stripe is a hole (zeros). */
  dataBytes: number;
  /** Chunker settings the repository is published with (bytes). */
  chunkMin: number;
  chunkAvg: number;
  chunkMax: number;
  /** Bumped when the layout of the cache entry changes. */
  version: number;
}

export interface LargeFileRepo {
  /** The source file. */
  file: string;
  /** Repository root (mkfs/publish --root): serve it, keys in keys/. */
  root: string;
  fqrn: string;
  /** Repository path of the file. */
  path: string;
  /** True when this call built it (not found in the cache). */
  built: boolean;
}

const FQRN = 'large.test.org';
const PIECE_BYTES = 8 * MiB;

/** The data regions of the recipe: [offset, length] pairs; the file's last bytes are always data. */
export function dataRegions(r: LargeFileRecipe): [number, number][] {
  const out: [number, number][] = [];
  for (let off = 0; off < r.size; off += r.stripeBytes) out.push([off, Math.min(r.dataBytes, r.size - off)]);
  const tail = Math.min(MiB + 12_345, r.size);
  const last = out[out.length - 1];
  if (last[0] + last[1] < r.size - tail) out.push([r.size - tail, tail]);
  return out;
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

async function writeLargeFile(path: string, r: LargeFileRecipe, seed: Buffer): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const zeros = Buffer.alloc(PIECE_BYTES);
    for (const [off, len] of dataRegions(r)) {
      // A keystream per region (IV from its offset): the bytes do not depend on the other regions.
      const iv = Buffer.alloc(16);
      iv.writeBigUInt64BE(BigInt(off), 0);
      const cipher = createCipheriv('aes-256-ctr', seed, iv);
      for (let done = 0; done < len;) {
        const n = Math.min(PIECE_BYTES, len - done);
        const piece = cipher.update(zeros.subarray(0, n));
        await fh.write(piece, 0, n, off + done);
        done += n;
      }
    }
    await fh.truncate(r.size);
  } finally {
    await fh.close();
  }
}

/** The cached file and repository for `r`, building them (minutes for GiBs) when absent. */
export async function largeFileRepo(r: LargeFileRecipe, env: NodeJS.ProcessEnv): Promise<LargeFileRepo> {
  const key = createHash('sha256').update(JSON.stringify(r)).digest('hex').slice(0, 16);
  const dir = join(TEST_CACHE_BASE, `large-file-${key}`);
  const result = (built: boolean): LargeFileRepo => ({ file: join(dir, 'src', 'large.bin'), root: join(dir, 'repo'), fqrn: FQRN, path: '/large.bin', built });
  if (existsSync(join(dir, 'repo', 'srv', FQRN, '.cvmfspublished'))) return result(false);
  await mkdir(TEST_CACHE_BASE, { recursive: true });
  // Half-built entries of killed test runs (their pid is gone) are removed; a live build is left alone.
  for (const name of await readdir(TEST_CACHE_BASE)) {
    const m = /^large-file-[0-9a-f]+\.tmp-(\d+)-/.exec(name);
    if (m && !pidAlive(Number(m[1]))) await rm(join(TEST_CACHE_BASE, name), { recursive: true, force: true });
  }
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  await rm(tmp, { recursive: true, force: true });
  try {
    await mkdir(join(tmp, 'src'), { recursive: true });
    await writeLargeFile(join(tmp, 'src', 'large.bin'), r, createHash('sha256').update(`gridbox large file ${key}`).digest());
    const mk = await runChild(process.execPath, [cliMain(), 'mkfs', FQRN, '--root', join(tmp, 'repo')], { env });
    if (mk.code !== 0) throw new Error(`mkfs failed: ${mk.stderr}`);
    const pub = await runChild(process.execPath, [cliMain(), 'publish', FQRN, join(tmp, 'src'), '--root', join(tmp, 'repo'),
      '--chunk-min', String(r.chunkMin), '--chunk-avg', String(r.chunkAvg), '--chunk-max', String(r.chunkMax)], { env, timeoutMs: 3_600_000 });
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
