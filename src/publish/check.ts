// `check`: verifies a repository as a client would and more — whitelist and manifest signatures, every
// catalog's hash and recorded size, its statistics counters recomputed from its rows, and every data
// object's hash and inflated size. Read-only; reports all problems, then fails with CHECK_FAILED.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { GridboxError, describeError, q } from '../errors.js';
import { COUNTER_NAMES, type CatalogEntry, type Counters } from '../catalog/types.js';
import { formatObjectId, objectKey } from '../hash/object-id.js';
import { verifyRepositoryTrust } from '../manifest/trust.js';
import { FsStore } from '../store/fs-store.js';
import { readObject } from '../store/object-io.js';
import { listStoredTags } from './history-update.js';
import { readHead } from './head.js';
import type { RepoLayout } from './repo-layout.js';
import { forEachCatalog } from './revision-load.js';

export interface CheckReport {
  revision: number;
  catalogs: number;
  objects: number;
  bytes: number;
  problems: string[];
}

function selfCounters(rows: CatalogEntry[], nested: number): Counters {
  const c = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Counters;
  for (const r of rows) {
    const e = r.entry;
    if (e.type === 'file') {
      c.regular++;
      c.file_size += e.size;
      if (r.chunks && r.chunks.length > 0) { c.chunked++; c.chunked_size += e.size; c.chunks += r.chunks.length; }
      if (r.external) { c.external++; c.external_file_size += e.size; }
    } else if (e.type === 'symlink') c.symlink++;
    else if (e.type === 'dir') c.dir++;
    else c.special++;
    if (e.xattrs && Object.keys(e.xattrs).length > 0) c.xattr++;
  }
  c.nested = nested;
  return c;
}

/** Checks the current revision and every tagged one. `deep` false skips reading data objects. */
export async function checkRepository(layout: RepoLayout, opts: { deep?: boolean; log?: (l: string) => void } = {}): Promise<CheckReport> {
  const store = new FsStore(layout.srv);
  const head = await readHead(layout);
  const report: CheckReport = { revision: head.revision, catalogs: 0, objects: 0, bytes: 0, problems: [] };
  const problem = (p: string) => { report.problems.push(p); opts.log?.(`problem: ${p}`); };
  const tmpDir = await mkdtemp(join(layout.state, 'check-'));
  try {
    try {
      if (head.certId === undefined) throw new GridboxError('MANIFEST_INVALID', 'manifest has no certificate (X)');
      const certPem = await readObject(store, head.certId, 'X', { compression: 'zlib' });
      verifyRepositoryTrust({
        fqrn: layout.fqrn, manifestBytes: await readFile(layout.manifest), whitelistBytes: await readFile(layout.whitelist),
        certPem, masterPublicKeysPem: [await readFile(layout.masterPub)], now: new Date(),
      });
    } catch (e) {
      problem(`signatures: ${describeError(e)}`);
    }
    const roots = new Map<string, { id: typeof head.rootId; size: number }>([[formatObjectId(head.rootId), { id: head.rootId, size: head.rootSize }]]);
    try {
      for (const t of await listStoredTags(store, head.historyId, tmpDir)) roots.set(formatObjectId(t.id), { id: t.id, size: t.size });
    } catch (e) {
      problem(`history ${head.historyId ? q(formatObjectId(head.historyId)) : ''}: ${describeError(e)}`);
    }
    const seenCatalogs = new Set<string>();
    const seenObjects = new Set<string>();
    for (const root of roots.values()) {
      const expected = new Map<string, { size: number; counters?: Counters }>([['', { size: root.size }]]);
      try {
        await forEachCatalog(store, root.id, tmpDir, async (mount, id, size, rows, nested, info) => {
          const key = objectKey(id, 'C');
          const exp = expected.get(mount);
          if (exp !== undefined && exp.size !== 0 && exp.size !== size) problem(`catalog ${q(key)} at ${q(mount || '/')}: recorded size ${exp.size}, actual ${size}`);
          for (const n of nested) expected.set(n.path, { size: n.size });
          if (seenCatalogs.has(key)) return;
          seenCatalogs.add(key);
          report.catalogs++;
          const self = selfCounters(rows, nested.length);
          for (const n of COUNTER_NAMES) if (info.counters.self[n] !== self[n]) problem(`catalog ${q(key)}: counter self_${n} is ${info.counters.self[n]}, rows say ${self[n]}`);
          if (opts.deep === false) return;
          for (const r of rows) {
            if (r.entry.type !== 'file' || r.external) continue;
            const pieces = r.chunks !== undefined && r.chunks.length > 0
              ? r.chunks.map((c) => ({ id: c.id, suffix: 'P' as const, size: c.size }))
              : r.id !== undefined ? [{ id: r.id, suffix: '' as const, size: r.entry.size }] : [];
            if (pieces.length === 0) problem(`${q(r.path)}: regular file without content hash`);
            for (const p of pieces) {
              const k = objectKey(p.id, p.suffix);
              if (seenObjects.has(k)) continue;
              seenObjects.add(k);
              try {
                await readObject(store, p.id, p.suffix, { compression: r.compression, expectedSize: p.size });
                report.objects++;
                report.bytes += p.size;
              } catch (e) {
                problem(`${q(r.path)}: ${describeError(e)}`);
              }
            }
          }
        });
      } catch (e) {
        problem(`catalogs of root ${q(formatObjectId(root.id))}: ${describeError(e)}`);
      }
    }
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
  if (report.problems.length > 0) {
    throw new GridboxError('CHECK_FAILED', `Check of ${q(layout.fqrn)} found ${report.problems.length} problem(s); first: ${report.problems[0]}`, { problems: report.problems });
  }
  return report;
}
