// The dashboard's facts, gathered on request from what the programs already keep: each repository's head
// and history tags (srv/ and its history object), sync's state and records (state/sync/), the accounting
// database the pilots post to, and each configured stratum 1's .cvmfspublished. Plain data out, so the
// JSON endpoints and the page show the same thing. Reads only; never writes into the repository.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeError, GridboxError, q } from '../errors.js';
import { formatObjectId } from '../hash/object-id.js';
import { listStarts, openAccountingDb } from '../accounting/accounting-db.js';
import { exchangeText } from '../accounting/http-exchange.js';
import { summarize, type Summary } from '../accounting/report.js';
import { parseManifest } from '../manifest/manifest.js';
import { readHead } from '../publish/head.js';
import { listStoredTags } from '../publish/history-update.js';
import { repoLayout } from '../publish/repo-layout.js';
import { FsStore } from '../store/fs-store.js';
import { readSyncState } from '../sync/reconcile.js';
import { dedupOf, readCycleHistory, readCycleRecord, readTreeStats, type CycleBrief, type CycleRecord, type TreeStats } from '../sync/sync-records.js';

/** How long a stratum 1 may take to answer before it is shown as unreachable. */
export const STRATUM1_TIMEOUT_MS = 3000;
/** Tags shown per repository (newest first); a long-lived repository has one per publish. */
export const MAX_TAGS = 200;

export interface DashboardSources {
  /** Repository root (as for `gridbox serve --root`): srv/<fqrn> and var/<fqrn>. */
  root: string;
  /** The aggregating accounting database (`serve --accounting-db`), if any. */
  accountingDb?: string;
  /** Stratum-1 base URLs: "@fqrn@" is replaced, a URL ending in /cvmfs gets /<fqrn> appended. */
  stratum1?: string[];
  now?: () => number;
}

export interface TagRow { name: string; revision: number; timestamp: number; rootHash: string; description: string }

export interface ImageRow {
  /** Public name in the repository (`<registry>/<repo>:<tag>`). */
  name: string;
  reference: string;
  /** What the registry's HEAD returned (an index digest for multi-arch tags). */
  digest: string;
  configDigest: string;
  tree: string;
  syncedAt: number;
  /** Undefined for trees published before sync kept statistics. */
  files?: number;
  bytes?: number;
  newBytes?: number;
  savedBytes?: number;
  /** Status in the last cycle ("new", "unchanged", "failed", ...) and its error. */
  lastStatus?: string;
  lastError?: string;
}

export interface RepositoryView {
  fqrn: string;
  revision: number;
  /** Publish time of the head, Unix seconds. */
  timestamp: number;
  rootHash: string;
  tags: TagRow[];
  images: ImageRow[];
  /** Images the last cycle failed that have no published tree (a name never synced). */
  failedImages: { name: string; reference: string; error?: string }[];
  lastCycle?: Omit<CycleRecord, 'images'>;
  /** Sync cycles in brief, oldest first (their published revisions join the tags on the revision plot). */
  cycles: CycleBrief[];
  dedup?: { bytes: number; newBytes: number; savedBytes: number };
  error?: string;
}

export interface Stratum1View {
  url: string;
  fqrn: string;
  revision?: number;
  timestamp?: number;
  /** Revisions behind the stratum 0 (0 = in step). */
  revisionsBehind?: number;
  /** Seconds between the stratum 0's head and the replica's, 0 when in step. */
  secondsBehind?: number;
  lastSnapshot?: string;
  error?: string;
}

export interface DashboardData {
  generatedAt: number;
  repositories: RepositoryView[];
  starts?: Summary;
  stratum1: Stratum1View[];
}

/** Repository names under `root/srv` that have a manifest. */
export async function listRepositories(root: string): Promise<string[]> {
  let names: string[];
  try { names = await readdir(join(root, 'srv')); } catch (e) { throw new GridboxError('NOT_FOUND', `No srv/ directory under ${q(root)}`, { path: root, cause: e }); }
  return names.filter((n) => existsSync(join(root, 'srv', n, '.cvmfspublished'))).sort();
}

