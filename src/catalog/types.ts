// The plain-data contract between the catalog module and its users (publisher, client, vfs, check).
// Paths here are repository-absolute as CVMFS hashes them: "" for the root, "/a/b" below it.
import type { Entry } from '../fstree/entry.js';
import type { ObjectId } from '../hash/object-id.js';

export type Compression = 'zlib' | 'none';

export interface ChunkRef {
  /** Offset of the chunk in the uncompressed file. */
  offset: number;
  /** Uncompressed size of the chunk. */
  size: number;
  /** Hash of the individually compressed chunk (object suffix "P"). */
  id: ObjectId;
}

/** One row of a catalog, as the publisher writes it and the reader returns it. */
export interface CatalogEntry {
  /** Repository-absolute path: "" for the repository root, "/a/b" otherwise. */
  path: string;
  /** Type, permission bits, owner, size, mtime(+ns), symlink target, rdev, xattrs. `entry.path` is ignored. */
  entry: Entry;
  /** Content hash of a regular file (whole file, compressed object), absent for others and chunked files. */
  id?: ObjectId;
  /** Compression of the file's data objects (regular files only; meta objects are always zlib). */
  compression: Compression;
  /** Chunks in offset order, present only for chunked files. */
  chunks?: ChunkRef[];
  /** Hardlink group within this catalog (0 = none) and link count (dirs: 2 + subdirectories). */
  hardlinkGroup: number;
  linkcount: number;
  /** Directory where a nested catalog is attached, as seen in the parent catalog (flags 1|2). */
  nestedMountpoint?: boolean;
  /** The same directory as the root entry of the nested catalog (flags 1|32). */
  nestedRoot?: boolean;
  hidden?: boolean;
  external?: boolean;
  directIo?: boolean;
}

/** A `nested_catalogs` row: where a child catalog is attached, its hash, its uncompressed size. */
export interface NestedCatalogRef {
  path: string;
  id: ObjectId;
  size: number;
  /** The child's own counters (writeCatalog's result); the parent's subtree_ counters sum self+subtree of these. */
  counters?: CatalogCounters;
  /** A `bind_mountpoints` row rather than a `nested_catalogs` row (reader only). */
  bind?: boolean;
}

/** The 12 counter names; each is stored with a `self_` and a `subtree_` prefix (24 rows). */
export const COUNTER_NAMES = [
  'regular', 'symlink', 'special', 'dir', 'nested', 'chunked', 'chunks', 'file_size', 'chunked_size',
  'xattr', 'external', 'external_file_size',
] as const;
export type CounterName = (typeof COUNTER_NAMES)[number];
export type Counters = Record<CounterName, number>;

/** The 24 statistics rows of one catalog: `self_*` (its own rows) and `subtree_*` (all nested catalogs below, excluding self). */
export interface CatalogCounters {
  self: Counters;
  subtree: Counters;
}

export interface CatalogProperties {
  schema: string;
  schemaRevision: number;
  revision: number;
  lastModified: number;
  previousRevision?: string;
  /** Nested catalogs only: the mountpoint path ("/sw/v1"). */
  rootPrefix?: string;
  ttl?: number;
  [key: string]: unknown;
}
