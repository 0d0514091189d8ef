// The cache quota, kept apart from storage: an LRU ledger of cached objects and their sizes in a
// small SQLite db (`<cache dir>/cachedb`, WAL, shared by every mount using the cache dir). Over
// the limit it picks victims down to half the limit, as CVMFS does (spec §7.6); it never unlinks.
// Accesses are batched in memory and written in one transaction (as CVMFS's cache manager does), and so are
// inserts while the cache is clearly below its limit: a transaction per new object (WAL frames for four pages,
// locks, a checkpoint's fsync now and then) was ~80 us, the largest single cost of a cache miss on loopback.
import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { GridboxError, q } from '../errors.js';
import { formatIdentity, isAlive, parseIdentity, selfIdentity } from '../plumbing/process-identity.js';
import { openSqlite } from '../plumbing/sqlite.js';

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

/** A pin owner ("<identity>:<random>", or an older "<pid>:<random>") still runs; a recycled pid is not it. */
function ownerAlive(owner: string): boolean {
  const who = owner.split(':')[0];
  return isAlive(parseIdentity(who) ?? Number(who));
}

/** Pending accesses are written at least this often, and before any insert, eviction or LRU listing. */
export const TOUCH_FLUSH_MS = 5_000;
const TOUCH_FLUSH_COUNT = 4096;
/** Inserts held in memory are written within this long, or at this many, or before anything that needs them. */
export const INSERT_FLUSH_MS = 200;
const INSERT_FLUSH_COUNT = 512;
/**
 * An insert is held only while the ledger's total plus the held bytes stays below this share of the limit: other
 * mounts sharing the cache hold inserts of their own meanwhile, and the margin covers them until they are written.
 */
const HELD_INSERT_HEADROOM = 0.9;

/**
 * LRU by access sequence. Pins belong to this Quota instance (owner "<process identity>:<random>", so a recycled pid is not taken for it), so pins of a
 * crashed mount are dropped by the next open, and several mounts may pin the same catalog.
 * Synchronous: better-sqlite3 calls are short and run in IMMEDIATE transactions across processes.
 */
export class Quota {
  private readonly owner = `${formatIdentity(selfIdentity())}:${randomBytes(4).toString('hex')}`;
  private readonly db: Database.Database;
  /** Keys this instance knows to be in the ledger (loaded once, then kept): a hit's touch needs no query. */
  private readonly known = new Set<string>();
  /** Accesses not yet written, oldest first (a re-touch moves the key to the end). */
  private readonly pending = new Map<string, true>();
  private flushTimer: NodeJS.Timeout | undefined;
  /** New objects not yet written (key -> size; their order is in `pending`): admitted without a transaction. */
  private readonly held = new Map<string, number>();
  private heldBytes = 0;
  /** Closed with `exiting`: the connection stays open until the process ends; nothing more is written. */
  private exited = false;
  private heldTimer: NodeJS.Timeout | undefined;
  private readonly st: Record<'size' | 'total' | 'seq' | 'setSeq' | 'add' | 'del' | 'pin', Database.Statement>;

