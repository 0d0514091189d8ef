// The filesystem view of a mounted repository: FuseOps over a Client. It maps kernel nodeids to client
// paths with nlookup counting, keeps per-node attributes immutable (so the kernel may cache them long),
// and carries nodes across revision switches only when their content is identical.
// Not the kernel protocol (fuse/) and not fetching or verifying (client/).
import { constants as osConstants } from 'node:os';
import { GridboxError, isGridboxError, q } from '../errors.js';
import { formatObjectId } from '../hash/object-id.js';
import type { Client, ClientNode } from '../client/index.js';
import type { Attr, AttrOut, DirEntry, DirEntryPlus, EntryOut, OpenOut, Statfs } from '../fuse/protocol.js';
import { direntPlusSize, direntSize, FUSE_ROOT_ID } from '../fuse/protocol.js';
import type { PassthroughPort } from '../fuse/passthrough.js';
import type { FastReadPort } from '../fuse/fast-read.js';
import type { FuseOps, RequestContext } from '../fuse/session.js';
import type { StartProfiler } from './start-profile.js';
import { firstChunkAt } from '../client/fetcher.js';

const { ENODATA, ESTALE, ENOTDIR, EINVAL, ENOSYS } = osConstants.errno;

/** Attributes of a nodeid never change (a changed entry gets a new nodeid), so the kernel may keep them a day. */
export const IMMUTABLE_ATTR_TTL_S = 86_400;
/** Entry (name → nodeid) TTL ceiling; the catalog TTL bounds it further since names change per revision. */
export const MAX_ENTRY_TTL_S = 3_600;
const S_IFMT = 0o170000, S_IFDIR = 0o040000;
const MAX_LISTINGS = 64;
/** Chunks of a chunked file fetched ahead of a READ's end, so a sequential reader rarely waits on the network. */
export const READAHEAD_CHUNKS = 2;

export interface RepositoryFsOptions {
  /** Failures that reach the application as EIO, with their cause. */
  log?: (line: string) => void;
  /** Extra virtual xattrs (e.g. user.pid of the serving process); computed on each request. */
  extraXattrs?: () => Record<string, string>;
  /** Warm the locally cached content of a directory's files when it is listed (default true). */
  prefetchListed?: boolean;
  /**
   * FUSE passthrough: whole files whose content sits in a local cache file are opened with that file as
   * the kernel's backing file, so their reads never reach this process. Absent or disabled: normal reads.
   */
  passthrough?: PassthroughPort;
  /** Told about every whole file opened: records start-ups per image and replays them (start-profile.ts). */
  profiler?: StartProfiler;
  /**
   * Without passthrough, answer OPEN with ENOSYS (the session must offer FUSE_NO_OPEN_SUPPORT): the kernel
   * then opens files without asking, keeps their page cache (FOPEN_KEEP_CACHE is the no-open default) and
   * sends READs with fh 0, so a warm open costs no round trip at all. Opens answered with a backing file
   * are unaffected until the passthrough port turns itself off.
   */
  openless?: boolean;
  /**
   * Openless only: the addon's answer to READs of registered nodes, from their cache files. Whole files
   * the cache holds are registered when the kernel learns their nodeid (LOOKUP, READDIRPLUS) or after a READ
   * here fetched them; what the addon read comes back through drainFastReads().
   */
  fastRead?: FastReadPort;
}

/** Counters for status and tests. */
export interface RepositoryFsStats {
  /** Nodeids the kernel holds (root included). */
  nodes: number;
  openFiles: number;
  openDirs: number;
  /** Errors answered as EIO since the mount. */
  ioErrors: number;
  /** Opens answered with a passthrough backing file (reads then bypass this process). */
  passthroughOpens: number;
  /** Revision switches seen while mounted. */
  revisionSwitches: number;
  /** READs the addon answered from cache files (they reach no handler here), and their bytes. */
  fastReads: number;
  fastReadBytes: number;
}

