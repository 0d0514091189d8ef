// Opening the history and reflog SQLite files (cvmfs-format.md §6). The layering puts history/ beside
// catalog/ (both layer 2), so it cannot use catalog/sqlite.ts and keeps this small twin with the same
// pragma policy: rollback journal, never WAL, so a closed file is self-contained. Schema lives elsewhere.
import Database from 'better-sqlite3';
import { existsSync, unlinkSync } from 'node:fs';
import { GridboxError, q } from '../errors.js';

export type HistorySqlite = Database.Database;

/** Open an existing file (read-only unless `writable`) and prove it is SQLite; HISTORY_INVALID names the file. */
export function openHistorySqlite(file: string, writable: boolean, what: string): HistorySqlite {
  let db: HistorySqlite | undefined;
  try {
    db = new Database(file, { readonly: !writable, fileMustExist: true });
    if (writable) db.pragma('journal_mode = DELETE');
    else db.pragma('temp_store = 2');
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    db.pragma('foreign_keys = ON');
    return db;
  } catch (cause) {
    db?.close();
    throw new GridboxError('HISTORY_INVALID', `Cannot open ${what} ${q(file)}: ${(cause as Error).message}`, { cause, path: file });
  }
}

/** Create a fresh file (replacing an old one and its stale journal) in rollback-journal mode. */
export function createHistorySqlite(file: string, what: string): HistorySqlite {
  let db: HistorySqlite | undefined;
  try {
    for (const f of [file, `${file}-journal`, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) unlinkSync(f);
    db = new Database(file);
    db.pragma('journal_mode = DELETE');
    db.pragma('foreign_keys = ON');
    return db;
  } catch (cause) {
    db?.close();
    throw new GridboxError('HISTORY_INVALID', `Cannot create ${what} ${q(file)}: ${(cause as Error).message}`, { cause, path: file });
  }
}

export function readProperties(db: HistorySqlite): Map<string, string> {
  const rows = db.prepare('SELECT key, value FROM properties').all() as { key: unknown; value: unknown }[];
  return new Map(rows.map((r) => [String(r.key), String(r.value)]));
}

export function tableNames(db: HistorySqlite): Set<string> {
  const rows = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
  return new Set(rows.map((r) => r.name));
}

export function columnNames(db: HistorySqlite, table: string): Set<string> {
  const rows = db.prepare(`PRAGMA table_info(${JSON.stringify(table)})`).all() as { name: string }[];
  return new Set(rows.map((r) => r.name));
}
