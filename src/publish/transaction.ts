// The one publish transaction every front end (directory publish, tar ingest, image changesets) runs
// in: lock, private temp dir, head, revision load on demand, the content ingest and its worker pool, and
// the commit (catalogs children first, then certificate, history and the signed manifest by rename,
// spec §8.2). Front ends only produce the new tree through `produce`; a failure or a kill anywhere before
// the manifest rename leaves the previous revision served, and the next transaction removes what a dead
// one left (its temp dir, its objects' temp files).
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { restampCatalog } from '../catalog/catalog-restamp.js';
import { formatObjectId, type ObjectId } from '../hash/object-id.js';
import { isAlive } from '../plumbing/process-identity.js';
import { makeOwnedDir, removeDeadOwnedDirs } from '../plumbing/transaction-dirs.js';
import { FsStore } from '../store/fs-store.js';
import { readObject, writeObject } from '../store/object-io.js';
import type { OldCatalog } from './catalog-build.js';
import { commitTree } from './commit-tree.js';
import { ContentIngest } from './content-ingest.js';
import { commitHead, readHead, type Head } from './head.js';
import { phaseTimer, type PhaseTimer } from './phase-timer.js';
import { acquirePublishLock } from './publish-lock.js';
import type { RepoLayout, RepoSettings } from './repo-layout.js';
import { loadRevision, type LoadedRevision } from './revision-load.js';
import type { RevisionTree } from './tree.js';
import { WorkerPool } from './worker-pool.js';

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

export interface TransactionOptions {
  layout: RepoLayout;
  settings: RepoSettings;
  /** Worker threads (default: available parallelism). */
  workers?: number;
  hooks?: PublishHooks;
  /** In-memory contents handed to the ingest and not yet stored, at most (default 64 MiB; one always fits). */
  maxHeldBytes?: number;
  /** Phase timing: environment variable that turns it on, and the label. */
  timing?: [env: string, label: string];
}

/** What `produce` is given, under the lock. */
export interface TransactionContext {
  layout: RepoLayout;
  settings: RepoSettings;
  store: FsStore;
  head: Head;
  /** Private to this transaction (removed at its end, or by a later one if this process dies). */
  tmpDir: string;
  hooks: PublishHooks;
  timer: PhaseTimer;
  /** Turns contents into objects (batched or streamed); its stats are the report's objects written. */
  ingest: ContentIngest;
  /** The served revision, loaded on first call (the 'loaded' point). */
  loadOld(): Promise<LoadedRevision>;
}

/** What to commit: a new tree, or the served root catalog restamped as the next revision (nothing changed). */
export type TransactionPlan =
  | { kind: 'tree'; tree: RevisionTree; old: ReadonlyMap<string, OldCatalog>; explicitMounts: string[]; now: number; report: PublishReport; tag?: string; tagDescription?: string }
  | { kind: 'restamp'; report: PublishReport; tag?: string; tagDescription?: string }
  /** Catalogs already written by the front end while it walked (stream-publish.ts): only the head is left. */
  | { kind: 'built'; root: { id: ObjectId; size: number }; report: PublishReport; tag?: string; tagDescription?: string };

export interface TransactionResult {
  report: PublishReport;
  /** Catalogs written or kept, for a tree plan (count). */
  catalogs: number;
}

/** Runs `produce` under the lock and commits its plan; undefined when it returns none (nothing to publish). */
export async function runTransaction(opts: TransactionOptions, produce: (ctx: TransactionContext) => Promise<TransactionPlan | undefined>): Promise<TransactionResult | undefined> {
  const { layout, settings } = opts;
  const hooks = opts.hooks ?? {};
  const timer = opts.timing ? phaseTimer(...opts.timing) : phaseTimer();
  await mkdir(layout.state, { recursive: true });
  const lock = await acquirePublishLock(layout.lock, layout.fqrn, 'publish');
  let pool: WorkerPool | undefined;
  let tmpDir: string | undefined;
  try {
    // Under the lock, whatever a dead transaction left is garbage: its temp dir and its objects' temp files.
    removeDeadOwnedDirs(layout.state, 'txn');
    tmpDir = makeOwnedDir(layout.state, 'txn');
    const store = new FsStore(layout.srv);
    await store.removeDeadTemps(isAlive);
    hooks.point?.('locked');
    const head = await readHead(layout);
    const ingest = new ContentIngest(() => (pool ??= new WorkerPool(layout.srv, opts.workers)), settings, opts.maxHeldBytes);
    let old: Promise<LoadedRevision> | undefined;
    const dir = tmpDir;
    const ctx: TransactionContext = {
      layout, settings, store, head, tmpDir, hooks, timer, ingest,
      loadOld: () => (old ??= loadRevision(store, head.rootId, dir).then((r) => { hooks.point?.('loaded'); return r; })),
    };
    const plan = await produce(ctx);
    if (plan === undefined) return undefined;
    if (pool !== undefined) {
      await pool.close();
      pool = undefined;
    }
    const report = plan.report;
    report.objectsWritten = ingest.stats.objectsWritten;
    report.bytesWritten = ingest.stats.bytesWritten;
    if (plan.kind === 'restamp') {
      await commitRestamped(ctx, plan.report, plan.tag, plan.tagDescription);
      timer.mark('commit');
      timer.done(`revision ${report.revision} restamped`);
      return { report, catalogs: report.catalogsWritten + report.catalogsReused };
    }
    if (plan.kind === 'built') {
      await commitHead(layout, store, {
        previous: head, rootId: plan.root.id, rootSize: plan.root.size, revision: report.revision, algorithm: settings.hashAlgorithm, ttl: settings.ttl,
        tag: plan.tag, tagDescription: plan.tagDescription, tmpDir, point: hooks.point,
      });
      timer.mark('commit');
      timer.done(`revision ${report.revision}, ${report.files} files`);
      return { report, catalogs: report.catalogsWritten + report.catalogsReused };
    }
    hooks.point?.('objects-done');
    const built = await commitTree({
      layout, store, settings, head, tree: plan.tree, old: plan.old, explicitMounts: plan.explicitMounts, now: plan.now, tmpDir,
      tag: plan.tag, tagDescription: plan.tagDescription, hooks, timer, report,
    });
    timer.mark('commit');
    timer.done(`revision ${report.revision}, ${report.files} files`);
    return { report, catalogs: built.size };
  } finally {
    if (pool !== undefined) await pool.close();
    if (tmpDir !== undefined) await rm(tmpDir, { recursive: true, force: true });
    await lock.release();
  }
}

/**
 * The served revision's root catalog with new version properties, as the next revision: what a full
 * publish of an unchanged tree produces (every catalog equal, the root restamped), without loading the
 * old catalogs or comparing them row by row.
 */
async function commitRestamped(ctx: TransactionContext, report: PublishReport, tag?: string, tagDescription?: string): Promise<void> {
  const { layout, settings, store, head, hooks, tmpDir } = ctx;
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
    tag, tagDescription, tmpDir, point: hooks.point,
  });
}

/** A new, empty report for the revision after `head`. */
export function newReport(head: Head): PublishReport {
  return { revision: head.revision + 1, rootHash: '', files: 0, bytes: 0, filesReused: 0, objectsWritten: 0, bytesWritten: 0, catalogsWritten: 0, catalogsReused: 0 };
}
