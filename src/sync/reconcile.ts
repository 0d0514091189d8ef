// One sync cycle: expand the list, HEAD every tag, fetch and flatten only what changed, and publish all
// edits (new trees, moved or dropped names, expired trees) in ONE transaction; then remember the state
// in the repository's server-side state dir. One failing image is reported and never blocks the others.
// Not the CLI (argv, progress bars) and not the registry protocol (oci/registry-client.ts).
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describeError, GridboxError, q } from '../errors.js';
import { formatObjectId } from '../hash/object-id.js';
import { makeOwnedDir, removeDeadOwnedDirs } from '../plumbing/transaction-dirs.js';
import { type Digest } from '../oci/digest.js';
import type { Entry } from '../fstree/entry.js';
import { disposeFlatTree, type ContentSink, type DevicePolicy, type FlatTree, type FlattenOptions, type LayerRecord, type PermissionPolicy } from '../oci/flatten.js';
import { flattenImage, type LayerMemory } from '../oci/pull.js';
import { formatReference } from '../oci/reference.js';
import type { Platform } from '../oci/image.js';
import type { RegistryClient, ResolvedImage } from '../oci/registry-client.js';
import { publishChangesWith, type Change, type ChangesetContext } from '../publish/changeset.js';
import { STREAM_MIN_BYTES } from '../publish/content-ingest.js';
import { phaseTimer } from '../publish/phase-timer.js';
import type { PublishReport } from '../publish/publisher.js';
import type { RepoLayout, RepoSettings } from '../publish/repo-layout.js';
import { writeFileAtomic } from '../plumbing/atomic-write.js';
import type { FileContent } from '../publish/tree.js';
import { FsStore } from '../store/fs-store.js';
import { expandImageList, type ImageList, type WantedImage } from './image-list.js';
import { imageItems, imageTreePath, relativeTarget } from './layout.js';
import { cycleRecordOf, removeTreeStats, treeStatsOf, writeCycleRecord, writeTreeStats, type TreeStats } from './sync-records.js';

export const DEFAULT_GRACE_MS = 2 * 24 * 3600 * 1000;

/** What the last cycle left, per public name and per tree (state/sync/state.json). */
export interface SyncState {
  version: 1;
  images: Record<string, {
    reference: string;
    /** The list entry that produced this name (globs keep names when their tag list fails). */
    entry: string;
    /** What HEAD returned (index digest for multi-arch tags). */
    digest: string;
    platform: string;
    configDigest: string;
    tree: string;
    syncedAt: number;
  }>;
  trees: Record<string, { configDigest: string; publishedAt: number; unreferencedSince?: number }>;
}

export type ImageStatus = 'new' | 'changed' | 'unchanged' | 'removed' | 'failed' | 'kept';

export interface ImageOutcome {
  name: string;
  reference: string;
  status: ImageStatus;
  tree?: string;
  error?: string;
  /** For a refused layer: the error code, the layer digest, the entry and the rule it broke. */
  refused?: { code: string; layer?: string; entry?: string; rule?: string };
  warnings?: string[];
}

export interface CycleReport {
  outcomes: ImageOutcome[];
  /** Trees deleted after their grace period. */
  treesRemoved: string[];
  /** Lines of the list that did not parse. */
  listErrors: string[];
  published?: PublishReport;
  dryRun: boolean;
  /** True when anything failed: the CLI exits non-zero. */
  failed: boolean;
}

export type SyncEvent =
  | { action: 'start_cycle'; images: number }
  | { action: 'image'; name: string; step: 'head' | 'fetch' | 'flatten' | 'done'; status?: ImageStatus; error?: string }
  | { action: 'layer'; name: string; digest: string; bytes: number }
  | { action: 'publish'; changes: number; report?: PublishReport; error?: string }
  | { action: 'end_cycle'; failed: boolean };