interface Node {
  nodeid: number;
  /** The first path this node was found at; any other path of a hardlink group reads the same content. */
  path: string;
  attr: Attr;
  /**
   * What makes two entries interchangeable (type, mode, size, owner, times, content hash, target), computed only
   * when a revision switch or a second path asks (`sigOf`): a traversal creates tens of thousands of nodes and
   * almost never compares one.
   */
  sig?: string;
  /** The client answer and revision the node was made from, for `sigOf`. */
  origin?: { cn: ClientNode; rev: number };
  target?: string;
  /** The client's answer for a regular file, opened without a second path resolution. */
  file?: ClientNode;
  nlookup: number;
  /** Client inode numbers mapped to this node: the first, and more only after revision switches. */
  ino: number;
  moreInos?: number[];
  /** Paths other than `path` the node was found at (hardlinks): rare, so absent until needed. */
  morePaths?: string[];
  /** Revision in which the node was last confirmed to match its path (directories: created). */
  revision: number;
  /** Registered passthrough backing file, shared by every open of the node until it is forgotten. */
  backingId?: number;
  /** Opens served the normal way: the kernel refuses passthrough on an inode with such opens (ETXTBSY). */
  cachedOpens?: number;
  /** Registered for fast READs (FastReadPort): its READs may never reach a handler here. */
  fast?: boolean;
  /**
   * One client handle shared by every open of the node (content never changes under a nodeid), kept a while
   * after the last release: a warm open then costs no file open, no cache lookup and no I/O at all.
   */
  shared?: { fh: number; users: number };
}

const COUNTER_XATTRS = new Set(['user.nopen', 'user.ndownload', 'user.nhits', 'user.rx', 'user.nioerr']);

/** Client handles kept open for nodes nobody has open (bounded: each may hold a file descriptor). */
export const IDLE_HANDLES_MAX = 512;

function signature(n: ClientNode, revision: number): string {
  const a = n.attr;
  const e = n.entry;
  const content = e.id !== undefined ? formatObjectId(e.id) : (e.chunks ?? []).map((c) => formatObjectId(c.id)).join(',');
  // Directories are never carried over: their listing may differ though their attributes do not.
  const dir = (a.mode & S_IFMT) === S_IFDIR ? `@${revision}` : '';
  return `${a.mode}:${a.size}:${a.uid}:${a.gid}:${a.nlink}:${a.rdev}:${a.mtime}.${a.mtimeNs}:${content}:${e.entry.target ?? ''}${dir}`;
}

/** The node's signature, made on first use. */
function sigOf(n: Node): string {
  if (n.sig === undefined) {
    n.sig = n.origin === undefined ? '' : signature(n.origin.cn, n.origin.rev);
    n.origin = undefined;
  }
  return n.sig;
}

function addIno(n: Node, ino: number): void {
  if (ino !== n.ino && !(n.moreInos?.includes(ino) ?? false)) (n.moreInos ??= []).push(ino);
}

function fuseAttr(n: ClientNode): Attr {
  const a = n.attr;
  const t = a.mtime + a.mtimeNs / 1e9;
  return { ino: a.ino, size: a.size, atime: t, mtime: t, ctime: t, mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid, rdev: a.rdev, blksize: 65536 };
}

