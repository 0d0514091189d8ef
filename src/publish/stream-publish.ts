// Whole-repository directory publish with memory that does not grow with the entry count (issue 8),
// the way CernVM-FS's own publisher writes catalogs as it goes. Pass 1 (source-summary.ts) keeps only a
// summary per directory, from which the catalog plan and each catalog's fingerprint come. Pass 2 walks
// the source again, depth first, and writes each catalog row by row into its SQLite file while the
// walk is inside it; a catalog is stored as soon as its subtree is done (children before parents).
// File contents go to the transaction's ingest as they are met; a row waits in a bounded window until
// its content is stored. Unchanged files keep their objects (looked up per directory in the previous
// revision, read catalog by catalog); a catalog whose fingerprint equals the one recorded for the served
// revision is kept without reading or walking it. Held at any time: the directory summary, the listings
// on the current path, the window, the catalogs being written, and the first pass's listings not yet
// consumed (listing-cache.ts: bounded by an entry budget; a directory past it is listed again here).
import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CatalogStreamWriter } from '../catalog/catalog-writer.js';
import type { CatalogCounters, CatalogEntry, NestedCatalogRef } from '../catalog/types.js';
import { GridboxError, q } from '../errors.js';
import type { Entry } from '../fstree/entry.js';
import { listDirectory, readXattrs, type WalkedEntry } from '../fstree/walk.js';
import { formatObjectId, parseObjectId, type ObjectId } from '../hash/object-id.js';
import { writeObject } from '../store/object-io.js';
import { matchDirtab, planCatalogs } from './catalog-plan.js';
import type { StoredContent } from './content-ingest.js';
import { ListingCache } from './listing-cache.js';
import { OldRevision, type OldCatalogInfo } from './old-revision.js';
import type { RepoSettings } from './repo-layout.js';
import { catalogShapes, dirDigest, foldXattrs, planTreeOf, summarizeSource, type CatalogShape, type DirNode, type SourceSummary } from './source-summary.js';
import { newReport, type PublishReport, type TransactionContext, type TransactionPlan } from './transaction.js';
import { toRepoPath } from './tree.js';
import type { LastWalk, MountRecord } from './walk-fingerprint.js';

/** Rows waiting for their contents, at most, before the walk waits for the oldest. */
export const ROW_WINDOW = 8192;
/** SQLite page cache of each catalog being written (KiB): bounded, the file takes the rest. */
const WRITER_CACHE_KIB = 16 << 10;

/** What the catalogs' shape depends on besides the walk. */
export function settingsKey(s: RepoSettings): string {
  return JSON.stringify([s.hashAlgorithm, s.compression, s.chunkMin, s.chunkAvg, s.chunkMax, s.autocatalogMax]);
}

export interface StreamOutcome {
  plan: TransactionPlan;
  /** What to record once the revision is committed (rootId filled in then). */
  record: Omit<LastWalk, 'rootId'>;
}

