// History (tags) DB, reflog and meta-info: the fixture's history DB read as the stock server wrote it,
// ours created with the stock schema (checked with the sqlite3 CLI), trunk moves, upgrade, bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { withTempDir } from '../testing/tmp.js';
import { fixturesDir } from '../testing/fixtures.js';
import { isGridboxError } from '../errors.js';
import { formatObjectId, hashBytes, parseObjectId } from '../hash/object-id.js';
import { autoTagName, createHistory, openHistory } from './history-db.js';
import { createReflog, openReflog } from './reflog-db.js';
import { parseMetaInfo, serializeMetaInfo, MAX_META_INFO_BYTES } from './meta-info.js';


/** The fixture's newest history object (the one manifest H names), inflated. */
function fixtureHistory(tmp: string): string {
  execFileSync('tar', ['xzf', join(fixturesDir(), 'legacy_aufs_repo.tar.gz'), '-C', tmp]);
  const repo = join(tmp, 'srv', 'cvmfs', 'legacy_aufs.cern.ch');
  const h = /^H([0-9a-f]{40})$/m.exec(readFileSync(join(repo, '.cvmfspublished'), 'latin1'))![1];
  const file = join(tmp, 'history.db');
  writeFileSync(file, inflateSync(readFileSync(join(repo, 'data', h.slice(0, 2), `${h.slice(2)}H`))));
  return file;
}

const sql = (file: string, q: string) => execFileSync('sqlite3', [file, q], { encoding: 'utf8' }).trim();

test('the fixture history DB lists its 4 tags with trunk at revision 2', async () => {
  await withTempDir(async (tmp) => {
    const h = openHistory(fixtureHistory(tmp));
    try {
      assert.equal(h.fqrn, 'legacy_aufs.cern.ch');
      assert.equal(h.schemaRevision, 2);
      assert.equal(h.previousRevision, '288213516c871dfef0daeabfe288c03ba9ff7ea4');
      const tags = h.listTags();
      assert.deepEqual(tags.map((t) => t.name), ['generic-2015-10-21T11:55:15Z', 'trunk', 'generic-2015-10-21T11:55:14Z', 'trunk-previous']);
      const trunk = h.getTag('trunk')!;
      assert.equal(formatObjectId(trunk.id), '6ed3d49a5c64f21f36936ab350d49aaf57585b9a');
      assert.deepEqual([trunk.revision, trunk.timestamp, trunk.size, trunk.description, trunk.branch], [2, 1445428515, 14336, 'current HEAD', '']);
      assert.equal(h.getTag('trunk-previous')!.revision, 1);
      assert.deepEqual(h.tagsAtRevision(1).map((t) => t.name), ['generic-2015-10-21T11:55:14Z', 'trunk-previous']);
      assert.equal(h.tagAtTime(1445428514)!.revision, 1);
      assert.equal(h.tagAtTime(1445428000), undefined);
      assert.equal(h.getTag('nope'), undefined);
      assert.equal(autoTagName(1445428515), 'generic-2015-10-21T11:55:15Z');
      assert.throws(() => h.removeTag('trunk'), (e: unknown) => isGridboxError(e, 'HISTORY_INVALID'));
    } finally {
      h.close();
    }
  });
});

test('opening the fixture history writable upgrades it to revision 3 like the stock server', async () => {
  await withTempDir(async (tmp) => {
    const file = fixtureHistory(tmp);
    const h = openHistory(file, { writable: true });
    assert.equal(h.schemaRevision, 3);
    h.commitHead({ id: hashBytes('sha1', Buffer.from('r3')), revision: 3, timestamp: 1445500000, size: 20480 });
    h.close();
    assert.equal(sql(file, "SELECT value FROM properties WHERE key = 'schema_revision'"), '3');
    assert.equal(sql(file, "SELECT count(*) FROM tags WHERE branch = ''"), '4');
    assert.equal(sql(file, "SELECT revision FROM tags WHERE name = 'trunk-previous'"), '2');
    assert.equal(sql(file, "SELECT branch || '|' || ifnull(parent, 'NULL') FROM branches"), '|NULL');
  });
});