export interface SyncOptions {
  layout: RepoLayout;
  settings: RepoSettings;
  client: RegistryClient;
  platform?: Platform;
  /** HEAD only; report what would change; publish nothing, write no state. */
  dryRun?: boolean;
  /** Publish images with hostile layer entries skipped and warned about, instead of failing them. */
  lenient?: boolean;
  devices?: DevicePolicy;
  permissions?: PermissionPolicy;
  /** Limits for layers (tar header/PAX sizes, decompression caps); defaults are the flattener's. */
  flatten?: Pick<FlattenOptions, 'tar' | 'decompress' | 'keepSetid'>;
  /** Dropped images' trees stay this long after losing their last name (default 2 days). */
  graceMs?: number;
  /** JSON-lines notification file (appended). */
  notifyFile?: string;
  onEvent?: (e: SyncEvent) => void;
  workers?: number;
  /** An image tree's catalog is split above this many entries (default IMAGE_CATALOG_MAX; 0: one catalog per image). */
  imageCatalogMax?: number;
  now?: () => number;
}

export function statePath(layout: RepoLayout): string {
  return join(layout.state, 'sync', 'state.json');
}

export async function readSyncState(layout: RepoLayout): Promise<SyncState> {
  let text: string;
  try { text = await readFile(statePath(layout), 'utf8'); } catch { return { version: 1, images: {}, trees: {} }; }
  try {
    const s = JSON.parse(text) as SyncState;
    if (s.version !== 1) throw new Error(`version ${s.version}`);
    return s;
  } catch (e) {
    throw new GridboxError('CONFIG_INVALID', `Cannot read sync state ${q(statePath(layout))}`, { path: statePath(layout), cause: e });
  }
}

interface Prepared {
  want: WantedImage;
  digest: Digest;
  resolved: ResolvedImage;
  flat?: FlatTree;
  status: 'new' | 'changed';
  tree: string;
  prev?: SyncState['images'][string];
  outcome: ImageOutcome;
  /** When its HEAD started (for the notification's elapsed time). */
  t0: number;
}

