// Tag bookkeeping for a commit: trunk, trunk-previous and named tags in the history database (spec §6.1).
// Reads the previous history object, edits a scratch copy, stores the result as a new `H` object whose
// previous_revision names the old one. Never edits an object in place.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { formatObjectId, type HashAlgorithm, type ObjectId } from '../hash/object-id.js';
import { createHistory, openHistory, type HistoryDb, type Tag } from '../history/history-db.js';
import type { ObjectStore } from '../store/object-store.js';
import { readObject, writeObject } from '../store/object-io.js';

export interface HistoryUpdate {
  fqrn: string;
  previousId?: ObjectId;
  algorithm: HashAlgorithm;
  tmpDir: string;
  rootId: ObjectId;
  rootSize: number;
  revision: number;
  timestamp: number;
  moveTrunk: boolean;
  tag?: string;
  tagDescription?: string;
  removeTags?: string[];
}

/** Opens (a scratch copy of) a stored history database; the caller closes it and removes `file`. */
export async function openStoredHistory(store: ObjectStore, id: ObjectId, file: string, writable = false): Promise<HistoryDb> {
  await writeFile(file, await readObject(store, id, 'H', { compression: 'zlib' }));
  return openHistory(file, { writable });
}

/** All tags of the history object `id` (empty when there is none). */
export async function listStoredTags(store: ObjectStore, id: ObjectId | undefined, tmpDir: string): Promise<Tag[]> {
  if (id === undefined) return [];
  const file = join(tmpDir, `history-read-${process.pid}-${Date.now()}.sqlite`);
  try {
    const db = await openStoredHistory(store, id, file);
    try { return db.listTags(); } finally { db.close(); }
  } finally {
    await rm(file, { force: true });
  }
}

export async function updateHistory(store: ObjectStore, u: HistoryUpdate): Promise<ObjectId> {
  const file = join(u.tmpDir, `history-${process.pid}.sqlite`);
  try {
    let db: HistoryDb;
    if (u.previousId !== undefined) {
      db = await openStoredHistory(store, u.previousId, file, true);
      db.setPreviousRevision(formatObjectId(u.previousId));
    } else {
      db = createHistory(file, u.fqrn);
    }
    try {
      const at = { id: u.rootId, revision: u.revision, timestamp: u.timestamp, size: u.rootSize };
      if (u.moveTrunk) db.commitHead(at);
      for (const name of u.removeTags ?? []) {
        if (name === 'trunk' || name === 'trunk-previous') throw new GridboxError('USAGE', `Cannot remove the reserved tag ${q(name)}`);
        if (!db.removeTag(name)) throw new GridboxError('TAG_UNKNOWN', `Cannot remove tag ${q(name)}: no such tag in ${q(u.fqrn)}`);
      }
      if (u.tag !== undefined) {
        if (u.tag === 'trunk' || u.tag === 'trunk-previous' || !/^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$/.test(u.tag)) {
          throw new GridboxError('USAGE', `Invalid tag name ${q(u.tag)}: letters, digits and ._:@+- only; trunk and trunk-previous are reserved`);
        }
        db.removeTag(u.tag);
        db.addTag({ name: u.tag, ...at, description: u.tagDescription ?? '' });
      }
    } finally {
      db.close();
    }
    const bytes = await readFile(file);
    return (await writeObject(store, bytes, { algorithm: u.algorithm, suffix: 'H', compression: 'zlib' })).id;
  } finally {
    await rm(file, { force: true });
    await rm(`${file}-journal`, { force: true });
  }
}
