// The 6 GiB sparse input of the at-size tests and the big-file publish bench, built once and cached
// under /var/tmp/gridbox-test-cache/ (into a temp name, then renamed, so a killed build never leaves a
// half cache): random 64 MiB regions every ~1 GiB, holes between. Also a peak-RSS probe for child
// processes. Lives in bench/ because production-layer code may not import testing/ (tests may import this).
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const CACHE_ROOT = '/var/tmp/gridbox-test-cache';
const GIB = 2 ** 30;
const MIB = 2 ** 20;

export interface BigSparseFile {
  /** Directory holding only the file (publishable as a tree). */
  dir: string;
  name: string;
  path: string;
  size: number;
  /** The random regions; everything else is a hole. */
  regions: { offset: number; length: number }[];
}

export const RECIPE = {
  version: 1,
  size: 6 * GIB,
  regionBytes: 64 * MIB,
  // One region per GiB, at offsets that are not block-aligned (k GiB + k·37 MiB + 4099).
  regions: [0, 1, 2, 3, 4, 5].map((k) => k * GIB + k * 37 * MIB + 4099),
  seed: 'gridbox-sparse-v1',
};

export function recipeHash(r: object): string {
  return createHash('sha256').update(JSON.stringify(r)).digest('hex').slice(0, 16);
}

/** The cached 6 GiB sparse file (about 384 MiB on disk), built on first use. */
export function bigSparseFile(): BigSparseFile {
  const dir = join(CACHE_ROOT, `sparse-6g-${recipeHash(RECIPE)}`);
  const name = 'big.bin';
  const regions = RECIPE.regions.map((offset) => ({ offset, length: RECIPE.regionBytes }));
  const out = { dir, name, path: join(dir, name), size: RECIPE.size, regions };
  try {
    if (statSync(out.path).size === RECIPE.size) return out;
  } catch { /* not built yet */ }
  const tmp = `${dir}.tmp.${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const fd = openSync(join(tmp, name), 'w', 0o644);
  try {
    ftruncateSync(fd, RECIPE.size);
    const key = createHash('sha256').update(RECIPE.seed).digest().subarray(0, 16);
    const zeros = Buffer.alloc(MIB);
    for (const [i, r] of regions.entries()) {
      // AES-CTR keystream: deterministic, incompressible, generated at memory speed.
      const iv = Buffer.alloc(16);
      iv.writeUInt32BE(i, 0);
      const cipher = createCipheriv('aes-128-ctr', key, iv);
      for (let off = 0; off < r.length; off += MIB) writeSync(fd, cipher.update(zeros), 0, MIB, r.offset + off);
    }
  } finally {
    closeSync(fd);
  }
  mkdirSync(CACHE_ROOT, { recursive: true });
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return out;
}

export interface Measured {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Peak resident set of the child (VmHWM), in bytes; 0 when it was never seen. */
  peakRssBytes: number;
}

/** VmHWM of a process, in bytes (undefined once it is gone). */
export function vmHwmBytes(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs a command and follows its peak RSS by polling VmHWM (a high-water mark, so only the last poll
 * interval before exit can escape it). `onChild` sees the child (to pipe into it, or to kill it).
 */
export function runMeasured(cmd: string, args: string[], opts: SpawnOptions & { onChild?: (c: ChildProcess) => void; onStdout?: (b: Buffer) => void } = {}): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let peak = 0;
    const poll = (): void => { const v = vmHwmBytes(child.pid!); if (v !== undefined && v > peak) peak = v; };
    const timer = setInterval(poll, 20);
    child.stdout?.on('data', (b: Buffer) => { if (opts.onStdout) opts.onStdout(b); else stdout += b.toString(); poll(); });
    child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
    child.on('error', (e) => { clearInterval(timer); reject(e); });
    child.on('exit', () => poll());
    child.on('close', (code, signal) => {
      clearInterval(timer);
      resolve({ code, signal, stdout, stderr, peakRssBytes: peak });
    });
    opts.onChild?.(child);
  });
}

/** For messages: bytes as MiB. */
export function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}
