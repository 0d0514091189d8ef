// Turns a RevisionTree plus a mountpoint plan into stored catalogs, deepest first, so each parent can
// list its children's hashes (spec §4.7, §10.1 step 4). A catalog whose rows and children equal the
// previous revision's catalog at the same mountpoint is not rewritten: it keeps its old hash.
import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { restampCatalog } from '../catalog/catalog-restamp.js';
import { join } from 'node:path';
import { writeCatalog, type CatalogWriteProperties } from '../catalog/catalog-writer.js';
import type { CatalogCounters, CatalogEntry, NestedCatalogRef } from '../catalog/types.js';
import type { HashAlgorithm, ObjectId } from '../hash/object-id.js';
import { formatObjectId } from '../hash/object-id.js';
import type { ObjectStore } from '../store/object-store.js';
import { writeObject } from '../store/object-io.js';
import { catalogOf } from './catalog-plan.js';
import type { RevisionTree } from './tree.js';

/** What the previous revision had at one mountpoint. */
export interface OldCatalog {
  id: ObjectId;
  size: number;
  revision: number;
  counters: CatalogCounters;
  /** canonicalDigest() of its rows and nested refs. */
  digest: string;
  /** The rows, nested refs and SQLite file as loaded (kept for the root): an unchanged root is copied. */
  loaded?: { rows: readonly CatalogEntry[]; nested: readonly NestedCatalogRef[]; sqlite: Uint8Array };
}

export interface BuiltCatalog {
  path: string;
  id: ObjectId;
  size: number;
  counters: CatalogCounters;
  revision: number;
  reused: boolean;
}

export interface BuildOptions {
  store: ObjectStore;
  algorithm: HashAlgorithm;
  /** Scratch directory for SQLite files (not served). */
  tmpDir: string;
  /** Repository revision = root catalog revision. */
  revision: number;
  ttl: number;
  now: number;
  old: ReadonlyMap<string, OldCatalog>;
  /** Called after each catalog is stored (crash-point injection in tests). */
  onCatalog?: (c: BuiltCatalog) => void;
}

/** Rows of the catalog mounted at `mount`, root entry first, then depth-first in name order. */
export function catalogRows(tree: RevisionTree, mount: string, mounts: ReadonlySet<string>): CatalogEntry[] {
  const rows: CatalogEntry[] = [];
  const groups = new Map<string, CatalogEntry[]>();
  const row = (path: string, asMountpoint: boolean): CatalogEntry => {
    const item = tree.get(path)!;
    const e = item.entry;
    const ce: CatalogEntry = {
      path, entry: e, compression: item.content?.compression ?? 'zlib', hardlinkGroup: 0, linkcount: 1,
    };
    if (item.content?.id !== undefined) ce.id = item.content.id;
    if (item.content?.chunks !== undefined) ce.chunks = item.content.chunks;
    if (e.type === 'dir') ce.linkcount = 2 + tree.children(path).filter((c) => tree.isDir(c)).length;
    if (asMountpoint) ce.nestedMountpoint = true;
    if (path === mount && mount !== '') ce.nestedRoot = true;
    if (item.hidden) ce.hidden = true;
    if (item.external) ce.external = true;
    if (item.directIo) ce.directIo = true;
    if (e.type === 'file' && e.hardlinkKey !== undefined) {
      let g = groups.get(e.hardlinkKey);
      if (g === undefined) groups.set(e.hardlinkKey, (g = []));
      g.push(ce);
    }
    return ce;
  };
  const visit = (path: string): void => {
    for (const c of tree.children(path)) {
      if (mounts.has(c)) { rows.push(row(c, true)); continue; }
      rows.push(row(c, false));
      if (tree.isDir(c)) visit(c);
    }
  };
  rows.push(row(mount, false));
  visit(mount);
  // Groups are numbered from 1 in first-seen order, per catalog (§4.5); a lone member is no hard link.
  let next = 1;
  for (const members of groups.values()) {
    if (members.length < 2) continue;
    const g = next++;
    for (const m of members) { m.hardlinkGroup = g; m.linkcount = members.length; }
  }
  return rows;
}

/** A stable digest of what a catalog says (rows and children), independent of revision and timestamps. */
export function canonicalDigest(rows: Iterable<CatalogEntry>, nested: readonly { path: string; id: ObjectId }[]): string {
  const h = createHash('sha256');
  for (const r of rows) {
    const e = r.entry;
    const xattrs = e.xattrs === undefined ? '' : Object.keys(e.xattrs).sort().map((k) => `${k}=${e.xattrs![k].toString('hex')}`).join(',');
    h.update(JSON.stringify([
      r.path, e.type, e.mode & 0o7777, e.uid, e.gid, e.type === 'file' || e.type === 'symlink' ? e.size : 0, e.mtime, e.mtimeNs ?? 0,
      e.target ?? '', e.type === 'chardev' || e.type === 'blockdev' ? e.rdev ?? 0 : 0, xattrs,
      r.id === undefined ? '' : formatObjectId(r.id), e.type === 'file' ? r.compression : '',
      (r.chunks ?? []).map((c) => `${c.offset}:${c.size}:${formatObjectId(c.id)}`).join(','),
      r.hardlinkGroup, r.linkcount, !!r.nestedMountpoint, !!r.nestedRoot, !!r.hidden, !!r.external, !!r.directIo,
    ]));
    h.update('\n');
  }
  for (const n of [...nested].sort((a, b) => (a.path < b.path ? -1 : 1))) h.update(`N${n.path}=${formatObjectId(n.id)}\n`);
  return h.digest('hex');
}