  private constructor(dbPath: string, readonly limitBytes: number) {
    try {
      // The ledger is rebuilt-able bookkeeping: no fsync per access (every open touches it); WAL keeps it consistent.
      this.db = openSqlite(dbPath, { create: true, journal: 'wal', synchronous: 'normal', busyTimeoutMs: 10_000, errorCode: 'CACHE_IO', what: 'cache database' });
      this.db.exec(`CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, size INTEGER NOT NULL, acseq INTEGER NOT NULL);
        CREATE INDEX IF NOT EXISTS objects_acseq ON objects (acseq);
        CREATE TABLE IF NOT EXISTS pins (key TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (key, owner));`);
      // The total kept by triggers (so every process sharing the ledger sees the same one): an insert
      // reads one row instead of summing the table.
      this.db.transaction(() => {
        this.db.exec(`CREATE TABLE IF NOT EXISTS total (id INTEGER PRIMARY KEY CHECK (id = 0), bytes INTEGER NOT NULL);
          INSERT OR IGNORE INTO total SELECT 0, coalesce(sum(size), 0) FROM objects;
          CREATE TRIGGER IF NOT EXISTS objects_total_ins AFTER INSERT ON objects BEGIN UPDATE total SET bytes = bytes + NEW.size WHERE id = 0; END;
          CREATE TRIGGER IF NOT EXISTS objects_total_del AFTER DELETE ON objects BEGIN UPDATE total SET bytes = bytes - OLD.size WHERE id = 0; END;
          CREATE TRIGGER IF NOT EXISTS objects_total_upd AFTER UPDATE OF size ON objects BEGIN UPDATE total SET bytes = bytes - OLD.size + NEW.size WHERE id = 0; END;`);
      }).immediate();
      this.st = {
        size: this.db.prepare('SELECT size FROM objects WHERE key = ?').pluck(),
        total: this.db.prepare('SELECT bytes FROM total WHERE id = 0').pluck(),
        seq: this.db.prepare('SELECT coalesce(max(acseq), 0) + 1 FROM objects').pluck(),
        setSeq: this.db.prepare('UPDATE objects SET acseq = ? WHERE key = ?'),
        add: this.db.prepare('INSERT INTO objects (key, size, acseq) VALUES (?, ?, ?)'),
        del: this.db.prepare('DELETE FROM objects WHERE key = ?'),
        pin: this.db.prepare('INSERT OR IGNORE INTO pins (key, owner) VALUES (?, ?)'),
      };
      for (const k of this.db.prepare('SELECT key FROM objects').pluck().iterate() as IterableIterator<string>) this.known.add(k);
    } catch (e) {
      throw new GridboxError('CACHE_IO', `Cannot open cache database ${q(dbPath)}`, { cause: e, path: dbPath });
    }
  }

  /** Opens the ledger at `dbPath` and drops the pins of processes that are gone. */
  static open(dbPath: string, limitBytes: number): Quota {
    if (!(limitBytes > 0)) throw new GridboxError('CONFIG_INVALID', `Cache quota must be positive, got ${limitBytes}`);
    const quota = new Quota(dbPath, limitBytes);
    const owners = quota.db.prepare('SELECT DISTINCT owner FROM pins').pluck().all() as string[];
    for (const o of owners) if (!ownerAlive(o)) quota.db.prepare('DELETE FROM pins WHERE owner = ?').run(o);
    return quota;
  }

  private nextSeq(): number {
    return this.st.seq.get() as number;
  }

  /** Writes the held inserts and pending accesses in one transaction; keys another process dropped are forgotten. */
  flush(): void {
    if (this.pending.size === 0 || !this.db.open || this.exited) return;
    this.db.transaction(() => this.flushNow()).immediate();
  }

  private flushNow(): void {
    if (this.pending.size === 0) return;
    clearTimeout(this.heldTimer);
    this.heldTimer = undefined;
    // In the order things happened: a held insert where it was made (or last touched), accesses after it.
    let seq = this.nextSeq();
    for (const key of this.pending.keys()) {
      const size = this.held.get(key);
      // Another mount may have recorded the same object meanwhile: then only its access is new.
      if (size !== undefined && this.st.size.get(key) === undefined) this.st.add.run(key, size, seq++);
      else if (this.st.setSeq.run(seq++, key).changes === 0) this.known.delete(key);
    }
    this.pending.clear();
    this.held.clear();
    this.heldBytes = 0;
  }

  /** Admits a new object without a transaction when the cache is clearly below its limit; false to decide in one. */
  private hold(key: string, size: number): boolean {
    // The total as the ledger has it now (one read, no write transaction): other mounts' inserts count at once.
    if (this.known.has(key) || this.totalBytes() + this.heldBytes + size > this.limitBytes * HELD_INSERT_HEADROOM) return false;
    this.pending.delete(key);
    this.pending.set(key, true);
    this.held.set(key, size);
    this.heldBytes += size;
    this.known.add(key);
    if (this.held.size >= INSERT_FLUSH_COUNT) this.flush();
    else if (this.heldTimer === undefined) {
      this.heldTimer = setTimeout(() => {
        this.heldTimer = undefined;
        // A ledger busy past its timeout keeps the rows held: the next insert, flush or close writes them.
        try { if (this.db.open) this.flush(); } catch { /* see above */ }
      }, INSERT_FLUSH_MS);
      this.heldTimer.unref();
    }
    return true;
  }

