// The streaming publisher's first pass over a source directory: one lstat walk that keeps, per
// DIRECTORY only, a digest of its own metadata and its children's (names, types, modes, owners, sizes,
// mtimes, link targets, devices, hard-link groups, xattrs), its subdirectories and its count of other
// entries. Memory grows with the number of directories, never with files (the listings it also keeps
// for the second pass are bounded by listing-cache.ts's budget). From it come the catalog plan
// (markers, dirtab, autocatalog weights) and each catalog's fingerprint, which says whether the previous
// revision's catalog at the same mountpoint can be kept without reading its rows.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GridboxError, q } from '../errors.js';
import { parentPath, type Entry } from '../fstree/entry.js';
import { describeEntry, listDirectory, type WalkedEntry } from '../fstree/walk.js';
import type { PlanTree } from './catalog-plan.js';
import { ListingCache } from './listing-cache.js';
import { toRepoPath } from './tree.js';

export interface DirNode {
  /** Repository path ("" root, "/a/b"). */
  path: string;
  /** Digest of the directory's own entry and its children's metadata (base64), xattrs folded in. */
  hash: string;
  /** dirDigest() as walked (without xattrs): the second pass checks that it sees the same directory. */
  walkHash: string;
  /** Children that are not directories (each weighs 1 in the catalog plan). */
  leaves: number;
  /** Regular files among them. */
  files: number;
  /** Subdirectories, in catalog (name) order. */
  dirs: DirNode[];
  /** Holds a `.cvmfscatalog` file. */
  marker: boolean;
}

export interface SourceSummary {
  root: DirNode;
  rootEntry: Entry;
  byPath: Map<string, DirNode>;
  files: number;
  bytes: number;
  /** Text of a `.cvmfsdirtab` at the top of the source. */
  dirtab?: string;
  /** Listings kept for the second pass, by repository path (as many as its budget allows). */
  listings: ListingCache;
}

/** One child's share of its directory's digest: everything a catalog row takes from the walk. */
function metaKey(name: string, e: Entry, group: number): string {
  return `${name}\0${e.type}\0${e.mode}\0${e.uid}\0${e.gid}\0${e.size}\0${e.mtime}\0${e.mtimeNs ?? 0}\0${e.target ?? ''}\0${e.rdev ?? 0}\0${group}\n`;
}

/** Digest of a directory's own entry and its listing: everything its rows take from the walk but xattrs. */
export function dirDigest(self: Entry, kids: readonly WalkedEntry[]): string {
  const h = createHash('sha256');
  h.update(metaKey('.', self, 0));
  let groups: Map<string, number> | undefined;
  for (const k of kids) {
    const e = k.entry;
    let g = 0;
    if (e.hardlinkKey !== undefined) {
      groups ??= new Map();
      g = groups.get(e.hardlinkKey) ?? groups.size + 1;
      groups.set(e.hardlinkKey, g);
    }
    h.update(metaKey(e.path.slice(e.path.lastIndexOf('/') + 1), e, g));
  }
  return h.digest('base64');
}

/**
 * Walks `sourceDir` (absolute) once, keeping listings in `listings` while they fit. Throws
 * PUBLISH_SOURCE when its root is not a directory or cannot be read.
 */
