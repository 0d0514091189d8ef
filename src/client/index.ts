// The client's composition root: createClient(settings, deps) wires the downloader, the object cache, the
// catalog reader and the trust check into one plain read API (lookup, getattr, listing, readlink,
// open/read/release, xattrs, statfs, revision, stats) used by the CLI commands and the filesystem view.
// Reads no config files or environment: settings come from client-config.ts, key PEMs from the caller.
import { join } from 'node:path';
import { GridboxError, q } from '../errors.js';
import { formatObjectId } from '../hash/object-id.js';
import type { ClientSettings } from './client-config.js';
import type { ClientNode, NodeAttr, ResolveOptions, StatfsInfo } from './catalog-tree.js';
import { Fetcher, type FetcherStats, type OpenFile } from './fetcher.js';
import type { ObjectCache } from '../cache/object-cache.js';
import { FsCacheStore } from '../cache/cache-store.js';
import type { OpenCatalog, RepositorySource } from './ports.js';
import { RepositorySession, type TrustPort, type UpdateResult } from './repository.js';

export { ROOT_INODE, normalizeRepoPath, type ClientNode, type NodeAttr, type ResolveOptions, type StatfsInfo } from './catalog-tree.js';
export type { UpdateResult } from './repository.js';

export interface ClientDeps {
  /** Master public keys (PEM) the whitelist must verify against; the CLI loads them. */
  masterPublicKeysPem: string[];
  source: RepositorySource;
  cache: ObjectCache;
  openCatalog: OpenCatalog;
  trust: TrustPort;
  now?: () => number;
  log?: (line: string) => void;
  /** Called when the session closes (e.g. to close the downloader's connections). */
  onClose?: (o?: { exiting?: boolean }) => Promise<void>;
  /** No TTL checks: a one-shot reader (gridbox get) sees the revision it opened from start to end, never a mix. */
  pinRevision?: boolean;
}

export interface ClientStats extends FetcherStats {
  /** Bytes received from servers and proxies (compressed, failed attempts included): CernVM-FS's `user.rx`. */
  bytesOnWire: number;
  revision: number;
  rootHash: string;
  offline: boolean;
  host?: string;
  proxy?: string;
  cacheBytes: number;
  cacheLimit: number;
  cacheObjects: number;
  evictions: number;
  /** Host and proxy failovers, and failed attempts per host (when the source counts them). */
  hostFailovers?: number;
  proxyFailovers?: number;
  hostErrors?: Record<string, number>;
}

/** The read API of one mounted-or-opened repository. Paths are repository paths ("/a/b", "/" or ""). */
export interface Client {
  readonly fqrn: string;
  revision(): number;
  rootHash(): string;
  /** Current catalog TTL: how long entries may be cached before a revision check (§7.4). */
  ttlMs(): number;
  /**
   * Symlinks on the way are followed inside the repository (resolve-path.ts); the last component only
   * with `follow` or a trailing "/" (lstat versus stat). ELOOP on a loop.
   */
  lookup(path: string, opts?: ResolveOptions): Promise<ClientNode | undefined>;
  /** NOT_FOUND when absent. */
  getattr(path: string, opts?: ResolveOptions): Promise<NodeAttr>;
  stat(path: string, opts?: ResolveOptions): Promise<ClientNode>;
  /** Visible children, sorted by name (a symlink to a directory is followed). */
  listing(path: string): Promise<ClientNode[]>;
  readlink(path: string): Promise<string>;
  /** Opens a regular file (symlinks followed, as open(2)); the handle reads the content of the revision it was opened in, even after an update. */
  open(path: string): Promise<number>;
  /**
   * Opens a node a lookup or listing already resolved, without resolving its path again. The node must
   * come from this client; its content is what its entry names, whichever revision is served now.
   */
  openNode?(node: ClientNode): Promise<number>;
  /**
   * Reads the locally cached content of these nodes ahead into memory (a directory being listed, a start being
   * replayed), files up to `maxBytes` (default: the first MiB's worth, ObjectCache.warm); no download.
   */
  prefetch?(nodes: ClientNode[], maxBytes?: number): number;
  read(handle: number, offset: number, length: number): Promise<Buffer>;
  /** The local cache file holding a whole-file node's verified content, if the cache has it now (no download). */
  cachedFile?(node: ClientNode): string | undefined;
  /** Reads of cachedFile()s made outside this client: counted as cache hits and LRU accesses. */
  noteCachedReads?(nodes: ClientNode[]): void;
  /** The descriptor of the local cache file holding an open handle's whole content, if any (FUSE passthrough); valid until release. */
  backingFd?(handle: number): number | undefined;
  release(handle: number): Promise<void>;
  /** The entry's xattrs plus the virtual user.* ones CVMFS exposes. */
  xattrs(path: string): Promise<Record<string, Buffer>>;
  statfs(): StatfsInfo;
  stats(): ClientStats;
  /** The counters of stats() that cost nothing to read (no cache ledger query): opens, hits, misses, bytes on the wire. */
  counters?(): FetcherStats & { bytesOnWire: number };
  /** Forces a manifest check now (the TTL triggers one on its own during operations). */
  checkForUpdate(): Promise<UpdateResult>;
  /** `exiting`: the process ends right after (a mount daemon): no work whose only point is a tidy file state (Quota.close). */
  close(o?: { exiting?: boolean }): Promise<void>;
}

