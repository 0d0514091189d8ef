// Tag bookkeeping for a commit: trunk, trunk-previous and named tags in the history database (spec §6.1).
// Provisional: returns no history object until history/history-db.ts lands; the manifest's H is optional.
import type { HashAlgorithm, ObjectId } from '../hash/object-id.js';
import type { ObjectStore } from '../store/object-store.js';

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

export async function updateHistory(_store: ObjectStore, u: HistoryUpdate): Promise<ObjectId | undefined> {
  return u.previousId;
}