/** Produces the transaction's plan for publishing `sourceDir` as the whole repository. */
export async function produceStreaming(ctx: TransactionContext, sourceDirIn: string, last: LastWalk | undefined, opts: { xattrs?: boolean | 'auto'; tag?: string; tagDescription?: string; listingCacheEntries?: number }): Promise<StreamOutcome> {
  const { settings, hooks, timer, head, store, tmpDir } = ctx;
  const sourceDir = resolve(sourceDirIn);
  const wantXattrs = opts.xattrs ?? 'auto';
  // getfattr walks the tree in its own process meanwhile; only entries with attributes are kept.
  const xattrsP = wantXattrs === false ? undefined : readXattrs(sourceDir, wantXattrs === true);
  xattrsP?.catch(() => undefined);
  const summary = summarizeSource(sourceDir, ctx.layout.fqrn, new ListingCache(opts.listingCacheEntries));
  const xattrs = (await xattrsP) ?? new Map<string, Record<string, Buffer>>();
  foldXattrs(summary, sourceDir, xattrs);
  timer.mark('walk');

  const planTree = planTreeOf(summary);
  const explicit: string[] = [];
  for (const n of summary.byPath.values()) if (n.marker && n.path !== '') explicit.push(n.path);
  if (summary.dirtab !== undefined) explicit.push(...matchDirtab(summary.dirtab, '', planTree));
  const mounts = new Set(planCatalogs(planTree, { explicit, autocatalogMax: settings.autocatalogMax }));
  const key = settingsKey(settings);
  const shapes = catalogShapes(summary, mounts, key);
  // The record of the served revision's catalogs, if it was published by this path and is still served.
  const known = last?.mounts !== undefined && last.settings === key && last.rootId === formatObjectId(head.rootId) ? last.mounts : undefined;
  const kept = new Set<string>();
  const keep = (m: string): boolean => {
    const shape = shapes.get(m)!;
    const ok = shape.children.map(keep).every(Boolean) && known?.[m]?.fingerprint === shape.fingerprint;
    if (ok) kept.add(m);
    return ok;
  };
  keep('');
  const fingerprint = shapes.get('')!.fingerprint;
  const report: PublishReport = { ...newReport(head), files: summary.files, bytes: summary.bytes };
  timer.mark('plan');

  if (kept.has('')) {
    // Nothing changed since the served revision: its root catalog restamped.
    hooks.point?.('loaded');
    hooks.point?.('walked');
    report.filesReused = report.files;
    report.catalogsWritten = 1;
    report.catalogsReused = mounts.size - 1;
    return { plan: { kind: 'restamp', report, tag: opts.tag, tagDescription: opts.tagDescription }, record: { fingerprint, catalogs: mounts.size, settings: key, mounts: { ...known } } };
  }

  const old = await OldRevision.load(store, head.rootId, tmpDir);
  hooks.point?.('loaded');
  hooks.point?.('walked');
  try {
    const b = new StreamBuilder(ctx, summary, mounts, shapes, kept, known ?? {}, old, xattrs, report);
    const root = await b.run(sourceDir);
    timer.mark('ingest+catalogs');
    report.rootHash = formatObjectId(root.id);
    return {
      plan: { kind: 'built', root: { id: root.id, size: root.size }, report, tag: opts.tag, tagDescription: opts.tagDescription },
      record: { fingerprint, catalogs: mounts.size, settings: key, mounts: b.records },
    };
  } finally {
    await old.close();
  }
}

interface OpenCatalog {
  mount: string;
  writer: CatalogStreamWriter;
  file: string;
  nested: NestedCatalogRef[];
  nextGroup: number;
}

interface Row {
  cat: OpenCatalog;
  ce: CatalogEntry;
  wait?: Promise<void>;
  done: boolean;
}

interface Built {
  id: ObjectId;
  size: number;
  counters: CatalogCounters;
}

class StreamBuilder {
  readonly records: Record<string, MountRecord> = {};
  private window: Row[] = [];
  private head = 0;
  private readonly writers = new Set<CatalogStreamWriter>();
  private seq = 0;
  private pending = 0;
  private done = 0;
  private walkDone = false;
  private halfFired = false;
  private firstCatalog = true;
  private readonly now = Math.floor(Date.now() / 1000);

  constructor(
    private readonly ctx: TransactionContext, private readonly summary: SourceSummary, private readonly mounts: ReadonlySet<string>,
    private readonly shapes: ReadonlyMap<string, CatalogShape>, private readonly kept: ReadonlySet<string>,
    private readonly known: Record<string, MountRecord>, private readonly old: OldRevision,
    private readonly xattrs: ReadonlyMap<string, Record<string, Buffer>>, private readonly report: PublishReport,
  ) {}

  async run(sourceDir: string): Promise<Built> {
    try {
      return await this.catalog(this.summary.root, this.summary.rootEntry, sourceDir, undefined);
    } catch (e) {
      // Nothing left running behind the error: every content handed over has settled (the partly
      // filled batches are sent first, or their promises would never settle).
      this.ctx.ingest.flush();
      await Promise.allSettled(this.window.slice(this.head).map((r) => r.wait));
      for (const w of this.writers) w.abort();
      throw e;
    }
  }