/** Runs one cycle of `list` against the repository. Never throws for a single image's failure. */
export async function syncCycle(list: ImageList, opts: SyncOptions): Promise<CycleReport> {
  const now = opts.now ?? Date.now;
  const started = now();
  const timer = phaseTimer('GRIDBOX_SYNC_TIMING', 'sync');
  const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  const platformText = opts.platform ? [opts.platform.os, opts.platform.architecture, opts.platform.variant].filter(Boolean).join('/') : 'host';
  const state = await readSyncState(opts.layout);
  const report: CycleReport = { outcomes: [], treesRemoved: [], listErrors: list.errors.map((e) => `line ${e.line} ${q(e.text)}: ${e.message}`), dryRun: !!opts.dryRun, failed: list.errors.length > 0 };
  const notify = async (rec: Record<string, unknown>): Promise<void> => {
    if (!opts.notifyFile) return;
    await appendFile(opts.notifyFile, JSON.stringify({ time: new Date(now()).toISOString(), pid: process.pid, ...rec }) + '\n');
  };
  const event = (e: SyncEvent): void => { opts.onEvent?.(e); };

  const expanded = await expandImageList(list, (r, repo) => opts.client.listTags(r, repo));
  const keepEntries = new Set<string>();
  for (const f of expanded.failed) {
    keepEntries.add(f.entry.text);
    report.failed = true;
    report.outcomes.push({ name: f.entry.text, reference: f.entry.text, status: 'failed', error: `Cannot expand ${q(f.entry.text)}: ${describeError(f.error)}` });
  }
  event({ action: 'start_cycle', images: expanded.images.length });
  await notify({ action: 'start_cycle', images: expanded.images.length, dry_run: !!opts.dryRun });

  const spoolRoot = join(opts.layout.state, 'sync');
  // A killed sync's spool (up to the size of its largest layer files) goes now; live ones stay.
  removeDeadOwnedDirs(spoolRoot, 'spool');
  const spool = makeOwnedDir(spoolRoot, 'spool');
  const prepared: Prepared[] = [];
  const treeStats = new Map<string, TreeStats>();
  const next: SyncState = { version: 1, images: {}, trees: { ...state.trees } };
  const keptNames = new Set<string>();
  const announce = async (outcome: ImageOutcome, t0: number): Promise<void> => {
    event({ action: 'image', name: outcome.name, step: 'done', status: outcome.status, ...(outcome.error ? { error: outcome.error } : {}) });
    await notify({ action: 'image', image: outcome.name, image_request: outcome.reference, status: outcome.status, ...(outcome.tree ? { private_path: outcome.tree } : {}), ...(outcome.error ? { error: outcome.error } : {}), ...(outcome.refused ? { refused: outcome.refused } : {}), ...(outcome.warnings ? { warnings: outcome.warnings.length } : {}), time_elapsed_s: (now() - t0) / 1000 });
  };
  try {
    // 1. HEAD every wanted tag; fetch and flatten only new or changed images.
    for (const [i, want] of expanded.images.entries()) {
      const prev = state.images[want.name];
      const ref = formatReference(want.reference);
      const outcome: ImageOutcome = { name: want.name, reference: ref, status: 'unchanged' };
      const t0 = now();
      try {
        event({ action: 'image', name: want.name, step: 'head' });
        const digest = want.reference.digest && want.reference.tag === undefined ? want.reference.digest : (await opts.client.headManifest(want.reference)).digest;
        if (prev && prev.digest === digest && prev.platform === platformText && state.trees[prev.tree]) {
          next.images[want.name] = prev;
          outcome.tree = prev.tree;
        } else if (opts.dryRun) {
          outcome.status = prev ? 'changed' : 'new';
        } else {
          event({ action: 'image', name: want.name, step: 'fetch' });
          const resolved = await opts.client.resolveImage(want.reference, opts.platform);
          const tree = imageTreePath(resolved.configDigest);
          // Flattened later, under the publish lock, with file bytes going straight to the store.
          prepared.push({ want, digest, resolved, status: prev ? 'changed' : 'new', tree, prev, outcome, t0 });
          outcome.status = prev ? 'changed' : 'new';
          outcome.tree = tree;
        }
      } catch (e) {
        outcome.status = 'failed';
        outcome.error = `Cannot sync ${q(ref)} as ${q(want.name)}: ${describeError(e)}`;
        report.failed = true;
        // The name keeps what it had: a broken push must not take a working image away.
        if (prev) { next.images[want.name] = prev; keptNames.add(want.name); }
      }
      report.outcomes.push(outcome);
      // Images to publish are announced once they are flattened (or failed to be).
      if (!prepared.some((p) => p.outcome === outcome)) await announce(outcome, t0);
    }

    // 2. Names no longer wanted go at once, except those of globs whose tag list failed this cycle.
    const wanted = new Set(expanded.images.map((w) => w.name));
    const changes: Change[] = [];
    for (const [name, img] of Object.entries(state.images)) {
      if (wanted.has(name)) continue;
      if (keepEntries.has(img.entry)) { next.images[name] = img; report.outcomes.push({ name, reference: img.reference, status: 'kept', tree: img.tree }); continue; }
      changes.push({ kind: 'remove', path: name });
      report.outcomes.push({ name, reference: img.reference, status: 'removed', tree: img.tree });
    }

    // 3. In the publish transaction: flatten new trees (file bytes to the store as layers stream), then
    // (re)point names and expire trees. An image that fails to flatten keeps its old name and state.
    if (opts.dryRun) {
      // HEAD only: the grace marks below are not written.
      return report;
    }
    const memory = new LayerMemoryFiles(join(spoolRoot, 'content'), opts.settings, new FsStore(opts.layout.srv));
    const build = async (ctx: ChangesetContext): Promise<Change[] | undefined> => {
      const fresh = new WeakSet<object>();
      const sink: ContentSink = {
        put: async (bytes) => {
          const { stored } = await ctx.ingest.storeBytes(bytes);
          return { stored: stored.then((c) => { fresh.add(c); return c; }) };
        },
        flush: () => ctx.ingest.flush(),
        // Larger files are spooled and streamed from there in pieces, never held whole in memory.
        maxFileBytes: STREAM_MIN_BYTES,
      };
      const all: Change[] = [];
      for (const [i, p] of prepared.entries()) {
        // A tree published before, or by an earlier entry of this cycle, is only linked (if that entry
        // failed, this one tries to build the tree itself).
        if (next.trees[p.tree] === undefined) {
          try {
            event({ action: 'image', name: p.want.name, step: 'flatten' });
            const dir = join(spool, `img-${i}`);
            await mkdir(dir);
            p.flat = await flattenImage(opts.client, p.resolved, { ...opts.flatten, spoolDir: dir, lenient: opts.lenient, devices: opts.devices, permissions: opts.permissions, sink }, memory,
              (digest, bytes) => event({ action: 'layer', name: p.want.name, digest, bytes }));
            ctx.mark(`flatten ${p.want.name}`);
          } catch (e) {
            p.outcome.status = 'failed';
            p.outcome.error = `Cannot sync ${q(formatReference(p.want.reference))} as ${q(p.want.name)}: ${describeError(e)}`;
            if (e instanceof GridboxError && (e.code === 'OCI_UNSAFE_PATH' || e.code === 'TAR_LIMIT' || e.code === 'TAR_INVALID')) {
              const f = e.fields;
              p.outcome.refused = { code: e.code, ...(typeof f.layer === 'string' ? { layer: f.layer } : {}), ...(typeof f.path === 'string' ? { entry: f.path } : {}), ...(typeof f.rule === 'string' ? { rule: f.rule } : {}) };
            }
            delete p.outcome.tree;
            report.failed = true;
            continue;
          }
          if (p.flat.warnings.length > 0) p.outcome.warnings = p.flat.warnings.map((w) => w.message);
          const created = Date.parse(String((p.resolved.config as { created?: unknown }).created ?? ''));
          const { items, keys } = imageItems(p.flat, p.resolved.settings, p.resolved.manifest.layers.map((l) => l.digest), Number.isFinite(created) ? Math.floor(created / 1000) : Math.floor(now() / 1000), opts.imageCatalogMax);
          for (const it of items) if (it.content !== undefined && fresh.has(it.content)) it.fresh = true;
          treeStats.set(p.tree, treeStatsOf(items, keys));
          all.push({ kind: 'tree', at: p.tree, items });
        }
        all.push({ kind: 'symlink', path: p.want.name, target: relativeTarget(p.want.name, p.tree) });
        next.images[p.want.name] = {
          reference: formatReference(p.want.reference), entry: p.want.entry.text, digest: p.digest, platform: platformText,
          configDigest: p.resolved.configDigest, tree: p.tree, syncedAt: now(),
        };
        next.trees[p.tree] ??= { configDigest: p.resolved.configDigest, publishedAt: now() };
      }
      for (const p of prepared) if (p.outcome.status === 'failed' && p.prev) { next.images[p.want.name] = p.prev; keptNames.add(p.want.name); }
      all.push(...changes, ...(prepared.length > 0 ? expire() : []));
      return all.length > 0 ? all : undefined;
    };

    // 4. Grace period: a tree without names is marked, and removed once the mark is old enough.
    const expire = (): Change[] => {
      const out: Change[] = [];
      const referenced = new Set(Object.values(next.images).map((i) => i.tree));
      for (const [tree, info] of Object.entries(next.trees)) {
        if (referenced.has(tree)) { if (info.unreferencedSince !== undefined) next.trees[tree] = { configDigest: info.configDigest, publishedAt: info.publishedAt }; continue; }
        const since = info.unreferencedSince ?? now();
        if (now() - since >= graceMs) {
          out.push({ kind: 'remove', path: tree });
          report.treesRemoved.push(tree);
          delete next.trees[tree];
        } else next.trees[tree] = { ...info, unreferencedSince: since };
      }
      return out;
    };

    // 5. One publish for everything; nothing at all in a steady state.
    timer.mark('head+resolve');
    // Without images to flatten, the expired trees are known now, and a steady state takes no lock.
    if (prepared.length === 0) changes.push(...expire());
    const pending = prepared.length + changes.length;
    if (pending > 0) {
      event({ action: 'publish', changes: pending });
      try {
        report.published = await publishChangesWith(build, { layout: opts.layout, settings: opts.settings, workers: opts.workers });
        timer.mark('flatten+publish');
        for (const p of prepared) await announce(p.outcome, p.t0);
        if (report.published !== undefined) {
          await memory.save();
          for (const [tree, stats] of treeStats) if (next.trees[tree] !== undefined) await writeTreeStats(opts.layout, tree, stats);
          for (const tree of report.treesRemoved) await removeTreeStats(opts.layout, tree);
          await notify({ action: 'publish', changes: pending, revision: report.published.revision, files: report.published.files, objects_written: report.published.objectsWritten, bytes_written: report.published.bytesWritten });
          event({ action: 'publish', changes: pending, report: report.published });
        }
      } catch (e) {
        report.failed = true;
        const error = `Cannot publish the cycle's changes to ${q(opts.layout.fqrn)}: ${describeError(e)}`;
        for (const o of report.outcomes) if (o.status === 'new' || o.status === 'changed' || o.status === 'removed') { o.status = 'failed'; o.error = error; }
        for (const p of prepared) await announce(p.outcome, p.t0);
        event({ action: 'publish', changes: pending, error });
        await notify({ action: 'publish', status: 'error', error });
        return report;
      }
    }
    timer.done(`${prepared.length} images, ${report.published?.files ?? 0} files`);
    if (changes.length > 0 || JSON.stringify(next) !== JSON.stringify(state)) {
      await writeFileAtomic(statePath(opts.layout), JSON.stringify(next, null, 1) + '\n', { tmpDir: spoolRoot, fsync: true });
    }
    return report;
  } finally {
    for (const p of prepared) if (p.flat) await disposeFlatTree(p.flat);
    await rm(spool, { recursive: true, force: true });
    // For people to look at (the dashboard); a failure to write it must not fail the cycle.
    if (!opts.dryRun) await writeCycleRecord(opts.layout, cycleRecordOf(report, started, now())).catch(() => undefined);
    event({ action: 'end_cycle', failed: report.failed });
    await notify({ action: 'end_cycle', status: report.failed ? 'error' : 'ok', time_elapsed_s: (now() - started) / 1000 });
  }
}

