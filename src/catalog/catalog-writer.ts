// Writes one complete CVMFS catalog file (schema 2.5 revision 7, cvmfs-format.md §4) from CatalogEntry rows.
// The caller decides what belongs in this catalog (entries, nested mountpoints and their refs); this module
// computes md5paths, flags, the hardlinks column, statistics counters and properties. It does not compress.
import { statSync } from 'node:fs';
import { fullMode } from '../fstree/entry.js';
import { objectIdToDigest, formatObjectId } from '../hash/object-id.js';
import { GridboxError, q } from '../errors.js';
import { encodeFlags } from './flags.js';
import { catalogParentPath, md5path, NULL_MD5PATH } from './md5path.js';
import { createSqlite, type SqliteDb, type SqliteStatement } from './sqlite.js';
import { serializeXattrs } from './xattr-blob.js';
import { COUNTER_NAMES, type CatalogCounters, type CatalogEntry, type Counters, type NestedCatalogRef } from './types.js';

export const CATALOG_SCHEMA = '2.5';
export const CATALOG_SCHEMA_REVISION = 7;

export interface CatalogWriteProperties {
  /** This catalog's commit counter; for the root catalog the repository revision (manifest `S`). */
  revision: number;
  /** Unix seconds; defaults to now. */
  lastModified?: number;
  /** Hex of this catalog's previous version, if any. */
  previousRevision?: string;
  /** Nested catalogs only: the mountpoint path ("/sw/v1"). Its presence makes this a nested catalog. */
  rootPrefix?: string;
  /** Root catalog only: TTL in seconds. */
  ttl?: number;
  /** Further keys written verbatim (`volatile`, `voms_authz`, `branch`, …). */
  extra?: Record<string, string | number>;
}

export interface CatalogWriteInput {
  properties: CatalogWriteProperties;
  /** The catalog's root entry first (path "" or rootPrefix), then every entry after its parent directory. */
  entries: Iterable<CatalogEntry>;
  /** Direct child catalogs; pass each child's `counters` so that the subtree counters are right. */
  nested?: readonly NestedCatalogRef[];
}

export interface CatalogWriteResult {
  counters: CatalogCounters;
  /** Byte size of the (uncompressed) catalog file. */
  size: number;
  /** Number of catalog rows written. */
  rows: number;
}

const SCHEMA_SQL = [
  'CREATE TABLE properties (key TEXT, value TEXT, CONSTRAINT pk_properties PRIMARY KEY (key))',
  'CREATE TABLE catalog (md5path_1 INTEGER, md5path_2 INTEGER, parent_1 INTEGER, parent_2 INTEGER,' +
    ' hardlinks INTEGER, hash BLOB, size INTEGER, mode INTEGER, mtime INTEGER, mtimens INTEGER, flags INTEGER,' +
    ' name TEXT, symlink TEXT, uid INTEGER, gid INTEGER, xattr BLOB,' +
    ' CONSTRAINT pk_catalog PRIMARY KEY (md5path_1, md5path_2))',
  'CREATE INDEX idx_catalog_parent ON catalog (parent_1, parent_2)',
  'CREATE TABLE chunks (md5path_1 INTEGER, md5path_2 INTEGER, offset INTEGER, size INTEGER, hash BLOB,' +
    ' CONSTRAINT pk_chunks PRIMARY KEY (md5path_1, md5path_2, offset, size),' +
    ' FOREIGN KEY (md5path_1, md5path_2) REFERENCES catalog(md5path_1, md5path_2))',
  'CREATE TABLE nested_catalogs (path TEXT, sha1 TEXT, size INTEGER, CONSTRAINT pk_nested_catalogs PRIMARY KEY (path))',
  'CREATE TABLE bind_mountpoints (path TEXT, sha1 TEXT, size INTEGER, CONSTRAINT pk_bind_mountpoints PRIMARY KEY (path))',
  'CREATE TABLE statistics (counter TEXT, value INTEGER, CONSTRAINT pk_statistics PRIMARY KEY (counter))',
];

export function zeroCounters(): Counters {
  return Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Counters;
}

function addInto(target: Counters, add: Counters): void {
  for (const n of COUNTER_NAMES) target[n] += add[n];
}

