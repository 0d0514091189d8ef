// Publishes a list of edits to the current revision in ONE transaction: replace a subtree at a path with
// entries whose bytes come from callbacks (no extraction to disk), create/replace symlinks, remove
// subtrees. Image sync's entry point into the publisher; publisher.ts covers "publish a directory/tar at
// one path". Reuses the same building blocks (lock, revision load, worker pool, catalogs, head commit).
// publishChangesWith() lets the caller produce the changes under the lock while storing file bytes on
// the pool (image sync flattens layers there, so download, parsing and compression overlap).
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { type Entry, normalizeRelPath, parentPath } from '../fstree/entry.js';
import { FsStore } from '../store/fs-store.js';
import { commitTree } from './commit-tree.js';
import { readHead } from './head.js';
import { acquirePublishLock } from './publish-lock.js';
import { phaseTimer } from './phase-timer.js';
import { BATCH_BYTES, BATCH_FILES, mixSize, type PublishHooks, type PublishReport } from './publisher.js';
import type { RepoLayout, RepoSettings } from './repo-layout.js';
import { loadRevision } from './revision-load.js';
import { RevisionTree, toRepoPath, type FileContent, type TreeItem } from './tree.js';
import { WorkerPool, type BatchOutcome, type IngestResult, type IngestTask } from './worker-pool.js';

/** One entry of a replaced subtree; `entry.path` is relative to the change's `at` ("" = `at` itself). */
export interface ChangeItem {
  entry: Entry;
  /** Already stored content (e.g. remembered from an earlier publish of the same layer bytes). */
  content?: FileContent;
  /** Reads a file's bytes; called at most once, only when `content` is absent. */
  read?: () => Promise<Uint8Array>;
  /** `content` was stored by this transaction's ChangesetIngest (counted as written, not reused). */
  fresh?: boolean;
}

/** Given to publishChangesWith's `build`, under the publish lock. */
export interface ChangesetContext {
  /** Stores file bytes on the worker pool now. */
  ingest: ChangesetIngest;
  /** Ends a timing phase (GRIDBOX_SYNC_TIMING=1). */
  mark(phase: string): void;
}

export type Change =
  /** Replaces whatever is at `at` (and below) by `items`; items must include the "" directory. */
  | { kind: 'tree'; at: string; items: ChangeItem[] }
  /** Creates or replaces `path` by a symlink to `target` (verbatim). */
  | { kind: 'symlink'; path: string; target: string }
  /** Removes `path` and everything below; absent paths are ignored. */
  | { kind: 'remove'; path: string };

export interface ChangesetOptions {
  layout: RepoLayout;
  settings: RepoSettings;
  workers?: number;
  hooks?: PublishHooks;
  /** Told the stored content of every file ingested from `read` (callers build reuse indexes from it). */
  onStored?: (change: number, item: ChangeItem, content: FileContent) => void;
  /** Bytes read from `read` callbacks and not yet stored, at most (default 64 MiB; one file always fits). */
  maxInflightBytes?: number;
}

/** Applies `changes` in order to the head revision and publishes the result as the next revision. */
export async function publishChanges(changes: readonly Change[], opts: ChangesetOptions): Promise<PublishReport> {
  return (await publishChangesWith(async () => changes, opts))!;
}

/**
 * Like publishChanges, with the changes made by `build` under the lock, after the head revision is
 * loaded; `build` may store bytes through `ctx.ingest`. `build` returning undefined publishes nothing.
 */
