// The start records in SQLite: one table, bounded (at most MAX_RECORDS rows and MAX_AGE_MS of history,
// pruned on every insert through the primary key and a time index), shared by the node-local database and
// the aggregating server (rows from other nodes keep their node and id, so a re-post is a no-op).
// WAL and a busy timeout, because every job on a node writes here.
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { openSqlite, type SqliteDb } from '../plumbing/sqlite.js';
import type { StartRecord } from './start-record.js';
import { readSpool, removeSpooled, spoolDirOf } from './start-spool.js';

export type AccountingDb = SqliteDb;

export const MAX_RECORDS = 200_000;
export const MAX_AGE_MS = 180 * 24 * 3600 * 1000;
export const BUSY_TIMEOUT_MS = 5000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS starts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  node TEXT NOT NULL,
  origin_id INTEGER,
  started_at INTEGER NOT NULL,
  via TEXT NOT NULL,
  image_name TEXT NOT NULL,
  image_digest TEXT,
  first_instruction_ms REAL,
  exit_ms REAL NOT NULL,
  exit_status INTEGER NOT NULL,
  bytes_fetched INTEGER,
  cache_hits INTEGER,
  cache_misses INTEGER,
  posted INTEGER NOT NULL DEFAULT 0,
  UNIQUE (node, origin_id)
);
CREATE INDEX IF NOT EXISTS starts_time ON starts(started_at);
`;

/** Whether a database path has spooled starts waiting (start-spool.ts): then it "exists" for readers too. */
export function hasSpool(path: string): boolean {
  return existsSync(spoolDirOf(path));
}

function openRaw(path: string, readonly: boolean): AccountingDb {
  if (!readonly) mkdirSync(dirname(path), { recursive: true });
  const db = openSqlite(path, {
    readonly, create: !readonly, journal: readonly ? undefined : 'wal', synchronous: 'normal', busyTimeoutMs: BUSY_TIMEOUT_MS,
    errorCode: 'CONFIG_INVALID', what: 'accounting database',
  });
  if (!readonly) {
    db.exec(SCHEMA);
    // Spooled records carry their spool name, so a fold cut short between commit and unlink is not stored twice.
    const cols = (db.prepare('PRAGMA table_info(starts)').all() as Array<{ name: string }>).map((c) => c.name);
    if (!cols.includes('spool_name')) db.exec('ALTER TABLE starts ADD COLUMN spool_name TEXT');
    db.exec('CREATE UNIQUE INDEX IF NOT EXISTS starts_spool ON starts(spool_name)');
  }
  return db;
}

/**
 * Opens an accounting database, creating it (and its directory) unless read-only. Starts waiting in its spool
 * are moved in first (by a writable connection even for a read-only open; a reader without write access sees
 * the database as it is).
 */
export function openAccountingDb(path: string, opts: { readonly?: boolean; retention?: Retention } = {}): AccountingDb {
  const readonly = opts.readonly ?? false;
  if (readonly) {
    if (hasSpool(path)) {
      try { const w = openRaw(path, false); try { foldSpool(w, path, opts.retention); } finally { w.close(); } } catch { /* not ours to write */ }
    }
    return openRaw(path, true);
  }
  const db = openRaw(path, false);
  try { foldSpool(db, path, opts.retention); } catch (e) { db.close(); throw e; }
  return db;
}

/** Moves the spooled starts of `path` into `db` (one transaction, then the spool files go); returns how many. */
export function foldSpool(db: AccountingDb, path: string, retention: Retention = {}): number {
  const entries = readSpool(path);
  if (entries.length === 0) return 0;
  const ins = db.prepare(INSERT_SPOOLED);
  const added = db.transaction(() => {
    let n = 0;
    for (const e of entries) if (e.record !== undefined) n += ins.run({ ...e.record, originId: null, posted: 0, spoolName: e.name }).changes;
    prune(db, retention);
    return n;
  })();
  removeSpooled(path, entries.map((e) => e.name));
  return added;
}

interface Row {
  seq: number; node: string; origin_id: number | null; started_at: number; via: string; image_name: string; image_digest: string | null;
  first_instruction_ms: number | null; exit_ms: number; exit_status: number; bytes_fetched: number | null; cache_hits: number | null; cache_misses: number | null;
}

const toRecord = (r: Row): StartRecord => ({
  node: r.node, id: r.origin_id ?? r.seq, startedAt: r.started_at, via: r.via as StartRecord['via'], imageName: r.image_name, imageDigest: r.image_digest,
  firstInstructionMs: r.first_instruction_ms, exitMs: r.exit_ms, exitStatus: r.exit_status, bytesFetched: r.bytes_fetched, cacheHits: r.cache_hits, cacheMisses: r.cache_misses,
});

/** Retention limits; the defaults are the constants above (tests pass small ones). */
export interface Retention { now?: number; maxRecords?: number; maxAgeMs?: number }

function prune(db: AccountingDb, r: Retention): void {
  db.prepare('DELETE FROM starts WHERE started_at < ?').run((r.now ?? Date.now()) - (r.maxAgeMs ?? MAX_AGE_MS));
  // seq only grows (AUTOINCREMENT), so this keeps the newest maxRecords rows with one index range delete.
  db.prepare('DELETE FROM starts WHERE seq <= (SELECT max(seq) FROM starts) - ?').run(r.maxRecords ?? MAX_RECORDS);
}

const INSERT = `INSERT OR IGNORE INTO starts (node, origin_id, started_at, via, image_name, image_digest, first_instruction_ms, exit_ms, exit_status, bytes_fetched, cache_hits, cache_misses, posted)
  VALUES (@node, @originId, @startedAt, @via, @imageName, @imageDigest, @firstInstructionMs, @exitMs, @exitStatus, @bytesFetched, @cacheHits, @cacheMisses, @posted)`;

const INSERT_SPOOLED = `INSERT OR IGNORE INTO starts (node, origin_id, started_at, via, image_name, image_digest, first_instruction_ms, exit_ms, exit_status, bytes_fetched, cache_hits, cache_misses, posted, spool_name)
  VALUES (@node, @originId, @startedAt, @via, @imageName, @imageDigest, @firstInstructionMs, @exitMs, @exitStatus, @bytesFetched, @cacheHits, @cacheMisses, @posted, @spoolName)`;

/** Stores this node's record; returns its id. */
export function recordStart(db: AccountingDb, r: Omit<StartRecord, 'id'>, retention: Retention = {}): number {
  return db.transaction(() => {
    const info = db.prepare(INSERT).run({ ...r, originId: null, posted: 0 });
    prune(db, retention);
    return Number(info.lastInsertRowid);
  })();
}

/** Stores records posted by other nodes (the aggregating server); a record seen before is skipped. Returns how many were new. */
export function ingestRecords(db: AccountingDb, records: StartRecord[], retention: Retention = {}): number {
  return db.transaction(() => {
    let added = 0;
    const ins = db.prepare(INSERT);
    for (const r of records) added += ins.run({ ...r, originId: r.id, posted: 1 }).changes;
    prune(db, retention);
    return added;
  })();
}

/** Records started at or after `since` (ms), oldest first. */
export function listStarts(db: AccountingDb, since = 0): StartRecord[] {
  return (db.prepare('SELECT * FROM starts WHERE started_at >= ? ORDER BY started_at, seq').all(since) as Row[]).map(toRecord);
}

/** This node's records not yet posted, oldest first, at most `limit`. */
export function unposted(db: AccountingDb, limit: number): StartRecord[] {
  return (db.prepare('SELECT * FROM starts WHERE posted = 0 AND origin_id IS NULL ORDER BY seq LIMIT ?').all(limit) as Row[]).map(toRecord);
}

export function markPosted(db: AccountingDb, ids: number[]): void {
  const upd = db.prepare('UPDATE starts SET posted = 1 WHERE seq = ? AND origin_id IS NULL');
  db.transaction(() => { for (const id of ids) upd.run(id); })();
}
