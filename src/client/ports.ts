// The collaborators the client is assembled from, as small interfaces: the catalog reader (catalog/) and
// a repository source (download/: verified object fetch, plain file fetch). The object cache is cache/'s
// ObjectCache itself. default-deps.ts adapts the concrete modules; tests may pass fakes. Types only.
import type { CatalogReader } from '../catalog/catalog-reader.js';
import type { Compression } from '../catalog/types.js';
import type { ObjectOutput } from '../download/body-sinks.js';
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
  /**
   * A content object streamed into a fresh output from `open()` per attempt (a cache temp file), hash-
   * verified over the stored bytes and inflated on the way, size-checked at the end; resolves with the
   * output of the attempt that verified (not yet committed), having aborted the others.
   */
  fetchObjectTo<O extends ObjectOutput>(id: ObjectId, suffix: ObjectSuffix, opts: FetchObjectOptions, open: () => O): Promise<O>;
  /** Bytes received over the network so far: compressed bodies of every attempt, as on the wire. */
  wireBytes?(): number;
  /** Failovers so far and failed attempts per host (for status and metrics). */
  downloadCounters?(): { hostFailovers: number; proxyFailovers: number; hostErrors: Record<string, number> };
  /** The host and proxy requests currently go to (for status and xattrs). */
  currentHost?(): string;
  currentProxy?(): string;
}
