// Front end for a list of edits to the current revision, published in ONE transaction: replace a
// subtree at a path with entries whose bytes come from sources (spool ranges, memory; never extracted to
// disk), create/replace symlinks, remove subtrees. Image sync's entry point into the publisher. Lock,
// revision load, ingest and commit are the transaction's (transaction.ts); publishChangesWith() lets the
// caller produce the changes under the lock while storing file bytes (image sync flattens layers there,
// so download, parsing and compression overlap).
import { GridboxError, q } from '../errors.js';
import { type Entry, normalizeRelPath, parentPath } from '../fstree/entry.js';
import type { ContentIngest } from './content-ingest.js';
import { settleAll } from './publisher.js';
import type { RepoLayout, RepoSettings } from './repo-layout.js';
import { newReport, runTransaction, type PublishHooks, type PublishReport } from './transaction.js';
import { RevisionTree, toRepoPath, type ContentSource, type FileContent, type TreeItem } from './tree.js';

/** One entry of a replaced subtree; `entry.path` is relative to the change's `at` ("" = `at` itself). */
export interface ChangeItem {
  entry: Entry;
  /** Already stored content (e.g. remembered from an earlier publish of the same layer bytes). */
  content?: FileContent;
  /** Where the file's bytes are (a spool range, memory), used only when `content` is absent. */
  source?: ContentSource;
  /** Reads a small file's bytes (held in memory); called at most once, only when `content` and `source` are absent. */
  read?: () => Promise<Uint8Array>;
  /** `content` was stored by this transaction's ingest (counted as written, not reused). */
  fresh?: boolean;
}

/** Given to publishChangesWith's `build`, under the publish lock. */
export interface ChangesetContext {
  /** Stores file contents now (the transaction's ingest). */
  ingest: ContentIngest;
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
  const { layout } = opts;
  const hooks = opts.hooks ?? {};
  let changeCount = 0;
  const result = await runTransaction({ ...opts, maxHeldBytes: opts.maxInflightBytes, timing: ['GRIDBOX_SYNC_TIMING', 'sync publish'] }, async (ctx) => {
    const { head, timer, ingest } = ctx;
    const old = await ctx.loadOld();
    timer.mark('lock+load');
    const changes = await build({ ingest, mark: (p) => timer.mark(p) });
    if (changes === undefined) return undefined;
    changeCount = changes.length;
    const tree = old.tree;
    const report = newReport(head);
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

    // Files not stored yet (spooled or generated): small ones batched, large ones streamed in pieces.
    let done = 0;
    const stored: Promise<void>[] = [];
    for (const p of pending) {
      let source: ContentSource;
      try {
        source = p.item.source ?? { kind: 'bytes', bytes: p.item.read ? await p.item.read() : new Uint8Array(0) };
      } catch (e) {
        throw e instanceof GridboxError ? e : new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(p.path)} from the changeset`, { path: p.path, cause: e });
      }
      if (source.kind === 'bytes' && source.bytes.length !== p.tree.entry.size) throw new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(p.path)}: expected ${p.tree.entry.size} bytes, the source gave ${source.bytes.length}`, { path: p.path });
      // A spool file is read as a range of exactly the entry's size.
      if (source.kind === 'file' && source.offset === undefined) source = { ...source, offset: 0 };
      const s = (await ingest.put(source, p.tree.entry.size)).stored.then(({ content }) => {
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
    await settleAll(stored);
    // Nested catalogs: every `.cvmfscatalog` marker, plus old mountpoints that are still directories.
    const explicitMounts: string[] = [];
    for (const m of old.catalogs.keys()) if (m !== '' && tree.isDir(m)) explicitMounts.push(m);
    for (const [p, it] of tree.items) if (it.entry.type === 'file' && p.endsWith('/.cvmfscatalog')) explicitMounts.push(p.slice(0, p.lastIndexOf('/')));
    return { kind: 'tree', tree, old: old.catalogs, explicitMounts, now, report };
  });
  if (result === undefined) return undefined;
  const report = result.report;
  hooks.log?.(`published ${layout.fqrn} revision ${report.revision}: ${changeCount} changes, ${report.files} files (${report.filesReused} reused), ${report.objectsWritten} new objects (${report.bytesWritten} bytes), ${report.catalogsWritten} catalogs written, ${report.catalogsReused} kept`);
  return report;
}

function normalizePath(p: string): string {
  const n = normalizeRelPath(p);
  if (n === null) throw new GridboxError('USAGE', `Invalid changeset path ${q(p)}: it must stay inside the repository`);
  return n;
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
