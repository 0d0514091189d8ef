// Copies content-addressed objects from a stratum-0 (or another replica) into a replica store exactly
// as served: the raw bytes must hash to the object's name before the store sees them (spec §1.3), a
// bounded number of fetches run at once, and an object already present or being copied is not fetched again.
// Decides nothing about *which* objects to copy: that is the catalog walk in snapshot.ts.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { objectKey, type ObjectId, type ObjectSuffix } from '../hash/object-id.js';
import type { ObjectStore } from '../store/object-store.js';
import type { ObjectSink } from './replica-object-writer.js';

/** What a snapshot reads from its source; the Downloader (src/download) satisfies it as is. */
export interface SnapshotSource {
  /** A non-content-addressed file below the repository base URL, size-capped and unverified. */
  fetchFile(relPath: string, opts?: { maxBytes?: number }): Promise<Buffer>;
  /** With compression "none": the object's stored bytes, returned only after they hashed to `id`. */
  fetchObject(id: ObjectId, suffix: ObjectSuffix, opts: { compression: 'none' }): Promise<Buffer>;
}

export interface CopyStats {
  /** Objects fetched and stored by this run. */
  objects: number;
  /** Stored (compressed) bytes of those objects. */
  bytes: number;
  /** Objects found already present in the replica, not fetched. */
  present: number;
}

/** Codes that say the bytes a source served were wrong, as opposed to the source being unreachable. */
const BAD_DATA = new Set(['STORE_HASH_MISMATCH', 'STORE_SIZE_MISMATCH', 'COMPRESSION_BAD']);

/** The innermost bad-data error or HTTP status below a download failure, so the report names the real problem. */
function rootCause(e: unknown): { badData?: GridboxError; status?: number } {
  let cur: unknown = e;
  let status: number | undefined;
  for (let depth = 0; cur instanceof Error && depth < 6; depth++) {
    if (cur instanceof GridboxError) {
      if (BAD_DATA.has(cur.code)) return { badData: cur };
      if (typeof cur.fields.status === 'number') status ??= cur.fields.status;
    }
    cur = cur.cause;
  }
  return { status };
}

/** True when a failed fetch means "the source does not have this object" (HTTP 404 on every attempt). */
export function isMissingAtSource(e: unknown): boolean {
  return e instanceof GridboxError && e.code === 'STORE_MISSING';
}

/**
 * Re-labels a download failure of one object: a hash mismatch becomes STORE_HASH_MISMATCH naming the
 * object key, a 404 becomes STORE_MISSING; anything else keeps its code and gains the object key.
 */
export function objectFetchError(e: unknown, key: string): GridboxError {
  const { badData, status } = rootCause(e);
  if (badData !== undefined) {
    return new GridboxError(badData.code, `Cannot replicate object ${q(key)}: the source serves bytes that fail verification (${badData.message})`,
      { objectId: key, cause: e });
  }
  if (status === 404) {
    return new GridboxError('STORE_MISSING', `Cannot replicate object ${q(key)}: the source does not have it (HTTP 404)`, { objectId: key, cause: e });
  }
  if (e instanceof GridboxError) return new GridboxError(e.code, `Cannot replicate object ${q(key)}: ${e.message}`, { ...e.fields, objectId: key, cause: e });
  return new GridboxError('INTERNAL', `Cannot replicate object ${q(key)}: ${(e as Error)?.message ?? String(e)}`, { objectId: key, cause: e });
}

/** Runs at most `max` tasks at once, in call order; `stop()` makes tasks not yet started fail fast. */
export class Limiter {
  private running = 0;
  /** A FIFO with a moving head: Array.shift() on tens of thousands of waiters is quadratic. */
  private waiting: (() => void)[] = [];
  private head = 0;
  private stopped: unknown;

  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new GridboxError('USAGE', `Concurrency must be a positive integer, got ${q(max)}`);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      if (this.stopped !== undefined) throw this.stopped;
      return await fn();
    } finally {
      this.next();
    }
  }

  /** Tasks that have not started yet reject with `reason`; running ones finish. */
  stop(reason: unknown): void {
    this.stopped ??= reason;
  }

  private next(): void {
    if (this.head >= this.waiting.length) {
      this.running--;
      return;
    }
    const wake = this.waiting[this.head];
    this.waiting[this.head++] = undefined as unknown as () => void;
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    wake();
  }
}

