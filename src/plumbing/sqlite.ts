// The one place better-sqlite3 databases are opened: read-only or writable, created on demand, with the
// journal mode, synchronous level and busy timeout as options, and a first query that proves the file is a
// database (the driver opens any file lazily). No schema knowledge; catalog/ and history/ add their own.
import Database from 'better-sqlite3';
import { GridboxError, q, type ErrorCode } from '../errors.js';

export type SqliteDb = Database.Database;

export interface OpenSqliteOptions {
  /** Open read-only (the file must exist). Default false. */
  readonly?: boolean;
  /** Create the file when it is missing (ignored when readonly). Default false: a missing file is an error. */
  create?: boolean;
  /** journal_mode for writable opens; default: leave the file's own mode. Read-only opens never change it. */
  journal?: 'delete' | 'wal' | 'truncate' | 'off';
  /** synchronous level; default: SQLite's (full). */
  synchronous?: 'off' | 'normal' | 'full';
  /** How long a statement waits for another connection's lock before SQLITE_BUSY; default 5000 ms. */
  busyTimeoutMs?: number;
  /** Error code thrown when the file cannot be opened or is no database; default SQLITE_INVALID. */
  errorCode?: ErrorCode;
  /** What the file is, for the error message ("catalog", "history database"); default "SQLite database". */
  what?: string;
}

/**
 * Opens `path` and runs a first query on it. Failures throw `errorCode` naming the file and the driver's
 * reason; the half-opened handle is closed first.
 */
export function openSqlite(path: string, opts: OpenSqliteOptions = {}): SqliteDb {
  const readonly = opts.readonly ?? false;
  let db: SqliteDb | undefined;
  try {
    db = new Database(path, { readonly, fileMustExist: readonly || !(opts.create ?? false), timeout: opts.busyTimeoutMs ?? 5000 });
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    if (!readonly && opts.journal !== undefined) setJournalMode(db, opts.journal, opts.busyTimeoutMs ?? 5000);
    if (opts.synchronous !== undefined) db.pragma(`synchronous = ${opts.synchronous.toUpperCase()}`);
    return db;
  } catch (cause) {
    db?.close();
    throw new GridboxError(opts.errorCode ?? 'SQLITE_INVALID',
      `Cannot open ${opts.what ?? 'SQLite database'} ${q(path)}${readonly ? '' : ' for writing'}: ${(cause as Error).message}`,
      { cause, path });
  }
}

/**
 * Switching the journal mode takes an exclusive lock, and SQLite answers SQLITE_BUSY at once, without calling
 * the busy handler, when another connection holds the file at that moment: two processes creating the same
 * WAL database together (serve's workers opening one accounting database) lost this race about 1 time in 20
 * here. So it is retried like a busy wait, up to the busy timeout.
 */
function setJournalMode(db: SqliteDb, mode: string, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  for (let waitMs = 1; ; waitMs = Math.min(2 * waitMs, 50)) {
    try {
      db.pragma(`journal_mode = ${mode.toUpperCase()}`);
      return;
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'SQLITE_BUSY' || Date.now() >= deadline) throw e;
      Atomics.wait(sleeper, 0, 0, waitMs);
    }
  }
}

/** Something to block on for a few milliseconds: openSqlite is synchronous, as better-sqlite3 is. */
const sleeper = new Int32Array(new SharedArrayBuffer(4));
