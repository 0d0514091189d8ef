// Opening the history and reflog SQLite files (cvmfs-format.md §6) through plumbing/sqlite, with the
// catalogs' pragma policy: rollback journal, never WAL, so a closed file is self-contained. Schema lives elsewhere.
import type Database from 'better-sqlite3';
import { existsSync, unlinkSync } from 'node:fs';
import { GridboxError, q } from '../errors.js';
import { openSqlite } from '../plumbing/sqlite.js';

export type HistorySqlite = Database.Database;

function configure(db: HistorySqlite, file: string, what: string, setup: (db: HistorySqlite) => void): HistorySqlite {
  try {
    setup(db);
    return db;
  } catch (cause) {
    db.close();
    throw new GridboxError('HISTORY_INVALID', `Cannot set up ${what} ${q(file)}: ${(cause as Error).message}`, { cause, path: file });
  }
}

/** Open an existing file (read-only unless `writable`) and prove it is SQLite; HISTORY_INVALID names the file. */
export function openHistorySqlite(file: string, writable: boolean, what: string): HistorySqlite {
  const db = openSqlite(file, { readonly: !writable, journal: writable ? 'delete' : undefined, errorCode: 'HISTORY_INVALID', what });
  return configure(db, file, what, (d) => {
    if (!writable) d.pragma('temp_store = 2');
    d.pragma('foreign_keys = ON');
  });
}

/** Create a fresh file (replacing an old one and its stale journal) in rollback-journal mode. */
export function createHistorySqlite(file: string, what: string): HistorySqlite {
  try {
    for (const f of [file, `${file}-journal`, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) unlinkSync(f);
  } catch (cause) {
    throw new GridboxError('HISTORY_INVALID', `Cannot create ${what} ${q(file)}: ${(cause as Error).message}`, { cause, path: file });
  }
  const db = openSqlite(file, { create: true, journal: 'delete', errorCode: 'HISTORY_INVALID', what });
  return configure(db, file, what, (d) => d.pragma('foreign_keys = ON'));
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
