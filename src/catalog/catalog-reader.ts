// Reads one (already inflated) CVMFS catalog file, schema 2.5 revisions 0..7 (cvmfs-format.md §4), into
// CatalogEntry plain data. Synchronous, read-only; it neither fetches nor verifies objects, nor walks into
// nested catalogs (the client's catalog tree does that with findNestedFor()).
import { typeFromMode, type Entry } from '../fstree/entry.js';
import { objectIdFromDigest, parseObjectId, type HashAlgorithm, type ObjectId } from '../hash/object-id.js';
import { GridboxError, q } from '../errors.js';
import { decodeFlags } from './flags.js';
import { md5path, normalizeCatalogPath } from './md5path.js';
import { columnNames, openSqliteReadOnly, tableNames, type SqliteDb, type SqliteStatement } from './sqlite.js';
import { parseXattrs } from './xattr-blob.js';
import {
  COUNTER_NAMES, type CatalogCounters, type CatalogEntry, type CatalogProperties, type ChunkRef, type Counters,
  type NestedCatalogRef,
} from './types.js';

export interface CatalogReader {
  readonly file: string;
  readonly properties: CatalogProperties;
  readonly schemaRevision: number;
  /** The path of this catalog's root entry: "" for the repository root, the mountpoint for nested ones. */
  readonly rootPath: string;
  /** The row at a repository-absolute path, if this catalog holds it ("/" and "" both mean the root). */
  lookup(path: string): CatalogEntry | undefined;
  /** Children of a directory by parent hash, in rowid order; hidden entries included (with `hidden`). */
  listing(dirPath: string): CatalogEntry[];
  /** Chunks of a file, ordered by offset (empty for unchunked files). */
  chunks(path: string): ChunkRef[];
  /** `nested_catalogs` rows, then `bind_mountpoints` rows (flagged `bind`) where that table exists. */
  nested(): NestedCatalogRef[];
  /** The deepest nested (or bind) row whose path equals or is a component-wise prefix of `path`. */
  findNestedFor(path: string): NestedCatalogRef | undefined;
  /** Statistics; counters the schema revision lacks (18 rows at revision 2) read as 0. */
  counters(): CatalogCounters;
  /** Every row with its full path (rebuilt from parent hashes), in rowid order; chunks included. */
  entries(): CatalogEntry[];
  /**
   * The content objects regular files reference (whole files "", chunks "P"; external files left out),
   * without rebuilding paths: what a replica must hold for this catalog. Duplicates possible.
   */
  objectRefs(): { id: ObjectId; suffix: '' | 'P' }[];
  close(): void;
}

interface Row {
  hardlinks: number | bigint;
  hash: Buffer | null;
  size: number;
  mode: number;
  mtime: number;
  mtimens: number | null;
  flags: number;
  name: string | null;
  symlink: string | null;
  uid: number;
  gid: number;
  xattr: Buffer | null;
}

const SCHEMA_EPSILON = 0.0005;

function schemaError(file: string, why: string, cause?: unknown): GridboxError {
  return new GridboxError('CATALOG_SCHEMA', `Cannot read catalog ${q(file)}: ${why}`, { path: file, cause });
}

function invalidError(file: string, why: string, cause?: unknown): GridboxError {
  return new GridboxError('CATALOG_INVALID', `Cannot read catalog ${q(file)}: ${why}`, { path: file, cause });
}

function readProperties(db: SqliteDb, file: string): CatalogProperties {
  const raw = new Map<string, string>();
  for (const r of db.prepare('SELECT key, value FROM properties').all() as { key: string; value: unknown }[]) {
    raw.set(String(r.key), String(r.value));
  }
  const schema = raw.get('schema');
  if (schema === undefined) throw schemaError(file, 'property "schema" is missing');
  const num = (k: string): number | undefined => (raw.has(k) ? Number(raw.get(k)) : undefined);
  const props: CatalogProperties = {
    schema,
    schemaRevision: num('schema_revision') ?? 0,
    revision: num('revision') ?? 0,
    lastModified: num('last_modified') ?? 0,
  };
  if (raw.has('previous_revision')) props.previousRevision = raw.get('previous_revision');
  if (raw.has('root_prefix')) props.rootPrefix = raw.get('root_prefix');
  if (raw.has('TTL')) props.ttl = num('TTL');
  const mapped = new Set(['schema', 'schema_revision', 'revision', 'last_modified', 'previous_revision', 'root_prefix', 'TTL']);
  for (const [k, v] of raw) if (!mapped.has(k)) props[k] = v;
  return props;
}