/** Whether the replica holds an object; the snapshot adds what it stores. Synchronous: asked per object. */
export interface Presence {
  has(key: string): boolean;
  add(key: string): void;
}

/**
 * The keys a replica store holds, listed once when a snapshot starts (one readdir per data/XX directory)
 * and kept up to date by the snapshot's own writes; the snapshot holds the replica lock, so nobody else
 * adds or removes objects meanwhile. For a replica that serves no revision yet (usually empty, or what a
 * killed first snapshot left): there every object is checked, and a stat each mostly failing cost more.
 */
export class PresentKeys implements Presence {
  private constructor(private readonly keys: Set<string>) {}

  static async of(store: ObjectStore): Promise<PresentKeys> {
    const keys = new Set<string>();
    for await (const k of store.list()) keys.add(k);
    return new PresentKeys(keys);
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  add(key: string): void {
    this.keys.add(key);
  }

  get size(): number {
    return this.keys.size;
  }
}

/**
 * Presence by one stat of the object file, for a replica that serves a revision: an incremental snapshot
 * asks only about catalogs and the objects a changed catalog added (catalog-refs.ts), so listing the
 * whole store (50k names for a mid-size repository) would cost far more than the few stats.
 */
export class StatPresence implements Presence {
  private readonly added = new Set<string>();

  constructor(private readonly dataDir: string) {}

  has(key: string): boolean {
    if (this.added.has(key)) return true;
    try {
      return statSync(join(this.dataDir, key.slice(0, 2), key.slice(2)), { throwIfNoEntry: false })?.isFile() ?? false;
    } catch (e) {
      throw new GridboxError('STORE_IO', `Cannot look up object ${q(key)} in ${q(this.dataDir)}: ${(e as Error).message}`, { objectId: key, path: this.dataDir, cause: e });
    }
  }

  add(key: string): void {
    this.added.add(key);
  }
}

export class ObjectCopier {
  readonly stats: CopyStats = { objects: 0, bytes: 0, present: 0 };
  private readonly inFlight = new Map<string, Promise<void>>();

  /**
   * `store` answers has() when there is no `present` listing; `sink` (default: the store) takes the
   * verified bytes.
   */
  constructor(private readonly source: SnapshotSource, private readonly store: ObjectStore, readonly limiter: Limiter,
    readonly present?: Presence, private readonly sink: ObjectSink = store) {}

  /** Whether the replica holds the object (from `present` when given, else the store). */
  async has(key: string): Promise<boolean> {
    return this.present !== undefined ? this.present.has(key) : this.store.has(key);
  }

  /** Ensures the object is in the replica; concurrent calls for one key share one copy. */
  copy(id: ObjectId, suffix: ObjectSuffix): Promise<void> {
    const key = objectKey(id, suffix);
    let p = this.inFlight.get(key);
    if (p === undefined) {
      p = this.copyOnce(id, suffix, key);
      this.inFlight.set(key, p);
    }
    return p;
  }

  /** Verified stored bytes of an object, not stored: catalogs and histories are stored after what they reference. */
  async fetch(id: ObjectId, suffix: ObjectSuffix): Promise<Buffer> {
    const key = objectKey(id, suffix);
    return this.limiter.run(async () => {
      try {
        return await this.source.fetchObject(id, suffix, { compression: 'none' });
      } catch (e) {
        throw objectFetchError(e, key);
      }
    });
  }

  /** Stores verified bytes got from fetch(), counting them. */
  async put(key: string, bytes: Buffer): Promise<void> {
    await this.sink.put(key, bytes);
    this.present?.add(key);
    this.stats.objects++;
    this.stats.bytes += bytes.length;
  }

  private async copyOnce(id: ObjectId, suffix: ObjectSuffix, key: string): Promise<void> {
    if (await this.has(key)) {
      this.stats.present++;
      return;
    }
    const bytes = await this.fetch(id, suffix);
    await this.put(key, bytes);
  }
}
