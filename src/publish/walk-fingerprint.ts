// The streaming publisher's memory of the revision it committed (private state dir): per catalog, the
// fingerprint of the source it was built from (source-summary.ts: every directory's metadata digest and
// the settings that shape objects and catalogs) with its hash, size, revision and counters. Valid only
// while that revision's root catalog is served; then a catalog with the same fingerprint is kept unread
// and an unchanged source restamps the root. Not a change detector for single files: those are compared
// against the previous catalog's rows.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CatalogCounters } from '../catalog/types.js';
import type { RepoLayout } from './repo-layout.js';
import { writeFileAtomic } from '../plumbing/atomic-write.js';

/** One catalog as the streaming publisher wrote (or kept) it. */
export interface MountRecord {
  /** catalogShapes() fingerprint of what it was built from. */
  fingerprint: string;
  /** Catalog hash (formatObjectId), uncompressed size, revision and counters: what a parent's nested ref needs. */
  id: string;
  size: number;
  revision: number;
  counters: CatalogCounters;
}

export interface LastWalk {
  /** walkFingerprint() of the source as published. */
  fingerprint: string;
  /** Root catalog hash (formatObjectId) that publish committed. */
  rootId: string;
  /** Catalogs in that revision (for the report). */
  catalogs: number;
  /** Streaming publishes: settingsKey() and every catalog by mountpoint ("" root), valid while rootId is served. */
  settings?: string;
  mounts?: Record<string, MountRecord>;
}

const stateFile = (layout: RepoLayout) => join(layout.state, 'last-walk.json');

/** The record of the last whole-repository directory publish, or undefined (none, or unreadable). */
export async function readLastWalk(layout: RepoLayout): Promise<LastWalk | undefined> {
  try {
    const v = JSON.parse(await readFile(stateFile(layout), 'utf8')) as Partial<LastWalk>;
    if (typeof v.fingerprint === 'string' && typeof v.rootId === 'string' && typeof v.catalogs === 'number') return v as LastWalk;
  } catch { /* none yet */ }
  return undefined;
}

export async function writeLastWalk(layout: RepoLayout, w: LastWalk): Promise<void> {
  await writeFileAtomic(stateFile(layout), JSON.stringify(w) + '\n', { tmpDir: layout.state, fsync: true, mode: 0o600 });
}
