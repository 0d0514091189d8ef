// The one place that talks to the SQLite driver (better-sqlite3) for catalogs: open read-only, create.
// Pragmas follow cvmfs-format.md §4: written files use a rollback journal (never WAL) so that the closed
// file is self-contained; read-only opens use temp_store=2 like the stock client. No schema knowledge here.
import Database from 'better-sqlite3';
import { existsSync, unlinkSync } from 'node:fs';
import { GridboxError, q, type ErrorCode } from '../errors.js';

export type SqliteDb = Database.Database;
export type SqliteStatement = Database.Statement;

/**
 * Open an existing SQLite file read-only and make sure it really is a database (the driver opens any file
 * lazily, so a first query is run here). Failures throw `code` (CATALOG_INVALID by default) naming the file.
 */
export function openSqliteReadOnly(file: string, code: ErrorCode = 'CATALOG_INVALID'): SqliteDb {
  let db: SqliteDb | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('temp_store = 2');
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    return db;
  } catch (cause) {
    db?.close();
    throw new GridboxError(code, `Cannot open SQLite database ${q(file)}: ${(cause as Error).message}`, { cause, path: file });
  }
}

/** Open an existing SQLite file for writing, in rollback-journal mode. */
export function openSqliteWritable(file: string, code: ErrorCode = 'CATALOG_INVALID'): SqliteDb {
  let db: SqliteDb | undefined;
  try {
    db = new Database(file, { fileMustExist: true });
    db.pragma('journal_mode = DELETE');
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    return db;
  } catch (cause) {
    db?.close();
    throw new GridboxError(code, `Cannot open SQLite database ${q(file)} for writing: ${(cause as Error).message}`, { cause, path: file });
  }
}

/**
 * Create a fresh database file (an existing file and its stale journal are replaced). Rollback journal,
 * exclusive locking; `synchronous=OFF` because the file is a scratch file that the caller compresses into
 * a content-addressed object, which is where durability is ensured.
 */
export function createSqlite(file: string, code: ErrorCode = 'CATALOG_INVALID'): SqliteDb {
  let db: SqliteDb | undefined;
  try {
    for (const f of [file, `${file}-journal`, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) unlinkSync(f);
    db = new Database(file);
    db.pragma('journal_mode = DELETE');
    db.pragma('synchronous = OFF');
    db.pragma('locking_mode = EXCLUSIVE');
    db.pragma('cache_size = -32768');
    return db;
  } catch (cause) {
    db?.close();
    throw new GridboxError(code, `Cannot create SQLite database ${q(file)}: ${(cause as Error).message}`, { cause, path: file });
  }
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