  /** Records an object (or refreshes it), evicting LRU unpinned objects down to limit/2 if it would not fit. */
  insert(key: string, size: number, opts: { pin?: boolean } = {}): InsertResult {
    if (!opts.pin && this.hold(key, size)) return { admitted: true, evicted: [] };
    return this.db.transaction((): InsertResult => {
      // Earlier accesses first, so victims are chosen by the real order (a held insert of this key is written too).
      if (!this.held.has(key)) this.pending.delete(key);
      this.flushNow();
      const evicted: string[] = [];
      const known = this.st.size.get(key) as number | undefined;
      if (known !== undefined) {
        this.st.setSeq.run(this.nextSeq(), key);
        this.known.add(key);
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
        for (const k of evicted) { this.st.del.run(k); this.known.delete(k); }
        if (total + size > this.limitBytes && !opts.pin) return { admitted: false, evicted };
      }
      this.st.add.run(key, size, this.nextSeq());
      this.known.add(key);
      if (opts.pin) this.pinNow(key);
      return { admitted: true, evicted };
    }).immediate();
  }

  /**
   * Marks an access (written to the ledger within TOUCH_FLUSH_MS, or before the next insert); false when
   * the key is not known to be in the ledger, so the caller adopts the file with insert().
   */
  touch(key: string): boolean {
    if (!this.known.has(key)) return false;
    this.pending.delete(key);
    this.pending.set(key, true);
    if (this.pending.size >= TOUCH_FLUSH_COUNT) this.flush();
    else if (this.flushTimer === undefined) {
      this.flushTimer = setTimeout(() => { this.flushTimer = undefined; this.flush(); }, TOUCH_FLUSH_MS);
      this.flushTimer.unref();
    }
    return true;
  }

  /** Whether this instance knows the key to be in the ledger (memory only, may lag other mounts). */
  knows(key: string): boolean { return this.known.has(key); }

  has(key: string): boolean {
    if (this.held.has(key)) return true;
    return this.db.prepare('SELECT 1 FROM objects WHERE key = ?').get(key) !== undefined;
  }

  /** Pins for this instance: never evicted while any live instance pins it. */
  pin(key: string): void { this.pinNow(key); }

  unpin(key: string): void { this.db.prepare('DELETE FROM pins WHERE key = ? AND owner = ?').run(key, this.owner); }

  isPinned(key: string): boolean { return this.db.prepare('SELECT 1 FROM pins WHERE key = ?').get(key) !== undefined; }

  remove(key: string): void {
    this.known.delete(key);
    this.pending.delete(key);
    const size = this.held.get(key);
    if (size !== undefined) { this.held.delete(key); this.heldBytes -= size; }
    this.st.del.run(key);
  }

  usage(): QuotaUsage {
    this.flush();
    const r = { bytes: this.totalBytes(), objects: this.db.prepare('SELECT count(*) FROM objects').pluck().get() as number };
    const pinned = this.db.prepare('SELECT coalesce(sum(size), 0) FROM objects WHERE key IN (SELECT key FROM pins)').pluck().get() as number;
    return { bytes: r.bytes, objects: r.objects, pinnedBytes: pinned, limitBytes: this.limitBytes };
  }

  /** Keys from least to most recently used. */
  lruOrder(): string[] {
    this.flush();
    return this.db.prepare('SELECT key FROM objects ORDER BY acseq').pluck().all() as string[];
  }

  /**
   * Writes what is pending, drops this instance's pins and closes the ledger. `exiting`: the process ends next,
   * so the connection is left to the exit instead of closed: closing the last connection checkpoints the WAL
   * with two fsyncs (4-7 ms of a daemon's unmount here, once 197 ms), which the next opener does anyway.
   */
  close(o: { exiting?: boolean } = {}): void {
    if (!this.db.open || this.exited) return;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    clearTimeout(this.heldTimer);
    this.heldTimer = undefined;
    this.flush();
    this.db.prepare('DELETE FROM pins WHERE owner = ?').run(this.owner);
    if (o.exiting === true) this.exited = true;
    else this.db.close();
  }

  private totalBytes(): number {
    return (this.st.total.get() as number | undefined) ?? 0;
  }

  private pinNow(key: string): void {
    this.st.pin.run(key, this.owner);
  }
}
