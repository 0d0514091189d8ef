// One revision's catalog tree: the root catalog plus nested catalogs loaded lazily when a path reaches
// their mountpoint (component-wise, spec §4.7), path lookup following symlinks inside the repository
// (resolve-path.ts: lstat-like by default, stat-like with `follow`), listings without hidden entries, inode
// numbers (§4.11: root 256, one inode per hardlink group per catalog) and statfs counters.
// Fetching and verifying catalogs is the loader's job (repository.ts); this file never does I/O itself.
import { GridboxError, q } from '../errors.js';
import { COUNTER_NAMES, type CatalogEntry, type ChunkRef, type Counters, type NestedCatalogRef } from '../catalog/types.js';
import { fullMode } from '../fstree/entry.js';
import type { CatalogFile } from './ports.js';
import { resolvePath, type ResolveOptions } from './resolve-path.js';

export type { ResolveOptions } from './resolve-path.js';

/** CVMFS's kInodeOffset: the root gets 256. */
export const ROOT_INODE = 256;

/** Attributes as stat(2) shows them. */
export interface NodeAttr {
  ino: number;
  /** Full st_mode, type bits included. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  mtimeNs: number;
  rdev: number;
}

/** A resolved path: its catalog row, attributes and the catalog it came from. */
export interface ClientNode {
  /** Repository-absolute path: "" for the root, "/a/b" otherwise. */
  path: string;
  name: string;
  entry: CatalogEntry;
  attr: NodeAttr;
  /** Mountpoint of the catalog holding the row ("" for the root catalog). */
  catalog: string;
}

export interface StatfsInfo {
  /** Sum of regular file sizes over the whole tree. */
  bytes: number;
  /** Number of entries (files, links, specials, directories) over the whole tree. */
  files: number;
  counters: Counters;
}

/** Loads (fetches, verifies, opens) the catalog a nested_catalogs row names. */
export type NestedCatalogLoader = (ref: NestedCatalogRef) => Promise<CatalogFile>;

interface Loaded {
  mountpoint: string;
  file: CatalogFile;
  nested: NestedCatalogRef[];
  children: Map<string, Promise<Loaded>>;
}

/** Nested catalogs to descend into; bind mountpoints (snapshot views) are not followed. */
function attachable(file: CatalogFile): NestedCatalogRef[] {
  return file.nested().filter((n) => !n.bind);
}

/** "/a/b/", "a/b", "/" → "/a/b", "" (the spec's path form); ".." is refused. */
export function normalizeRepoPath(path: string): string {
  const parts: string[] = [];
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') throw new GridboxError('USAGE', `Path ${q(path)} leaves the repository`);
    parts.push(p);
  }
  return parts.length === 0 ? '' : '/' + parts.join('/');
}

/** True when `path` equals `prefix` or lies below it, component-wise ("/a/bc" is not below "/a/b"). */
export function isPathWithin(path: string, prefix: string): boolean {
  return prefix === '' || path === prefix || path.startsWith(prefix + '/');
}

/** Allocates inode numbers; shared across revisions so a new tree never reuses a number of an old one. */
export class InodeAllocator {
  private next: number;
  constructor(first = ROOT_INODE + 1) { this.next = first; }
  take(): number { return this.next++; }
}

export class CatalogTree {
  private readonly root: Loaded;
  private readonly inodes = new Map<string, number>();
  private closed = false;

  /** `fqrn`: absolute symlink targets under "/cvmfs/<fqrn>/" resolve from the repository root. */
  constructor(rootFile: CatalogFile, private readonly loadNested: NestedCatalogLoader, private readonly alloc = new InodeAllocator(), private readonly options: { fqrn?: string } = {}) {
    this.root = { mountpoint: '', file: rootFile, nested: attachable(rootFile), children: new Map() };
    this.inodes.set('p:', ROOT_INODE);
  }

  /** The root catalog's properties (revision, TTL). */
  get rootFile(): CatalogFile { return this.root.file; }

  /** The deepest loaded-or-loadable catalog responsible for `path` (loads nested catalogs on the way). */
  private async catalogFor(path: string): Promise<Loaded> {
    let cur = this.root;
    for (;;) {
      const ref = cur.nested.find((n) => isPathWithin(path, n.path));
      if (ref === undefined) return cur;
      let child = cur.children.get(ref.path);
      if (child === undefined) {
        // Concurrent lookups below one mountpoint share one load.
        child = this.loadNested(ref).then((file) => ({ mountpoint: ref.path, file, nested: attachable(file), children: new Map() }));
        cur.children.set(ref.path, child);
        child.catch(() => cur.children.delete(ref.path));
      }
      cur = await child;
    }
  }

  /** The row at exactly `path` ("" or "/a/b"), no symlink followed. */
  private async exact(p: string): Promise<ClientNode | undefined> {
    const cat = await this.catalogFor(p);
    const entry = cat.file.lookup(p);
    return entry === undefined ? undefined : this.nodeOf(p, entry, cat.mountpoint);
  }

