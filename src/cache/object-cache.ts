// A CacheStore under a Quota: lookups touch the LRU, inserts evict (unlinking victims; open handles
// survive), and `get` reads through a caller-given fetch with concurrent misses collapsed.
// It does not download or verify: `fetch` must return verified, decompressed bytes.
import { open as openFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseObjectId, type ObjectId } from '../hash/object-id.js';
import { collapse } from './collapse.js';
import { bufferObject, cacheKey, FsCacheStore, type CachedObject, type CacheStore } from './cache-store.js';
import { Quota, type QuotaUsage } from './quota.js';

export interface CacheCounters {
  hits: number;
  misses: number;
  /** Objects served from memory because the quota did not admit them. */
  notAdmitted: number;
  evictions: number;
  /** Cached objects read ahead into memory by warm(). */
  warmed: number;
}

export interface GetOptions {
  /** Pin the object (a catalog in use) so eviction skips it until unpin(). */
  pin?: boolean;
}

/** Prefetch limits: reads in flight (threadpool), queued objects, and the largest object worth warming. */
export const WARM_CONCURRENCY = 4;
const WARM_QUEUE_MAX = 4096;
export const WARM_MAX_BYTES = 1 << 20;

export class ObjectCache {
  private readonly collapsed = collapse<CachedObject>();
  private readonly warmQueue: string[] = [];
  private warming = 0;
  private closed = false;
  private readonly counters: CacheCounters = { hits: 0, misses: 0, notAdmitted: 0, evictions: 0, warmed: 0 };

  constructor(readonly store: CacheStore, readonly quota: Quota) {}

  /** Opens `<base>/<fqrn|shared>` with its ledger `cachedb` and a quota of `limitBytes`. */
  static async openDir(base: string, name: string, limitBytes: number): Promise<ObjectCache> {
    const store = await FsCacheStore.open(base, name);
    return new ObjectCache(store, Quota.open(join(store.dir, 'cachedb'), limitBytes));
  }

  /** A cached object, or null; a hit counts as an access for the LRU. */
  async lookup(id: ObjectId): Promise<CachedObject | null> {
    const o = await this.store.open(id);
    const key = cacheKey(id);
    if (o === null) {
      // A ledger row without a file (crash between eviction steps) is dropped. Only rows this instance
      // knows: a miss is the common case, and an unknown row is refreshed by the insert that follows.
      if (this.quota.knows(key)) this.quota.remove(key);
      return null;
    }
    // A file without a ledger row (crash between rename and insert) is adopted.
    if (!this.quota.touch(key) && !(await this.admit(key, o.size, false))) await this.store.remove(id);
    return o;
  }

  /**
   * The object from the cache, or from `fetch` on a miss (one fetch for concurrent misses of one id).
   * Every caller gets its own handle and must close it.
   */
  async get(id: ObjectId, fetch: () => Promise<Buffer>, opts: GetOptions = {}): Promise<CachedObject> {
    const hit = await this.lookup(id);
    if (hit !== null) {
      this.counters.hits++;
      if (opts.pin) this.quota.pin(cacheKey(id));
      return hit;
    }
    let mine = false;
    const first = await this.collapsed(cacheKey(id), async () => {
      mine = true;
      // A previous leader may have finished between our lookup and now: look again before downloading.
      const late = await this.lookup(id);
      if (late !== null) { this.counters.hits++; if (opts.pin) this.quota.pin(cacheKey(id)); return late; }
      this.counters.misses++;
      return this.insert(id, await fetch(), opts);
    });
    if (mine) return first; // we ran it: the handle is ours
    if (opts.pin) this.quota.pin(cacheKey(id));
    // Collapsed callers open their own handle; if it was evicted meanwhile, read it from the leader's copy.
    const again = await this.store.open(id);
    return again ?? bufferObject(await first.readAll());
  }

  /** Stores verified bytes; returns a handle (a memory one when the quota does not admit the object). */
  async insert(id: ObjectId, bytes: Buffer, opts: GetOptions = {}): Promise<CachedObject> {
    const key = cacheKey(id);
    await this.store.put(id, bytes);
    const handle = await this.store.open(id);
    if (!(await this.admit(key, bytes.length, opts.pin === true))) {
      await handle?.close();
      await this.store.remove(id);
      this.counters.notAdmitted++;
      return bufferObject(bytes);
    }
    return handle ?? bufferObject(bytes);
  }

  /**
   * Reads cached objects ahead into the OS page cache (e.g. the files of a directory being listed), a few
   * at a time on the threadpool, so a reader going through them one by one finds them in memory instead
   * of waiting on the disk for each. Local only: objects not in the cache are skipped, never fetched.
   * Counts as no access for the LRU.
   */
  warm(ids: ObjectId[]): void {
    const store = this.store;
    if (this.closed || !(store instanceof FsCacheStore)) return;
    for (const id of ids) {
      if (this.warmQueue.length >= WARM_QUEUE_MAX) break;
      if (this.quota.knows(cacheKey(id))) this.warmQueue.push(store.pathOf(id));
    }
    while (this.warming < WARM_CONCURRENCY && this.warmQueue.length > 0) {
      this.warming++;
      void this.warmNext().finally(() => { this.warming--; });
    }
  }

  private async warmNext(): Promise<void> {
    const buf = Buffer.allocUnsafe(64 * 1024);
    for (let path = this.warmQueue.shift(); path !== undefined && !this.closed; path = this.warmQueue.shift()) {
      try {
        const fh = await openFile(path, 'r');
        try {
          for (let pos = 0; pos < WARM_MAX_BYTES;) {
            const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
            if (bytesRead < buf.length) break;
            pos += bytesRead;
          }
        } finally { await fh.close(); }
        this.counters.warmed++;
      } catch { /* evicted meanwhile, or unreadable: the real read will report it */ }
    }
  }

  pin(id: ObjectId): void { this.quota.pin(cacheKey(id)); }
  unpin(id: ObjectId): void { this.quota.unpin(cacheKey(id)); }

  stats(): CacheCounters & QuotaUsage {
    return { ...this.counters, ...this.quota.usage() };
  }

  close(): void {
    this.closed = true;
    this.warmQueue.length = 0;
    this.quota.close();
  }

  private async admit(key: string, size: number, pin: boolean): Promise<boolean> {
    const r = this.quota.insert(key, size, { pin });
    for (const k of r.evicted) {
      this.counters.evictions++;
      // Unlink only: readers holding the file open keep reading it (spec §7.6, issue 5).
      await this.store.remove(parseObjectId(k));
    }
    return r.admitted;
  }
}
