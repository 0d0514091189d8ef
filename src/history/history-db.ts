// The CVMFS history (tags) database, object `H` (cvmfs-format.md §6.1): schema 1.0 revision 3 with the
// exact tables and properties of the stock server, so `cvmfs_server tag` and the client read ours. Reads
// revisions 0..3; a writable open upgrades older files to 3 the way the server does. It does not compress.
import { GridboxError, q } from '../errors.js';
import { formatObjectId, parseObjectId, type ObjectId } from '../hash/object-id.js';
import { columnNames, createHistorySqlite, openHistorySqlite, readProperties, tableNames, type HistorySqlite } from './history-sqlite.js';

export const HISTORY_SCHEMA = '1.0';
export const HISTORY_SCHEMA_REVISION = 3;
export const TRUNK_TAG = 'trunk';
export const TRUNK_PREVIOUS_TAG = 'trunk-previous';
export const TRUNK_DESCRIPTION = 'current HEAD';
export const TRUNK_PREVIOUS_DESCRIPTION = 'default undo target';

export interface Tag {
  name: string;
  /** Root catalog hash (the `hash` column: hex plus algorithm id, no `C` suffix). */
  id: ObjectId;
  /** Repository revision (manifest `S`). */
  revision: number;
  /** Unix seconds. */
  timestamp: number;
  /** Deprecated update channel, 0. */
  channel: number;
  description: string;
  /** Uncompressed root catalog size. */
  size: number;
  /** '' is the trunk. */
  branch: string;
}

export type TagInput = Omit<Tag, 'channel' | 'description' | 'branch'> & Partial<Pick<Tag, 'channel' | 'description' | 'branch'>>;

export interface HistoryDb {
  readonly file: string;
  readonly fqrn: string;
  readonly schemaRevision: number;
  /** Hex of the previous history object, if recorded. */
  readonly previousRevision: string | undefined;
  setPreviousRevision(hex: string): void;
  /** Insert a new tag; HISTORY_INVALID if the name exists (remove it first, or use commitHead()). */
  addTag(tag: TagInput): void;
  /** Returns whether a tag of that name existed. */
  removeTag(name: string): boolean;
  getTag(name: string): Tag | undefined;
  /** Tags pointing at one revision, by name. */
  tagsAtRevision(revision: number): Tag[];
  /** The newest tag at or before a Unix time (what CVMFS_REPOSITORY_DATE mounts). */
  tagAtTime(timestamp: number): Tag | undefined;
  /** All tags, newest revision first, then by name. */
  listTags(): Tag[];
  /** Record a new HEAD: the old `trunk` becomes `trunk-previous`, and `trunk` points at `head`. */
  commitHead(head: Omit<TagInput, 'name' | 'description'>): void;
  /** Rollback support: remove every tag newer than `revision` (trunk tags included). Returns how many. */
  removeTagsAfter(revision: number): number;
  close(): void;
}

const CREATE_SQL = [
  'CREATE TABLE properties (key TEXT, value TEXT, CONSTRAINT pk_properties PRIMARY KEY (key));',
  "CREATE TABLE branches (branch TEXT, parent TEXT, initial_revision INTEGER,  CONSTRAINT pk_branch PRIMARY KEY (branch),  FOREIGN KEY (parent) REFERENCES branches (branch),  CHECK ((branch <> '') OR (parent IS NULL)),  CHECK ((branch = '') OR (parent IS NOT NULL)));",
  "INSERT INTO branches (branch, parent, initial_revision) VALUES ('', NULL, 0);",
  'CREATE TABLE tags (name TEXT, hash TEXT, revision INTEGER,   timestamp INTEGER, channel INTEGER, description TEXT, size INTEGER,   branch TEXT, CONSTRAINT pk_tags PRIMARY KEY (name),   FOREIGN KEY (branch) REFERENCES branches (branch));',
  'CREATE TABLE recycle_bin (hash TEXT, flags INTEGER,   CONSTRAINT pk_hash PRIMARY KEY (hash))',
];

