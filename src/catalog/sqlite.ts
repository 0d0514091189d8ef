// Catalog SQLite files, opened through plumbing/sqlite (the one place the driver is opened): read-only, writable, create.
// Pragmas follow cvmfs-format.md §4: written files use a rollback journal (never WAL) so that the closed
// file is self-contained; read-only opens use temp_store=2 like the stock client. No schema knowledge here.
import type Database from 'better-sqlite3';
import { existsSync, unlinkSync } from 'node:fs';
import { GridboxError, q, type ErrorCode } from '../errors.js';
import { openSqlite } from '../plumbing/sqlite.js';

export type SqliteDb = Database.Database;
export type SqliteStatement = Database.Statement;

/** Runs `setup` on a freshly opened handle; a failure closes it and throws `code` naming the file. */
function configure(db: SqliteDb, file: string, code: ErrorCode, setup: (db: SqliteDb) => void): SqliteDb {
  try {
    setup(db);
    return db;
  } catch (cause) {
    db.close();
    throw new GridboxError(code, `Cannot set up SQLite database ${q(file)}: ${(cause as Error).message}`, { cause, path: file });
  }
}

/**
 * Open an existing SQLite file read-only and make sure it really is a database (openSqlite runs a first
 * query). Failures throw `code` (CATALOG_INVALID by default) naming the file.
 */
export function openSqliteReadOnly(file: string, code: ErrorCode = 'CATALOG_INVALID', o: { immutable?: boolean } = {}): SqliteDb {
  return configure(openSqlite(file, { readonly: true, errorCode: code }), file, code, (db) => {
    db.pragma('temp_store = 2');
    // A file nobody will write again (a content-addressed catalog in the client cache) keeps its shared lock
    // and its page cache for good: in the default mode every statement takes and drops the lock and re-reads
    // the header to see whether the file changed, which made a point lookup ~14 us instead of ~1 us. Not for
    // files a writer may open later (the publisher's): the held lock would make that writer busy.
    if (o.immutable === true) db.pragma('locking_mode = EXCLUSIVE');
  });
}

/** Open an existing SQLite file for writing, in rollback-journal mode. */
export function openSqliteWritable(file: string, code: ErrorCode = 'CATALOG_INVALID'): SqliteDb {
  return openSqlite(file, { journal: 'delete', errorCode: code });
}

/**
 * Create a fresh database file (an existing file and its stale journal are replaced). Rollback journal,
 * exclusive locking; `synchronous=OFF` because the file is a scratch file that the caller compresses into
 * a content-addressed object, which is where durability is ensured.
 */
export function createSqlite(file: string, code: ErrorCode = 'CATALOG_INVALID'): SqliteDb {
  try {
    for (const f of [file, `${file}-journal`, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) unlinkSync(f);
  } catch (cause) {
    throw new GridboxError(code, `Cannot create SQLite database ${q(file)}: ${(cause as Error).message}`, { cause, path: file });
  }
  const db = openSqlite(file, { create: true, journal: 'delete', synchronous: 'off', errorCode: code });
  return configure(db, file, code, (d) => {
    d.pragma('locking_mode = EXCLUSIVE');
    d.pragma('cache_size = -32768');
  });
}

/** Names of the tables in the database. */
export function tableNames(db: SqliteDb): Set<string> {
  const rows = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
  return new Set(rows.map((r) => r.name));
}

/** Column names of one table (empty when the table is missing). */
export function columnNames(db: SqliteDb, table: string): Set<string> {
  const rows = db.prepare(`PRAGMA table_info(${JSON.stringify(table)})`).all() as { name: string }[];
  return new Set(rows.map((r) => r.name));
}
