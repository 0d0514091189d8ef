// New version properties on an existing catalog file (revision, last_modified, previous_revision, TTL,
// root_prefix) without touching its rows: what the publisher does to the root catalog when nothing below
// it changed, and to kept catalogs' copies. The catalog SQL lives here, in catalog/, not in publish/.
import type { CatalogWriteProperties } from './catalog-writer.js';
import { openSqliteWritable } from './sqlite.js';

/** Rewrites the version properties of the catalog at `file` in one SQLite transaction. */
export function restampCatalog(file: string, p: CatalogWriteProperties): void {
  const db = openSqliteWritable(file);
  try {
    const set = db.prepare('INSERT OR REPLACE INTO properties (key, value) VALUES (?, ?)');
    const del = db.prepare('DELETE FROM properties WHERE key = ?');
    db.transaction(() => {
      set.run('revision', String(p.revision));
      set.run('last_modified', String(p.lastModified ?? Math.floor(Date.now() / 1000)));
      if (p.previousRevision !== undefined) set.run('previous_revision', p.previousRevision);
      else del.run('previous_revision');
      if (p.ttl !== undefined) set.run('TTL', String(p.ttl));
      else del.run('TTL');
      if (p.rootPrefix !== undefined) set.run('root_prefix', p.rootPrefix);
      else del.run('root_prefix');
    })();
  } finally {
    db.close();
  }
}
