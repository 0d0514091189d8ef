// openSqlite: options become pragmas, a file that is not a database is refused with a clear error naming it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withTempDir } from '../testing/tmp.js';
import { openSqlite } from './sqlite.js';

test('openSqlite creates on request, applies journal and synchronous, and reopens read-only', async () => withTempDir(async (dir) => {
  const p = join(dir, 'a.db');
  assert.throws(() => openSqlite(p), { code: 'SQLITE_INVALID' });
  const db = openSqlite(p, { create: true, journal: 'delete', synchronous: 'off', busyTimeoutMs: 123 });
  assert.equal(db.pragma('journal_mode', { simple: true }), 'delete');
  assert.equal(db.pragma('synchronous', { simple: true }), 0);
  assert.equal(db.pragma('busy_timeout', { simple: true }), 123);
  db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
  db.close();
  const ro = openSqlite(p, { readonly: true });
  assert.equal(ro.readonly, true);
  assert.equal(ro.prepare('SELECT x FROM t').pluck().get(), 1);
  assert.throws(() => ro.exec('INSERT INTO t VALUES (2)'));
  ro.close();
}));

test('a file that is not SQLite is refused with the given code, naming the file', async () => withTempDir(async (dir) => {
  const p = join(dir, 'junk.db');
  writeFileSync(p, 'this is not a database, but it is long enough to have a header of sorts......');
  assert.throws(() => openSqlite(p, { readonly: true, errorCode: 'CATALOG_INVALID', what: 'catalog' }),
    (e: Error & { code?: string }) => e.code === 'CATALOG_INVALID' && e.message.includes('catalog') && e.message.includes('junk.db'));
  assert.throws(() => openSqlite(p), { code: 'SQLITE_INVALID' });
}));