test('createHistory() writes the stock schema 1.0 revision 3 and commitHead() moves trunk to trunk-previous', async () => {
  await withTempDir(async (tmp) => {
    const file = join(tmp, 'h.db');
    const r1 = hashBytes('sha1', Buffer.from('one'));
    const r2 = parseObjectId(`${'ab'.repeat(20)}-rmd160`);
    const h = createHistory(file, 'test.example.org', { previousRevision: 'cd'.repeat(20) });
    h.commitHead({ id: r1, revision: 1, timestamp: 100, size: 4096 });
    assert.equal(h.getTag('trunk-previous'), undefined);
    h.commitHead({ id: r2, revision: 2, timestamp: 200, size: 8192 });
    h.addTag({ name: 'v1', id: r1, revision: 1, timestamp: 150, size: 4096, description: 'first' });
    assert.throws(() => h.addTag({ name: 'v1', id: r2, revision: 2, timestamp: 1, size: 1 }), (e: unknown) => isGridboxError(e, 'HISTORY_INVALID') && e.message.includes('"v1"'));
    assert.deepEqual(h.getTag('trunk')!.id, r2);
    assert.equal(h.getTag('trunk-previous')!.revision, 1);
    assert.equal(h.getTag('trunk-previous')!.description, 'default undo target');
    h.setPreviousRevision('ef'.repeat(20));
    h.close();
    assert.equal(sql(file, "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name)"), 'branches,properties,recycle_bin,tags');
    assert.equal(sql(file, 'PRAGMA journal_mode'), 'delete');
    assert.equal(sql(file, "SELECT key || '=' || value FROM properties ORDER BY key").replace(/\n/g, ' '),
      `fqrn=test.example.org previous_revision=${'ef'.repeat(20)} schema=1.0 schema_revision=3`);
    assert.equal(sql(file, "SELECT hash || '|' || size || '|' || branch || '|' || channel FROM tags WHERE name = 'trunk'"), `${'ab'.repeat(20)}-rmd160|8192||0`);
    const again = openHistory(file);
    try {
      assert.deepEqual(again.listTags().map((t) => `${t.name}@${t.revision}`), ['trunk@2', 'trunk-previous@1', 'v1@1']);
      assert.throws(() => again.addTag({ name: 'x', id: r1, revision: 1, timestamp: 1, size: 1 }), (e: unknown) => isGridboxError(e, 'HISTORY_INVALID'));
    } finally {
      again.close();
    }
    const w = openHistory(file, { writable: true });
    assert.equal(w.removeTagsAfter(1), 1);
    assert.equal(w.removeTag('v1'), true);
    assert.equal(w.removeTag('v1'), false);
    assert.deepEqual(w.listTags().map((t) => t.name), ['trunk-previous']);
    w.close();
  });
});

test('openHistory() rejects non-SQLite files and databases without tags, naming the file', async () => {
  await withTempDir(async (tmp) => {
    const junk = join(tmp, 'junk');
    writeFileSync(junk, 'not a database at all, just text '.repeat(200));
    assert.throws(() => openHistory(junk), (e: unknown) => isGridboxError(e, 'HISTORY_INVALID') && e.message.includes(junk));
    const empty = join(tmp, 'empty.db');
    sql(empty, "CREATE TABLE properties (key TEXT, value TEXT); INSERT INTO properties VALUES ('schema', '1.0');");
    assert.throws(() => openHistory(empty), (e: unknown) => isGridboxError(e, 'HISTORY_INVALID') && e.message.includes('"tags"'));
  });
});

test('the reflog records references by type with the stock schema', async () => {
  await withTempDir(async (tmp) => {
    const file = join(tmp, '.cvmfsreflog');
    const cat = hashBytes('sha1', Buffer.from('c'));
    const cert = hashBytes('sha1', Buffer.from('x'));
    const r = createReflog(file, 'test.example.org');
    r.addReference(cat, 'catalog', 10);
    r.addReference(cert, 'certificate', 11);
    assert.equal(r.contains(cat, 'catalog'), true);
    assert.equal(r.contains(cat, 'history'), false);
    r.close();
    assert.equal(sql(file, "SELECT hash || '|' || type || '|' || timestamp FROM refs ORDER BY timestamp").replace(/\n/g, ' '),
      `${formatObjectId(cat)}|0|10 ${formatObjectId(cert)}|1|11`);
    assert.equal(sql(file, "SELECT key || '=' || value FROM properties ORDER BY key").replace(/\n/g, ' '), 'fqrn=test.example.org schema=1.0 schema_revision=0');
    const ro = openReflog(file);
    try {
      assert.equal(ro.fqrn, 'test.example.org');
      assert.deepEqual(ro.list('certificate'), [{ id: cert, type: 'certificate', timestamp: 11 }]);
      assert.equal(ro.list().length, 2);
      assert.throws(() => ro.addReference(cat, 'history'), (e: unknown) => isGridboxError(e, 'HISTORY_INVALID'));
    } finally {
      ro.close();
    }
  });
});

test('meta-info round-trips JSON and refuses oversized or non-object documents', () => {
  const info = { administrator: 'Ada', email: 'ada@example.org', 'recommended-stratum1s': ['http://127.0.0.1/cvmfs/x'], custom: { a: 1 } };
  assert.deepEqual(parseMetaInfo(serializeMetaInfo(info)), info);
  assert.throws(() => parseMetaInfo(Buffer.from('[1]')), (e: unknown) => isGridboxError(e, 'HISTORY_INVALID'));
  assert.throws(() => parseMetaInfo(Buffer.from('{')), (e: unknown) => isGridboxError(e, 'HISTORY_INVALID'));
  assert.throws(() => parseMetaInfo(Buffer.alloc(MAX_META_INFO_BYTES + 1, 0x20)), (e: unknown) => isGridboxError(e, 'HISTORY_INVALID'));
});