/**
 * Open a catalog file; CATALOG_INVALID for a file that is no SQLite database, CATALOG_SCHEMA for a wrong layout.
 * `immutable`: the file is never written again while open (see openSqliteReadOnly).
 */
export function openCatalog(file: string, o: { immutable?: boolean } = {}): CatalogReader {
  const db = openSqliteReadOnly(file, 'CATALOG_INVALID', o);
  try {
    return new SqliteCatalogReader(db, file);
  } catch (e) {
    db.close();
    throw e;
  }
}

class SqliteCatalogReader implements CatalogReader {
  readonly properties: CatalogProperties;
  readonly schemaRevision: number;
  readonly rootPath: string;
  private readonly hasMtimeNs: boolean;
  private readonly hasXattr: boolean;
  private readonly hasBind: boolean;
  /** The SELECT column list of a full row, with NULL for columns older revisions lack. */
  private readonly rowColumns: string;
  private readonly stLookup: SqliteStatement;
  private readonly stListing: SqliteStatement;
  private readonly stChunks: SqliteStatement;
  private nestedCache: NestedCatalogRef[] | undefined;

  constructor(private readonly db: SqliteDb, readonly file: string) {
    const tables = tableNames(db);
    for (const t of ['properties', 'catalog', 'chunks', 'nested_catalogs', 'statistics']) {
      if (!tables.has(t)) throw schemaError(file, `table ${q(t)} is missing`);
    }
    this.properties = readProperties(db, file);
    const schema = Number(this.properties.schema);
    if (!(Math.abs(schema - 2.5) < SCHEMA_EPSILON || Math.abs(schema - 2.4) < SCHEMA_EPSILON)) {
      throw schemaError(file, `schema ${q(this.properties.schema)} is not supported (expected 2.5 or 2.4)`);
    }
    this.schemaRevision = this.properties.schemaRevision;
    if (!Number.isInteger(this.schemaRevision) || this.schemaRevision < 0 || this.schemaRevision > 7) {
      throw schemaError(file, `schema_revision ${q(this.schemaRevision)} is not supported (expected 0..7)`);
    }
    this.rootPath = this.properties.rootPrefix ?? '';
    const cols = columnNames(db, 'catalog');
    for (const c of ['md5path_1', 'md5path_2', 'parent_1', 'parent_2', 'hardlinks', 'hash', 'size', 'mode', 'mtime', 'flags', 'name', 'symlink', 'uid', 'gid']) {
      if (!cols.has(c)) throw schemaError(file, `column ${q(`catalog.${c}`)} is missing`);
    }
    if (this.schemaRevision >= 7 && !cols.has('mtimens')) throw schemaError(file, 'column "catalog.mtimens" is missing at schema revision 7');
    this.hasMtimeNs = cols.has('mtimens');
    this.hasXattr = cols.has('xattr');
    this.hasBind = tables.has('bind_mountpoints');
    this.rowColumns = `hardlinks, hash, size, mode, mtime, ${this.hasMtimeNs ? 'mtimens' : 'NULL AS mtimens'}, flags, name, symlink,` +
      ` uid, gid, ${this.hasXattr ? 'xattr' : 'NULL AS xattr'}`;
    const select = `SELECT ${this.rowColumns} FROM catalog`;
    try {
      this.stLookup = db.prepare(`${select} WHERE md5path_1 = ? AND md5path_2 = ?`);
      this.stListing = db.prepare(`${select} WHERE parent_1 = ? AND parent_2 = ? ORDER BY rowid`);
      this.stChunks = db.prepare('SELECT offset, size, hash FROM chunks WHERE md5path_1 = ? AND md5path_2 = ? ORDER BY offset');
    } catch (cause) {
      throw schemaError(file, `cannot prepare queries: ${(cause as Error).message}`, cause);
    }
  }

  lookup(path: string): CatalogEntry | undefined {
    const p = normalizeCatalogPath(path);
    const row = this.stLookup.get(...md5path(p)) as Row | undefined;
    return row ? this.toEntry(p, row) : undefined;
  }

  listing(dirPath: string): CatalogEntry[] {
    const dir = normalizeCatalogPath(dirPath);
    const rows = this.stListing.all(...md5path(dir)) as Row[];
    return rows.map((r) => this.toEntry(`${dir}/${r.name ?? ''}`, r));
  }

