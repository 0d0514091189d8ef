// Repository maintenance on the history database: tags (add, list, remove), rollback to a tag as a new
// revision, and garbage collection of objects no kept revision references. Each change holds the publish
// lock and ends, like a publish, with a signed manifest renamed into place.
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { formatObjectId, objectKey } from '../hash/object-id.js';
import type { Tag } from '../history/history-db.js';
import { isAlive } from '../plumbing/process-identity.js';
import { makeOwnedDir, removeDeadOwnedDirs } from '../plumbing/transaction-dirs.js';
import { FsStore } from '../store/fs-store.js';
import { buildCatalogs } from './catalog-build.js';
import { commitHead, readHead, type Head } from './head.js';
import { listStoredTags } from './history-update.js';
import { acquirePublishLock } from './publish-lock.js';
import { readSettings, type RepoLayout } from './repo-layout.js';
import { forEachCatalog, loadRevision } from './revision-load.js';

async function withLock<T>(layout: RepoLayout, action: string, fn: (store: FsStore, head: Head, tmpDir: string) => Promise<T>): Promise<T> {
  await mkdir(layout.state, { recursive: true });
  const lock = await acquirePublishLock(layout.lock, layout.fqrn, action);
  try {
    // Under the lock: what dead transactions left (temp dirs, objects' temp files) goes first.
    removeDeadOwnedDirs(layout.state, 'txn');
    const store = new FsStore(layout.srv);
    await store.removeDeadTemps(isAlive);
  } catch (e) {
    await lock.release();
    throw e;
  }
  const tmpDir = makeOwnedDir(layout.state, 'txn');
  try {
    return await fn(new FsStore(layout.srv), await readHead(layout), tmpDir);
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
    await lock.release();
  }
}

export async function listTags(layout: RepoLayout): Promise<Tag[]> {
  const head = await readHead(layout);
  const tmpDir = await mkdtemp(join(layout.state, 'tags-'));
  try {
    return await listStoredTags(new FsStore(layout.srv), head.historyId, tmpDir);
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
}

/** Adds a tag at the current revision and/or removes tags; the revision number stays. */
export async function editTags(layout: RepoLayout, edit: { add?: string; description?: string; remove?: string[] }): Promise<Head> {
  const settings = await readSettings(layout);
  return withLock(layout, 'tag', (store, head, tmpDir) => commitHead(layout, store, {
    previous: head, rootId: head.rootId, rootSize: head.rootSize, revision: head.revision, algorithm: settings.hashAlgorithm,
    ttl: settings.ttl, moveTrunk: false, tag: edit.add, tagDescription: edit.description, removeTags: edit.remove, tmpDir,
  }));
}

/** Republishes the tree of `tagName` as a new revision (the tags stay; trunk moves). */
export async function rollback(layout: RepoLayout, tagName: string): Promise<Head> {
  const settings = await readSettings(layout);
  return withLock(layout, 'rollback', async (store, head, tmpDir) => {
    const tag = (await listStoredTags(store, head.historyId, tmpDir)).find((t) => t.name === tagName);
    if (tag === undefined) throw new GridboxError('TAG_UNKNOWN', `Cannot roll back ${q(layout.fqrn)}: no tag ${q(tagName)}`);
    const old = await loadRevision(store, tag.id, tmpDir);
    // The tagged catalogs serve as "previous": unchanged nested catalogs keep their hashes; the root is rewritten.
    const built = await buildCatalogs(old.tree, [...old.catalogs.keys()], {
      store, algorithm: tag.id.algorithm, tmpDir, revision: head.revision + 1, ttl: settings.ttl, now: Math.floor(Date.now() / 1000), old: old.catalogs,
    });
    const root = built.get('')!;
    return commitHead(layout, store, { previous: head, rootId: root.id, rootSize: root.size, revision: head.revision + 1, algorithm: settings.hashAlgorithm, ttl: settings.ttl, tmpDir });
  });
}

export interface GcReport {
  keptRoots: number;
  referenced: number;
  deleted: number;
  bytes: number;
  /** Object keys deleted (or, with dryRun, that would be). */
  keys: string[];
}

/** Deletes every object that neither the current revision nor any tagged revision references. */
export async function collectGarbage(layout: RepoLayout, opts: { dryRun?: boolean } = {}): Promise<GcReport> {
  return withLock(layout, 'gc', async (store, head, tmpDir) => {
    const keep = new Set<string>();
    if (head.certId) keep.add(objectKey(head.certId, 'X'));
    if (head.historyId) keep.add(objectKey(head.historyId, 'H'));
    if (head.fields.M) keep.add(objectKey(head.fields.M, 'M'));
    const roots = new Map([[formatObjectId(head.rootId), head.rootId]]);
    for (const t of await listStoredTags(store, head.historyId, tmpDir)) roots.set(formatObjectId(t.id), t.id);
    for (const id of roots.values()) {
      await forEachCatalog(store, id, tmpDir, (_m, cid, _s, rows) => {
        keep.add(objectKey(cid, 'C'));
        for (const r of rows) {
          if (r.id !== undefined) keep.add(objectKey(r.id, ''));
          for (const c of r.chunks ?? []) keep.add(objectKey(c.id, 'P'));
        }
      });
    }
    const report: GcReport = { keptRoots: roots.size, referenced: keep.size, deleted: 0, bytes: 0, keys: [] };
    for await (const key of store.list()) {
      if (keep.has(key)) continue;
      report.deleted++;
      report.keys.push(key);
      report.bytes += (await stat(store.pathOf(key)).catch(() => ({ size: 0 }))).size;
      if (!opts.dryRun) await store.delete(key);
    }
    return report;
  });
}
