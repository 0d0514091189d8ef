// The cache quota, kept apart from storage: an LRU ledger of cached objects and their sizes in a
// small SQLite db (`<cache dir>/cachedb`, WAL, shared by every mount using the cache dir). Over
// the limit it picks victims down to half the limit, as CVMFS does (spec §7.6); it never unlinks.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { GridboxError, q } from '../errors.js';

export interface QuotaUsage {
  bytes: number;
  objects: number;
  pinnedBytes: number;
  limitBytes: number;
}

export interface InsertResult {
  /** False when the object cannot be kept (larger than half the limit, or pinned data leaves no room). */
  admitted: boolean;
  /** Keys dropped from the ledger to make room; the caller removes their files. */
  evicted: string[];
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/**
 * LRU by access sequence. Pins belong to this Quota instance (owner "<pid>:<random>"), so pins of a
 * crashed mount are dropped by the next open, and several mounts may pin the same catalog.
 * Synchronous: better-sqlite3 calls are short and run in IMMEDIATE transactions across processes.
 */
export class Quota {
  private readonly owner = `${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly db: Database.Database;

  private constructor(dbPath: string, readonly limitBytes: number) {
    try {
      this.db = new Database(dbPath);
      this.db.pragma('journal_mode = WAL');
      // The ledger is rebuilt-able bookkeeping: no fsync per access (every open touches it); WAL keeps it consistent.
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 10000');
      this.db.exec(`CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, size INTEGER NOT NULL, acseq INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS objects_acseq ON objects (acseq);
        CREATE TABLE IF NOT EXISTS pins (key TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (key, owner));`);
    } catch (e) {
      throw new GridboxError('CACHE_IO', `Cannot open cache database ${q(dbPath)}`, { cause: e, path: dbPath });
    }
  }

  /** Opens the ledger at `dbPath` and drops the pins of processes that are gone. */
  static open(dbPath: string, limitBytes: number): Quota {
    if (!(limitBytes > 0)) throw new GridboxError('CONFIG_INVALID', `Cache quota must be positive, got ${limitBytes}`);
    const quota = new Quota(dbPath, limitBytes);
    const owners = quota.db.prepare('SELECT DISTINCT owner FROM pins').pluck().all() as string[];
    for (const o of owners) if (!pidAlive(Number(o.split(':')[0]))) quota.db.prepare('DELETE FROM pins WHERE owner = ?').run(o);
    return quota;
  }

  private nextSeq(): number {
    return (this.db.prepare('SELECT coalesce(max(acseq), 0) + 1 FROM objects').pluck().get() as number);
  }

  /** Records an object (or refreshes it), evicting LRU unpinned objects down to limit/2 if it would not fit. */
  insert(key: string, size: number, opts: { pin?: boolean } = {}): InsertResult {
    return this.db.transaction((): InsertResult => {
      const evicted: string[] = [];
      const known = this.db.prepare('SELECT size FROM objects WHERE key = ?').pluck().get(key) as number | undefined;
      if (known !== undefined) {
        this.db.prepare('UPDATE objects SET acseq = ? WHERE key = ?').run(this.nextSeq(), key);
        if (opts.pin) this.pinNow(key);
        return { admitted: true, evicted };
      }
      if (size > this.limitBytes / 2 && !opts.pin) return { admitted: false, evicted };
      let total = this.totalBytes();
      if (total + size > this.limitBytes) {
        const victims = this.db.prepare(`SELECT key, size FROM objects WHERE key NOT IN (SELECT key FROM pins) ORDER BY acseq`).iterate() as IterableIterator<{ key: string; size: number }>;
        for (const v of victims) {
          if (total <= this.limitBytes / 2) break;
          evicted.push(v.key);
          total -= v.size;
        }
        const del = this.db.prepare('DELETE FROM objects WHERE key = ?');
        for (const k of evicted) del.run(k);
        if (total + size > this.limitBytes && !opts.pin) return { admitted: false, evicted };
      }
      this.db.prepare('INSERT INTO objects (key, size, acseq) VALUES (?, ?, ?)').run(key, size, this.nextSeq());
      if (opts.pin) this.pinNow(key);
      return { admitted: true, evicted };
    }).immediate();
  }

  /** Marks an access; false when the key is not in the ledger. */
  touch(key: string): boolean {
    // Prepared once: every open of a cached file touches the ledger.
    this.stTouch ??= this.db.prepare('UPDATE objects SET acseq = (SELECT coalesce(max(acseq), 0) + 1 FROM objects) WHERE key = ?');
    return this.stTouch.run(key).changes > 0;
  }

  private stTouch: Database.Statement | undefined;

  has(key: string): boolean {
    return this.db.prepare('SELECT 1 FROM objects WHERE key = ?').get(key) !== undefined;
  }

  /** Pins for this instance: never evicted while any live instance pins it. */
  pin(key: string): void { this.pinNow(key); }

  unpin(key: string): void { this.db.prepare('DELETE FROM pins WHERE key = ? AND owner = ?').run(key, this.owner); }

  isPinned(key: string): boolean { return this.db.prepare('SELECT 1 FROM pins WHERE key = ?').get(key) !== undefined; }

  remove(key: string): void {
    this.db.prepare('DELETE FROM objects WHERE key = ?').run(key);
  }

  usage(): QuotaUsage {
    const r = this.db.prepare('SELECT coalesce(sum(size), 0) AS bytes, count(*) AS objects FROM objects').get() as { bytes: number; objects: number };
    const pinned = this.db.prepare('SELECT coalesce(sum(size), 0) FROM objects WHERE key IN (SELECT key FROM pins)').pluck().get() as number;
    return { bytes: r.bytes, objects: r.objects, pinnedBytes: pinned, limitBytes: this.limitBytes };
  }

  /** Keys from least to most recently used. */
  lruOrder(): string[] {
    return this.db.prepare('SELECT key FROM objects ORDER BY acseq').pluck().all() as string[];
  }

  /** Drops this instance's pins and closes the db. */
  close(): void {
    if (!this.db.open) return;
    this.db.prepare('DELETE FROM pins WHERE owner = ?').run(this.owner);
    this.db.close();
  }

  private totalBytes(): number {
    return this.db.prepare('SELECT coalesce(sum(size), 0) FROM objects').pluck().get() as number;
  }

  private pinNow(key: string): void {
    this.db.prepare('INSERT OR IGNORE INTO pins (key, owner) VALUES (?, ?)').run(key, this.owner);
  }
}