/** Count one row the way the stock server's `DeltaCounters::ApplyDelta` does. */
function countEntry(c: Counters, e: CatalogEntry): void {
  const t = e.entry.type;
  if (t === 'file') {
    c.regular++;
    c.file_size += e.entry.size;
    if (e.chunks && e.chunks.length > 0) {
      c.chunked++;
      c.chunked_size += e.entry.size;
      c.chunks += e.chunks.length;
    }
    if (e.external) {
      c.external++;
      c.external_file_size += e.entry.size;
    }
  } else if (t === 'symlink') c.symlink++;
  else if (t === 'dir') c.dir++;
  else c.special++;
  if (e.entry.xattrs && Object.keys(e.entry.xattrs).length > 0) c.xattr++;
}

/** The `size` column: §4.1 rules per type. */
function sizeColumn(e: CatalogEntry): number {
  switch (e.entry.type) {
    case 'file': case 'dir': return e.entry.size;
    case 'symlink': return Buffer.byteLength(e.entry.target ?? '', 'utf8');
    case 'chardev': case 'blockdev': return e.entry.rdev ?? 0;
    default: return 0;
  }
}

function invalid(file: string, message: string, path?: string): GridboxError {
  return new GridboxError('INTERNAL', `Cannot write catalog ${q(file)}: ${message}`, { path: path ?? file });
}

/**
 * Write the catalog to `file` (replacing it) in one transaction. Entry order is checked: the first entry
 * is the catalog root, and every later entry's parent directory must already have been written.
 */
export function writeCatalog(file: string, input: CatalogWriteInput): CatalogWriteResult {
  const w = new CatalogStreamWriter(file, input.properties);
  try {
    for (const ce of input.entries) w.add(ce);
  } catch (e) {
    w.abort();
    throw e;
  }
  return w.finish(input.nested ?? []);
}

/**
 * A catalog written row by row (the streaming publisher keeps one open per catalog on the current path
 * of its walk): rows go straight into SQLite inside one transaction with prepared statements, so memory
 * holds only the set of directories written (for the parent-before-child check) and the counters.
 * `finish` adds the nested refs, properties and statistics, commits and closes; `abort` drops it.
 */
export class CatalogStreamWriter {
  private readonly db: SqliteDb;
  private readonly rootPath: string;
  private readonly self = zeroCounters();
  private rows = 0;
  private readonly dirs = new Set<string>();
  private readonly mountpoints = new Set<string>();
  private lastParent = '\0';
  private lastParentMd5 = NULL_MD5PATH;
  private readonly insEntry: SqliteStatement;
  private readonly insChunk: SqliteStatement;
  private closed = false;