  /**
   * The node at `path`, or undefined when nothing is there. Symlinks on the way are followed inside the
   * repository; the last component only with `follow` or a trailing "/" (else the link itself, as lstat).
   * ELOOP past MAX_SYMLINK_HOPS links.
   */
  async lookup(path: string, opts?: ResolveOptions): Promise<ClientNode | undefined> {
    this.assertOpen();
    return resolvePath(path, (p) => this.exact(p), { ...opts, fqrn: this.options.fqrn });
  }

  /** Like lookup, but NOT_FOUND when absent. */
  async stat(path: string, opts?: ResolveOptions): Promise<ClientNode> {
    const node = await this.lookup(path, opts);
    if (node === undefined) throw new GridboxError('NOT_FOUND', `No such file or directory: ${q(path || '/')}`, { path });
    return node;
  }

  /** The visible children of directory `path` (a symlink to one is followed, as opendir), sorted by name (hidden entries skipped). */
  async listing(path: string): Promise<ClientNode[]> {
    this.assertOpen();
    const dir = await this.stat(path, { follow: true });
    if (dir.entry.entry.type !== 'dir') throw new GridboxError('USAGE', `Not a directory: ${q(dir.path || '/')}`, { path: dir.path });
    // A mountpoint's children live in the nested catalog (catalogFor descends into it).
    const cat = await this.catalogFor(dir.path);
    const rows = cat.file.listing(dir.path).filter((e) => !e.hidden);
    const nodes = rows.map((e) => this.nodeOf(e.path, e, cat.mountpoint));
    return nodes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async readlink(path: string): Promise<string> {
    const node = await this.stat(path);
    if (node.entry.entry.type !== 'symlink') throw new GridboxError('USAGE', `Not a symbolic link: ${q(node.path)}`, { path: node.path });
    return node.entry.entry.target ?? '';
  }

  /** The entry's own extended attributes (the virtual user.* ones are added by the client). */
  async xattrs(path: string): Promise<Record<string, Buffer>> {
    const node = await this.stat(path);
    return { ...(node.entry.entry.xattrs ?? {}) };
  }

  /** Chunks of a chunked file in offset order, or undefined for a whole-file object. */
  async chunks(path: string): Promise<ChunkRef[] | undefined> {
    return (await this.stat(path)).entry.chunks;
  }

  /** Totals over the whole tree from the root catalog's self_ + subtree_ counters (§4.9). */
  statfs(): StatfsInfo {
    // subtree_ excludes the catalog's own rows (catalog/types.ts), so the total is self + subtree.
    const { self, subtree } = this.root.file.counters();
    const counters = Object.fromEntries(COUNTER_NAMES.map((n) => [n, (self[n] ?? 0) + (subtree[n] ?? 0)])) as Counters;
    return {
      bytes: counters.file_size,
      files: counters.regular + counters.symlink + counters.special + counters.dir,
      counters,
    };
  }

  /** Closes every loaded catalog; open file handles do not depend on catalogs and stay readable. */
  async close(): Promise<Loaded[]> {
    if (this.closed) return [];
    this.closed = true;
    const all: Loaded[] = [];
    const visit = async (l: Loaded): Promise<void> => {
      all.push(l);
      for (const c of l.children.values()) {
        try { await visit(await c); } catch { /* a failed load left nothing open */ }
      }
    };
    await visit(this.root);
    for (const l of all) l.file.close();
    return all;
  }

  private assertOpen(): void {
    if (this.closed) throw new GridboxError('INTERNAL', 'The catalog tree of a replaced revision was used after close');
  }

  private inodeFor(path: string, entry: CatalogEntry, catalog: string): number {
    // Hardlink groups are numbered per catalog; every member shares the first member's inode.
    const key = entry.hardlinkGroup > 0 && entry.entry.type !== 'dir' ? `g:${catalog}:${entry.hardlinkGroup}` : `p:${path}`;
    let ino = this.inodes.get(key);
    if (ino === undefined) {
      ino = this.alloc.take();
      this.inodes.set(key, ino);
    }
    return ino;
  }

  private nodeOf(path: string, entry: CatalogEntry, catalog: string): ClientNode {
    const e = entry.entry;
    const attr: NodeAttr = {
      ino: this.inodeFor(path, entry, catalog),
      mode: fullMode(e),
      nlink: entry.linkcount > 0 ? entry.linkcount : 1,
      uid: e.uid,
      gid: e.gid,
      size: e.size,
      mtime: e.mtime,
      mtimeNs: e.mtimeNs,
      rdev: e.rdev ?? 0,
    };
    return { path, name: path.slice(path.lastIndexOf('/') + 1), entry, attr, catalog };
  }
}