/** The cache directory for a repository: `<base>/shared` or `<base>/<fqrn>` (spec §7.6). */
export function cacheDirFor(settings: Pick<ClientSettings, 'cacheBase' | 'sharedCache' | 'fqrn'>): string {
  return join(settings.cacheBase, settings.sharedCache ? 'shared' : settings.fqrn);
}

export async function createClient(settings: ClientSettings, deps: ClientDeps): Promise<Client> {
  if (!(deps.cache.store instanceof FsCacheStore)) throw new GridboxError('NOT_SUPPORTED', 'The client needs a cache on disk (FsCacheStore): catalogs are opened as files');
  const cacheDir = deps.cache.store.dir;
  const fetcher = new Fetcher(deps.source, deps.cache);
  const session = await RepositorySession.open({
    fqrn: settings.fqrn, source: deps.source, cache: deps.cache, cacheDir, fetcher, trust: deps.trust, openCatalog: deps.openCatalog,
    masterPublicKeysPem: deps.masterPublicKeysPem, maxTtlMs: settings.maxTtlMs, now: deps.now, log: deps.log,
  });
  const handles = new Map<number, OpenFile>();
  let nextHandle = 1;
  let closed = false;

  // The TTL check runs in the background so no operation waits on the network for it.
  const tree = () => {
    if (closed) throw new GridboxError('USAGE', `Client of ${q(settings.fqrn)} is closed`);
    if (deps.pinRevision !== true) void session.maybeCheckForUpdate();
    return session.tree;
  };
  const handleOf = (h: number): OpenFile => {
    const f = handles.get(h);
    if (f === undefined) throw new GridboxError('USAGE', `Unknown file handle ${h}`);
    return f;
  };

  const openEntry = async (node: ClientNode): Promise<number> => {
    const file = await fetcher.open(node.entry);
    const h = nextHandle++;
    handles.set(h, file);
    return h;
  };

  return {
    fqrn: settings.fqrn,
    revision: () => session.revision,
    rootHash: () => session.rootHash,
    ttlMs: () => session.ttlMs(),
    lookup: (path, opts) => tree().lookup(path, opts),
    getattr: async (path, opts) => (await tree().stat(path, opts)).attr,
    stat: (path, opts) => tree().stat(path, opts),
    listing: (path) => tree().listing(path),
    readlink: (path) => tree().readlink(path),
    async open(path) {
      return openEntry(await tree().stat(path, { follow: true }));
    },
    openNode: (node) => {
      if (closed) throw new GridboxError('USAGE', `Client of ${q(settings.fqrn)} is closed`);
      return openEntry(node);
    },
    prefetch: (nodes, maxBytes) => (closed ? 0 : fetcher.prefetch(nodes.map((n) => n.entry), maxBytes)),
    read: (h, offset, length) => handleOf(h).read(offset, length),
    cachedFile: (node) => (closed ? undefined : fetcher.cachedPath(node.entry)),
    noteCachedReads: (nodes) => { if (!closed) fetcher.noteCachedReads(nodes.map((n) => n.entry)); },
    backingFd: (h) => handles.get(h)?.fd,
    async release(h) {
      const f = handles.get(h);
      handles.delete(h);
      await f?.close();
    },
    async xattrs(path) {
      const node = await tree().stat(path);
      const out: Record<string, Buffer> = { ...(node.entry.entry.xattrs ?? {}) };
      const put = (k: string, v: string): void => { out[k] = Buffer.from(v); };
      put('user.fqrn', settings.fqrn);
      put('user.revision', String(session.revision));
      put('user.root_hash', session.rootHash);
      put('user.host', deps.source.currentHost?.() ?? settings.serverUrls[0] ?? '');
      put('user.proxy', deps.source.currentProxy?.() ?? 'DIRECT');
      if (node.entry.id !== undefined) put('user.hash', formatObjectId(node.entry.id));
      if (node.entry.chunks !== undefined) put('user.chunks', String(node.entry.chunks.length));
      if (node.entry.compression !== undefined && node.entry.entry.type === 'file') put('user.compression', node.entry.compression);
      return out;
    },
    statfs: () => tree().statfs(),
    stats() {
      const c = deps.cache.stats();
      return {
        ...fetcher.stats, bytesOnWire: deps.source.wireBytes?.() ?? 0, revision: session.revision, rootHash: session.rootHash, offline: session.offline,
        host: deps.source.currentHost?.(), proxy: deps.source.currentProxy?.(), cacheBytes: c.bytes, cacheLimit: c.limitBytes,
        cacheObjects: c.objects, evictions: c.evictions, ...deps.source.downloadCounters?.(),
      };
    },
    counters: () => ({ ...fetcher.stats, bytesOnWire: deps.source.wireBytes?.() ?? 0 }),
    checkForUpdate: () => session.checkForUpdate(),
    async close(o) {
      if (closed) return;
      closed = true;
      for (const f of handles.values()) await f.close();
      handles.clear();
      await session.close();
      await deps.onClose?.(o);
    },
  };
}
