// The publish transaction: lock, load the current revision, lay the new content in at a path, ingest
// changed files on the worker pool (unchanged ones keep their objects), write catalogs children first,
// then certificate, history and finally the signed manifest by rename (spec §8.2). A failure or a kill at
// any point before that rename leaves the previous revision served.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { type Entry, normalizeRelPath } from '../fstree/entry.js';
import { walkTree } from '../fstree/walk.js';
import { formatObjectId } from '../hash/object-id.js';
import { FsStore } from '../store/fs-store.js';
import { restampCatalog } from './catalog-build.js';
import { matchDirtab } from './catalog-plan.js';
import { commitTree } from './commit-tree.js';
import { commitHead, readHead, type Head } from './head.js';
import { acquirePublishLock } from './publish-lock.js';
import type { RepoLayout, RepoSettings } from './repo-layout.js';
import { phaseTimer } from './phase-timer.js';
import { loadRevision } from './revision-load.js';
import { readLastWalk, walkFingerprint, writeLastWalk, type LastWalk } from './walk-fingerprint.js';
import { readObject, writeObject } from '../store/object-io.js';
import { RevisionTree, toRepoPath, type ContentSource, type FileContent, type TreeItem } from './tree.js';
import { WorkerPool, type IngestResult } from './worker-pool.js';

/** Named points where tests may kill a publish (the CLI maps GRIDBOX_CRASH_POINT onto this hook). */
export const CRASH_POINTS = [
  'locked', 'loaded', 'walked', 'first-object', 'half-objects', 'objects-done', 'first-catalog', 'catalogs-done',
  'certificate', 'history', 'manifest-temp', 'manifest-renamed',
] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

export interface PublishHooks {
  /** Called at each CrashPoint; may not return (SIGKILL). */
  point?(name: CrashPoint): void;
  /** One line per action, for the CLI. */
  log?(line: string): void;
}

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
}

export interface PublishReport {
  revision: number;
  rootHash: string;
  files: number;
  bytes: number;
  /** Files whose objects were taken from the previous revision without reading them. */
  filesReused: number;
  objectsWritten: number;
  bytesWritten: number;
  catalogsWritten: number;
  catalogsReused: number;
}

/** A new entry for the transaction, repository-relative to the `at` path, with its content source. */
export interface SourceItem {
  entry: Entry;
  source?: ContentSource;
  /** Already stored (tar ingest stores contents while streaming). */
  content?: FileContent;
}

/** Given to `collect`: stores bytes on the worker pool now, so a stream need not be held in memory. */
export type IngestBytes = (bytes: Uint8Array) => Promise<FileContent>;

/** Publishes a directory tree. */
export async function publishDirectory(sourceDir: string, opts: PublishOptions): Promise<PublishReport> {
  return transaction(opts, async () => {
    const walked = await walkTree(sourceDir, { xattrs: opts.xattrs ?? 'auto' });
    return walked.map((w) => ({ entry: w.entry, source: w.entry.type === 'file' ? { kind: 'file', path: w.sourcePath } as const : undefined }));
  }, true);
}

/** Publishes entries produced by `collect` (tar ingest); contents come as in-memory bytes or files. */
export async function runTransaction(opts: PublishOptions, collect: (ingest: IngestBytes) => Promise<SourceItem[]>): Promise<PublishReport> {
  return transaction(opts, collect, false);
}

