// The common end of every publish transaction: once the new tree's objects are stored, plan and build
// its catalogs (children first, unchanged ones kept), make sure the objects are on disk, and commit the
// head (certificate, history, manifest by rename). Both the directory publisher and changesets end here.
import { formatObjectId } from '../hash/object-id.js';
import type { FsStore } from '../store/fs-store.js';
import { buildCatalogs, type BuiltCatalog, type OldCatalog } from './catalog-build.js';
import { planCatalogs } from './catalog-plan.js';
import { commitHead, syncFileSystem, type Head } from './head.js';
import type { PhaseTimer } from './phase-timer.js';
import type { PublishHooks, PublishReport } from './publisher.js';
import type { RepoLayout, RepoSettings } from './repo-layout.js';
import type { RevisionTree } from './tree.js';

export interface CommitTreeOptions {
  layout: RepoLayout;
  store: FsStore;
  settings: RepoSettings;
  head: Head;
  tree: RevisionTree;
  old: ReadonlyMap<string, OldCatalog>;
  /** Directories that must be nested-catalog mountpoints (markers, dirtab, kept old mountpoints). */
  explicitMounts: string[];
  /** The catalogs' last_modified (seconds). */
  now: number;
  tmpDir: string;
  tag?: string;
  tagDescription?: string;
  hooks: PublishHooks;
  timer: PhaseTimer;
  /** Updated in place: rootHash, catalogsWritten, catalogsReused. */
  report: PublishReport;
}

/** Builds the catalogs of `tree` and commits them as `report.revision`; returns the built catalogs. */
export async function commitTree(o: CommitTreeOptions): Promise<Map<string, BuiltCatalog>> {
  const { layout, store, settings, hooks, timer, report } = o;
  // Start writing the new objects back now, on another core, while catalogs are built: the sync
  // before the manifest (commitHead) then finds little left to do. Only durability rides on it.
  const earlySync = report.objectsWritten > 0 ? syncFileSystem(layout.srv).catch(() => undefined) : undefined;
  timer.mark('ingest');
  const mounts = planCatalogs(o.tree, { explicit: o.explicitMounts, autocatalogMax: settings.autocatalogMax });
  timer.mark('plan');
  let firstCatalog = true;
  const built = await buildCatalogs(o.tree, mounts, {
    store, algorithm: settings.hashAlgorithm, tmpDir: o.tmpDir, revision: report.revision, ttl: settings.ttl, now: o.now, old: o.old,
    onCatalog: () => { if (firstCatalog) { firstCatalog = false; hooks.point?.('first-catalog'); } },
  });
  for (const b of built.values()) b.reused ? report.catalogsReused++ : report.catalogsWritten++;
  hooks.point?.('catalogs-done');
  timer.mark('catalogs');
  const root = built.get('')!;
  report.rootHash = formatObjectId(root.id);
  await earlySync;
  await commitHead(layout, store, {
    previous: o.head, rootId: root.id, rootSize: root.size, revision: report.revision, algorithm: settings.hashAlgorithm, ttl: settings.ttl,
    tag: o.tag, tagDescription: o.tagDescription, tmpDir: o.tmpDir, point: hooks.point,
  });
  return built;
}
