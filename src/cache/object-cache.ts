// A CacheStore under a Quota: lookups touch the LRU, inserts evict (unlinking victims; open handles
// survive), and `getOrFill` reads through a caller-given fill with concurrent misses collapsed: one fill
// streams into a CacheWriter, every caller gets a handle on the one committed object.
// It does not download or verify: a fill must hand back a writer holding verified, decompressed content.
import { close, open, read } from 'node:fs';
import { join } from 'node:path';
import { parseObjectId, type ObjectId } from '../hash/object-id.js';
import { loadNativeAddon } from '../plumbing/native-addon.js';
import { cacheKey, FsCacheStore, type CachedObject, type CacheStore, type CacheWriter } from './cache-store.js';
import { Quota, type QuotaUsage } from './quota.js';

export interface CacheCounters {
  hits: number;
  misses: number;
  /** Objects served from memory because the quota did not admit them. */
  notAdmitted: number;
  evictions: number;
  /** Cached objects read ahead into memory by warm(), and their bytes read. */
  warmed: number;
  warmedBytes: number;
}

export interface GetOptions {
  /** Pin the object (a catalog in use) so eviction skips it until unpin(). */
  pin?: boolean;
}

/**
 * Produces a missing object: writes its verified content into writers from `begin` (one per attempt;
 * failed attempts abort theirs) and resolves with the writer that holds it, not yet committed.
 */
export type Fill = (begin: () => CacheWriter) => Promise<CacheWriter>;

/** A fill in progress and how many callers wait for it (they share one handle, closed by the last). */
interface Inflight { callers: number; result: Promise<SharedHandle> }

/** One open object handed to `n` callers; each gets a view, the last view's close() closes it. */
class SharedHandle {
  constructor(private readonly obj: CachedObject, private refs: number) {}
  view(): CachedObject {
    const o = this.obj;
    let closed = false;
    return {
      size: o.size,
      read: (b, off, len, pos) => o.read(b, off, len, pos),
      readSync: (b, off, len, pos) => o.readSync(b, off, len, pos),
      readAll: () => o.readAll(),
      get openFd() { return closed ? undefined : o.openFd; },
      close: async () => {
        if (closed) return;
        closed = true;
        if (--this.refs === 0) await o.close();
      },
    };
  }
}

/** Prefetch limits: reads in flight (threadpool), queued objects, and the largest object worth warming. */
export const WARM_CONCURRENCY = 4;
const WARM_QUEUE_MAX = 4096;
/** Files per willNeed call: each is one threadpool task, and other file work must get its turn between them. */
const WILL_NEED_BATCH = 256;
export const WARM_MAX_BYTES = 1 << 20;

export class ObjectCache {
  private readonly inflight = new Map<string, Inflight>();
  /** Cache files to read ahead and how many bytes of each. */
  private readonly warmQueue: Array<{ path: string; maxBytes: number }> = [];
  /** Read-ahead in flight: lanes running (the read path), or files handed to the kernel (willNeed). */
  private warming = 0;
  private closed = false;
  /** Objects this instance committed so far: a miss re-checks the store only if one landed while it looked. */
  private commits = 0;
  private readonly counters: CacheCounters = { hits: 0, misses: 0, notAdmitted: 0, evictions: 0, warmed: 0, warmedBytes: 0 };

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
   * Every caller gets its own handle and must close it. For small objects: `fetch` holds the whole
   * content in memory; getOrFill streams.
   */
  async get(id: ObjectId, fetch: () => Promise<Buffer>, opts: GetOptions = {}): Promise<CachedObject> {
    return this.getOrFill(id, async (begin) => {
      const bytes = await fetch();
      const w = begin();
      await w.write(bytes);
      return w;
    }, opts);
  }

  /**
   * The object from the cache, or filled on a miss: `fill` streams it into a writer, which is committed
   * (renamed into the cache) only after `fill` resolved, i.e. after verification. Concurrent misses of one
   * id run one fill and share its handle; every caller gets its own view and must close it. An object the
   * quota does not admit is still returned: its file is unlinked at once and lives while the handle is open.
   */
  async getOrFill(id: ObjectId, fill: Fill, opts: GetOptions = {}): Promise<CachedObject> {
    const commitsBefore = this.commits;
    const hit = await this.lookup(id);
    if (hit !== null) {
      this.counters.hits++;
      if (opts.pin) this.quota.pin(cacheKey(id));
      return hit;
    }
    const key = cacheKey(id);
    const running = this.inflight.get(key);
    if (running !== undefined) {
      running.callers++;
      const shared = await running.result;
      if (opts.pin) this.quota.pin(key);
      return shared.view();
    }
    const entry: Inflight = { callers: 1, result: undefined as unknown as Promise<SharedHandle> };
    entry.result = (async () => {
      let obj: CachedObject;
      try {
        // A previous filler may have finished between our lookup and now: look again before filling, when
        // anything was committed meanwhile (a cold start's misses would otherwise each open(2) twice in vain).
        const late = this.commits === commitsBefore ? null : await this.lookup(id);
        if (late !== null) {
          this.counters.hits++;
          if (opts.pin) this.quota.pin(key);
          obj = late;
        } else {
          this.counters.misses++;
          obj = await this.commit(id, await fill(() => this.store.begin(id)), opts);
        }
      } finally {
        // No caller can join after this point, so the count is final.
        this.inflight.delete(key);
      }
      return new SharedHandle(obj, entry.callers);
    })();
    this.inflight.set(key, entry);
    return (await entry.result).view();
  }