/** Create an empty history database for `fqrn` (replacing `file`). */
export function createHistory(file: string, fqrn: string, opts: { previousRevision?: string } = {}): HistoryDb {
  const db = createHistorySqlite(file, 'history database');
  try {
    db.transaction(() => {
      for (const sql of CREATE_SQL) db.exec(sql);
      const set = db.prepare('INSERT OR REPLACE INTO properties (key, value) VALUES (?, ?)');
      set.run('schema', HISTORY_SCHEMA);
      set.run('schema_revision', String(HISTORY_SCHEMA_REVISION));
      set.run('fqrn', fqrn);
      if (opts.previousRevision !== undefined) set.run('previous_revision', opts.previousRevision);
    })();
    return new SqliteHistory(db, file, true);
  } catch (e) {
    db.close();
    if (e instanceof GridboxError) throw e;
    throw new GridboxError('HISTORY_INVALID', `Cannot create history database ${q(file)}: ${(e as Error).message}`, { cause: e, path: file });
  }
}

/** Open an (inflated) history database; `writable` upgrades revisions below 3 in place. */
export function openHistory(file: string, opts: { writable?: boolean } = {}): HistoryDb {
  const db = openHistorySqlite(file, opts.writable === true, 'history database');
  try {
    return new SqliteHistory(db, file, opts.writable === true);
  } catch (e) {
    db.close();
    throw e;
  }
}

interface TagRow { name: string; hash: string; revision: number; timestamp: number; channel: number | null; description: string | null; size: number | null; branch: string | null }

class SqliteHistory implements HistoryDb {
  readonly fqrn: string;
  schemaRevision: number;
  previousRevision: string | undefined;
  private readonly fields: string;

  constructor(private readonly db: HistorySqlite, readonly file: string, private readonly writable: boolean) {
    const tables = tableNames(db);
    for (const t of ['properties', 'tags']) {
      if (!tables.has(t)) throw this.invalid(`table ${q(t)} is missing`);
    }
    const props = readProperties(db);
    const schema = Number(props.get('schema'));
    if (!(Math.abs(schema - 1.0) < 0.0005)) throw this.invalid(`schema ${q(props.get('schema'))} is not supported (expected 1.0)`);
    this.fqrn = props.get('fqrn') ?? '';
    this.schemaRevision = Number(props.get('schema_revision') ?? 0);
    this.previousRevision = props.get('previous_revision');
    if (writable && this.schemaRevision < HISTORY_SCHEMA_REVISION) this.upgrade(tables);
    const cols = columnNames(db, 'tags');
    this.fields = ['name', 'hash', 'revision', 'timestamp', 'channel', 'description',
      cols.has('size') ? 'size' : 'NULL AS size', cols.has('branch') ? 'branch' : "'' AS branch"].join(', ');
  }

  private invalid(why: string, cause?: unknown): GridboxError {
    return new GridboxError('HISTORY_INVALID', `Cannot use history database ${q(this.file)}: ${why}`, { path: this.file, cause });
  }

  /** The stock server's live upgrade: size column (1), recycle_bin (2), branches + tags.branch (3). */
  private upgrade(tables: Set<string>): void {
    const db = this.db;
    db.transaction(() => {
      const cols = columnNames(db, 'tags');
      if (!cols.has('size')) db.exec('ALTER TABLE tags ADD size INTEGER;');
      if (!tables.has('recycle_bin')) db.exec(CREATE_SQL[4]);
      if (!tables.has('branches')) { db.exec(CREATE_SQL[1]); db.exec(CREATE_SQL[2]); }
      if (!cols.has('branch')) {
        db.exec('ALTER TABLE tags ADD branch TEXT REFERENCES branches (branch);');
        db.exec("UPDATE tags SET branch = '';");
      }
      db.exec('DELETE FROM recycle_bin;');
      db.prepare("INSERT OR REPLACE INTO properties (key, value) VALUES ('schema_revision', ?)").run(String(HISTORY_SCHEMA_REVISION));
    })();
    this.schemaRevision = HISTORY_SCHEMA_REVISION;
  }

