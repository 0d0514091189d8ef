// The client's local content-addressed cache: decompressed, verified objects by content hash, as
// <base>/<fqrn|shared>/XX/rest (spec §7.6). Only storage: which objects stay is Quota's business,
// and nothing here verifies (callers commit only verified content). New objects are written through a
// CacheWriter (temp file, then rename), so an object of any size streams in with bounded memory.
import { closeSync, fstatSync, mkdirSync, open, openSync, readSync, renameSync, unlinkSync, writeFileSync, writev } from 'node:fs';
import { mkdir, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { formatObjectId, parseObjectId, type ObjectId } from '../hash/object-id.js';

/** A readable cached object. Stays readable after the object is removed or evicted, until close(). */
export interface CachedObject {
  readonly size: number;
  /** Reads up to `length` bytes at `position` into `buf` at `offset`; returns the count (0 at the end). */
  read(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  /**
   * The same, synchronously: local files and memory only, so it suits the FUSE loop (epoll, no threadpool),
   * where a pread of a cached file costs less than the two threadpool hops of an async read.
   */
  readSync(buf: Buffer, offset: number, length: number, position: number): number;
  readAll(): Promise<Buffer>;
  /** The open file's descriptor while open, when the object is a local file (FUSE passthrough); absent for memory. */
  readonly openFd?: number;
  close(): Promise<void>;
}

/**
 * An object being written. Nothing is visible under the object's name until commit(); a writer that is
 * aborted, or whose process dies, leaves nothing but a temp file that cleanup removes.
 */
export interface CacheWriter {
  /**
   * Appends bytes: kept in memory, or written to disk in the background; a returned promise settles when the
   * disk took them (wait for it before the next write to bound memory). commit() waits for every write.
   */
  write(chunk: Buffer): void | Promise<void>;
  /** Bytes written so far. */
  readonly size: number;
  /** Makes the object visible whole (rename) and returns an open handle on it; the writer is spent. */
  commit(): Promise<CachedObject>;
  /** Drops what was written; harmless when repeated or after commit. */
  abort(): void;
}

export interface CacheStore {
  /** Opens an object; null when absent. */
  open(id: ObjectId): Promise<CachedObject | null>;
  has(id: ObjectId): Promise<boolean>;
  /** Stores bytes so readers see all of them or nothing; a second put of the same id is harmless. */
  put(id: ObjectId, bytes: Uint8Array): Promise<void>;
  /** Starts writing an object piece by piece (the streaming put); commit() publishes it like put(). */
  begin(id: ObjectId): CacheWriter;
  /** Removes an object; open handles keep working; removing a missing object is a no-op. */
  remove(id: ObjectId): Promise<void>;
  list(): AsyncIterable<ObjectId>;
}

/** The cache key: textual hash without the suffix, as CVMFS names cache files. */
export const cacheKey = (id: ObjectId): string => formatObjectId(id);

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** A cache file held open by its fd; reads and close are synchronous syscalls (no threadpool hop). */
class FileObject implements CachedObject {
  private fd: number;
  constructor(fd: number, readonly size: number, private readonly key: string) { this.fd = fd; }
  get openFd(): number | undefined { return this.fd < 0 ? undefined : this.fd; }
  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return this.readSync(buf, offset, length, position);
  }
  readSync(buf: Buffer, offset: number, length: number, position: number): number {
    if (this.fd < 0) throw new GridboxError('USAGE', `Read of closed cached object ${q(this.key)}`);
    try {
      return readSync(this.fd, buf, offset, length, position);
    } catch (e) {
      throw new GridboxError('CACHE_IO', `Cannot read cached object ${q(this.key)}`, { cause: e, objectId: this.key });
    }
  }
  async readAll(): Promise<Buffer> {
    const b = Buffer.allocUnsafe(this.size);
    let done = 0;
    while (done < this.size) {
      const n = this.readSync(b, done, this.size - done, done);
      if (n === 0) break;
      done += n;
    }
    return done === this.size ? b : b.subarray(0, done);
  }
  async close(): Promise<void> {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    closeSync(fd);
  }
}

/** Temp file names: pid (for cleanTxn) and a per-process sequence. */
let tmpSeq = 0;

/**
 * A writer keeps up to this many bytes in memory and writes them with one write(2) at commit (most
 * objects are small); past it, the bytes go to the temp file as they come, so memory stays bounded.
 */
export const WRITER_MEMORY_BYTES = 1 << 20;

/** FsCacheStore's writer: memory first, then a temp file in txn/ (named after our pid), renamed on commit. */
class FsCacheWriter implements CacheWriter {
  private parts: Buffer[] = [];
  private buffered = 0;
  private fd = -1;
  private tmp: string | undefined;
  private done = false;
  /** Bytes went to the temp file (set when the first spill is queued, before the file exists). */
  private spilled = false;
  /**
   * The file operations in flight, in order. Opening, writing and closing go through the threadpool: a start
   * that fetches hundreds of objects at once otherwise spent a quarter of the daemon's one thread in write(2)
   * and copies, and FUSE requests waited behind them. A write that reaches the disk returns this promise
   * (ObjectOutput's backpressure); commit() and abort() wait for it.
   */
  private io: Promise<void> = Promise.resolve();
  private failed: unknown;
  size = 0;

  constructor(private readonly store: FsCacheStore, private readonly id: ObjectId) {}

  /** ObjectOutput.fileTarget: the temp file is written by someone else (the native fetcher), then adopted whole. */
  fileTarget(): { path: string; adopt(size: number): void } {
    if (this.done || this.spilled || this.size > 0) throw new GridboxError('USAGE', `File target of a used cache writer of ${q(cacheKey(this.id))}`);
    this.spilled = true;
    const tmp = this.store.tempPath();
    this.tmp = tmp;
    return { path: tmp, adopt: (size) => { this.size = size; } };
  }

  write(chunk: Buffer): void | Promise<void> {
    if (this.done) throw new GridboxError('USAGE', `Write to a finished cache writer of ${q(cacheKey(this.id))}`);
    if (this.failed !== undefined) throw this.error(this.failed);
    this.size += chunk.length;
    if (!this.spilled && this.buffered + chunk.length <= WRITER_MEMORY_BYTES) {
      this.parts.push(chunk);
      this.buffered += chunk.length;
      return;
    }
    // Past the memory bound: the bytes held so far and this chunk go to the temp file in one writev.
    const bufs = this.parts.length > 0 ? [...this.parts, chunk] : [chunk];
    this.spilled = true;
    this.parts = [];
    this.buffered = 0;
    return this.enqueue(async () => {
      if (this.fd < 0) await this.openTemp();
      await writeAllAsync(this.fd, bufs);
    });
  }

  async commit(): Promise<CachedObject> {
    if (this.done) throw new GridboxError('USAGE', `Commit of a finished cache writer of ${q(cacheKey(this.id))}`);
    this.done = true;
    try {
      if (!this.spilled || this.parts.length > 0) {
        const bufs = this.parts;
        this.parts = [];
        void this.enqueue(async () => {
          if (this.fd < 0) await this.openTemp();
          // No Buffer.concat: the pieces go to the kernel as they are.
          await writeAllAsync(this.fd, bufs);
        });
      }
      await this.io;
      if (this.failed !== undefined) throw this.failed;
      // A file written by someone else (fileTarget) is opened only now, read-only: its writer closed it.
      if (this.fd < 0) this.fd = openSync(this.tmp!, 'r');
      // The handle is opened on the temp file before the rename: it is the committed object's inode,
      // whatever happens to the name afterwards (another process evicting it, say).
      this.store.moveIntoPlace(this.tmp!, this.id);
      this.tmp = undefined;
      const fd = this.fd;
      this.fd = -1;
      return new FileObject(fd, this.size, cacheKey(this.id));
    } catch (e) {
      this.done = false;
      this.abort();
      throw this.error(e);
    }
  }

  abort(): void {
    if (this.done && this.fd < 0 && this.tmp === undefined) return;
    this.done = true;
    this.parts = [];
    // Once the operations in flight have settled: close the temp file and remove it.
    void this.io.then(() => {
      if (this.fd >= 0) { try { closeSync(this.fd); } catch { /* already gone */ } this.fd = -1; }
      if (this.tmp !== undefined) { try { unlinkSync(this.tmp); } catch { /* never created */ } this.tmp = undefined; }
    });
  }

  /** Runs `op` after the operations before it; the first failure sticks (later ones do not run). */
  private enqueue(op: () => Promise<void>): Promise<void> {
    this.io = this.io.then(async () => {
      if (this.failed !== undefined) return;
      try { await op(); } catch (e) { this.failed = e; }
    });
    return this.io.then(() => { if (this.failed !== undefined) throw this.error(this.failed); });
  }

  private async openTemp(): Promise<void> {
    this.tmp = this.store.tempPath();
    this.fd = await new Promise<number>((ok, fail) => { open(this.tmp!, 'w+', 0o644, (e, fd) => (e ? fail(e) : ok(fd))); });
  }

  private error(e: unknown): GridboxError {
    if (e instanceof GridboxError) return e;
    const k = cacheKey(this.id);
    const code = (e as NodeJS.ErrnoException).code === 'ENOSPC' ? 'CACHE_FULL' : 'CACHE_IO';
    return new GridboxError(code, `Cannot store object ${q(k)} in the cache`, { cause: e, objectId: k });
  }
}

/** Appends every byte of `bufs` at the file's position (writev, then whatever a short write left). */
async function writeAllAsync(fd: number, bufs: Buffer[]): Promise<void> {
  let rest = bufs.filter((b) => b.length > 0);
  while (rest.length > 0) {
    let n = await new Promise<number>((ok, fail) => { writev(fd, rest, (e, written) => (e ? fail(e) : ok(written))); });
    if (n === 0) throw new GridboxError('CACHE_IO', 'write(2) wrote nothing');
    const left: Buffer[] = [];
    for (const b of rest) {
      if (n >= b.length) { n -= b.length; continue; }
      left.push(n > 0 ? b.subarray(n) : b);
      n = 0;
    }
    rest = left;
  }
}

/** Posix directory store. Temp files are named after the writer's pid so a shared cache can tell a crashed writer's leftovers from a live one's. */
export class FsCacheStore implements CacheStore {
  /** Fan-out directories known to exist (each put would otherwise mkdir its parent). */
  private readonly subdirs = new Set<string>();
  private constructor(readonly dir: string) {}

  /** Opens (creating) `<base>/<name>`; removes txn/ leftovers of writers that are no longer running. */
  static async open(base: string, name = 'shared'): Promise<FsCacheStore> {
    if (name === '' || name.includes('/') || name === '.' || name === '..') throw new GridboxError('CACHE_IO', `Bad cache name ${q(name)}`);
    const dir = join(base, name);
    try {
      await mkdir(join(dir, 'txn'), { recursive: true });
      await writeFile(join(dir, '.cvmfscache'), '', { flag: 'a' });
    } catch (e) {
      throw new GridboxError('CACHE_IO', `Cannot create cache directory ${q(dir)}`, { cause: e, path: dir });
    }
    const s = new FsCacheStore(dir);
    await s.cleanTxn();
    return s;
  }

  /** Removes temp files whose writer is gone; returns how many. */
  async cleanTxn(): Promise<number> {
    let n = 0;
    for (const f of await readdir(join(this.dir, 'txn'))) {
      const pid = Number(f.split('.')[0]);
      if (pid === process.pid || pidAlive(pid)) continue;
      await unlink(join(this.dir, 'txn', f)).catch(() => undefined);
      n++;
    }
    return n;
  }

  pathOf(id: ObjectId): string {
    return this.pathOfKey(cacheKey(id));
  }

  /** pathOf for a key already made (a hex digest: no path normalizing needed). */
  pathOfKey(key: string): string {
    return `${this.dir}/${key.slice(0, 2)}/${key.slice(2)}`;
  }

  async open(id: ObjectId): Promise<CachedObject | null> {
    return this.openSync(id);
  }

  /** open() without a threadpool hop: open(2) + fstat(2) of a local file. */
  openSync(id: ObjectId): CachedObject | null {
    const key = cacheKey(id);
    let fd: number;
    try {
      fd = openSync(join(this.dir, key.slice(0, 2), key.slice(2)), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new GridboxError('CACHE_IO', `Cannot open cached object ${q(key)}`, { cause: e, objectId: key });
    }
    try {
      // The size comes from the file, not the ledger: a damaged file shows as a size mismatch to the caller.
      return new FileObject(fd, fstatSync(fd).size, key);
    } catch (e) {
      closeSync(fd);
      throw new GridboxError('CACHE_IO', `Cannot stat cached object ${q(key)}`, { cause: e, objectId: key });
    }
  }

  async has(id: ObjectId): Promise<boolean> {
    const o = await this.open(id);
    await o?.close();
    return o !== null;
  }

  async put(id: ObjectId, bytes: Uint8Array): Promise<void> {
    this.putSync(id, bytes);
  }

  /**
   * put() as local syscalls without threadpool hops (write, rename; no fsync: a crash leaves a temp file
   * for cleanTxn or a complete object, never a partial one under its name).
   */
  putSync(id: ObjectId, bytes: Uint8Array): void {
    const k = cacheKey(id);
    const tmp = this.tempPath();
    try {
      writeFileSync(tmp, bytes);
      this.moveIntoPlace(tmp, id);
    } catch (e) {
      try { unlinkSync(tmp); } catch { /* never written */ }
      throw new GridboxError('CACHE_IO', `Cannot store object ${q(k)} in the cache`, { cause: e, objectId: k, path: this.pathOf(id) });
    }
  }

  begin(id: ObjectId): CacheWriter {
    return new FsCacheWriter(this, id);
  }

  /** A fresh temp file name in txn/ carrying our pid, for cleanTxn. */
  tempPath(): string {
    return join(this.dir, 'txn', `${process.pid}.${(tmpSeq++).toString(36)}`);
  }

  /** Renames a complete temp file to the object's name (the one step that makes it visible). */
  moveIntoPlace(tmp: string, id: ObjectId): void {
    const k = cacheKey(id);
    const sub = join(this.dir, k.slice(0, 2));
    const dest = join(sub, k.slice(2));
    if (!this.subdirs.has(sub)) { mkdirSync(sub, { recursive: true }); this.subdirs.add(sub); }
    try {
      renameSync(tmp, dest);
    } catch (e) {
      // The fan-out directory was removed behind our back (a wiped cache): make it again, once.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      mkdirSync(sub, { recursive: true });
      renameSync(tmp, dest);
    }
  }

  async remove(id: ObjectId): Promise<void> {
    await unlink(this.pathOf(id)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw new GridboxError('CACHE_IO', `Cannot remove cached object ${q(cacheKey(id))}`, { cause: e });
    });
  }

  async *list(): AsyncIterable<ObjectId> {
    for (const d of await readdir(this.dir)) {
      if (!/^[0-9a-f]{2}$/.test(d)) continue;
      for (const f of await readdir(join(this.dir, d))) {
        try { yield parseObjectId(d + f); } catch { /* not ours */ }
      }
    }
  }
}

class BufferObject implements CachedObject {
  constructor(private readonly b: Buffer) {}
  get size(): number { return this.b.length; }
  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    return this.readSync(buf, offset, length, position);
  }
  readSync(buf: Buffer, offset: number, length: number, position: number): number {
    if (position >= this.b.length) return 0;
    return this.b.copy(buf, offset, position, Math.min(this.b.length, position + length));
  }
  async readAll(): Promise<Buffer> { return Buffer.from(this.b); }
  async close(): Promise<void> { /* nothing held */ }
}