/** FuseOps over `client`, plus counters. The client must stay open while the ops are served. */
export function createRepositoryFs(client: Client, opts: RepositoryFsOptions = {}): FuseOps & { stats(): RepositoryFsStats; drainFastReads(): void } {
  const nodes = new Map<number, Node>();
  const byIno = new Map<number, number>();
  const byPath = new Map<string, number>();
  /** Recent listings by nodeid: a READDIR continuation (offset > 0) pages through the same snapshot. */
  const listings = new Map<number, { revision: number; list: ClientNode[] }>();
  let nextNodeid = FUSE_ROOT_ID + 1;
  let openFiles = 0;
  let ioErrors = 0;
  let passthroughOpens = 0;
  let fastReads = 0, fastReadBytes = 0;
  const fr = opts.fastRead;
  /** Per open handle of a chunked file: the end of what was already asked for ahead of the reader. */
  const aheadUntil = new Map<number, number>();
  /** Open handles (shared client handles) by the node they belong to; `cached` marks normal-path opens. */
  const handleNodes = new Map<number, Node>();
  /** Nodes whose shared handle nobody uses, oldest first (closed beyond IDLE_HANDLES_MAX or at forget). */
  const idle = new Map<number, Node>();
  const dropShared = (n: Node): void => {
    const sh = n.shared;
    if (sh === undefined || sh.users > 0) return;
    n.shared = undefined;
    idle.delete(n.nodeid);
    handleNodes.delete(sh.fh);
    aheadUntil.delete(sh.fh);
    client.release(sh.fh).catch((e: unknown) => opts.log?.(`release of ${q(n.path || '/')} failed: ${describe(e)}`));
  };
  /** A handle on the node's content: the shared one, or a new client handle (which then becomes shared). */
  const acquire = async (n: Node): Promise<number> => {
    if (n.shared !== undefined) {
      n.shared.users++;
      idle.delete(n.nodeid);
      return n.shared.fh;
    }
    // The node's entry has the content its signature names (a changed entry would be another node).
    const fh = n.file !== undefined && client.openNode !== undefined ? await client.openNode(n.file) : await client.open(n.path);
    const raced = n.shared as Node['shared']; // set meanwhile by a concurrent open of the node
    if (raced !== undefined) {
      void client.release(fh).catch(() => undefined);
      raced.users++;
      idle.delete(n.nodeid);
      return raced.fh;
    }
    n.shared = { fh, users: 1 };
    handleNodes.set(fh, n);
    return fh;
  };
  const letGo = (n: Node): void => {
    const sh = n.shared;
    if (sh === undefined) return;
    sh.users--;
    if (sh.users > 0) return;
    if (!nodes.has(n.nodeid)) return dropShared(n);
    idle.set(n.nodeid, n);
    for (const old of idle.values()) {
      if (idle.size <= IDLE_HANDLES_MAX) break;
      dropShared(old);
    }
  };
  const pt = opts.passthrough;
  let revisionSwitches = 0;
  let seenRevision = client.revision();

  const root: Node = {
    nodeid: FUSE_ROOT_ID, path: '', attr: { ino: 256, size: 4096, atime: 0, mtime: 0, ctime: 0, mode: S_IFDIR | 0o755, nlink: 2, uid: 0, gid: 0 },
    sig: '', nlookup: 1, ino: 0, revision: seenRevision,
  };
  nodes.set(FUSE_ROOT_ID, root);

  /** The revision now served; notices switches (the client applies them on its own TTL check). */
  const revision = (): number => {
    const r = client.revision();
    if (r !== seenRevision) {
      opts.log?.(`${client.fqrn}: serving revision ${r} (was ${seenRevision}); entries expire within ${entryTtl()} s`);
      seenRevision = r;
      revisionSwitches++;
    }
    return r;
  };
  // Names may change with each revision: the kernel keeps them no longer than the catalog TTL. The fuse
  // layer has no NOTIFY_INVAL_ENTRY, so after a switch old names live on for at most one entry TTL;
  // nodes whose content changed answer ESTALE at once, which makes the kernel look the path up again.
  const entryTtl = (): number => Math.max(1, Math.min(MAX_ENTRY_TTL_S, Math.floor(client.ttlMs() / 1000)));

  const nodeOf = (nodeid: number): Node => {
    const n = nodes.get(nodeid);
    if (n === undefined) throw new GridboxError('INTERNAL', `Unknown nodeid ${nodeid}`);
    return n;
  };

  /** The node for a client answer: the same client inode, or an identical entry at the same path, or a new node. */
  const nodeFor = (cn: ClientNode, rev: number): Node => {
    const known = byIno.get(cn.attr.ino);
    if (known !== undefined) {
      const n = nodes.get(known);
      if (n !== undefined) {
        if (cn.path !== n.path && !(n.morePaths?.includes(cn.path) ?? false)) (n.morePaths ??= []).push(cn.path);
        byPath.set(cn.path, n.nodeid);
        return n;
      }
    }
    const prev = byPath.get(cn.path);
    const p = prev === undefined ? undefined : nodes.get(prev);
    if (p !== undefined && p.nodeid !== FUSE_ROOT_ID && sigOf(p) === signature(cn, rev)) {
      // Unchanged across a revision switch: same nodeid, so the kernel keeps its page cache.
      addIno(p, cn.attr.ino);
      p.revision = rev;
      byIno.set(cn.attr.ino, p.nodeid);
      return p;
    }
    const n: Node = {
      nodeid: nextNodeid++, path: cn.path, attr: fuseAttr(cn), origin: { cn, rev }, target: cn.entry.entry.target, nlookup: 0,
      file: cn.entry.entry.type === 'file' ? cn : undefined,
      ino: cn.attr.ino, revision: rev,
    };
    nodes.set(n.nodeid, n);
    byIno.set(cn.attr.ino, n.nodeid);
    byPath.set(cn.path, n.nodeid);
    return n;
  };

  /** Registers a whole file the cache holds for fast READs (once per node: its content never changes). */
  const offerFast = (n: Node): void => {
    if (fr === undefined || n.fast === true || n.file === undefined || client.cachedFile === undefined) return;
    const path = client.cachedFile(n.file);
    if (path === undefined) return;
    fr.set(n.nodeid, path, n.attr.size);
    n.fast = true;
  };
  /** Nodes read by fast READs: what a READ here would have told the profiler and the cache. */
  const readElsewhere = (read: Node[]): void => {
    const files: ClientNode[] = [];
    for (const n of read) {
      if (n.file === undefined) continue;
      files.push(n.file);
      opts.profiler?.onOpen(n.path, n.attr.size, n.file.catalog);
    }
    if (files.length > 0) client.noteCachedReads?.(files);
  };

  /** Collects what fast READs read since the last call: profiles, cache hits and LRU, counters. */
  const drainFastReads = (): void => {
    if (fr === undefined) return;
    const t = fr.take();
    fastReads = t.reads;
    fastReadBytes = t.bytes;
    const read: Node[] = [];
    for (const id of t.nodeids) {
      const n = nodes.get(id);
      if (n !== undefined) read.push(n);
    }
    readElsewhere(read);
  };

  const entryOf = (n: Node): EntryOut => {
    if (n.file !== undefined) offerFast(n);
    n.nlookup++;
    return { nodeid: n.nodeid, entryTtl: entryTtl(), attrTtl: IMMUTABLE_ATTR_TTL_S, attr: n.attr };
  };

  /**
   * The node's entry in the revision now served. A node from an older revision whose path now holds
   * something else is stale: ESTALE makes the kernel walk the path again and find the new entry.
   */
  const current = async (n: Node): Promise<ClientNode | undefined> => {
    const rev = revision();
    // Confirmed in this revision already: nothing to check (the common case, no catalog query).
    if (n.nodeid !== FUSE_ROOT_ID && n.revision === rev) return undefined;
    const cn = await client.lookup(n.path);
    if (n.nodeid === FUSE_ROOT_ID) {
      if (cn === undefined) throw new GridboxError('NOT_FOUND', 'The repository root is missing');
      return cn;
    }
    if (n.revision === rev && cn !== undefined) return cn;
    if (cn === undefined || signature(cn, rev) !== sigOf(n)) {
      if ((n.attr.mode & S_IFMT) === S_IFDIR && cn !== undefined && (cn.attr.mode & S_IFMT) === S_IFDIR) return cn;
      throw ESTALE;
    }
    n.revision = rev;
    addIno(n, cn.attr.ino);
    byIno.set(cn.attr.ino, n.nodeid);
    return cn;
  };

  const childPath = (parent: Node, name: string): string => `${parent.path}/${name}`;

  const listingOf = async (n: Node, offset: number): Promise<ClientNode[]> => {
    const rev = revision();
    const have = listings.get(n.nodeid);
    if (offset > 0 && have !== undefined && have.revision === rev) return have.list;
    const cn = await current(n);
    if (cn !== undefined && (cn.attr.mode & S_IFMT) !== S_IFDIR) throw ENOTDIR;
    const list = await guard('readdir', n.path, () => client.listing(n.path));
    // Whoever lists a directory often reads its files next (tar, cp -r, rsync): pull their cached
    // content into memory in parallel rather than one disk wait per file later.
    if (opts.prefetchListed !== false) client.prefetch?.(list);
    listings.delete(n.nodeid);
    listings.set(n.nodeid, { revision: rev, list });
    // A handful is enough: the kernel reads one directory from start to end, then caches it.
    if (listings.size > MAX_LISTINGS) listings.delete(listings.keys().next().value as number);
    return list;
  };

  /** Counts EIO answers and logs their cause; other errors pass through unchanged. */
  const guard = async <T>(what: string, path: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      if (isGridboxError(e) && e.code !== 'NOT_FOUND' && e.code !== 'USAGE') {
        ioErrors++;
        opts.log?.(`${what} ${q(path || '/')} failed: ${describe(e)}`);
      }
      throw e;
    }
  };

  const listingPlus = (n: Node, list: ClientNode[], offset: number, size: number, plus: boolean): DirEntryPlus[] => {
    const rev = revision();
    const out: DirEntryPlus[] = [];
    let used = 0;
    const total = list.length + 2;
    for (let i = offset; i < total; i++) {
      let e: DirEntryPlus;
      if (i < 2) {
        e = { name: i === 0 ? '.' : '..', ino: i === 0 ? n.attr.ino : 1, mode: S_IFDIR, off: i + 1 };
      } else {
        const cn = list[i - 2];
        e = { name: cn.name, ino: cn.attr.ino, mode: cn.attr.mode, off: i + 1 };
        if (plus) e.entry = entryOf(nodeFor(cn, rev));
      }
      out.push(e);
      used += (plus ? direntPlusSize : direntSize)(Buffer.byteLength(e.name));
      // A little more than fits is fine: the session forgets what it could not send.
      if (used >= size) break;
    }
    return out;
  };

  const ops: FuseOps & { stats(): RepositoryFsStats; drainFastReads(): void } = {
    async lookup(_ctx: RequestContext, parent: number, name: string): Promise<EntryOut> {
      const p = nodeOf(parent);
      const path = childPath(p, name);
      // Before resolving: a start's replay then runs alongside the image's catalog load, not after it.
      opts.profiler?.onLookup(path);
      return guard('lookup', path, async () => {
        const rev = revision();
        const cn = await client.lookup(path);
        if (cn === undefined) {
          // A remembered miss, valid as long as names are.
          return { nodeid: 0, entryTtl: entryTtl(), attrTtl: 0, attr: { ino: 0, size: 0, atime: 0, mtime: 0, ctime: 0, mode: 0, nlink: 0, uid: 0, gid: 0 } };
        }
        opts.profiler?.onCatalog(path, cn.catalog);
        return entryOf(nodeFor(cn, rev));
      });
    },

    forget(nodeid: number, nlookup: number): void {
      const n = nodes.get(nodeid);
      if (n === undefined || nodeid === FUSE_ROOT_ID) return;
      n.nlookup -= nlookup;
      if (n.nlookup > 0) return;
      nodes.delete(nodeid);
      if (n.fast === true && fr?.drop(nodeid) === true) readElsewhere([n]);
      // The kernel forgets an inode only after its last file is released: nobody uses the backing file now.
      if (n.backingId !== undefined) pt?.close(n.backingId);
      dropShared(n);
      for (const ino of [n.ino, ...n.moreInos ?? []]) if (byIno.get(ino) === nodeid) byIno.delete(ino);
      for (const p of [n.path, ...n.morePaths ?? []]) if (byPath.get(p) === nodeid) byPath.delete(p);
    },

    async getattr(_ctx, nodeid): Promise<AttrOut> {
      const n = nodeOf(nodeid);
      if (nodeid !== FUSE_ROOT_ID) return { attrTtl: IMMUTABLE_ATTR_TTL_S, attr: n.attr };
      // The root's attributes follow the revision; it is the one node that is never replaced.
      const cn = await guard('getattr', '', () => current(n));
      if (cn !== undefined) n.attr = fuseAttr(cn);
      return { attrTtl: entryTtl(), attr: n.attr };
    },

    async readlink(_ctx, nodeid): Promise<string> {
      const n = nodeOf(nodeid);
      if (n.target === undefined) throw EINVAL;
      return n.target;
    },

    async open(_ctx, nodeid): Promise<OpenOut> {
      const n = nodeOf(nodeid);
      // Once the kernel saw ENOSYS it never sends OPEN again: every later open of any file is openless.
      if (opts.openless && !pt?.enabled) throw ENOSYS;
      return guard('open', n.path, async () => {
        await current(n);
        const fh = await acquire(n);
        openFiles++;
        if (n.file?.entry.id !== undefined && n.file.entry.chunks === undefined) opts.profiler?.onOpen(n.path, n.attr.size, n.file.catalog);
        if (pt?.enabled && n.backingId === undefined && !n.cachedOpens) {
          // The open holds the whole object (a chunked file has no single backing file): register it once per node.
          const fd = client.backingFd?.(fh);
          if (fd !== undefined) n.backingId = pt.open(fd);
        }
        // The kernel's handle is the shared client handle times two, plus one for an open served the normal
        // way, so RELEASE knows which kind it closes.
        if (n.backingId !== undefined) {
          passthroughOpens++;
          // Only PASSTHROUGH|DIRECT_IO|NOFLUSH may go with a backing file (the kernel answers EIO to the open
          // otherwise); the page cache is the backing file's, which is kept anyway.
          return { fh: fh * 2, backingId: n.backingId };
        }
        n.cachedOpens = (n.cachedOpens ?? 0) + 1;
        // Content of a nodeid never changes, so the page cache stays valid across opens.
        return { fh: fh * 2 + 1, keepCache: true };
      });
    },

    async read(_ctx, nodeid, kfh, offset, size): Promise<Uint8Array> {
      if (kfh === 0) return readOpenless(nodeid, offset, size);
      const fh = Math.floor(kfh / 2);
      const n = nodes.get(nodeid);
      const data = guard('read', n?.path ?? `nodeid ${nodeid}`, () => client.read(fh, offset, size));
      const chunks = n?.file?.entry.chunks;
      if (chunks !== undefined) {
        readAhead(fh, chunks, offset + size);
        profileChunks(n!, chunks, offset, size);
      }
      return data;
    },

    release(_ctx, _nodeid, kfh): void {
      openFiles--;
      const n = handleNodes.get(Math.floor(kfh / 2));
      if (n === undefined) return;
      if (kfh % 2 === 1) n.cachedOpens = (n.cachedOpens ?? 1) - 1;
      letGo(n);
    },

    // No opendir/releasedir: the kernel then keeps listings cached (FOPEN_KEEP_CACHE|FOPEN_CACHE_DIR by
    // default) and a warm `find` sends nothing. Listings of non-root directories never change (a changed
    // directory gets a new nodeid); the root's cache is reset by the kernel when its mtime changes.
    async readdir(_ctx, nodeid, _fh, offset, size): Promise<DirEntry[]> {
      const n = nodeOf(nodeid);
      return listingPlus(n, await listingOf(n, offset), offset, size, false);
    },

    async readdirplus(_ctx, nodeid, _fh, offset, size): Promise<DirEntryPlus[]> {
      const n = nodeOf(nodeid);
      return listingPlus(n, await listingOf(n, offset), offset, size, true);
    },

    async statfs(): Promise<Statfs> {
      // As CernVM-FS: capacity and use are the local cache's; the file count is the repository's.
      const s = client.stats();
      const fs = client.statfs();
      const bsize = 4096;
      const cap = s.cacheLimit > 0 ? s.cacheLimit : Math.max(fs.bytes, s.cacheBytes);
      const blocks = Math.ceil(cap / bsize);
      const used = Math.min(blocks, Math.ceil(s.cacheBytes / bsize));
      return { blocks, bfree: blocks - used, bavail: blocks - used, files: fs.files, ffree: 0, bsize, namelen: 255, frsize: bsize };
    },

    async getxattr(_ctx, nodeid, name): Promise<Buffer> {
      // A counter (the accounting reads three around every container start) costs no catalog work.
      const counter = COUNTER_XATTRS.has(name) ? counterXattrs()[name] : undefined;
      if (counter !== undefined && nodes.has(nodeid)) return Buffer.from(String(counter));
      const all = await xattrsOf(nodeOf(nodeid));
      const v = all[name];
      if (v === undefined) throw ENODATA;
      return v;
    },

    async listxattr(_ctx, nodeid): Promise<string[]> {
      return Object.keys(await xattrsOf(nodeOf(nodeid))).sort();
    },

    stats: () => ({ nodes: nodes.size, openFiles, openDirs: listings.size, ioErrors, revisionSwitches, passthroughOpens, fastReads, fastReadBytes }),

    drainFastReads,
  };

  /**
   * A READ of a file the kernel opened without asking (openless): the node's shared handle, held for the read.
   * No revision check: the kernel may have opened the file before an update, and such a descriptor keeps
   * reading the content it opened, which is what the node's entry names (new opens get new nodeids).
   */
  const readOpenless = async (nodeid: number, offset: number, size: number): Promise<Uint8Array> => {
    const n = nodeOf(nodeid);
    return guard('read', n.path, async () => {
      if (n.shared === undefined && n.file?.entry.id !== undefined && n.file.entry.chunks === undefined && offset === 0) {
        opts.profiler?.onOpen(n.path, n.attr.size, n.file.catalog);
      }
      const fh = await acquire(n);
      try {
        const data = await client.read(fh, offset, size);
        // Now in the cache (a miss was fetched): the node's next READs need not come here.
        offerFast(n);
        const chunks = n.file?.entry.chunks;
        if (chunks !== undefined) {
          readAhead(fh, chunks, offset + size);
          profileChunks(n, chunks, offset, size);
        }
        return data;
      } finally {
        letGo(n);
      }
    });
  };

  /** Tells the profiler which chunks of a chunked file a READ touched (a start replays only those). */
  const profileChunks = (n: Node, chunks: readonly { offset: number; size: number }[], offset: number, size: number): void => {
    const p = opts.profiler;
    if (p === undefined) return;
    const end = offset + Math.max(1, size);
    for (let i = firstChunkAt(chunks, offset); i < chunks.length && chunks[i].offset < end; i++) p.onChunk(n.path, i, chunks[i].size, n.file?.catalog);
  };

  /**
   * Starts fetching the chunks after `end` (the kernel's own readahead stops at 1 MiB READs, a chunk is
   * several MiB): each is fetched once per handle, verified and cached like any other; failures surface
   * when the reader gets there. Runs alongside the READ that triggered it.
   */
  const readAhead = (fh: number, chunks: readonly { offset: number; size: number }[], end: number): void => {
    const done = aheadUntil.get(fh) ?? 0;
    // The chunks starting at or after the READ's end (the READ itself fetches the one it ends in).
    let i = chunks.findIndex((c) => c.offset >= end);
    if (i < 0) return;
    let until = done;
    for (const last = Math.min(chunks.length, i + READAHEAD_CHUNKS); i < last; i++) {
      const c = chunks[i];
      if (c.offset < done) continue; // asked for by an earlier READ of this handle
      void client.read(fh, c.offset, 1).catch(() => undefined);
      until = c.offset + c.size;
    }
    if (until > done) aheadUntil.set(fh, until);
  };

  /** The mount's counters as xattrs: the same on every node, answered without the node's catalog entry. */
  const counterXattrs = (): Record<string, number> => {
    drainFastReads(); // the hits of fast READs reach the client's counters when collected
    const s = client.counters?.() ?? client.stats();
    return {
      'user.nopen': s.openFiles,
      'user.ndownload': s.misses,
      'user.nhits': s.hits, // gridbox's own (CernVM-FS has none): cache hits, for the accounting of a start
      'user.rx': Math.floor(s.bytesOnWire / 1024), // KiB on the wire, as CernVM-FS's download.sz_transferred_bytes / 1024
      'user.nioerr': ioErrors,
    };
  };

  const xattrsOf = async (n: Node): Promise<Record<string, Buffer>> => {
    await current(n);
    const out = await client.xattrs(n.path);
    const put = (k: string, v: string | number): void => { out[k] = Buffer.from(String(v)); };
    for (const [k, v] of Object.entries(counterXattrs())) put(k, v);
    put('user.inode', n.attr.ino);
    put('user.expires', Math.max(0, Math.round(client.ttlMs() / 60_000)));
    for (const [k, v] of Object.entries(opts.extraXattrs?.() ?? {})) put(k, v);
    return out;
  };

  return ops;
}

function describe(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur instanceof Error; i++) {
    parts.push(isGridboxError(cur) ? `${cur.code}: ${cur.message}` : cur.message);
    cur = (cur as Error & { cause?: unknown }).cause;
  }
  return parts.join(' <- ');
}
