// Temp file then rename: readers see the old content or the new, never a half-written file. The temp
// file sits beside the target (same filesystem, so rename is atomic) unless tmpDir is given, and its name
// carries the writer's pid so a cleanup can tell a dead writer's leftover from a live one's work.
// Not a lock: two concurrent writers of one path both succeed, the last rename wins.
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** File mode of the new file, set exactly (umask does not apply); default 0o644 less the umask. */
  mode?: number;
  /** fsync the data before the rename and the directory after it (durable across a crash); default false. */
  fsync?: boolean;
  /** Where the temp file goes; must be on the target's filesystem. Default: the target's directory. */
  tmpDir?: string;
  /** Called with the data complete in the temp file, just before the rename: where crash tests stop a writer. */
  beforeRename?: () => void;
}

/**
 * Random per process (and per worker thread), then counted: randomBytes per file cost a snapshot seconds.
 * Math.random, not node:crypto: the name only has to differ from other writers' (pid and counter already
 * do, and open('wx') refuses a clash), and loading crypto cost the runtime shim ~5 ms per container start.
 */
const tempTag = { prefix: '', n: 0 };

/** A unique temp path for `path`: `<dir>/.<base>.tmp.<pid>.<random hex>`. */
export function tempPathFor(path: string, tmpDir?: string): string {
  if (tempTag.prefix === '') tempTag.prefix = Math.floor(Math.random() * 2 ** 48).toString(16).padStart(12, '0');
  return join(tmpDir ?? dirname(path), `.${basename(path)}.tmp.${process.pid}.${tempTag.prefix}${(++tempTag.n).toString(16)}`);
}

/** The writer's pid from a tempPathFor() name (a base name or a whole path), or undefined. */
export function tempOwnerPid(name: string): number | undefined {
  const m = /\.tmp\.(\d{1,10})\.[0-9a-f]+$/.exec(basename(name));
  if (m === null) return undefined;
  const pid = Number(m[1]);
  return pid > 0 ? pid : undefined;
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes `data` to a temp file, then renames it over `path`. On failure the temp file is removed and the error rethrown. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  // Loaded on first use: the runtime shim reaches this module through its start spool, which writes synchronously.
  const { open, rename, rm } = await import('node:fs/promises');
  const tmp = tempPathFor(path, opts.tmpDir);
  try {
    const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
    try {
      if (opts.mode !== undefined) await fh.chmod(opts.mode);
      await fh.writeFile(data);
      if (opts.fsync) await fh.sync();
    } finally {
      await fh.close();
    }
    opts.beforeRename?.();
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  if (opts.fsync) syncDir(dirname(path));
}

/** The synchronous twin of writeFileAtomic, for exit paths and code that has no event loop to spare. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  const tmp = tempPathFor(path, opts.tmpDir);
  try {
    const fd = openSync(tmp, 'wx', opts.mode ?? 0o644);
    try {
      if (opts.mode !== undefined) fchmodSync(fd, opts.mode);
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      for (let off = 0; off < buf.byteLength;) off += writeSync(fd, buf, off, buf.byteLength - off);
      if (opts.fsync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    opts.beforeRename?.();
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  if (opts.fsync) syncDir(dirname(path));
}