  /** Builds (or keeps) the catalog mounted at `node`, whose directory entry is `self`. */
  private async catalog(node: DirNode, self: Entry, abs: string, listed: WalkedEntry[] | undefined): Promise<Built> {
    const m = node.path;
    if (this.kept.has(m)) {
      this.keepSubtree(node);
      const r = this.known[m];
      return { id: parseObjectId(r.id), size: r.size, counters: r.counters };
    }
    const { settings, tmpDir, store, hooks } = this.ctx;
    const old: OldCatalogInfo | undefined = m === '' ? this.old.rootInfo : await this.old.atMount(m);
    const revision = m === '' ? this.report.revision : (old?.revision ?? 0) + 1;
    const file = join(tmpDir, `catalog-${this.seq++}.sqlite`);
    const writer = new CatalogStreamWriter(file, {
      revision, lastModified: this.now,
      ...(old !== undefined ? { previousRevision: formatObjectId(old.id) } : {}),
      ...(m !== '' ? { rootPrefix: m } : { ttl: settings.ttl }),
    }, { cacheKiB: WRITER_CACHE_KIB });
    this.writers.add(writer);
    const cat: OpenCatalog = { mount: m, writer, file, nested: [], nextGroup: 1 };
    try {
      const kids = listed ?? this.list(self, abs);
      this.push(cat, { path: m, entry: this.withXattrs(self, abs), compression: 'zlib', hardlinkGroup: 0, linkcount: 2 + subdirs(kids), ...(m !== '' ? { nestedRoot: true } : {}) });
      await this.dir(cat, self, kids);
      if (m === '') {
        this.walkDone = true;
        this.maybeHalf();
      }
      await this.drain(0);
      if (m === '') hooks.point?.('objects-done');
      cat.nested.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
      const result = writer.finish(cat.nested);
      this.writers.delete(writer);
      const bytes = await readFile(file);
      const w = await writeObject(store, bytes, { algorithm: settings.hashAlgorithm, suffix: 'C', compression: 'zlib' });
      this.report.catalogsWritten++;
      this.records[m] = { fingerprint: this.shapes.get(m)!.fingerprint, id: formatObjectId(w.id), size: bytes.length, revision, counters: result.counters };
      if (this.firstCatalog) { this.firstCatalog = false; hooks.point?.('first-catalog'); }
      if (m === '') hooks.point?.('catalogs-done');
      return { id: w.id, size: bytes.length, counters: result.counters };
    } finally {
      await rm(file, { force: true });
      await rm(`${file}-journal`, { force: true });
    }
  }

  /** A kept catalog and every catalog below it (all kept: see keep()): recorded again, their files counted as reused. */
  private keepSubtree(node: DirNode): void {
    const stack = [node];
    while (stack.length > 0) {
      const d = stack.pop()!;
      this.summary.listings.drop(d.path); // not walked again
      if (this.mounts.has(d.path)) {
        this.records[d.path] = this.known[d.path];
        this.report.catalogsReused++;
      }
      this.report.filesReused += d.files;
      for (const c of d.dirs) stack.push(c);
    }
  }

  /**
   * The children of directory `self` (at `abs`): as the first pass kept them, or listed again — and
   * then checked against the first pass's digest: the plan and the fingerprints come from the first
   * pass, and a directory that changed since would be published under a fingerprint that does not
   * describe it.
   */
  private list(self: Entry, abs: string): WalkedEntry[] {
    const dirPath = toRepoPath(self.path);
    const kept = this.summary.listings.take(dirPath);
    if (kept !== undefined) return kept;
    const kids = listDirectory(abs, self.path);
    if (this.summary.byPath.get(dirPath)?.walkHash !== dirDigest(self, kids)) {
      throw new GridboxError('PUBLISH_SOURCE', `Cannot publish ${q(this.ctx.layout.fqrn)}: the source directory ${q(dirPath === '' ? '/' : dirPath)} changed during the publish (entries added, removed or modified between the two passes); publish again`, { path: dirPath });
    }
    return kids;
  }