export function summarizeSource(sourceDir: string, fqrn: string, listings = new ListingCache()): SourceSummary {
  const { entry: rootEntry } = describeEntry('', sourceDir);
  if (rootEntry.type !== 'dir') throw new GridboxError('PUBLISH_SOURCE', `Cannot publish ${q(fqrn)}: the source root is not a directory`, { path: sourceDir });
  const byPath = new Map<string, DirNode>();
  const s: Omit<SourceSummary, 'root'> = { rootEntry, byPath, files: 0, bytes: 0, listings };
  // Describes one directory; returns its subdirectories still to visit (the listing is kept if it fits).
  const describe = (node: DirNode, self: Entry, abs: string, rel: string): WalkedEntry[] => {
    const kids = listDirectory(abs, rel);
    node.hash = node.walkHash = dirDigest(self, kids);
    listings.keep(node.path, abs, kids);
    const sub: WalkedEntry[] = [];
    for (const k of kids) {
      const e = k.entry;
      if (e.type === 'dir') { sub.push(k); continue; }
      node.leaves++;
      if (e.type !== 'file') continue;
      node.files++;
      s.files++;
      s.bytes += e.size;
      const name = e.path.slice(e.path.lastIndexOf('/') + 1);
      if (name === '.cvmfscatalog') node.marker = true;
      if (rel === '' && name === '.cvmfsdirtab') {
        try { s.dirtab = readFileSync(k.sourcePath, 'utf8'); } catch (err) { throw new GridboxError('PUBLISH_SOURCE', `Cannot read ${q(k.sourcePath)}`, { path: k.sourcePath, cause: err }); }
      }
    }
    return sub;
  };
  const visit = (self: Entry, abs: string): DirNode => {
    const node: DirNode = { path: toRepoPath(self.path), hash: '', walkHash: '', leaves: 0, files: 0, dirs: [], marker: false };
    byPath.set(node.path, node);
    for (const k of describe(node, self, abs, self.path)) node.dirs.push(visit(k.entry, k.sourcePath));
    return node;
  };
  const root = visit(rootEntry, sourceDir);
  return { ...s, root };
}

/**
 * Folds extended attributes (getfattr's report, by absolute path) into the digests of the directories
 * that list those entries, in path order so the result does not depend on the report's order.
 */
export function foldXattrs(s: SourceSummary, sourceDir: string, xattrs: ReadonlyMap<string, Record<string, Buffer>>): void {
  const found: [string, string][] = [];
  for (const [abs, attrs] of xattrs) {
    const rel = abs === sourceDir ? '' : abs.startsWith(`${sourceDir}/`) ? abs.slice(sourceDir.length + 1) : undefined;
    if (rel === undefined) continue;
    let x = '';
    for (const k of Object.keys(attrs).sort()) x += `${k}=${attrs[k].toString('hex')},`;
    found.push([rel, x]);
  }
  found.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [rel, x] of found) {
    const node = s.byPath.get(toRepoPath(rel === '' ? '' : parentPath(rel)));
    if (node === undefined) continue;
    node.hash = createHash('sha256').update(`${node.hash}\0${rel}\0${x}`).digest('base64');
  }
}

/** The summary as the catalog planner's tree (directories only, other children counted). */
export function planTreeOf(s: SourceSummary): PlanTree {
  const kids = new Map<string, string[]>();
  return {
    isDir: (p) => s.byPath.has(p),
    children: (p) => {
      let k = kids.get(p);
      if (k === undefined) kids.set(p, (k = s.byPath.get(p)?.dirs.map((d) => d.path) ?? []));
      return k;
    },
    leafCount: (p) => s.byPath.get(p)?.leaves ?? 0,
  };
}

export interface CatalogShape {
  /** Digest of everything the catalog's rows are made of: its directories' digests, its child mountpoints', the settings. */
  fingerprint: string;
  /** Direct child catalogs' mountpoints. */
  children: string[];
}

/** Every planned catalog's fingerprint and children. */
export function catalogShapes(s: SourceSummary, mounts: ReadonlySet<string>, settingsKey: string): Map<string, CatalogShape> {
  const out = new Map<string, CatalogShape>();
  for (const m of mounts) {
    const node = s.byPath.get(m);
    if (node === undefined) continue;
    const h = createHash('sha256').update(`${settingsKey}\0${m}\n`);
    const children: string[] = [];
    const stack = [node];
    while (stack.length > 0) {
      const d = stack.pop()!;
      h.update(`D${d.path}\0${d.hash}\n`);
      for (let i = d.dirs.length - 1; i >= 0; i--) {
        const c = d.dirs[i];
        if (mounts.has(c.path)) { h.update(`N${c.path}\0${c.hash}\n`); children.push(c.path); } else stack.push(c);
      }
    }
    out.set(m, { fingerprint: h.digest('base64'), children });
  }
  return out;
}