/** Builds and stores every catalog, deepest first; returns them by mountpoint, the root last. */
export async function buildCatalogs(tree: RevisionTree, mountList: readonly string[], opts: BuildOptions): Promise<Map<string, BuiltCatalog>> {
  const mounts = new Set(mountList);
  const built = new Map<string, BuiltCatalog>();
  const childrenOf = new Map<string, string[]>();
  for (const m of mountList) {
    if (m === '') continue;
    const parent = catalogOf(m.slice(0, m.lastIndexOf('/')), mounts);
    let k = childrenOf.get(parent);
    if (k === undefined) childrenOf.set(parent, (k = []));
    k.push(m);
  }
  // Deepest first: a longer path never contains a shorter one's parent catalog.
  const order = [...mountList].sort((a, b) => b.split('/').length - a.split('/').length || (a < b ? -1 : 1));
  for (const m of order) {
    const rows = catalogRows(tree, m, mounts);
    const nested: NestedCatalogRef[] = (childrenOf.get(m) ?? []).sort().map((c) => {
      const b = built.get(c)!;
      return { path: c, id: b.id, size: b.size, counters: b.counters };
    });
    const old = opts.old.get(m);
    if (m !== '' && old !== undefined && old.digest === canonicalDigest(rows, nested)) {
      const b: BuiltCatalog = { path: m, id: old.id, size: old.size, counters: old.counters, revision: old.revision, reused: true };
      built.set(m, b);
      continue;
    }
    const revision = m === '' ? opts.revision : (old?.revision ?? 0) + 1;
    const file = join(opts.tmpDir, `catalog-${built.size}.sqlite`);
    try {
      const properties: CatalogWriteProperties = {
        revision, lastModified: opts.now,
        ...(old !== undefined ? { previousRevision: formatObjectId(old.id) } : {}),
        ...(m !== '' ? { rootPrefix: m } : { ttl: opts.ttl }),
      };
      let counters: CatalogCounters;
      if (old?.loaded !== undefined && sameRows(rows, old.loaded.rows) && sameNested(nested, old.loaded.nested)) {
        // Same rows and children (an unchanged republish's root): the old file with new properties
        // instead of inserting every row again. Counters depend only on rows and children.
        await writeFile(file, old.loaded.sqlite);
        restampCatalog(file, properties);
        counters = old.counters;
      } else {
        counters = writeCatalog(file, { properties, entries: rows, nested }).counters;
      }
      const bytes = await readFile(file);
      const w = await writeObject(opts.store, bytes, { algorithm: opts.algorithm, suffix: 'C', compression: 'zlib' });
      const b: BuiltCatalog = { path: m, id: w.id, size: bytes.length, counters, revision, reused: false };
      built.set(m, b);
      opts.onCatalog?.(b);
    } finally {
      await rm(file, { force: true });
      await rm(`${file}-journal`, { force: true });
    }
  }
  return built;
}


const sameId = (a: ObjectId | undefined, b: ObjectId | undefined): boolean =>
  a === undefined ? b === undefined : b !== undefined && a.algorithm === b.algorithm && a.hex === b.hex;

function sameXattrs(a: Record<string, Buffer> | undefined, b: Record<string, Buffer> | undefined): boolean {
  const ka = a === undefined ? [] : Object.keys(a);
  const kb = b === undefined ? [] : Object.keys(b);
  return ka.length === kb.length && ka.every((k) => b![k] !== undefined && a![k].equals(b![k]));
}

/** Row equality with canonicalDigest()'s normalization, as a direct comparison (no hashing). */
export function sameRows(a: readonly CatalogEntry[], b: readonly CatalogEntry[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i], e = x.entry, f = y.entry;
    const sized = e.type === 'file' || e.type === 'symlink';
    const dev = e.type === 'chardev' || e.type === 'blockdev';
    if (x.path !== y.path || e.type !== f.type || (e.mode & 0o7777) !== (f.mode & 0o7777) || e.uid !== f.uid || e.gid !== f.gid ||
      (sized && e.size !== f.size) || e.mtime !== f.mtime || (e.mtimeNs ?? 0) !== (f.mtimeNs ?? 0) || (e.target ?? '') !== (f.target ?? '') ||
      (dev && (e.rdev ?? 0) !== (f.rdev ?? 0)) || !sameId(x.id, y.id) || (e.type === 'file' && x.compression !== y.compression) ||
      x.hardlinkGroup !== y.hardlinkGroup || x.linkcount !== y.linkcount || !!x.nestedMountpoint !== !!y.nestedMountpoint ||
      !!x.nestedRoot !== !!y.nestedRoot || !!x.hidden !== !!y.hidden || !!x.external !== !!y.external || !!x.directIo !== !!y.directIo ||
      !sameXattrs(e.xattrs, f.xattrs)) return false;
    const cx = x.chunks ?? [], cy = y.chunks ?? [];
    if (cx.length !== cy.length) return false;
    for (let j = 0; j < cx.length; j++) if (cx[j].offset !== cy[j].offset || cx[j].size !== cy[j].size || !sameId(cx[j].id, cy[j].id)) return false;
  }
  return true;
}

function sameNested(a: readonly NestedCatalogRef[], b: readonly NestedCatalogRef[]): boolean {
  if (a.length !== b.length) return false;
  const byPath = new Map(b.map((n) => [n.path, n]));
  return a.every((n) => { const o = byPath.get(n.path); return o !== undefined && sameId(n.id, o.id) && n.size === o.size; });
}
