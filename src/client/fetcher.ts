// File content for the client: cache hit or verified download (the source checks hash and size while
// streaming), concurrent misses for one object collapsed, chunked files read by range so only touched
// chunks are fetched, and open files that stay readable after cache eviction (each holds its fds or bytes).
// Not path resolution (catalog-tree.ts) and not networking (the RepositorySource behind the ports).
import { GridboxError, isGridboxError, q } from '../errors.js';
import { FsCacheStore, cacheKey, type CachedObject } from '../cache/cache-store.js';
import { WARM_MAX_BYTES, type ObjectCache } from '../cache/object-cache.js';
import type { CatalogEntry, ChunkRef, Compression } from '../catalog/types.js';
import { objectKey, type ObjectId, type ObjectSuffix } from '../hash/object-id.js';
import type { RepositorySource } from './ports.js';

export interface FetcherStats {
  hits: number;
  misses: number;
  /**
   * Content bytes the downloads produced after inflation (what landed in the cache). The bytes on the wire
   * (compressed) are the source's count: ClientStats.bytesOnWire.
   */
  bytesInflated: number;
  openFiles: number;
}

/** An open regular file; reads are positional and may run concurrently. */
export interface OpenFile {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
  /** The descriptor of the local file holding the whole content, if there is one (FUSE passthrough). */
  readonly fd?: number;
}

/** Chunk handles one open chunked file keeps at most (each an fd); more are re-held from the cache on demand. */
export const HELD_CHUNKS_MAX = 16;

export class Fetcher {
  readonly stats: FetcherStats = { hits: 0, misses: 0, bytesInflated: 0, openFiles: 0 };

  constructor(private readonly source: RepositorySource, private readonly cache: ObjectCache) {}

  /** Cached path of a verified object, downloaded on a miss and pinned (catalogs: SQLite needs a file). */
  async objectPath(id: ObjectId, suffix: ObjectSuffix, compression: Compression): Promise<string> {
    const store = this.cache.store;
    if (!(store instanceof FsCacheStore)) throw new GridboxError('NOT_SUPPORTED', 'Catalogs need a cache on disk (FsCacheStore)');
    const obj = await this.get(id, suffix, compression, undefined, true);
    await obj.close();
    return store.pathOf(id);
  }

  /** A small verified object's bytes (certificates), from the cache or downloaded into it. */
  async objectBytes(id: ObjectId, suffix: ObjectSuffix, compression: Compression): Promise<Buffer> {
    const obj = await this.get(id, suffix, compression, undefined, false);
    try { return await obj.readAll(); } finally { await obj.close(); }
  }

  /** Opens a regular file's content; chunked files fetch nothing until read. */
  async open(entry: CatalogEntry): Promise<OpenFile> {
    if (entry.entry.type !== 'file') throw new GridboxError('USAGE', `Cannot open ${q(entry.path)}: not a regular file`, { path: entry.path });
    let file: OpenFile;
    if (entry.chunks !== undefined) {
      file = this.openChunked(entry, entry.chunks);
    } else if (entry.id !== undefined) {
      const held = await this.hold(entry.id, '', entry.compression, entry.entry.size);
      file = this.openWhole(entry, held);
    } else {
      throw new GridboxError('NOT_SUPPORTED', `Cannot open ${q(entry.path)}: it has neither a content hash nor chunks (external files are not supported)`, { path: entry.path });
    }
    this.stats.openFiles++;
    let closed = false;
    return {
      size: file.size,
      get fd() { return closed ? undefined : file.fd; },
      read: (o, l) => { if (closed) throw new GridboxError('USAGE', `Read of closed file ${q(entry.path)}`); return file.read(o, l); },
      close: async () => { if (closed) return; closed = true; this.stats.openFiles--; await file.close(); },
    };
  }

  /**
   * Warms the cached content of whole-file entries up to `maxBytes` (see ObjectCache.warm); fetches nothing.
   * Returns how many were in the cache.
   */
  prefetch(entries: CatalogEntry[], maxBytes = WARM_MAX_BYTES): number {
    const ids: ObjectId[] = [];
    for (const e of entries) {
      if (e.entry.type === 'file' && e.id !== undefined && e.chunks === undefined && e.entry.size > 0 && e.entry.size <= maxBytes) ids.push(e.id);
    }
    return ids.length > 0 ? this.cache.warm(ids, maxBytes) : 0;
  }

  /**
   * The cache file holding a whole file's verified content, when this cache's ledger has it (no download, no
   * open): for a reader outside this process's JavaScript (the addon's answer to a FUSE READ), which falls back to open()
   * when the file is gone by then.
   */
  cachedPath(entry: CatalogEntry): string | undefined {
    if (entry.entry.type !== 'file' || entry.id === undefined || entry.chunks !== undefined) return undefined;
    return this.cache.knownPath(entry.id);
  }

  /** Reads of cached whole files made elsewhere (cachedPath): counted as hits and as accesses for the LRU. */
  noteCachedReads(entries: CatalogEntry[]): void {
    for (const e of entries) {
      if (e.id === undefined) continue;
      this.stats.hits++;
      this.cache.quota.touch(cacheKey(e.id));
    }
  }

  /** The object content as an open handle: cached file, or memory when the quota cannot keep it. */
  private async hold(id: ObjectId, suffix: ObjectSuffix, compression: Compression, expectedSize: number): Promise<CachedObject> {
    const obj = await this.get(id, suffix, compression, expectedSize, false);
    if (obj.size === expectedSize) return obj;
    // A cached file of the wrong size was not written by a verified download: drop it and fetch again.
    await obj.close();
    await this.cache.store.remove(id);
    this.cache.quota.remove(cacheKey(id));
    const again = await this.get(id, suffix, compression, expectedSize, false);
    if (again.size !== expectedSize) {
      await again.close();
      throw new GridboxError('STORE_SIZE_MISMATCH', `Cannot use object ${q(objectKey(id, suffix))}: expected ${expectedSize} bytes, got ${again.size}`, { objectId: objectKey(id, suffix) });
    }
    return again;
  }