/** `directory`: `collect` is a directory walk (never ingests), so it may run before the old revision is loaded. */
async function transaction(opts: PublishOptions, collect: (ingest: IngestBytes) => Promise<SourceItem[]>, directory: boolean): Promise<PublishReport> {
  const { layout, settings } = opts;
  const hooks = opts.hooks ?? {};
  const timer = phaseTimer();
  const at = normalizeAt(opts.at);
  await mkdir(layout.state, { recursive: true });
  const lock = await acquirePublishLock(layout.lock, layout.fqrn, 'publish');
  const tmpDir = await mkdtemp(join(layout.state, 'txn-'));
  let pool: WorkerPool | undefined;
  try {
    hooks.point?.('locked');
    const store = new FsStore(layout.srv);
    const head = await readHead(layout);
    // A whole-repository directory publish walks first: if the walk is the one the served revision was
    // published from (same fingerprint, same root catalog), the new revision is that root restamped.
    let walked: SourceItem[] | undefined;
    let fingerprint: string | undefined;
    if (directory && at === '') {
      walked = await collect(() => Promise.reject(new GridboxError('INTERNAL', 'A directory walk does not ingest')));
      fingerprint = walkFingerprint(walked.map((i) => i.entry), settings);
      const last = await readLastWalk(layout);
      if (last !== undefined && last.fingerprint === fingerprint && last.rootId === formatObjectId(head.rootId)) {
        timer.mark('lock+walk');
        const report = await republishUnchanged(opts, store, head, walked, last, tmpDir);
        await writeLastWalk(layout, { fingerprint, rootId: report.rootHash, catalogs: last.catalogs }).catch(() => undefined);
        timer.mark('restamp+commit');
        timer.done(`${report.files} files, unchanged since revision ${head.revision}`);
        return report;
      }
      timer.mark('lock+walk');
    }
    const old = await loadRevision(store, head.rootId, tmpDir);
    hooks.point?.('loaded');
    timer.mark(walked === undefined ? 'lock+load' : 'load');
    const chunk = { min: settings.chunkMin, avg: settings.chunkAvg, max: settings.chunkMax };
    const streamed = { objects: 0, bytes: 0 };
    const ingestBytes: IngestBytes = async (bytes) => {
      pool ??= new WorkerPool(layout.srv, opts.workers);
      const r = await pool.run({ bytes, algorithm: settings.hashAlgorithm, compression: settings.compression, chunk }, bytes.length);
      streamed.objects += r.objectsWritten;
      streamed.bytes += r.bytesWritten;
      return contentOf(r, settings);
    };
    const items = walked ?? await collect(ingestBytes);
    hooks.point?.('walked');
    timer.mark('collect');

    // The new tree: the old one without the replaced subtree, plus the new items under `at`.
    // Publishing the whole repository starts from an empty tree (the old one is only looked up).
    const oldItems = at === '' ? old.tree.items : new Map<string, TreeItem>();
    const tree = at === '' ? new RevisionTree() : old.tree;
    if (at !== '') {
      const atRepo = toRepoPath(at);
      for (const [p, it] of tree.items) if (p === atRepo || p.startsWith(atRepo + '/')) oldItems.set(p, it);
      tree.removeSubtree(atRepo);
      ensureParents(tree, at, head);
    }
    const report: PublishReport = { revision: head.revision + 1, rootHash: '', files: 0, bytes: 0, filesReused: 0, objectsWritten: streamed.objects, bytesWritten: streamed.bytes, catalogsWritten: 0, catalogsReused: 0 };
    const pending: { path: string; item: TreeItem }[] = [];
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
        } else {
          item.source = it.source ?? { kind: 'bytes', bytes: new Uint8Array(0) };
          pending.push({ path, item });
        }
        const name = rel.slice(rel.lastIndexOf('/') + 1);
        if (name === '.cvmfscatalog') explicitMounts.push(path.slice(0, path.lastIndexOf('/')));
        // A .cvmfsdirtab at the top of the published source applies to that source's subtree.
        if (it.entry.path === '.cvmfsdirtab') dirtab = { text: await readSourceText(it.source), base: toRepoPath(at) };
      }
      tree.set(path, item);
    }
    if (!tree.isDir('')) throw new GridboxError('PUBLISH_SOURCE', `Cannot publish ${q(layout.fqrn)}: the source root is not a directory`);
    // Mountpoints of the previous revision outside the replaced subtree stay where they were.
    const atRepo = toRepoPath(at);
    for (const m of old.catalogs.keys()) if (m !== '' && !(at === '' || m === atRepo || m.startsWith(atRepo + '/'))) explicitMounts.push(m);
    // Markers kept from old parts of the tree.
    for (const [p, it] of tree.items) if (it.entry.type === 'file' && p.endsWith('/.cvmfscatalog')) explicitMounts.push(p.slice(0, p.lastIndexOf('/')));

    timer.mark('merge');
    // Ingest changed files: both cores hash and compress, many small files per worker message.
    if (pending.length > 0) {
      pool ??= new WorkerPool(layout.srv, opts.workers);
      let done = 0;
      // Small files go in batches, by size to one worker each (duplicates have equal sizes, and the
      // worker compresses each content once); larger ones alone, to whichever worker is free.
      const batches: { files: { path: string; item: TreeItem }[]; shard?: number }[] = [];
      const open = Array.from({ length: pool.size }, () => ({ files: [] as { path: string; item: TreeItem }[], bytes: 0 }));
      for (const p of pending) {
        const size = p.item.entry.size;
        if (size >= BATCH_BYTES) { batches.push({ files: [p] }); continue; }
        // A hash of the size, not the size: binaries' sizes are mostly even, and size % 2 put 312 MB on
        // one worker and 191 MB on the other in the bench tree (hashed: 249 / 255 MB).
        const shard = mixSize(size) % open.length;
        const b = open[shard];
        if (b.files.length >= BATCH_FILES || b.bytes + size > BATCH_BYTES) {
          batches.push({ files: b.files, shard });
          b.files = [];
          b.bytes = 0;
        }
        b.files.push(p);
        b.bytes += size;
      }
      open.forEach((b, shard) => { if (b.files.length > 0) batches.push({ files: b.files, shard }); });
      await Promise.all(batches.map(async ({ files: b, shard }) => {
        const tasks = b.map(({ item }) => {
          const src = item.source!;
          return { ...(src.kind === 'file' ? { sourcePath: src.path } : { bytes: src.bytes }), algorithm: settings.hashAlgorithm, compression: settings.compression, chunk };
        });
        const outcomes = await pool!.runBatch(tasks, b.reduce((n, p) => n + p.item.entry.size, 0), shard);
        b.forEach(({ path, item }, i) => {
          const r = outcomes[i];
          if (r instanceof Error) {
            throw r.code === 'PUBLISH_SOURCE' ? r : new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(path)} from the publish source`, { path, cause: r });
          }
          if (item.source!.kind === 'file' && r.size !== item.entry.size) {
            report.bytes += r.size - item.entry.size;
            item.entry.size = r.size;
          }
          item.content = contentOf(r, settings);
          delete item.source;
          report.objectsWritten += r.objectsWritten;
          report.bytesWritten += r.bytesWritten;
        });
        const before = done;
        done += b.length;
        if (before === 0) hooks.point?.('first-object');
        const half = Math.ceil(pending.length / 2);
        if (before < half && done >= half) hooks.point?.('half-objects');
      }));
    }
    if (pool !== undefined) {
      await pool.close();
      pool = undefined;
    }
    hooks.point?.('objects-done');
    if (dirtab !== undefined) explicitMounts.push(...matchDirtab(dirtab.text, dirtab.base, tree));
    const built = await commitTree({
      layout, store, settings, head, tree, old: old.catalogs, explicitMounts, now: Math.floor(Date.now() / 1000), tmpDir,
      tag: opts.tag, tagDescription: opts.tagDescription, hooks, timer, report,
    });
    if (fingerprint !== undefined) await writeLastWalk(layout, { fingerprint, rootId: report.rootHash, catalogs: built.size }).catch(() => undefined);
    timer.mark('commit');
    timer.done(`${report.files} files, ${report.filesReused} reused, ${report.objectsWritten} objects written`);
    hooks.log?.(`published ${layout.fqrn} revision ${report.revision}: ${report.files} files (${report.filesReused} unchanged), ${report.objectsWritten} new objects (${report.bytesWritten} bytes), ${report.catalogsWritten} catalogs written, ${report.catalogsReused} kept`);
    return report;
  } finally {
    if (pool !== undefined) await pool.close();
    await rm(tmpDir, { recursive: true, force: true });
    await lock.release();
  }
}

/**
 * The served revision's root catalog with new version properties, as the next revision: what a full
 * publish of an unchanged walk produces (every catalog equal, the root restamped), without loading the
 * old catalogs or comparing them row by row.
 */
async function republishUnchanged(opts: PublishOptions, store: FsStore, head: Head, items: SourceItem[], last: LastWalk, tmpDir: string): Promise<PublishReport> {
  const { layout, settings } = opts;
  const hooks = opts.hooks ?? {};
  hooks.point?.('loaded');
  hooks.point?.('walked');
  const report: PublishReport = { revision: head.revision + 1, rootHash: '', files: 0, bytes: 0, filesReused: 0, objectsWritten: 0, bytesWritten: 0, catalogsWritten: 1, catalogsReused: last.catalogs - 1 };
  for (const it of items) if (it.entry.type === 'file') { report.files++; report.bytes += it.entry.size; }
  report.filesReused = report.files;
  hooks.point?.('objects-done');
  const file = join(tmpDir, 'root-catalog.sqlite');
  await writeFile(file, await readObject(store, head.rootId, 'C', { compression: 'zlib' }));
  restampCatalog(file, { revision: report.revision, lastModified: Math.floor(Date.now() / 1000), previousRevision: formatObjectId(head.rootId), ttl: settings.ttl });
  const bytes = await readFile(file);
  const root = await writeObject(store, bytes, { algorithm: settings.hashAlgorithm, suffix: 'C', compression: 'zlib' });
  hooks.point?.('first-catalog');
  hooks.point?.('catalogs-done');
  report.rootHash = formatObjectId(root.id);
  await commitHead(layout, store, {
    previous: head, rootId: root.id, rootSize: bytes.length, revision: report.revision, algorithm: settings.hashAlgorithm, ttl: settings.ttl,
    tag: opts.tag, tagDescription: opts.tagDescription, tmpDir, point: hooks.point,
  });
  hooks.log?.(`published ${layout.fqrn} revision ${report.revision}: ${report.files} files, unchanged since revision ${head.revision} (root catalog restamped)`);
  return report;
}

/** A worker message carries up to this many files or bytes (a larger file goes alone). */
export const BATCH_FILES = 64;
export const BATCH_BYTES = 4 << 20;

/** Spreads sizes evenly over workers (an integer hash finalizer). */
export function mixSize(size: number): number {
  let x = size | 0;
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  return (x ^ (x >>> 16)) >>> 0;
}

function contentOf(r: IngestResult, settings: RepoSettings): FileContent {
  return {
    compression: settings.compression,
    ...(r.hex !== undefined ? { id: { algorithm: settings.hashAlgorithm, hex: r.hex } } : {}),
    ...(r.chunks !== undefined ? { chunks: r.chunks.map((c) => ({ offset: c.offset, size: c.size, id: { algorithm: settings.hashAlgorithm, hex: c.hex } })) } : {}),
  };
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
  if (src === undefined) return '';
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