/**
 * Each layer's entry list with the stored content of its files (LayerRecords), one JSON file per layer
 * digest under state/sync/content/, so a re-sync after only the top layer changed neither downloads
 * nor parses the lower layers. Valid only for the repository's hash algorithm and compression; every
 * object is checked to be in the store before a record is used.
 */
class LayerMemoryFiles implements LayerMemory {
  private readonly dirty = new Map<string, LayerRecord[]>();
  constructor(private readonly dir: string, private readonly settings: RepoSettings, private readonly store: FsStore) {}

  private file(layer: string): string {
    return join(this.dir, `${layer.replace(':', '-')}.${this.settings.hashAlgorithm}.${this.settings.compression}.layer.json`);
  }

  async remembered(layer: string): Promise<LayerRecord[] | undefined> {
    let saved: { version: number; records: SavedRecord[] };
    try { saved = JSON.parse(await readFile(this.file(layer), 'utf8')) as typeof saved; } catch { return undefined; }
    if (saved.version !== 1 || !Array.isArray(saved.records)) return undefined;
    const keys: string[] = [];
    for (const r of saved.records) {
      const c = r.stored;
      if (c === undefined) continue;
      if (c.id !== undefined) keys.push(formatObjectId(c.id));
      for (const ch of c.chunks ?? []) keys.push(formatObjectId(ch.id) + 'P');
    }
    // Synchronous stats: ~6k of them take ~20 ms, a quarter of what as many promises through the thread pool do.
    if (!keys.every((k) => existsSync(this.store.pathOf(k)))) return undefined;
    return saved.records.map(({ xattrs64, ...r }) => xattrs64 === undefined ? r : { ...r, entry: { ...r.entry, xattrs: Object.fromEntries(Object.entries(xattrs64).map(([k, v]) => [k, Buffer.from(v, 'base64')])) } });
  }

  remember(layer: string, records: LayerRecord[]): void {
    this.dirty.set(layer, records);
  }

  /** Writes what was remembered (after the publish that stored the objects). */
  async save(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    for (const [layer, records] of this.dirty) {
      const out: SavedRecord[] = records.map((r) => {
        if (r.entry.xattrs === undefined) return r as SavedRecord;
        const { xattrs, ...entry } = r.entry;
        return { ...r, entry, xattrs64: Object.fromEntries(Object.entries(xattrs).map(([k, v]) => [k, v.toString('base64')])) } as SavedRecord;
      });
      await writeFileAtomic(this.file(layer), JSON.stringify({ version: 1, records: out }), { tmpDir: this.dir, fsync: true });
    }
    this.dirty.clear();
  }
}

/** A LayerRecord as JSON: xattr values in base64 beside the entry. */
interface SavedRecord {
  entry: Entry;
  linkTo?: string;
  stored?: FileContent;
  xattrs64?: Record<string, string>;
}