  /**
   * cache/ collapses concurrent misses; the fill streams the verifying download into a cache writer,
   * which the cache commits only once the download verified.
   */
  private async get(id: ObjectId, suffix: ObjectSuffix, compression: Compression, expectedSize: number | undefined, pin: boolean): Promise<CachedObject> {
    const key = objectKey(id, suffix);
    let downloaded = false;
    const obj = await this.cache.getOrFill(id, async (begin) => {
      downloaded = true;
      this.stats.misses++;
      try {
        const w = await this.source.fetchObjectTo(id, suffix, { compression, expectedSize }, begin);
        this.stats.bytesInflated += w.size;
        return w;
      } catch (e) {
        throw surfaceBadData(e, key);
      }
    }, { pin });
    if (!downloaded) this.stats.hits++;
    return obj;
  }

  private openWhole(entry: CatalogEntry, held: CachedObject): OpenFile {
    const size = entry.entry.size;
    return {
      size,
      get fd() { return held.openFd; },
      read: async (offset, length) => readHeld(held, offset, clampLength(size, offset, length)),
      close: () => held.close(),
    };
  }

  private openChunked(entry: CatalogEntry, chunks: ChunkRef[]): OpenFile {
    const size = entry.entry.size;
    // Chunk handles held by this file, least recently used first. Bounded, so reading a file of any
    // length holds a constant number of fds: a chunk let go is held again (from the cache) when read again.
    const held = new Map<number, { h: Promise<CachedObject>; users: number }>();
    const letGo = (h: Promise<CachedObject>): void => { h.then((o) => o.close(), () => undefined).catch(() => undefined); };
    const withChunk = async <T>(i: number, fn: (h: CachedObject) => T): Promise<T> => {
      let e = held.get(i);
      if (e !== undefined) {
        held.delete(i);
        held.set(i, e);
        e.users++;
      } else {
        const c = chunks[i];
        const fresh = { h: this.hold(c.id, 'P', entry.compression, c.size), users: 1 };
        e = fresh;
        held.set(i, fresh);
        fresh.h.catch(() => { if (held.get(i) === fresh) held.delete(i); });
        for (const [j, old] of held) {
          if (held.size <= HELD_CHUNKS_MAX) break;
          if (old.users > 0) continue;
          held.delete(j);
          letGo(old.h);
        }
      }
      try { return fn(await e.h); } finally { e.users--; }
    };
    return {
      size,
      read: async (offset, length) => {
        const len = clampLength(size, offset, length);
        if (len === 0) return Buffer.alloc(0);
        const end = offset + len;
        const parts: Promise<Buffer>[] = [];
        // Only the chunks overlapping [offset, end) are fetched, in parallel.
        for (let i = firstChunkAt(chunks, offset); i < chunks.length && chunks[i].offset < end; i++) {
          const c = chunks[i];
          const from = Math.max(offset, c.offset) - c.offset;
          const to = Math.min(end, c.offset + c.size) - c.offset;
          parts.push(withChunk(i, (h) => readHeld(h, from, to - from)));
        }
        // A read inside one chunk (most are: the kernel reads at most 1 MiB, chunks are 4-16 MiB) is returned as
        // read, not copied once more by concat.
        const got = await Promise.all(parts);
        const out = got.length === 1 ? got[0] : Buffer.concat(got);
        if (out.length !== len) throw new GridboxError('STORE_CORRUPT', `Chunk list of ${q(entry.path)} does not cover bytes ${offset}..${end}`, { path: entry.path });
        return out;
      },
      close: async () => {
        for (const e of held.values()) { try { await (await e.h).close(); } catch { /* a failed fetch holds nothing */ } }
        held.clear();
      },
    };
  }
}

function clampLength(size: number, offset: number, length: number): number {
  if (offset < 0 || length < 0) throw new GridboxError('USAGE', `Invalid read range ${offset}+${length}`);
  return Math.max(0, Math.min(length, size - offset));
}

/** Index of the chunk containing `offset` (chunks are sorted by offset and contiguous). */
export function firstChunkAt(chunks: readonly { offset: number }[], offset: number): number {
  let lo = 0, hi = chunks.length - 1, ans = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (chunks[mid].offset <= offset) { ans = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return ans;
}

/**
 * The downloader reports "every source failed" with the last cause; when that cause is bad data (hash,
 * size, truncation) the application-facing code is the data error, naming the object, with the full
 * attempt list kept as the cause.
 */
function surfaceBadData(e: unknown, key: string): unknown {
  if (!isGridboxError(e, 'DOWNLOAD_ALL_FAILED')) return e;
  const inner = e.cause;
  if (inner instanceof GridboxError && ['STORE_HASH_MISMATCH', 'STORE_SIZE_MISMATCH', 'STORE_TRUNCATED', 'COMPRESSION_BAD'].includes(inner.code)) {
    return new GridboxError(inner.code, `Cannot fetch object ${q(key)}: ${inner.message}`, { objectId: key, cause: e });
  }
  return e;
}

/** Synchronous: cached objects are local files or memory, and a pread beats a threadpool round trip. */
function readHeld(h: CachedObject, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const n = h.readSync(buf, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return done === length ? buf : buf.subarray(0, done);
}
