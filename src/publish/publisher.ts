// Front end for publishing a directory tree (and, through publishItems, any list of entries such as a
// tar stream's) at a path: walk, merge into the served tree (unchanged files keep their objects), hand
// changed contents to the transaction's ingest. Lock, revision load, worker pool and commit are the
// transaction's (transaction.ts); this file only produces the new tree.
import { GridboxError, q } from '../errors.js';
import { type Entry, normalizeRelPath } from '../fstree/entry.js';
import { walkTree } from '../fstree/walk.js';
import { formatObjectId } from '../hash/object-id.js';
import { matchDirtab } from './catalog-plan.js';
import type { Head } from './head.js';
import type { RepoLayout, RepoSettings } from './repo-layout.js';
import { produceStreaming } from './stream-publish.js';
import { readLastWalk, writeLastWalk, type LastWalk } from './walk-fingerprint.js';
import { RevisionTree, toRepoPath, type ContentSource, type FileContent, type TreeItem } from './tree.js';
import type { StoredContent } from './content-ingest.js';
import { newReport, runTransaction, type PublishHooks, type PublishReport, type TransactionContext, type TransactionPlan } from './transaction.js';

export { CRASH_POINTS, type CrashPoint, type PublishHooks, type PublishReport } from './transaction.js';
export { BATCH_BYTES, BATCH_FILES, mixSize } from './content-ingest.js';

export interface PublishOptions {
  layout: RepoLayout;
  settings: RepoSettings;
  /** Repository path the source becomes ("" or "/" = the whole repository). */
  at?: string;
  tag?: string;
  tagDescription?: string;
  /** Worker threads (default: available parallelism). */
  workers?: number;
  /** Read xattrs from the source directory (default "auto"). */
  xattrs?: boolean | 'auto';
  hooks?: PublishHooks;
  /**
   * Whole-repository publish: directory entries the first pass keeps for the second, at most (default
   * listing-cache.ts's LISTING_CACHE_ENTRIES; 0 lists every directory twice).
   */
  listingCacheEntries?: number;
}

/** A new entry for the transaction, repository-relative to the `at` path, with its content source. */
export interface SourceItem {
  entry: Entry;
  source?: ContentSource;
  /** Already stored (tar ingest stores contents while streaming). */
  content?: FileContent;
}

/** Publishes a directory tree. */
export async function publishDirectory(sourceDir: string, opts: PublishOptions): Promise<PublishReport> {
  const at = normalizeAt(opts.at);
  const walk = async (): Promise<SourceItem[]> => {
    const walked = await walkTree(sourceDir, { xattrs: opts.xattrs ?? 'auto' });
    return walked.map((w) => ({ entry: w.entry, source: w.entry.type === 'file' ? { kind: 'file', path: w.sourcePath } as const : undefined }));
  };
  if (at === '') return publishWholeTree(sourceDir, opts);
  const result = await runTransaction(opts, async (ctx) => mergeItems(ctx, opts, at, await walk()));
  logReport(opts, result!.report);
  return result!.report;
}

/**
 * The whole repository from a directory, streamed (stream-publish.ts): memory bounded by the number of
 * directories, not entries; catalogs whose source is unchanged since the served revision are kept
 * unread, and a wholly unchanged source restamps the served root catalog.
 */
async function publishWholeTree(sourceDir: string, opts: PublishOptions): Promise<PublishReport> {
  const last = await readLastWalk(opts.layout);
  let record: Omit<LastWalk, 'rootId'> | undefined;
  let restamped = false;
  const result = await runTransaction({ ...opts, timing: ['GRIDBOX_PUBLISH_TIMING', 'publish'] }, async (ctx) => {
    const out = await produceStreaming(ctx, sourceDir, last, { xattrs: opts.xattrs, tag: opts.tag, tagDescription: opts.tagDescription, listingCacheEntries: opts.listingCacheEntries });
    record = out.record;
    restamped = out.plan.kind === 'restamp';
    return out.plan;
  });
  const { report, catalogs } = result!;
  if (record !== undefined) {
    const mounts = record.mounts ?? {};
    if (mounts[''] !== undefined) mounts[''] = { ...mounts[''], id: report.rootHash, revision: report.revision };
    await writeLastWalk(opts.layout, { ...record, mounts, catalogs, rootId: report.rootHash }).catch(() => undefined);
  }
  logReport(opts, report, restamped);
  return report;
}