  chunks(path: string): ChunkRef[] {
    const p = normalizeCatalogPath(path);
    const row = this.stLookup.get(...md5path(p)) as Row | undefined;
    const algorithm = row ? decodeFlags(row.flags).algorithm : 'sha1';
    return this.chunksOf(p, algorithm);
  }

  private chunksOf(path: string, algorithm: HashAlgorithm): ChunkRef[] {
    const rows = this.stChunks.all(...md5path(path)) as { offset: number; size: number; hash: Buffer }[];
    return rows.map((r) => ({ offset: r.offset, size: r.size, id: this.digest(algorithm, r.hash, path) }));
  }

  nested(): NestedCatalogRef[] {
    // The file is read-only and immutable while open, so the rows are read once.
    this.nestedCache ??= this.readNested();
    return this.nestedCache.map((n) => ({ ...n }));
  }

  private readNested(): NestedCatalogRef[] {
    const sql = this.hasBind
      ? 'SELECT path, sha1, size, 0 AS bind FROM nested_catalogs UNION ALL SELECT path, sha1, size, 1 AS bind FROM bind_mountpoints'
      : 'SELECT path, sha1, size, 0 AS bind FROM nested_catalogs';
    const rows = this.db.prepare(sql).all() as { path: string; sha1: string; size: number | null; bind: number }[];
    return rows.map((r) => {
      let id;
      try {
        id = parseObjectId(String(r.sha1));
      } catch (cause) {
        throw invalidError(this.file, `nested catalog ${q(r.path)} has a bad hash ${q(r.sha1)}`, cause);
      }
      const ref: NestedCatalogRef = { path: String(r.path), id, size: r.size ?? 0 };
      if (r.bind) ref.bind = true;
      return ref;
    });
  }

  findNestedFor(path: string): NestedCatalogRef | undefined {
    const p = normalizeCatalogPath(path);
    let best: NestedCatalogRef | undefined;
    this.nestedCache ??= this.readNested();
    for (const n of this.nestedCache) {
      if ((p === n.path || p.startsWith(`${n.path}/`)) && (!best || n.path.length > best.path.length)) best = n;
    }
    return best ? { ...best } : undefined;
  }

  counters(): CatalogCounters {
    const self = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as Counters;
    const subtree = { ...self };
    const rows = this.db.prepare('SELECT counter, value FROM statistics').all() as { counter: string; value: number }[];
    for (const r of rows) {
      const m = /^(self|subtree)_(.+)$/.exec(r.counter);
      if (!m || !(COUNTER_NAMES as readonly string[]).includes(m[2])) continue;
      (m[1] === 'self' ? self : subtree)[m[2] as keyof Counters] = Number(r.value);
    }
    return { self, subtree };
  }

  entries(): CatalogEntry[] {
    // Rows carry only a name and the parent's hash: rebuild paths from the catalog root downwards.
    const keyed = this.db.prepare(
      `SELECT md5path_1 || ':' || md5path_2 AS k, parent_1 || ':' || parent_2 AS pk, ${this.rowColumns}` +
        ' FROM catalog ORDER BY rowid',
    ).all() as (Row & { k: string; pk: string })[];
    const [r1, r2] = md5path(this.rootPath);
    const rootKey = `${r1}:${r2}`;
    const byKey = new Map(keyed.map((r) => [r.k, r]));
    const paths = new Map<string, string>([[rootKey, this.rootPath]]);
    const resolve = (key: string): string => {
      const known = paths.get(key);
      if (known !== undefined) return known;
      // Iterative walk up to a known ancestor, so deep trees do not overflow the stack.
      const chain: string[] = [];
      let cur = key;
      while (!paths.has(cur)) {
        const row = byKey.get(cur);
        if (!row || chain.length > keyed.length) throw invalidError(this.file, `row ${q(cur)} is not connected to the catalog root`);
        chain.push(cur);
        cur = row.pk;
      }
      let base = paths.get(cur)!;
      for (let i = chain.length - 1; i >= 0; i--) {
        base = `${base}/${byKey.get(chain[i])!.name ?? ''}`;
        paths.set(chain[i], base);
      }
      return base;
    };
    const chunkRows = this.db.prepare(
      "SELECT md5path_1 || ':' || md5path_2 AS k, offset, size, hash FROM chunks ORDER BY md5path_1, md5path_2, offset",
    ).all() as { k: string; offset: number; size: number; hash: Buffer }[];
    const chunksByKey = new Map<string, typeof chunkRows>();
    for (const c of chunkRows) {
      let list = chunksByKey.get(c.k);
      if (!list) chunksByKey.set(c.k, (list = []));
      list.push(c);
    }
    return keyed.map((r) => {
      const path = resolve(r.k);
      const e = this.toEntry(path, r, false);
      const cs = chunksByKey.get(r.k);
      if (cs) {
        const algorithm = decodeFlags(r.flags).algorithm;
        e.chunks = cs.map((c) => ({ offset: c.offset, size: c.size, id: this.digest(algorithm, c.hash, path) }));
      }
      return e;
    });
  }

