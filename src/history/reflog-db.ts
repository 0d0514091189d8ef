// The reflog `.cvmfsreflog` (cvmfs-format.md §6.2): an uncompressed, non-CAS SQLite file listing every root
// object the repository ever referenced, for garbage collection and stratum 1s. Schema 1.0 revision 0.
// Hashing the file for the manifest's `Y` key is the publisher's business.
import { GridboxError, q } from '../errors.js';
import { formatObjectId, parseObjectId, type ObjectId } from '../hash/object-id.js';
import { createHistorySqlite, openHistorySqlite, readProperties, tableNames, type HistorySqlite } from './history-sqlite.js';

export const REFLOG_SCHEMA = '1.0';
export const REFLOG_SCHEMA_REVISION = 0;

export type ReferenceType = 'catalog' | 'certificate' | 'history' | 'metainfo';
const TYPE_CODE: Record<ReferenceType, number> = { catalog: 0, certificate: 1, history: 2, metainfo: 3 };
const TYPE_NAME = ['catalog', 'certificate', 'history', 'metainfo'] as const;

export interface Reference {
  id: ObjectId;
  type: ReferenceType;
  /** Unix seconds when it was recorded. */
  timestamp: number;
}

export interface ReflogDb {
  readonly file: string;
  readonly fqrn: string;
  /** Record a reference (an existing row for the same hash is replaced, as the server does). */
  addReference(id: ObjectId, type: ReferenceType, timestamp?: number): void;
  removeReference(id: ObjectId, type: ReferenceType): boolean;
  contains(id: ObjectId, type: ReferenceType): boolean;
  /** References, oldest first; only one type when given. */
  list(type?: ReferenceType): Reference[];
  close(): void;
}

export function createReflog(file: string, fqrn: string): ReflogDb {
  const db = createHistorySqlite(file, 'reflog');
  try {
    db.transaction(() => {
      db.exec('CREATE TABLE properties (key TEXT, value TEXT, CONSTRAINT pk_properties PRIMARY KEY (key));');
      db.exec('CREATE TABLE refs (hash TEXT, type INTEGER, timestamp INTEGER, CONSTRAINT pk_refs PRIMARY KEY (hash));');
      const set = db.prepare('INSERT INTO properties (key, value) VALUES (?, ?)');
      set.run('schema', REFLOG_SCHEMA);
      set.run('schema_revision', String(REFLOG_SCHEMA_REVISION));
      set.run('fqrn', fqrn);
    })();
    return new SqliteReflog(db, file, true);
  } catch (e) {
    db.close();
    if (e instanceof GridboxError) throw e;
    throw new GridboxError('HISTORY_INVALID', `Cannot create reflog ${q(file)}: ${(e as Error).message}`, { cause: e, path: file });
  }
}

export function openReflog(file: string, opts: { writable?: boolean } = {}): ReflogDb {
  const db = openHistorySqlite(file, opts.writable === true, 'reflog');
  try {
    return new SqliteReflog(db, file, opts.writable === true);
  } catch (e) {
    db.close();
    throw e;
  }
}

class SqliteReflog implements ReflogDb {
  readonly fqrn: string;

  constructor(private readonly db: HistorySqlite, readonly file: string, private readonly writable: boolean) {
    const tables = tableNames(db);
    for (const t of ['properties', 'refs']) {
      if (!tables.has(t)) throw this.invalid(`table ${q(t)} is missing`);
    }
    this.fqrn = readProperties(db).get('fqrn') ?? '';
  }

  private invalid(why: string, cause?: unknown): GridboxError {
    return new GridboxError('HISTORY_INVALID', `Cannot use reflog ${q(this.file)}: ${why}`, { path: this.file, cause });
  }

  addReference(id: ObjectId, type: ReferenceType, timestamp = Math.floor(Date.now() / 1000)): void {
    if (!this.writable) throw this.invalid('cannot add a reference: opened read-only');
    this.db.prepare('INSERT OR REPLACE INTO refs (hash, type, timestamp) VALUES (?, ?, ?)').run(formatObjectId(id), TYPE_CODE[type], timestamp);
  }

  removeReference(id: ObjectId, type: ReferenceType): boolean {
    if (!this.writable) throw this.invalid('cannot remove a reference: opened read-only');
    return this.db.prepare('DELETE FROM refs WHERE hash = ? AND type = ?').run(formatObjectId(id), TYPE_CODE[type]).changes > 0;
  }

  contains(id: ObjectId, type: ReferenceType): boolean {
    return this.db.prepare('SELECT 1 FROM refs WHERE type = ? AND hash = ?').get(TYPE_CODE[type], formatObjectId(id)) !== undefined;
  }

  list(type?: ReferenceType): Reference[] {
    const rows = (type === undefined
      ? this.db.prepare('SELECT hash, type, timestamp FROM refs ORDER BY timestamp, hash').all()
      : this.db.prepare('SELECT hash, type, timestamp FROM refs WHERE type = ? ORDER BY timestamp, hash').all(TYPE_CODE[type])) as
      { hash: string; type: number; timestamp: number }[];
    return rows.map((r) => {
      const name = TYPE_NAME[r.type];
      if (name === undefined) throw this.invalid(`reference ${q(r.hash)} has unknown type ${r.type}`);
      try {
        return { id: parseObjectId(String(r.hash)), type: name, timestamp: Number(r.timestamp) };
      } catch (cause) {
        throw this.invalid(`reference has a bad hash ${q(r.hash)}`, cause);
      }
    });
  }

  close(): void {
    this.db.close();
  }
}
