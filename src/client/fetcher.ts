// File content for the client: cache hit or verified download (the source checks hash and size while
// streaming), concurrent misses for one object collapsed, chunked files read by range so only touched
// chunks are fetched, and open files that stay readable after cache eviction (each holds its fds or bytes).
// Not path resolution (catalog-tree.ts) and not networking (the RepositorySource behind the ports).
import { open, type FileHandle } from 'node:fs/promises';
import { GridboxError, isGridboxError, q } from '../errors.js';
import type { CatalogEntry, ChunkRef, Compression } from '../catalog/types.js';
import { objectKey, type ObjectId, type ObjectSuffix } from '../hash/object-id.js';
import type { ObjectCache, RepositorySource } from './ports.js';

export interface FetcherStats {
  hits: number;
  misses: number;
  /** Content bytes brought in by downloads (decompressed). */
  bytesDownloaded: number;
  openFiles: number;
}

/** A held object: an fd on the cached file, or the bytes when the cache could not keep it. */
type Held = { fd: FileHandle; size: number } | { bytes: Buffer };

/** An open regular file; reads are positional and may run concurrently. */
export interface OpenFile {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export type Collapse = <T>(key: string, fn: () => Promise<T>) => Promise<T>;

/** Runs `fn` once per key at a time; callers arriving while it runs share its result. */
export function createCollapse(): Collapse {
  const inflight = new Map<string, Promise<unknown>>();
  return <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    const running = inflight.get(key);
    if (running !== undefined) return running as Promise<T>;
    const p = fn().finally(() => inflight.delete(key));
    inflight.set(key, p);
    return p;
  };
}

export class Fetcher {
  readonly stats: FetcherStats = { hits: 0, misses: 0, bytesDownloaded: 0, openFiles: 0 };

  constructor(private readonly source: RepositorySource, private readonly cache: ObjectCache, private readonly collapse: Collapse = createCollapse()) {}

  /** Cached path of a verified object, downloading it on a miss (used for catalogs and certificates). */
  async objectPath(id: ObjectId, suffix: ObjectSuffix, compression: Compression, expectedSize?: number): Promise<string> {
    const key = objectKey(id, suffix);
    const hit = await this.cache.path(key);
    if (hit !== undefined) { this.stats.hits++; return hit; }
    const got = await this.download(id, suffix, compression, expectedSize);
    if (got.path === undefined) throw new GridboxError('CACHE_FULL', `Cannot keep object ${q(key)} in the cache`, { objectId: key, cause: got.cacheError });
    return got.path;
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
      read: (o, l) => { if (closed) throw new GridboxError('USAGE', `Read of closed file ${q(entry.path)}`); return file.read(o, l); },
      close: async () => { if (closed) return; closed = true; this.stats.openFiles--; await file.close(); },
    };
  }

  /** The object content as a held fd (cache) or bytes, downloading on a miss. */
  private async hold(id: ObjectId, suffix: ObjectSuffix, compression: Compression, expectedSize: number): Promise<Held> {
    const key = objectKey(id, suffix);
    const hit = await this.cache.path(key);
    if (hit !== undefined) {
      const held = await openHeld(hit, expectedSize);
      if (held !== undefined) { this.stats.hits++; return held; }
      // Evicted between lookup and open, or a wrong size on disk: fetch again.
    }
    const got = await this.download(id, suffix, compression, expectedSize);
    if (got.path !== undefined) {
      const held = await openHeld(got.path, expectedSize);
      if (held !== undefined) return held;
    }
    return { bytes: got.bytes };
  }

  private download(id: ObjectId, suffix: ObjectSuffix, compression: Compression, expectedSize?: number): Promise<{ bytes: Buffer; path?: string; cacheError?: unknown }> {
    const key = objectKey(id, suffix);
    return this.collapse(key, async () => {
      this.stats.misses++;
      const bytes = await this.source.fetchObject(id, suffix, { compression, expectedSize });
      if (expectedSize !== undefined && bytes.length !== expectedSize) {
        throw new GridboxError('STORE_SIZE_MISMATCH', `Cannot use object ${q(key)}: expected ${expectedSize} bytes, got ${bytes.length}`, { objectId: key });
      }
      this.stats.bytesDownloaded += bytes.length;
      try {
        return { bytes, path: await this.cache.put(key, bytes) };
      } catch (e) {
        // An object larger than the cache may hold is still served from memory (CVMFS refuses these).
        if (isGridboxError(e, 'CACHE_FULL')) return { bytes, cacheError: e };
        throw e;
      }
    });
  }

  private openWhole(entry: CatalogEntry, held: Held): OpenFile {
    const size = entry.entry.size;
    return {
      size,
      read: (offset, length) => readHeld(held, offset, clampLength(size, offset, length)),
      close: () => releaseHeld(held),
    };
  }

  private openChunked(entry: CatalogEntry, chunks: ChunkRef[]): OpenFile {
    const size = entry.entry.size;
    const held = new Map<number, Promise<Held>>();
    const chunkAt = (i: number): Promise<Held> => {
      let h = held.get(i);
      if (h === undefined) {
        const c = chunks[i];
        h = this.hold(c.id, 'P', entry.compression, c.size);
        held.set(i, h);
        h.catch(() => held.delete(i));
      }
      return h;
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
          parts.push(chunkAt(i).then((h) => readHeld(h, from, to - from)));
        }
        const out = Buffer.concat(await Promise.all(parts));
        if (out.length !== len) throw new GridboxError('STORE_CORRUPT', `Chunk list of ${q(entry.path)} does not cover bytes ${offset}..${end}`, { path: entry.path });
        return out;
      },
      close: async () => {
        for (const h of held.values()) { try { await releaseHeld(await h); } catch { /* a failed fetch holds nothing */ } }
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
function firstChunkAt(chunks: ChunkRef[], offset: number): number {
  let lo = 0, hi = chunks.length - 1, ans = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (chunks[mid].offset <= offset) { ans = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return ans;
}

async function openHeld(path: string, expectedSize: number): Promise<Held | undefined> {
  let fd: FileHandle;
  try {
    fd = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GridboxError('CACHE_IO', `Cannot open cached object ${q(path)}`, { path, cause: e });
  }
  const { size } = await fd.stat();
  if (size !== expectedSize) { await fd.close(); return undefined; }
  return { fd, size };
}

async function readHeld(h: Held, offset: number, length: number): Promise<Buffer> {
  if ('bytes' in h) return h.bytes.subarray(offset, offset + length);
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await h.fd.read(buf, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}

async function releaseHeld(h: Held): Promise<void> {
  if ('fd' in h) await h.fd.close();
}
