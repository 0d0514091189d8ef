// The collaborators the client is assembled from, as small interfaces: the catalog reader (catalog/) and
// a repository source (download/: verified object fetch, plain file fetch). The object cache is cache/'s
// ObjectCache itself. default-deps.ts adapts the concrete modules; tests may pass fakes. Types only.
import type { CatalogReader } from '../catalog/catalog-reader.js';
import type { Compression } from '../catalog/types.js';
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