export async function repositoryView(root: string, fqrn: string): Promise<RepositoryView> {
  const layout = repoLayout(root, fqrn);
  const head = await readHead(layout);
  const view: RepositoryView = { fqrn, revision: head.revision, timestamp: head.timestamp, rootHash: formatObjectId(head.rootId), tags: [], images: [], failedImages: [], cycles: [] };
  try {
    const tags = await listStoredTags(new FsStore(layout.srv), head.historyId, tmpdir());
    view.tags = tags.slice(0, MAX_TAGS).map((t) => ({ name: t.name, revision: t.revision, timestamp: t.timestamp, rootHash: formatObjectId(t.id), description: t.description }));
  } catch (e) {
    view.error = `Cannot read the history of ${q(fqrn)}: ${describeError(e)}`;
  }
  const state = await readSyncState(layout);
  const cycle = await readCycleRecord(layout);
  view.cycles = await readCycleHistory(layout);
  if (cycle !== undefined) { const { images: _images, ...rest } = cycle; view.lastCycle = rest; }
  const last = new Map((cycle?.images ?? []).map((i) => [i.name, i]));
  // Trees in publish order, so the first image to bring a file's content is the one that stored it.
  const trees = Object.entries(state.trees).sort(([, a], [, b]) => a.publishedAt - b.publishedAt);
  const stats: { tree: string; stats: TreeStats }[] = [];
  const referenced = new Set(Object.values(state.images).map((i) => i.tree));
  for (const [tree] of trees) {
    if (!referenced.has(tree)) continue;
    const s = await readTreeStats(layout, tree);
    if (s !== undefined) stats.push({ tree, stats: s });
  }
  const dedup = dedupOf(stats);
  const byTree = new Map(dedup.perTree.map((d) => [d.tree, d]));
  if (stats.length > 0) view.dedup = { bytes: dedup.bytes, newBytes: dedup.newBytes, savedBytes: dedup.savedBytes };
  for (const [name, img] of Object.entries(state.images).sort(([a], [b]) => a.localeCompare(b))) {
    const d = byTree.get(img.tree);
    const l = last.get(name);
    view.images.push({
      name, reference: img.reference, digest: img.digest, configDigest: img.configDigest, tree: img.tree, syncedAt: img.syncedAt,
      ...(d ? { files: d.files, bytes: d.bytes, newBytes: d.newBytes, savedBytes: d.savedBytes } : {}),
      ...(l ? { lastStatus: l.status, ...(l.error !== undefined ? { lastError: l.error } : {}) } : {}),
    });
  }
  for (const l of cycle?.images ?? []) {
    if (l.status === 'failed' && state.images[l.name] === undefined) view.failedImages.push({ name: l.name, reference: l.reference, ...(l.error !== undefined ? { error: l.error } : {}) });
  }
  return view;
}

/** `base` for one repository, the way `gridbox snapshot --from` and CVMFS_SERVER_URL spell it. */
export function stratum1Url(base: string, fqrn: string): string {
  const t = base.trim().replaceAll('@fqrn@', fqrn).replace(/\/+$/, '');
  return /\/cvmfs$/.test(t) ? `${t}/${fqrn}` : t;
}

/**
 * A replica's head against the stratum 0's. The manifest's signature is not checked: the page shows
 * how far a replica lags, and a forged manifest could only make it look fresher than the client accepts.
 */
export async function stratum1View(base: string, s0: Pick<RepositoryView, 'fqrn' | 'revision' | 'timestamp'>, timeoutMs = STRATUM1_TIMEOUT_MS): Promise<Stratum1View> {
  const url = stratum1Url(base, s0.fqrn);
  const view: Stratum1View = { url, fqrn: s0.fqrn };
  try {
    const r = await exchangeText(`${url}/.cvmfspublished`, { timeoutMs });
    if (r.status !== 200) throw new Error(`HTTP ${r.status} for ${url}/.cvmfspublished`);
    const f = parseManifest(r.text);
    if (f.N !== undefined && f.N !== s0.fqrn) throw new Error(`it serves ${q(f.N)}, not ${q(s0.fqrn)}`);
    view.revision = f.S;
    view.timestamp = f.T;
    view.revisionsBehind = Math.max(0, s0.revision - f.S);
    view.secondsBehind = view.revisionsBehind === 0 || f.T === undefined ? 0 : Math.max(0, s0.timestamp - f.T);
    const snap = await exchangeText(`${url}/.cvmfs_last_snapshot`, { timeoutMs }).catch(() => undefined);
    if (snap?.status === 200 && snap.text.length < 200) view.lastSnapshot = snap.text.trim();
  } catch (e) {
    view.error = `Cannot read ${q(`${url}/.cvmfspublished`)}: ${describeError(e)}`;
  }
  return view;
}

export async function collectDashboard(src: DashboardSources): Promise<DashboardData> {
  const now = src.now ?? Date.now;
  const repositories: RepositoryView[] = [];
  for (const fqrn of await listRepositories(src.root)) {
    try { repositories.push(await repositoryView(src.root, fqrn)); } catch (e) {
      repositories.push({ fqrn, revision: 0, timestamp: 0, rootHash: '', tags: [], images: [], failedImages: [], cycles: [], error: describeError(e) });
    }
  }
  let starts: Summary | undefined;
  if (src.accountingDb !== undefined && existsSync(src.accountingDb)) {
    const db = openAccountingDb(src.accountingDb, { readonly: true });
    try { starts = summarize(listStarts(db)); } finally { db.close(); }
  }
  const stratum1 = await Promise.all((src.stratum1 ?? []).flatMap((base) => repositories.filter((r) => r.error === undefined || r.revision > 0).map((r) => stratum1View(base, r))));
  return { generatedAt: now(), repositories, starts, stratum1 };
}
