// The cheap half of the accounting: a container start leaves its record as one small JSON file in a spool
// directory beside the database (`<db>.spool/`), written atomically (plumbing's temp file then rename), so a
// reader sees whole records only. Opening SQLite (the native addon, the WAL, a checkpoint on close) per start cost more than the
// rest of the runtime's own work, and HTCondor's and GlideinWMS's probes start the runtime several times per
// job; the records are moved into the database (accounting-db.ts, foldSpool) whenever it is opened, i.e. by
// `gridbox report`, by posting, and by a start that finds the spool large. No SQLite here, on purpose.
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tempOwnerPid, writeFileAtomicSync } from '../plumbing/atomic-write.js';
import { invalidRecord, type StartRecord } from './start-record.js';

/** A spooled record: everything but the database row id. */
export type SpooledStart = Omit<StartRecord, 'id'>;

/** Spool entries a start leaves before it folds them into the database itself (bounds the spool without a reader). */
export const SPOOL_FOLD_AT = 256;
const SUFFIX = '.start.json';

export const spoolDirOf = (dbPath: string): string => `${dbPath}.spool`;

/**
 * Writes one record; returns the spool's entry count as a hint when it reached SPOOL_FOLD_AT (the caller then
 * folds), else 0. The name carries the start time, pid and a counter, so concurrent starts never collide.
 */
let serial = 0;
export function spoolStart(dbPath: string, record: SpooledStart): number {
  const dir = spoolDirOf(dbPath);
  const path = join(dir, `${record.startedAt}-${process.pid}-${serial++}${SUFFIX}`);
  const text = JSON.stringify(record);
  // The spool directory exists after the first start: create it only when the write says it is missing.
  try { writeFileAtomicSync(path, text, { mode: 0o600 }); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileAtomicSync(path, text, { mode: 0o600 });
  }
  // A readdir of a few hundred names is a fraction of a millisecond.
  const n = readdirSync(dir).length;
  return n >= SPOOL_FOLD_AT ? n : 0;
}

export interface SpoolEntry { name: string; record: SpooledStart | undefined }

/** The spooled records, oldest first; an unreadable or invalid entry has `record` undefined (the folder drops it). */
export function readSpool(dbPath: string): SpoolEntry[] {
  let names: string[];
  try { names = readdirSync(spoolDirOf(dbPath)); } catch { return []; }
  return names.filter((n) => n.endsWith(SUFFIX) && !n.startsWith('.')).sort().map((name) => {
    try {
      const r = JSON.parse(readFileSync(join(spoolDirOf(dbPath), name), 'utf8')) as SpooledStart;
      return { name, record: invalidRecord({ ...r, id: 1 }) === undefined ? r : undefined };
    } catch { return { name, record: undefined }; }
  });
}

/** Removes folded entries (already stored, or unreadable), and temp files an hour old (a start killed while writing). */
export function removeSpooled(dbPath: string, names: string[], now = Date.now()): void {
  const dir = spoolDirOf(dbPath);
  for (const n of names) rmSync(join(dir, n), { force: true });
  let all: string[] = [];
  try { all = readdirSync(dir); } catch { /* no spool */ }
  for (const n of all) {
    // Temp files of the atomic writer (and the `.<name>.tmp` ones earlier versions left).
    if (!n.startsWith('.') || (!n.endsWith('.tmp') && tempOwnerPid(n) === undefined)) continue;
    try { if (now - statSync(join(dir, n)).mtimeMs > 3600_000) rmSync(join(dir, n), { force: true }); } catch { /* gone already */ }
  }
}
