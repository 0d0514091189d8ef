// The collaborators the client is assembled from, as small interfaces: the catalog reader (catalog/),
// a repository source (download/: verified object fetch, plain file fetch) and an object cache (cache/).
// index.ts adapts the concrete modules to these; tests may pass fakes. Types only, no I/O.
import type { CatalogReader } from '../catalog/catalog-reader.js';
import type { Compression } from '../catalog/types.js';
import type { CachedObject } from '../cache/cache-store.js';
import type { ObjectId, ObjectSuffix } from '../hash/object-id.js';

/** One opened, read-only catalog: catalog/'s reader. */
export type CatalogFile = CatalogReader;

export type OpenCatalog = (file: string) => CatalogFile;

export interface FetchObjectOptions {
  compression: Compression;
  /** Decompressed size the catalog promises; another size fails (STORE_SIZE_MISMATCH). */
  expectedSize?: number;
}

/** The network side of one repository: hosts, proxies, failover and retries live behind it. */
export interface RepositorySource {
  /** A top-level file (".cvmfspublished", ".cvmfswhitelist"), unverified, size-capped. */
  fetchFile(rel: string): Promise<Buffer>;
  /** A content object, hash-verified over the stored bytes while streaming, then inflated and size-checked. */
  fetchObject(id: ObjectId, suffix: ObjectSuffix, opts: FetchObjectOptions): Promise<Buffer>;
  /** The host and proxy requests currently go to (for status and xattrs). */
  currentHost?(): string;
  currentProxy?(): string;
}

/**
 * Local object cache of decompressed, verified objects, keyed by objectKey(id, suffix) (the store may
 * drop the suffix, as CVMFS does). Unpinned objects may be evicted at any time; an opened object stays
 * readable until closed, whatever happens to the cache.
 */
export interface ObjectCache {
  /** Opens a cached object (an LRU touch), or null on a miss. */
  open(key: string): Promise<CachedObject | null>;
  /** Path of a cached object for consumers that need a file (SQLite catalogs); pin it first. */
  path(key: string): Promise<string | undefined>;
  /** Stores verified bytes atomically; CACHE_FULL when the quota cannot admit them (unless pinned). */
  put(key: string, bytes: Uint8Array, opts?: { pin?: boolean }): Promise<void>;
  /** Pinned objects are never evicted (catalogs in use). */
  pin(key: string): Promise<void>;
  unpin(key: string): Promise<void>;
  /** Directory for client bookkeeping (the breadcrumb). */
  readonly dir: string;
  /** Bytes in use and the quota, for status. */
  usage?(): { bytes: number; limit: number };
}