  objectRefs(): { id: ObjectId; suffix: '' | 'P' }[] {
    const out: { id: ObjectId; suffix: '' | 'P' }[] = [];
    const S_IFMT = 0o170000, S_IFREG = 0o100000;
    const chunked = new Set<string>();
    const chunks = this.db.prepare(
      `SELECT c.md5path_1 || ':' || c.md5path_2 AS k, c.hash AS hash, f.flags AS flags FROM chunks c JOIN catalog f` +
        ` ON f.md5path_1 = c.md5path_1 AND f.md5path_2 = c.md5path_2 WHERE (f.mode & ${S_IFMT}) = ${S_IFREG}`,
    ).all() as { k: string; hash: Buffer; flags: number }[];
    for (const c of chunks) {
      const f = decodeFlags(c.flags);
      if (f.external || !f.chunked) continue;
      chunked.add(c.k);
      out.push({ id: this.digest(f.algorithm, c.hash, `chunk of ${c.k}`), suffix: 'P' });
    }
    const files = this.db.prepare(
      `SELECT md5path_1 || ':' || md5path_2 AS k, hash, flags FROM catalog WHERE (mode & ${S_IFMT}) = ${S_IFREG}`,
    ).all() as { k: string; hash: Buffer | null; flags: number }[];
    for (const r of files) {
      const f = decodeFlags(r.flags);
      // A chunked file's bulk hash names no object; one without chunk rows is read whole, as entries() does.
      if (f.external || (f.chunked && chunked.has(r.k))) continue;
      if (r.hash && r.hash.length > 0 && r.hash.some((b) => b !== 0)) out.push({ id: this.digest(f.algorithm, r.hash, r.k), suffix: '' });
    }
    return out;
  }

  close(): void {
    this.db.close();
  }

  private digest(algorithm: HashAlgorithm, blob: Buffer, path: string) {
    if (!Buffer.isBuffer(blob) || blob.length !== 20) {
      throw invalidError(this.file, `entry ${q(path)} has a hash of ${Buffer.isBuffer(blob) ? blob.length : typeof blob} bytes, expected 20`);
    }
    return objectIdFromDigest(algorithm, blob);
  }

  private toEntry(path: string, r: Row, withChunks = true): CatalogEntry {
    const f = decodeFlags(r.flags);
    let type;
    try {
      type = typeFromMode(r.mode);
    } catch (cause) {
      throw invalidError(this.file, `entry ${q(path)} has an unknown file type in mode ${r.mode.toString(8)}`, cause);
    }
    const hardlinks = BigInt(r.hardlinks ?? 0);
    const entry: Entry = {
      path: path.slice(1),
      type,
      mode: r.mode & 0o7777,
      uid: r.uid,
      gid: r.gid,
      size: type === 'chardev' || type === 'blockdev' ? 0 : r.size,
      mtime: r.mtime,
      mtimeNs: r.mtimens ?? 0,
    };
    if (type === 'symlink') entry.target = r.symlink ?? '';
    if (type === 'chardev' || type === 'blockdev') entry.rdev = r.size;
    if (r.xattr && r.xattr.length > 0) entry.xattrs = parseXattrs(r.xattr, path);
    const ce: CatalogEntry = {
      path,
      entry,
      compression: f.compression,
      hardlinkGroup: Number(hardlinks >> 32n),
      linkcount: Number(hardlinks & 0xffffffffn),
    };
    // An all-zero digest is CVMFS's null hash (IsNull()), the same as a NULL column.
    if (r.hash && r.hash.length > 0 && r.hash.some((b) => b !== 0)) ce.id = this.digest(f.algorithm, r.hash, path);
    if (f.nestedMountpoint) ce.nestedMountpoint = true;
    if (f.nestedRoot) ce.nestedRoot = true;
    if (f.hidden) ce.hidden = true;
    if (f.external) ce.external = true;
    if (f.directIo) ce.directIo = true;
    if (withChunks && f.chunked) ce.chunks = this.chunksOf(path, f.algorithm);
    return ce;
  }
}