/** Publishes entries produced by `collect` under the lock (tar ingest); contents come through `ctx.ingest`. */
export async function publishItems(opts: PublishOptions, collect: (ctx: TransactionContext) => Promise<SourceItem[]>): Promise<PublishReport> {
  const at = normalizeAt(opts.at);
  const result = await runTransaction(opts, async (ctx) => {
    // Loaded first, so that the 'loaded' point comes before any content is stored.
    await ctx.loadOld();
    return mergeItems(ctx, opts, at, await collect(ctx));
  });
  logReport(opts, result!.report);
  return result!.report;
}

function logReport(opts: PublishOptions, report: PublishReport, restamped = false): void {
  if (restamped) {
    opts.hooks?.log?.(`published ${opts.layout.fqrn} revision ${report.revision}: ${report.files} files, unchanged since revision ${report.revision - 1} (root catalog restamped)`);
    return;
  }
  opts.hooks?.log?.(`published ${opts.layout.fqrn} revision ${report.revision}: ${report.files} files (${report.filesReused} unchanged), ${report.objectsWritten} new objects (${report.bytesWritten} bytes), ${report.catalogsWritten} catalogs written, ${report.catalogsReused} kept`);
}

/** The new tree: the old one without the replaced subtree, plus the items under `at`; changed contents ingested. */
async function mergeItems(ctx: TransactionContext, opts: PublishOptions, at: string, items: SourceItem[]): Promise<TransactionPlan> {
  const { head, hooks, timer, settings } = ctx;
  const old = await ctx.loadOld();
  hooks.point?.('walked');
  timer.mark('load+collect');
  // Publishing the whole repository starts from an empty tree (the old one is only looked up).
  const oldItems = at === '' ? old.tree.items : new Map<string, TreeItem>();
  const tree = at === '' ? new RevisionTree() : old.tree;
  if (at !== '') {
    const atRepo = toRepoPath(at);
    for (const [p, it] of tree.items) if (p === atRepo || p.startsWith(atRepo + '/')) oldItems.set(p, it);
    tree.removeSubtree(atRepo);
    ensureParents(tree, at, head);
  }
  const report = newReport(head);
  const pending: { path: string; item: TreeItem; source: ContentSource }[] = [];
  const explicitMounts: string[] = [];
  let dirtab: { text: string; base: string } | undefined;
  for (const it of items) {
    const rel = it.entry.path === '' ? at : at === '' ? it.entry.path : `${at}/${it.entry.path}`;
    const path = toRepoPath(rel);
    const entry = { ...it.entry, path: rel };
    if (entry.hardlinkKey !== undefined) entry.hardlinkKey = `new:${entry.hardlinkKey}`;
    const item: TreeItem = { entry };
    if (entry.type === 'file') {
      report.files++;
      report.bytes += entry.size;
      const prev = oldItems.get(path);
      if (it.content !== undefined) item.content = it.content;
      else if (prev !== undefined && sameFile(prev, entry, settings)) {
        // Taken over without looking at the store: the served revision references these objects, and
        // every object is in place before the manifest that references it (gc keeps the current revision's).
        item.content = prev.content;
        report.filesReused++;
      } else pending.push({ path, item, source: it.source ?? { kind: 'bytes', bytes: new Uint8Array(0) } });
      const name = rel.slice(rel.lastIndexOf('/') + 1);
      if (name === '.cvmfscatalog') explicitMounts.push(path.slice(0, path.lastIndexOf('/')));
      // A .cvmfsdirtab at the top of the published source applies to that source's subtree.
      if (it.entry.path === '.cvmfsdirtab') dirtab = { text: await readSourceText(it.source), base: toRepoPath(at) };
    }
    tree.set(path, item);
  }
  if (!tree.isDir('')) throw new GridboxError('PUBLISH_SOURCE', `Cannot publish ${q(opts.layout.fqrn)}: the source root is not a directory`);
  // Mountpoints of the previous revision outside the replaced subtree stay where they were.
  const atRepo = toRepoPath(at);
  for (const m of old.catalogs.keys()) if (m !== '' && !(at === '' || m === atRepo || m.startsWith(atRepo + '/'))) explicitMounts.push(m);
  // Markers kept from old parts of the tree.
  for (const [p, it] of tree.items) if (it.entry.type === 'file' && p.endsWith('/.cvmfscatalog')) explicitMounts.push(p.slice(0, p.lastIndexOf('/')));
  timer.mark('merge');

  // Changed files: small ones batched to the workers, large ones streamed in pieces (content-ingest.ts).
  let done = 0;
  const half = Math.ceil(pending.length / 2);
  const stored: Promise<void>[] = [];
  for (const { path, item, source } of pending) {
    const { stored: s } = await ctx.ingest.put(source, item.entry.size);
    const p = s.then((r: StoredContent) => {
      if (source.kind === 'file' && r.size !== item.entry.size) {
        report.bytes += r.size - item.entry.size;
        item.entry.size = r.size;
      }
      item.content = r.content;
      done++;
      if (done === 1) hooks.point?.('first-object');
      if (done === half) hooks.point?.('half-objects');
    }, (e: unknown) => {
      throw e instanceof GridboxError && (e.code === 'PUBLISH_SOURCE' || e.code.startsWith('STORE_')) ? e
        : new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(path)} from the publish source`, { path, cause: e });
    });
    p.catch(() => undefined); // awaited below
    stored.push(p);
  }
  ctx.ingest.flush();
  await settleAll(stored);
  if (dirtab !== undefined) explicitMounts.push(...matchDirtab(dirtab.text, dirtab.base, tree));
  return { kind: 'tree', tree, old: old.catalogs, explicitMounts, now: Math.floor(Date.now() / 1000), report, tag: opts.tag, tagDescription: opts.tagDescription };
}

/** Waits for every promise, then throws the first failure (nothing is left running behind an error). */
export async function settleAll(ps: readonly Promise<unknown>[]): Promise<void> {
  const rs = await Promise.allSettled(ps);
  const bad = rs.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad !== undefined) throw bad.reason;
}

/** "/a/b/" → "a/b"; refuses "..". */
export function normalizeAt(at: string | undefined): string {
  if (at === undefined) return '';
  const n = normalizeRelPath(at);
  if (n === null) throw new GridboxError('USAGE', `Invalid --at path ${q(at)}: it must stay inside the repository`);
  return n;
}

/** The old entry can stand for the new file: same size, mtime, mode and owner, same hash and compression settings. */
function sameFile(prev: TreeItem, e: Entry, s: RepoSettings): boolean {
  const p = prev.entry;
  const c = prev.content;
  if (p.type !== 'file' || c === undefined || prev.external) return false;
  const algo = c.id?.algorithm ?? c.chunks?.[0]?.id.algorithm;
  return p.size === e.size && p.mtime === e.mtime && (p.mtimeNs ?? 0) === (e.mtimeNs ?? 0) && p.mode === e.mode &&
    algo === s.hashAlgorithm && c.compression === s.compression && (c.chunks === undefined || e.size > s.chunkMin);
}

async function readSourceText(src: ContentSource | undefined): Promise<string> {
  if (src === undefined || src.kind === 'stream') return '';
  if (src.kind === 'bytes') return Buffer.from(src.bytes).toString('utf8');
  const { readFile } = await import('node:fs/promises');
  return readFile(src.path, 'utf8').catch((e: unknown) => { throw new GridboxError('PUBLISH_SOURCE', `Cannot read ${q(src.path)}`, { path: src.path, cause: e }); });
}

/** Directories above `at` that the old revision lacks are created (0755, publisher's uid/gid). */
function ensureParents(tree: RevisionTree, at: string, head: Head): void {
  const parts = at.split('/');
  for (let i = 0; i < parts.length - 1; i++) {
    const rel = parts.slice(0, i + 1).join('/');
    const p = toRepoPath(rel);
    const existing = tree.get(p);
    if (existing?.entry.type === 'dir') continue;
    if (existing !== undefined) tree.removeSubtree(p);
    tree.set(p, { entry: { path: rel, type: 'dir', mode: 0o755, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, size: 4096, mtime: head.timestamp, mtimeNs: 0 } });
  }
}

