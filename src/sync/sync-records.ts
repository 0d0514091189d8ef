// What sync leaves for people to look at (the dashboard, `jq`): the last cycle's result per image, and per
// published tree its file count, bytes and content identities, from which deduplication is measured.
// Files under the repository's state dir (state/sync/last-cycle.json, state/sync/trees/<tree>.json),
// written atomically after the cycle's publish. Not the state the next cycle works from (reconcile.ts).
import { appendFile, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { formatObjectId } from '../hash/object-id.js';
import type { ChangeItem } from '../publish/changeset.js';
import type { PublishReport } from '../publish/publisher.js';
import type { RepoLayout } from '../publish/repo-layout.js';
import { writeFileAtomic } from '../plumbing/atomic-write.js';
import type { CycleReport } from './reconcile.js';

/** One cycle as the dashboard shows it. */
export interface CycleRecord {
  version: 1;
  startedAt: number;
  endedAt: number;
  failed: boolean;
  dryRun: boolean;
  images: { name: string; reference: string; status: string; tree?: string; error?: string; warnings?: number }[];
  listErrors: string[];
  published?: Pick<PublishReport, 'revision' | 'files' | 'objectsWritten' | 'bytesWritten'>;
}

/**
 * Files of one published image tree. `contents` lists each regular file's content identity and size:
 * the object id (or chunk ids) for stored content, `<layer digest>@<offset>+<size>` for bytes still in a
 * layer, and `path:<path>` (never shared) where neither is known, so equal keys mean one stored copy.
 */
export interface TreeStats {
  version: 1;
  files: number;
  bytes: number;
  contents: [key: string, size: number][];
}

const cyclePath = (layout: RepoLayout): string => join(layout.state, 'sync', 'last-cycle.json');
const historyPath = (layout: RepoLayout): string => join(layout.state, 'sync', 'cycles.jsonl');
/** Cycles kept in cycles.jsonl; past twice this many the file is cut back to this many. */
export const MAX_CYCLE_HISTORY = 500;

/** One line of cycles.jsonl: a cycle's outcome in brief, for plots over time. */
export interface CycleBrief { endedAt: number; failed: boolean; revision?: number; images: Record<string, number> }
const treesDir = (layout: RepoLayout): string => join(layout.state, 'sync', 'trees');
/** `.images/ab/cdef…` → `ab-cdef….json` (tree paths are sync's own, layout.ts: never user input). */
const treeFile = (layout: RepoLayout, tree: string): string => join(treesDir(layout), `${tree.replace(/^\/*\.images\//, '').replaceAll('/', '-')}.json`);

export function cycleRecordOf(report: CycleReport, startedAt: number, endedAt: number): CycleRecord {
  return {
    version: 1, startedAt, endedAt, failed: report.failed, dryRun: report.dryRun, listErrors: report.listErrors,
    images: report.outcomes.map((o) => ({
      name: o.name, reference: o.reference, status: o.status,
      ...(o.tree !== undefined ? { tree: o.tree } : {}), ...(o.error !== undefined ? { error: o.error } : {}), ...(o.warnings ? { warnings: o.warnings.length } : {}),
    })),
    ...(report.published ? { published: { revision: report.published.revision, files: report.published.files, objectsWritten: report.published.objectsWritten, bytesWritten: report.published.bytesWritten } } : {}),
  };
}

/** Writes the cycle as the last one and appends its brief to the history (cut back when it grew long). */
export async function writeCycleRecord(layout: RepoLayout, r: CycleRecord): Promise<void> {
  const dir = join(layout.state, 'sync');
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(cyclePath(layout), JSON.stringify(r) + '\n', { tmpDir: dir, fsync: true });
  const images: Record<string, number> = {};
  for (const i of r.images) images[i.status] = (images[i.status] ?? 0) + 1;
  const brief: CycleBrief = { endedAt: r.endedAt, failed: r.failed, ...(r.published ? { revision: r.published.revision } : {}), images };
  await appendFile(historyPath(layout), JSON.stringify(brief) + '\n');
  const lines = (await readFile(historyPath(layout), 'utf8')).split('\n').filter((l) => l !== '');
  if (lines.length > 2 * MAX_CYCLE_HISTORY) await writeFileAtomic(historyPath(layout), lines.slice(-MAX_CYCLE_HISTORY).join('\n') + '\n', { tmpDir: dir, fsync: true });
}

/** The recorded cycles, oldest first (lines that do not parse are skipped). */
export async function readCycleHistory(layout: RepoLayout): Promise<CycleBrief[]> {
  let text: string;
  try { text = await readFile(historyPath(layout), 'utf8'); } catch { return []; }
  return text.split('\n').filter((l) => l !== '').flatMap((l) => { try { return [JSON.parse(l) as CycleBrief]; } catch { return []; } }).slice(-MAX_CYCLE_HISTORY);
}

/** The last cycle's record, or undefined when sync never ran (or the file is unreadable). */
export async function readCycleRecord(layout: RepoLayout): Promise<CycleRecord | undefined> {
  try {
    const r = JSON.parse(await readFile(cyclePath(layout), 'utf8')) as CycleRecord;
    return r.version === 1 ? r : undefined;
  } catch { return undefined; }
}

/** The statistics of one image tree's items, as built for its publish (layout.ts imageItems). */
export function treeStatsOf(items: readonly ChangeItem[], keys: ReadonlyMap<ChangeItem, string>): TreeStats {
  const contents: [string, number][] = [];
  let bytes = 0;
  for (const it of items) {
    if (it.entry.type !== 'file') continue;
    const c = it.content;
    const key = c?.id !== undefined ? formatObjectId(c.id)
      : c?.chunks !== undefined && c.chunks.length > 0 ? c.chunks.map((ch) => formatObjectId(ch.id)).join(',')
        : keys.get(it) ?? `path:${it.entry.path}`;
    contents.push([key, it.entry.size]);
    bytes += it.entry.size;
  }
  return { version: 1, files: contents.length, bytes, contents };
}

export async function writeTreeStats(layout: RepoLayout, tree: string, stats: TreeStats): Promise<void> {
  await mkdir(treesDir(layout), { recursive: true });
  await writeFileAtomic(treeFile(layout, tree), JSON.stringify(stats), { tmpDir: treesDir(layout), fsync: true });
}

export async function readTreeStats(layout: RepoLayout, tree: string): Promise<TreeStats | undefined> {
  try {
    const s = JSON.parse(await readFile(treeFile(layout, tree), 'utf8')) as TreeStats;
    return s.version === 1 ? s : undefined;
  } catch { return undefined; }
}

export async function removeTreeStats(layout: RepoLayout, tree: string): Promise<void> {
  await rm(treeFile(layout, tree), { force: true });
}

/** Per tree: its bytes, and the bytes whose content an earlier tree (or an earlier file of it) already holds. */
export interface TreeDedup { tree: string; files: number; bytes: number; newBytes: number; savedBytes: number }

/**
 * Deduplication over trees in publish order: a file's bytes count as new the first time its content key
 * is seen, as saved every later time (the store keeps one copy). Totals are over distinct trees.
 */
export function dedupOf(trees: { tree: string; stats: TreeStats }[]): { perTree: TreeDedup[]; bytes: number; newBytes: number; savedBytes: number } {
  const seen = new Set<string>();
  const perTree: TreeDedup[] = [];
  let bytes = 0, fresh = 0;
  for (const { tree, stats } of trees) {
    let n = 0;
    for (const [key, size] of stats.contents) {
      // A file of unknown content is its own copy (its path names no content).
      if (!key.startsWith('path:') && seen.has(key)) continue;
      seen.add(key);
      n += size;
    }
    perTree.push({ tree, files: stats.files, bytes: stats.bytes, newBytes: n, savedBytes: stats.bytes - n });
    bytes += stats.bytes;
    fresh += n;
  }
  return { perTree, bytes, newBytes: fresh, savedBytes: bytes - fresh };
}
