// What the server remembers about the files it serves: each URL path's resolved file below srv/ (so the
// path checks and realpath run once per path, not once per request) and, within a byte bound, the bytes of
// small files. Every request still checks its file with one stat, so a replaced, repaired or deleted file
// is never served from memory. Not a general cache: it knows nothing of HTTP.
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, type Stats } from 'node:fs';

/** Files up to this size are read whole (and may be kept); larger ones are streamed. */
export const DEFAULT_MAX_INLINE_BYTES = 1 << 20;
/** URL paths remembered at most; a resolution is a few hundred bytes. */
export const MAX_RESOLVED_PATHS = 200_000;

/** One version of a file: its identity as stat saw it, and its bytes when small enough to read whole. */
export interface FileVersion {
  size: number;
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
  mtime: Date;
  /** The whole file, read through the same descriptor its stat came from; absent for large files. */
  body?: Buffer;
}

export interface FileTableOptions {
  /** Bytes of file contents kept across requests (least recently used dropped first); 0 keeps none. */
  maxCachedBytes: number;
  maxInlineBytes?: number;
}

function sameVersion(v: FileVersion, st: Stats): boolean {
  return v.ino === st.ino && v.size === st.size && v.mtimeMs === st.mtimeMs && v.ctimeMs === st.ctimeMs;
}

function versionOf(st: Stats, body?: Buffer): FileVersion {
  return { size: st.size, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, mtime: st.mtime, body };
}

/**
 * Synchronous on purpose: the metadata and bytes of a served tree sit in the page cache, where a blocking
 * stat or 64 KiB read costs a few microseconds and a round trip through libuv's thread pool costs more.
 * This is how nginx reads files too (blocking calls in a worker per core); `gridbox serve` runs one
 * worker per core for the same reason.
 */
export class FileTable<Route> {
  private readonly resolved = new Map<string, Route>();
  /**
   * Kept files, evicted at random when over the bound: unlike LRU, a cyclic walk over a working set a bit
   * larger than the bound still hits in proportion (LRU would miss every time), and a hit updates nothing.
   */
  private readonly bodies = new Map<string, { v: FileVersion; slot: number }>();
  private readonly slots: string[] = [];
  private cachedBytes = 0;
  private readonly maxInline: number;

  constructor(private readonly o: FileTableOptions) {
    this.maxInline = o.maxInlineBytes ?? DEFAULT_MAX_INLINE_BYTES;
  }

  /** What `rememberPath` stored for a URL path. */
  lookupPath(urlPath: string): Route | undefined {
    return this.resolved.get(urlPath);
  }

  rememberPath(urlPath: string, value: Route): void {
    if (this.resolved.size >= MAX_RESOLVED_PATHS) this.resolved.clear();
    this.resolved.set(urlPath, value);
  }

  forgetPath(urlPath: string): void {
    this.resolved.delete(urlPath);
  }

  /**
   * The current version of a regular file, with its bytes when it is small; undefined when it is gone or
   * has become a symlink (the caller resolves the path again), 'not-file' for a directory or other
   * non-file. `file` is a resolved path: its last component is never followed. Throws only for unexpected I/O errors.
   */
  open(file: string): FileVersion | 'not-file' | undefined {
    const kept = this.bodies.get(file);
    if (kept !== undefined) {
      const st = lstatSync(file, { throwIfNoEntry: false });
      if (st !== undefined && sameVersion(kept.v, st)) return kept.v;
      this.drop(file);
    }
    let fd: number;
    try {
      fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return undefined;
      throw e;
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return 'not-file';
      if (st.size > this.maxInline) return versionOf(st);
      const body = Buffer.allocUnsafe(st.size);
      let got = 0;
      while (got < body.length) {
        const n = readSync(fd, body, got, body.length - got, got);
        if (n === 0) break;
        got += n;
      }
      // Shrunk while being read: serve what is there now, unkept; the next request sees a new version.
      if (got < body.length) return { ...versionOf(st, body.subarray(0, got)), size: got };
      const v = versionOf(st, body);
      this.keep(file, v);
      return v;
    } finally {
      closeSync(fd);
    }
  }

  private keep(file: string, v: FileVersion): void {
    const size = v.body?.length ?? 0;
    if (size === 0 || size > this.o.maxCachedBytes) return;
    while (this.cachedBytes + size > this.o.maxCachedBytes && this.slots.length > 0) {
      this.drop(this.slots[Math.floor(Math.random() * this.slots.length)]);
    }
    this.bodies.set(file, { v, slot: this.slots.length });
    this.slots.push(file);
    this.cachedBytes += size;
  }

  private drop(file: string): void {
    const e = this.bodies.get(file);
    if (e === undefined) return;
    this.bodies.delete(file);
    this.cachedBytes -= e.v.body?.length ?? 0;
    // Swap-remove keeps the slot array dense, so a random pick is O(1).
    const last = this.slots.pop()!;
    if (last !== file) {
      this.slots[e.slot] = last;
      this.bodies.get(last)!.slot = e.slot;
    }
  }

  /** Bytes of file contents held now (for metrics and tests). */
  get heldBytes(): number {
    return this.cachedBytes;
  }
}