  private requireWritable(action: string): void {
    if (!this.writable) throw this.invalid(`cannot ${action}: opened read-only`);
  }

  private toTag(r: TagRow): Tag {
    let id;
    try {
      id = parseObjectId(String(r.hash));
    } catch (cause) {
      throw this.invalid(`tag ${q(r.name)} has a bad hash ${q(r.hash)}`, cause);
    }
    return {
      name: String(r.name), id, revision: Number(r.revision), timestamp: Number(r.timestamp), channel: Number(r.channel ?? 0),
      description: r.description ?? '', size: Number(r.size ?? 0), branch: r.branch ?? '',
    };
  }

  setPreviousRevision(hex: string): void {
    this.requireWritable('set previous_revision');
    this.db.prepare("INSERT OR REPLACE INTO properties (key, value) VALUES ('previous_revision', ?)").run(hex);
    this.previousRevision = hex;
  }

  addTag(tag: TagInput): void {
    this.requireWritable(`add tag ${q(tag.name)}`);
    if (tag.name === '') throw this.invalid('cannot add a tag with an empty name');
    if (this.getTag(tag.name)) throw this.invalid(`tag ${q(tag.name)} already exists`);
    try {
      this.db.prepare('INSERT INTO tags (name, hash, revision, timestamp, channel, description, size, branch) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(tag.name, formatObjectId(tag.id), tag.revision, tag.timestamp, tag.channel ?? 0, tag.description ?? '', tag.size, tag.branch ?? '');
    } catch (cause) {
      throw this.invalid(`cannot add tag ${q(tag.name)}: ${(cause as Error).message}`, cause);
    }
  }

  removeTag(name: string): boolean {
    this.requireWritable(`remove tag ${q(name)}`);
    return this.db.prepare('DELETE FROM tags WHERE name = ?').run(name).changes > 0;
  }

  getTag(name: string): Tag | undefined {
    const r = this.db.prepare(`SELECT ${this.fields} FROM tags WHERE name = ? LIMIT 1`).get(name) as TagRow | undefined;
    return r ? this.toTag(r) : undefined;
  }

  tagsAtRevision(revision: number): Tag[] {
    return (this.db.prepare(`SELECT ${this.fields} FROM tags WHERE revision = ? ORDER BY name`).all(revision) as TagRow[]).map((r) => this.toTag(r));
  }

  tagAtTime(timestamp: number): Tag | undefined {
    const r = this.db.prepare(`SELECT ${this.fields} FROM tags WHERE timestamp <= ? ORDER BY revision DESC, name LIMIT 1`).get(timestamp) as TagRow | undefined;
    return r ? this.toTag(r) : undefined;
  }

  listTags(): Tag[] {
    return (this.db.prepare(`SELECT ${this.fields} FROM tags ORDER BY revision DESC, name`).all() as TagRow[]).map((r) => this.toTag(r));
  }

  commitHead(head: Omit<TagInput, 'name' | 'description'>): void {
    this.requireWritable('move trunk');
    this.db.transaction(() => {
      const trunk = this.getTag(TRUNK_TAG);
      this.db.prepare('DELETE FROM tags WHERE name IN (?, ?)').run(TRUNK_TAG, TRUNK_PREVIOUS_TAG);
      if (trunk) this.addTag({ ...trunk, name: TRUNK_PREVIOUS_TAG, description: TRUNK_PREVIOUS_DESCRIPTION });
      this.addTag({ ...head, name: TRUNK_TAG, description: TRUNK_DESCRIPTION });
    })();
  }

  removeTagsAfter(revision: number): number {
    this.requireWritable(`remove tags after revision ${revision}`);
    return this.db.prepare('DELETE FROM tags WHERE revision > ?').run(revision).changes;
  }

  close(): void {
    this.db.close();
  }
}

/** The stock server's automatic tag name for a publish at `timestamp` (Unix seconds): generic-YYYY-MM-DDThh:mm:ssZ. */
export function autoTagName(timestamp: number): string {
  return `generic-${new Date(timestamp * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z')}`;
}