export async function publishChangesWith(build: (ctx: ChangesetContext) => Promise<readonly Change[] | undefined>, opts: ChangesetOptions): Promise<PublishReport | undefined> {
  const { layout, settings } = opts;
  const hooks = opts.hooks ?? {};
  const timer = phaseTimer('GRIDBOX_SYNC_TIMING', 'sync publish');
  await mkdir(layout.state, { recursive: true });
  const lock = await acquirePublishLock(layout.lock, layout.fqrn, 'publish');
  const tmpDir = await mkdtemp(join(layout.state, 'txn-'));
  let pool: WorkerPool | undefined;
  const ingest = new ChangesetIngest(() => (pool ??= new WorkerPool(layout.srv, opts.workers)), settings, opts.maxInflightBytes);
  try {
    hooks.point?.('locked');
    const store = new FsStore(layout.srv);
    const head = await readHead(layout);
    const old = await loadRevision(store, head.rootId, tmpDir);
    hooks.point?.('loaded');
    timer.mark('lock+load');
    const changes = await build({ ingest, mark: (p) => timer.mark(p) });
    if (changes === undefined) return undefined;
    const tree = old.tree;
    const report: PublishReport = { revision: head.revision + 1, rootHash: '', files: 0, bytes: 0, filesReused: 0, objectsWritten: 0, bytesWritten: 0, catalogsWritten: 0, catalogsReused: 0 };
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const now = Math.floor(Date.now() / 1000);
    const pending: { change: number; item: ChangeItem; tree: TreeItem; path: string }[] = [];

    for (let ci = 0; ci < changes.length; ci++) {
      const c = changes[ci];
      const at = normalizePath(c.kind === 'tree' ? c.at : c.path);
      const atRepo = toRepoPath(at);
      if (c.kind === 'remove') {
        if (at === '') throw new GridboxError('USAGE', 'Refusing to remove the repository root in a changeset');
        tree.removeSubtree(atRepo);
        continue;
      }
      if (at === '') throw new GridboxError('USAGE', `Refusing a ${c.kind} change at the repository root`);
      ensureParents(tree, at, uid, gid, now);
      tree.removeSubtree(atRepo);
      if (c.kind === 'symlink') {
        tree.set(atRepo, { entry: { path: at, type: 'symlink', mode: 0o777, uid, gid, size: Buffer.byteLength(c.target), mtime: now, mtimeNs: 0, target: c.target } });
        continue;
      }
      const root = c.items.find((i) => i.entry.path === '');
      if (root === undefined || root.entry.type !== 'dir') throw new GridboxError('PUBLISH_SOURCE', `Cannot publish the subtree at ${q(at)}: its root is not a directory`, { path: at });
      for (const it of c.items) {
        if (normalizeRelPath(it.entry.path) !== it.entry.path) throw new GridboxError('PUBLISH_SOURCE', `Cannot publish the subtree at ${q(at)}: entry path ${q(it.entry.path)} is not a plain relative path`, { path: at });
        const rel = it.entry.path === '' ? at : `${at}/${it.entry.path}`;
        const entry: Entry = { ...it.entry, path: rel };
        // Hard-link groups are per change: the same key in two changes are two groups.
        if (entry.hardlinkKey !== undefined) entry.hardlinkKey = `c${ci}:${entry.hardlinkKey}`;
        const t: TreeItem = { entry };
        if (entry.type === 'file') {
          report.files++;
          report.bytes += entry.size;
          if (it.content !== undefined) { t.content = it.content; if (!it.fresh) report.filesReused++; }
          else pending.push({ change: ci, item: it, tree: t, path: rel });
        }
        tree.set(toRepoPath(rel), t);
      }
    }
    hooks.point?.('walked');

    timer.mark('merge');

    // Files not stored yet (spooled or generated): through the same batching ingest.
    let done = 0;
    const stored: Promise<void>[] = [];
    for (const p of pending) {
      let bytes: Uint8Array;
      try {
        bytes = p.item.read ? await p.item.read() : new Uint8Array(0);
      } catch (e) {
        throw e instanceof GridboxError ? e : new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(p.path)} from the changeset`, { path: p.path, cause: e });
      }
      if (bytes.length !== p.tree.entry.size) throw new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(p.path)}: expected ${p.tree.entry.size} bytes, the source gave ${bytes.length}`, { path: p.path });
      const s = (await ingest.put(bytes)).stored.then((content) => {
        p.tree.content = content;
        opts.onStored?.(p.change, p.item, content);
        done++;
        if (done === 1) hooks.point?.('first-object');
        if (done === Math.ceil(pending.length / 2)) hooks.point?.('half-objects');
      });
      s.catch(() => undefined); // awaited below
      stored.push(s);
    }
    ingest.flush();
    await Promise.all(stored);
    report.objectsWritten = ingest.objectsWritten;
    report.bytesWritten = ingest.bytesWritten;
    if (pool !== undefined) {
      await pool.close();
      pool = undefined;
    }
    hooks.point?.('objects-done');
    // Nested catalogs: every `.cvmfscatalog` marker, plus old mountpoints that are still directories.
    const explicitMounts: string[] = [];
    for (const m of old.catalogs.keys()) if (m !== '' && tree.isDir(m)) explicitMounts.push(m);
    for (const [p, it] of tree.items) if (it.entry.type === 'file' && p.endsWith('/.cvmfscatalog')) explicitMounts.push(p.slice(0, p.lastIndexOf('/')));
    await commitTree({ layout, store, settings, head, tree, old: old.catalogs, explicitMounts, now, tmpDir, hooks, timer, report });
    timer.mark('commit');
    timer.done(`${report.files} files, ${report.filesReused} reused, ${report.objectsWritten} objects written`);
    hooks.log?.(`published ${layout.fqrn} revision ${report.revision}: ${changes.length} changes, ${report.files} files (${report.filesReused} reused), ${report.objectsWritten} new objects (${report.bytesWritten} bytes), ${report.catalogsWritten} catalogs written, ${report.catalogsReused} kept`);
    return report;
  } finally {
    if (pool !== undefined) await pool.close();
    await rm(tmpDir, { recursive: true, force: true });
    await lock.release();
  }
}