/** In-memory store for tests and for callers that want no disk cache. */
export class MemoryCacheStore implements CacheStore {
  private readonly m = new Map<string, Buffer>();
  async open(id: ObjectId): Promise<CachedObject | null> {
    const b = this.m.get(cacheKey(id));
    return b === undefined ? null : new BufferObject(b);
  }
  async has(id: ObjectId): Promise<boolean> { return this.m.has(cacheKey(id)); }
  async put(id: ObjectId, bytes: Uint8Array): Promise<void> { if (!this.m.has(cacheKey(id))) this.m.set(cacheKey(id), Buffer.from(bytes)); }
  begin(id: ObjectId): CacheWriter {
    let parts: Buffer[] = [];
    let done = false;
    let size = 0;
    return {
      get size() { return size; },
      write: (chunk) => { if (done) throw new GridboxError('USAGE', 'Write to a finished cache writer'); parts.push(Buffer.from(chunk)); size += chunk.length; },
      commit: async () => {
        done = true;
        const b = Buffer.concat(parts);
        parts = [];
        await this.put(id, b);
        return new BufferObject(b);
      },
      abort: () => { done = true; parts = []; },
    };
  }
  async remove(id: ObjectId): Promise<void> { this.m.delete(cacheKey(id)); }
  async *list(): AsyncIterable<ObjectId> { for (const k of [...this.m.keys()]) yield parseObjectId(k); }
}