  /** Rows for the children of `self` (listed as `kids`), and their subtrees, into `cat`. */
  private async dir(cat: OpenCatalog, self: Entry, kids: WalkedEntry[]): Promise<void> {
    const { settings, ingest } = this.ctx;
    const dirPath = toRepoPath(self.path);
    const oldRows = await this.old.listing(dirPath);
    let groups: Map<string, { g: number; n: number }> | undefined;
    for (const k of kids) {
      const key = k.entry.hardlinkKey;
      if (key === undefined) continue;
      groups ??= new Map();
      const g = groups.get(key);
      if (g === undefined) groups.set(key, { g: 0, n: 1 });
      else g.n++;
    }
    for (let i = 0; i < kids.length; i++) {
      const k = kids[i];
      const e = this.withXattrs(k.entry, k.sourcePath);
      const path = toRepoPath(e.path);
      if (e.type === 'dir') {
        const node = this.summary.byPath.get(path);
        if (node !== undefined && this.mounts.has(path)) {
          // The child catalog's mountpoint: a stub row here, the same directory as the child's root row.
          const sub = this.kept.has(path) ? undefined : this.list(e, k.sourcePath);
          this.push(cat, { path, entry: e, compression: 'zlib', hardlinkGroup: 0, linkcount: 2 + (sub === undefined ? node.dirs.length : subdirs(sub)), nestedMountpoint: true });
          const b = await this.catalog(node, e, k.sourcePath, sub);
          cat.nested.push({ path, id: b.id, size: b.size, counters: b.counters });
          continue;
        }
        const sub = this.list(e, k.sourcePath);
        this.push(cat, { path, entry: e, compression: 'zlib', hardlinkGroup: 0, linkcount: 2 + subdirs(sub) });
        kids[i] = undefined as unknown as WalkedEntry; // done with it: deep walks hold only what is left
        await this.dir(cat, e, sub);
        continue;
      }
      const ce: CatalogEntry = { path, entry: e, compression: 'zlib', hardlinkGroup: 0, linkcount: 1 };
      if (e.hardlinkKey !== undefined) {
        const g = groups!.get(e.hardlinkKey)!;
        if (g.g === 0) g.g = cat.nextGroup++;
        ce.hardlinkGroup = g.g;
        ce.linkcount = g.n;
      }
      if (e.type !== 'file') { this.push(cat, ce); continue; }
      const prev = oldRows.get(path.slice(path.lastIndexOf('/') + 1));
      if (prev !== undefined && sameOldFile(prev, e, settings)) {
        // Taken over without looking at the store: the served revision references these objects.
        if (prev.id !== undefined) ce.id = prev.id;
        if (prev.chunks !== undefined) ce.chunks = prev.chunks;
        ce.compression = prev.compression;
        this.report.filesReused++;
        this.push(cat, ce);
        continue;
      }
      ce.compression = settings.compression;
      const row: Row = { cat, ce, done: false };
      this.pending++;
      row.wait = ingest.putFile({ path: k.sourcePath }, e.size).then((r: StoredContent) => {
        if (r.size !== e.size) {
          this.report.bytes += r.size - e.size;
          e.size = r.size;
        }
        if (r.content.id !== undefined) ce.id = r.content.id;
        if (r.content.chunks !== undefined) ce.chunks = r.content.chunks;
        ce.compression = r.content.compression;
        row.done = true;
        this.done++;
        if (this.done === 1) this.ctx.hooks.point?.('first-object');
        this.maybeHalf();
      }, (err: unknown) => {
        throw err instanceof GridboxError && (err.code === 'PUBLISH_SOURCE' || err.code.startsWith('STORE_')) ? err
          : new GridboxError('PUBLISH_SOURCE', `Cannot ingest ${q(path)} from the publish source`, { path, cause: err });
      });
      row.wait.catch(() => undefined); // awaited in order by drain()
      this.window.push(row);
      if (this.window.length - this.head > ROW_WINDOW) await this.drain(ROW_WINDOW >> 1);
    }
  }

  /** A row into its catalog now, or behind the rows still waiting for contents. */
  private push(cat: OpenCatalog, ce: CatalogEntry): void {
    if (this.head === this.window.length) cat.writer.add(ce);
    else this.window.push({ cat, ce, done: true });
  }

  /** Writes waiting rows in order until at most `keep` are left (0: all, e.g. before a catalog is closed). */
  private async drain(keep: number): Promise<void> {
    this.ctx.ingest.flush();
    while (this.window.length - this.head > keep) {
      const r = this.window[this.head];
      if (!r.done) await r.wait;
      r.cat.writer.add(r.ce);
      this.window[this.head++] = undefined as unknown as Row;
    }
    if (this.head === this.window.length) { this.window = []; this.head = 0; }
    else if (this.head > ROW_WINDOW) { this.window = this.window.slice(this.head); this.head = 0; }
  }

  private maybeHalf(): void {
    if (!this.halfFired && this.walkDone && this.pending > 0 && this.done >= Math.ceil(this.pending / 2)) {
      this.halfFired = true;
      this.ctx.hooks.point?.('half-objects');
    }
  }

  private withXattrs(e: Entry, abs: string): Entry {
    const x = this.xattrs.size > 0 ? this.xattrs.get(abs) : undefined;
    if (x !== undefined) e.xattrs = x;
    return e;
  }
}

const subdirs = (kids: readonly WalkedEntry[]): number => {
  let n = 0;
  for (const k of kids) if (k.entry.type === 'dir') n++;
  return n;
};

/** The old row can stand for the new file: same size, mtime, mode, same hash and compression settings. */
function sameOldFile(prev: CatalogEntry, e: Entry, s: RepoSettings): boolean {
  const p = prev.entry;
  if (p.type !== 'file' || prev.external) return false;
  const algo = prev.id?.algorithm ?? prev.chunks?.[0]?.id.algorithm;
  return p.size === e.size && p.mtime === e.mtime && (p.mtimeNs ?? 0) === (e.mtimeNs ?? 0) && p.mode === e.mode &&
    algo === s.hashAlgorithm && prev.compression === s.compression && (prev.chunks === undefined || e.size > s.chunkMin);
}