function normalizePath(p: string): string {
  const n = normalizeRelPath(p);
  if (n === null) throw new GridboxError('USAGE', `Invalid changeset path ${q(p)}: it must stay inside the repository`);
  return n;
}

function contentOf(r: IngestResult, settings: RepoSettings): FileContent {
  return {
    compression: settings.compression,
    ...(r.hex !== undefined ? { id: { algorithm: settings.hashAlgorithm, hex: r.hex } } : {}),
    ...(r.chunks !== undefined ? { chunks: r.chunks.map((c) => ({ offset: c.offset, size: c.size, id: { algorithm: settings.hashAlgorithm, hex: c.hex } })) } : {}),
  };
}

/** Directories above `path` that are missing (or not directories) become 0755 directories. */
function ensureParents(tree: RevisionTree, path: string, uid: number, gid: number, mtime: number): void {
  const chain: string[] = [];
  for (let p = parentPath(path); p !== ''; p = parentPath(p)) chain.push(p);
  for (const rel of chain.reverse()) {
    const p = toRepoPath(rel);
    const existing = tree.get(p);
    if (existing?.entry.type === 'dir') continue;
    if (existing !== undefined) tree.removeSubtree(p);
    tree.set(p, { entry: { path: rel, type: 'dir', mode: 0o755, uid, gid, size: 4096, mtime, mtimeNs: 0 } });
  }
}

interface Waiting {
  task: IngestTask;
  resolve(c: FileContent): void;
  reject(e: unknown): void;
}

/**
 * Sends file bytes to the worker pool as the directory publisher does: small files batched per worker
 * by a hash of their size (64 files / 4 MB; duplicates meet in one worker and compress once), large
 * ones alone to whichever worker is free. Bytes handed over and not yet stored stay under a budget.
 */
export class ChangesetIngest {
  objectsWritten = 0;
  bytesWritten = 0;
  private held = 0;
  private wake: (() => void)[] = [];
  private open: { files: Waiting[]; bytes: number }[] | undefined;
  private readonly chunk: { min: number; avg: number; max: number };

  constructor(private readonly pool: () => WorkerPool, private readonly settings: RepoSettings, private readonly maxHeld = 64 << 20) {
    this.chunk = { min: settings.chunkMin, avg: settings.chunkAvg, max: settings.chunkMax };
  }

  /** Resolves when there is room for `bytes` (one file always fits), with the promise of its stored content. */
  async put(bytes: Uint8Array): Promise<{ stored: Promise<FileContent> }> {
    while (this.held > 0 && this.held + bytes.length > this.maxHeld) {
      this.flush();
      await new Promise<void>((r) => this.wake.push(r));
    }
    this.held += bytes.length;
    const task: IngestTask = { bytes, algorithm: this.settings.hashAlgorithm, compression: this.settings.compression, chunk: this.chunk };
    const stored = new Promise<FileContent>((resolve, reject) => {
      const w: Waiting = { task, resolve, reject };
      if (bytes.length >= BATCH_BYTES) { this.send([w], bytes.length); return; }
      const pool = this.pool();
      this.open ??= Array.from({ length: pool.size }, () => ({ files: [], bytes: 0 }));
      const shard = mixSize(bytes.length) % this.open.length;
      const b = this.open[shard];
      if (b.files.length >= BATCH_FILES || b.bytes + bytes.length > BATCH_BYTES) this.flushShard(shard);
      b.files.push(w);
      b.bytes += bytes.length;
    });
    return { stored };
  }

  /** Sends the partly filled batches. */
  flush(): void {
    this.open?.forEach((_, shard) => this.flushShard(shard));
  }

  private flushShard(shard: number): void {
    const b = this.open![shard];
    if (b.files.length === 0) return;
    this.send(b.files, b.bytes, shard);
    b.files = [];
    b.bytes = 0;
  }

  private send(files: Waiting[], bytes: number, shard?: number): void {
    const settle = (): void => {
      this.held -= bytes;
      for (const w of this.wake.splice(0)) w();
    };
    this.pool().runBatch(files.map((f) => f.task), bytes, shard).then((outcomes: BatchOutcome[]) => {
      settle();
      files.forEach((f, i) => {
        const r = outcomes[i];
        if (r instanceof Error) { f.reject(r); return; }
        this.objectsWritten += r.objectsWritten;
        this.bytesWritten += r.bytesWritten;
        f.resolve(contentOf(r, this.settings));
      });
    }, (e: unknown) => {
      settle();
      for (const f of files) f.reject(e);
    });
  }
}