  /** Stores verified bytes; returns a handle (an unlinked file or memory when the quota does not admit the object). */
  async insert(id: ObjectId, bytes: Buffer, opts: GetOptions = {}): Promise<CachedObject> {
    const w = this.store.begin(id);
    await w.write(bytes);
    return this.commit(id, w, opts);
  }

  /** Commits a filled writer, then admits the object to the quota (evicting others) or drops its name. */
  private async commit(id: ObjectId, w: CacheWriter, opts: GetOptions): Promise<CachedObject> {
    const handle = await w.commit();
    this.commits++;
    if (!(await this.admit(cacheKey(id), handle.size, opts.pin === true))) {
      // The open handle keeps the content readable; the name goes, so the cache stays within its quota.
      await this.store.remove(id);
      this.counters.notAdmitted++;
    }
    return handle;
  }

  /**
   * The file of an object this instance's ledger knows to be cached (no open, no I/O: the file may be gone by the
   * time it is read, evicted by another mount); undefined for an unknown object or a store not on disk.
   */
  knownPath(id: ObjectId): string | undefined {
    const store = this.store;
    if (!(store instanceof FsCacheStore)) return undefined;
    const key = cacheKey(id);
    return this.quota.knows(key) ? store.pathOfKey(key) : undefined;
  }

  /**
   * Reads cached objects ahead into the OS page cache (e.g. the files of a directory being listed), a few
   * at a time on the threadpool, so a reader going through them one by one finds them in memory instead
   * of waiting on the disk for each. Local only: objects not in the cache are skipped, never fetched.
   * Counts as no access for the LRU. At most `maxBytes` of each object are read (a listing's files: the
   * first MiB; a start profile's files, which the start is known to read: all of them). Returns how many of
   * `ids` were in the cache and queued.
   */
  warm(ids: ObjectId[], maxBytes = WARM_MAX_BYTES): number {
    if (this.closed || !(this.store instanceof FsCacheStore)) return 0;
    const willNeed = loadNativeAddon()?.willNeed;
    if (willNeed !== undefined) return this.warmByAdvice(ids, maxBytes, willNeed);
    let queued = 0;
    for (const id of ids) {
      if (this.warmQueue.length >= WARM_QUEUE_MAX) break;
      const path = this.knownPath(id);
      if (path !== undefined) { this.warmQueue.push({ path, maxBytes }); queued++; }
    }
    while (this.warming < WARM_CONCURRENCY && this.warmQueue.length > 0) {
      this.warming++;
      void this.warmNext().finally(() => { this.warming--; });
    }
    return queued;
  }

  /**
   * Read-ahead by the kernel (posix_fadvise WILLNEED through the addon): no bytes come to this process, and the
   * daemon's thread makes one call per batch of files instead of a read callback per 256 KiB of each.
   */
  private warmByAdvice(ids: ObjectId[], maxBytes: number,
    willNeed: (paths: string[], maxBytes: number, done: (files: number, bytes: number) => void) => void): number {
    const paths: string[] = [];
    for (const id of ids) {
      if (this.warming + paths.length >= WARM_QUEUE_MAX) break;
      const path = this.knownPath(id);
      if (path !== undefined) paths.push(path);
    }
    for (let at = 0; at < paths.length; at += WILL_NEED_BATCH) {
      const batch = paths.slice(at, at + WILL_NEED_BATCH);
      this.warming += batch.length;
      willNeed(batch, maxBytes, (files, bytes) => {
        this.warming -= batch.length;
        this.counters.warmed += files;
        this.counters.warmedBytes += bytes;
      });
    }
    return paths.length;
  }

  /**
   * One lane of read-ahead. Callback fs, not fs/promises: a FileHandle per file (its object, its promise
   * chain, its close through the GC's bookkeeping) cost more of the daemon's thread than the reads, and a
   * listed directory warms every file in it. The close is not waited for.
   */
  private async warmNext(): Promise<void> {
    const buf = Buffer.allocUnsafe(256 * 1024);
    for (let next = this.warmQueue.shift(); next !== undefined && !this.closed; next = this.warmQueue.shift()) {
      let fd = -1;
      try {
        fd = await new Promise<number>((resolve, reject) => { open(next.path, 'r', (e, f) => (e ? reject(e) : resolve(f))); });
        for (let pos = 0; pos < next.maxBytes;) {
          const want = Math.min(buf.length, next.maxBytes - pos);
          const bytesRead = await new Promise<number>((resolve, reject) => { read(fd, buf, 0, want, pos, (e, n) => (e ? reject(e) : resolve(n))); });
          this.counters.warmedBytes += bytesRead;
          pos += bytesRead;
          // A short read is the end of the file: no second read (a threadpool hop) to learn that.
          if (bytesRead < want) break;
        }
        this.counters.warmed++;
      } catch { /* evicted meanwhile, or unreadable: the real read will report it */ } finally {
        if (fd >= 0) close(fd, () => undefined);
      }
    }
  }

  pin(id: ObjectId): void { this.quota.pin(cacheKey(id)); }
  unpin(id: ObjectId): void { this.quota.unpin(cacheKey(id)); }

  stats(): CacheCounters & QuotaUsage {
    return { ...this.counters, ...this.quota.usage() };
  }

  /** `exiting`: see Quota.close. */
  close(o: { exiting?: boolean } = {}): void {
    this.closed = true;
    this.warmQueue.length = 0;
    this.quota.close(o);
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