  constructor(readonly file: string, private readonly props: CatalogWriteProperties, opts: { cacheKiB?: number } = {}) {
    this.rootPath = props.rootPrefix ?? '';
    this.db = createSqlite(file);
    try {
      if (opts.cacheKiB !== undefined) this.db.pragma(`cache_size = -${opts.cacheKiB}`);
      for (const sql of SCHEMA_SQL) this.db.exec(sql);
      this.insEntry = this.db.prepare(
        'INSERT INTO catalog (md5path_1, md5path_2, parent_1, parent_2, hardlinks, hash, size, mode, mtime, mtimens,' +
          ' flags, name, symlink, uid, gid, xattr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      );
      this.insChunk = this.db.prepare('INSERT INTO chunks (md5path_1, md5path_2, offset, size, hash) VALUES (?, ?, ?, ?, ?)');
      this.db.exec('BEGIN');
    } catch (e) {
      this.db.close();
      throw wrap(file, e);
    }
  }

  /** Rows written so far. */
  get count(): number {
    return this.rows;
  }

  add(ce: CatalogEntry): void {
    const file = this.file;
    const path = ce.path;
    const e = ce.entry;
    const rows = this.rows;
    const rootPath = this.rootPath;
    if (rows === 0) {
      if (path !== rootPath) throw invalid(file, `first entry is ${q(path)}, expected the catalog root ${q(rootPath)}`, path);
      if (e.type !== 'dir') throw invalid(file, `catalog root ${q(path)} is a ${e.type}, not a directory`, path);
    } else {
      const parent = catalogParentPath(path);
      if (!path.startsWith('/') || !this.dirs.has(parent)) {
        throw invalid(file, `entry ${q(path)} comes before its parent directory ${q(parent)} or lies outside ${q(rootPath)}`, path);
      }
    }
    if (e.type === 'dir') this.dirs.add(path);

    const chunked = ce.chunks !== undefined && ce.chunks.length > 0;
    const algorithm = ce.id?.algorithm ?? (chunked ? ce.chunks![0].id.algorithm : undefined);
    const flags = encodeFlags({
      type: e.type, algorithm, compression: ce.compression, chunked, external: ce.external,
      directIo: ce.directIo, hidden: ce.hidden,
      nestedRoot: rows === 0 && rootPath !== '' ? true : ce.nestedRoot,
      nestedMountpoint: ce.nestedMountpoint,
    });
    const [m1, m2] = md5path(path);
    let p1: bigint, p2: bigint;
    if (rows === 0 && rootPath === '') [p1, p2] = NULL_MD5PATH;
    else {
      // Siblings arrive together, so the parent's hash is usually the one just computed.
      const parent = catalogParentPath(path);
      if (parent !== this.lastParent) { this.lastParent = parent; this.lastParentMd5 = md5path(parent); }
      [p1, p2] = this.lastParentMd5;
    }
    if (ce.nestedMountpoint && rows > 0) this.mountpoints.add(path);
    const hardlinks = (BigInt(ce.hardlinkGroup) << 32n) | BigInt(ce.linkcount >>> 0);
    const name = rows === 0 && rootPath === '' ? '' : path.slice(path.lastIndexOf('/') + 1);
    try {
      this.insEntry.run(
        m1, m2, p1, p2, hardlinks,
        ce.id ? objectIdToDigest(ce.id) : null,
        sizeColumn(ce), fullMode(e), e.mtime, e.mtimeNs ?? 0, flags, name,
        e.type === 'symlink' ? (e.target ?? '') : '',
        e.uid, e.gid, serializeXattrs(e.xattrs, path),
      );
      if (chunked) {
        for (const c of ce.chunks!) this.insChunk.run(m1, m2, c.offset, c.size, objectIdToDigest(c.id));
      }
    } catch (err) {
      throw wrap(file, err);
    }
    countEntry(this.self, ce);
    this.rows++;
  }

  /** Writes nested refs, properties and statistics, commits and closes the file. */
  finish(nested: readonly NestedCatalogRef[]): CatalogWriteResult {
    const { db, file, props, self } = this;
    const subtree = zeroCounters();
    try {
      if (this.rows === 0) throw invalid(file, `no entries (the catalog root ${q(this.rootPath)} is required)`);
      // A mountpoint without its nested row (or the reverse) would make the client lose the subtree.
      for (const n of nested) {
        if (!this.mountpoints.delete(n.path)) throw invalid(file, `nested catalog ${q(n.path)} has no mountpoint entry flagged nestedMountpoint`, n.path);
      }
      for (const m of this.mountpoints) throw invalid(file, `mountpoint ${q(m)} has no nested catalog reference`, m);
      const insNested = db.prepare('INSERT INTO nested_catalogs (path, sha1, size) VALUES (?, ?, ?)');
      const insProp = db.prepare('INSERT OR REPLACE INTO properties (key, value) VALUES (?, ?)');
      const insStat = db.prepare('INSERT INTO statistics (counter, value) VALUES (?, ?)');
      for (const n of nested) {
        insNested.run(n.path, formatObjectId(n.id), n.size);
        self.nested++;
        // subtree_* of a catalog = Σ over direct children of (child self + child subtree), as in the fixture.
        if (n.counters) {
          addInto(subtree, n.counters.self);
          addInto(subtree, n.counters.subtree);
        }
      }

      insProp.run('schema', CATALOG_SCHEMA);
      insProp.run('schema_revision', String(CATALOG_SCHEMA_REVISION));
      insProp.run('revision', String(props.revision));
      insProp.run('last_modified', String(props.lastModified ?? Math.floor(Date.now() / 1000)));
      if (props.previousRevision !== undefined) insProp.run('previous_revision', props.previousRevision);
      if (props.rootPrefix !== undefined) insProp.run('root_prefix', props.rootPrefix);
      if (props.ttl !== undefined) insProp.run('TTL', String(props.ttl));
      for (const [k, v] of Object.entries(props.extra ?? {})) insProp.run(k, String(v));

      for (const n of COUNTER_NAMES) {
        insStat.run(`self_${n}`, self[n]);
        insStat.run(`subtree_${n}`, subtree[n]);
      }
      db.exec('COMMIT');
    } catch (e) {
      this.abort();
      throw wrap(file, e);
    }
    this.closed = true;
    db.close();
    return { counters: { self, subtree }, size: statSync(file).size, rows: this.rows };
  }

  /** Closes without committing (the caller removes the file). */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    try { this.db.close(); } catch { /* already failing */ }
  }
}

function wrap(file: string, e: unknown): GridboxError {
  if (e instanceof GridboxError) return e;
  return new GridboxError('INTERNAL', `Cannot write catalog ${q(file)}: ${(e as Error).message}`, { cause: e, path: file });
}
