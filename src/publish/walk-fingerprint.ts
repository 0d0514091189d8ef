// The unchanged-republish shortcut's memory: a digest of everything a directory walk contributes to the
// catalogs (every entry's metadata, in walk order, plus the settings that shape objects and catalogs),
// kept in the private state dir beside the root catalog that publish produced. Not a change detector
// for single files: the publisher compares those against the previous catalog as before.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Entry } from '../fstree/entry.js';
import type { CatalogCounters } from '../catalog/types.js';
import { writeFileAtomic, type RepoLayout, type RepoSettings } from './repo-layout.js';

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

/**
 * Same digest ⇒ same entries with the same metadata (size, mtime with ns, mode, owner, link target,
 * device, hard-link group, xattrs) in the same order, under the same settings: the same assumption
 * the publisher already makes per file when it keeps an object without reading the file again.
 */
export function walkFingerprint(entries: Iterable<Entry>, settings: RepoSettings): string {
  const h = createHash('sha256');
  h.update(JSON.stringify([settings.hashAlgorithm, settings.compression, settings.chunkMin, settings.chunkAvg, settings.chunkMax, settings.autocatalogMax]));
  for (const e of entries) {
    let x = '';
    if (e.xattrs !== undefined) for (const k of Object.keys(e.xattrs).sort()) x += `${k}=${e.xattrs[k].toString('hex')},`;
    h.update(`\n${e.path}\0${e.type}\0${e.mode}\0${e.uid}\0${e.gid}\0${e.size}\0${e.mtime}\0${e.mtimeNs ?? 0}\0${e.target ?? ''}\0${e.rdev ?? 0}\0${e.hardlinkKey ?? ''}\0${x}`);
  }
  return h.digest('hex');
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
  await writeFileAtomic(stateFile(layout), JSON.stringify(w) + '\n', layout.state, 0o600);
}
